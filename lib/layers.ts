/**
 * Layers that behave exactly like TF.js's own but train faster here.
 *
 * FastDropout: TF.js draws dropout masks with a seedrandom generator in JavaScript, one call
 * per value, plus three elementwise kernels (add, floor, div); on the capstone CNN that is
 * ~10 ms of a ~150 ms training step. FastDropout draws the same Bernoulli(1 − rate) mask,
 * scaled by 1/(1 − rate), with a xorshift generator in one loop. It serialises as the stock
 * `Dropout` (same class name and config), so saved models load anywhere.
 */
import { tf } from "./backend";

type DropoutArgs = Parameters<typeof tf.layers.dropout>[0];

interface DropoutLayer extends tf.layers.Layer {
  rate: number;
  noiseShape?: number[];
  seed?: number;
}

// The stock Dropout class is not exported by name; its constructor is reachable from an instance.
const StockDropout = tf.layers.dropout({ rate: 0.5 }).constructor as new (args: DropoutArgs) => DropoutLayer;

/** xorshift32: fast, and good enough to decide which units to drop. */
export class MaskGenerator {
  private state: number;

  constructor(seed?: number) {
    // A zero state would stay zero forever.
    this.state = (seed ?? Math.floor(Math.random() * 0xffffffff)) >>> 0 || 0x9e3779b9;
  }

  /** Values 1/keep with probability keep, else 0. */
  fill(mask: Float32Array, keep: number): Float32Array {
    const threshold = keep * 4294967296;
    const scale = 1 / keep;
    let s = this.state;
    for (let i = 0; i < mask.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      mask[i] = (s >>> 0) < threshold ? scale : 0;
    }
    this.state = s >>> 0 || 0x9e3779b9;
    return mask;
  }
}

export class FastDropout extends StockDropout {
  static className = "Dropout";
  private readonly masks: MaskGenerator;

  constructor(args: DropoutArgs) {
    super(args);
    this.masks = new MaskGenerator(args.seed);
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] {
    const training = kwargs.training === true;
    if (!training || !(this.rate > 0 && this.rate < 1) || this.noiseShape != null) return super.call(inputs, kwargs);
    return tf.tidy(() => {
      const input = Array.isArray(inputs) ? inputs[0] : inputs;
      const mask = this.masks.fill(new Float32Array(input.size), 1 - this.rate);
      return tf.mul(input, tf.tensor(mask, input.shape));
    });
  }
}
