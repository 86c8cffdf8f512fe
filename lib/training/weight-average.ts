/**
 * An exponential moving average of a model's weights (EMA), for evaluation: after each training
 * step, average ← d·average + (1 − d)·weights, over every weight including batch norm's moving
 * statistics (so the averaged network's statistics match its averaged kernels). Training itself
 * is unchanged: the optimizer steps the live weights; validation, the saved best model and the
 * test predictions use the average. The decay warms up as d_t = min(decay, (1 + t) / (10 + t))
 * (TensorFlow's ExponentialMovingAverage with num_updates), so that early steps, far from the
 * initial weights, are not averaged with them for long.
 */
import { tf } from "../accelerator";

/** The decay used after step t (0-based, counted over the whole run). */
export function averageDecayAt(decay: number, step: number): number {
  return Math.min(decay, (1 + step) / (10 + step));
}

export function checkAverageDecay(decay: unknown, where: string): number {
  if (typeof decay !== "number" || !(decay > 0 && decay < 1)) throw new Error(`${where}: the EMA decay must be a number in (0, 1), got ${JSON.stringify(decay)}.`);
  return decay;
}

/** A variable holding a tensor's values (the tensor itself is released). */
function held(values: tf.Tensor): tf.Variable {
  const variable = tf.variable(values, false);
  values.dispose();
  return variable;
}

export class WeightAverage {
  private readonly average: tf.Variable[];

  /** Starts from the model's current weights, or from `saved` (serialize()'s bytes, when resuming). */
  constructor(model: tf.LayersModel, readonly decay: number, saved?: Uint8Array) {
    checkAverageDecay(decay, "WeightAverage");
    const weights = model.getWeights();
    if (!saved) {
      this.average = weights.map((w) => held(w.clone()));
      return;
    }
    const total = weights.reduce((sum, w) => sum + w.size, 0);
    if (saved.byteLength !== total * 4) throw new Error(`The saved weight average holds ${saved.byteLength / 4} values; the model has ${total}.`);
    const values = new Float32Array(saved.buffer.slice(saved.byteOffset, saved.byteOffset + saved.byteLength));
    let offset = 0;
    this.average = weights.map((w) => {
      const part = values.subarray(offset, offset + w.size);
      offset += w.size;
      return held(tf.tensor(part, w.shape, "float32"));
    });
  }

  /** Folds the model's weights after training step `step` into the average. */
  update(model: tf.LayersModel, step: number): void {
    const d = averageDecayAt(this.decay, step);
    const weights = model.getWeights();
    tf.tidy(() => {
      for (const [i, average] of this.average.entries()) average.assign(tf.add(tf.mul(average, d), tf.mul(weights[i], 1 - d)));
    });
  }

  /** Runs fn with the averaged weights in the model, then puts the trained weights back. */
  async applied<T>(model: tf.LayersModel, fn: () => T | Promise<T>): Promise<T> {
    const trained = model.getWeights().map((w) => w.clone());
    model.setWeights(this.average);
    try {
      return await fn();
    } finally {
      model.setWeights(trained);
      tf.dispose(trained);
    }
  }

  /** The average as float32 bytes, in the order of model.getWeights() (a checkpoint's file). */
  serialize(): Uint8Array {
    const total = this.average.reduce((sum, w) => sum + w.size, 0);
    const values = new Float32Array(total);
    let offset = 0;
    for (const w of this.average) {
      values.set(w.dataSync() as Float32Array, offset);
      offset += w.size;
    }
    return new Uint8Array(values.buffer);
  }

  dispose(): void {
    tf.dispose(this.average);
  }
}
