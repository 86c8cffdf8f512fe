/**
 * FastAdam and FastMomentum: TF.js's Adam and SGD with (Nesterov) momentum, with each variable's
 * update done by one fused kernel where the backend has it (wasm: lib/accelerator/wasm/optimizer.ts)
 * and by the stock ops elsewhere. Same state (Adam's moments named `<variable>/m` and `/v`,
 * momentum's `<variable>/momentum`, the iteration count), same saved weights and config, and
 * the same class names, so models saved with either load with either and resume.
 */
import { tf } from "./backend";
import { ADAM_UPDATE_KERNEL, MOMENTUM_UPDATE_KERNEL, type AdamUpdateAttrs, type MomentumUpdateAttrs } from "./wasm/optimizer";

type NamedGradients = Parameters<tf.AdamOptimizer["applyGradients"]>[0];
type NamedTensor = { name: string; tensor: tf.Tensor };
interface OptimizerVariable {
  originalName: string;
  variable: tf.Variable;
}
/** AdamOptimizer's private state (TF.js 4.22, pinned in package.json; tests cover it). */
interface AdamState {
  accumulatedFirstMoment: OptimizerVariable[];
  accumulatedSecondMoment: OptimizerVariable[];
  accBeta1: tf.Variable;
  accBeta2: tf.Variable;
}

/** The variable-gradient pairs in the order the optimizer's state lists them. */
function namedGradients(variableGradients: NamedGradients): NamedTensor[] {
  return Array.isArray(variableGradients)
    ? variableGradients
    : Object.entries(variableGradients).map(([name, tensor]) => ({ name, tensor: tensor as tf.Tensor }));
}

/** An optimizer's state for a variable, zeros at first (not trainable), under the name TF.js saves it by. */
function zeroState(originalName: string, value: tf.Variable): OptimizerVariable {
  return { originalName, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
}

/** Whether every gradient can go through `kernel` on the current backend (float32 only). */
function fusedFor(kernel: string, gradients: NamedTensor[]): boolean {
  return tf.getKernel(kernel, tf.getBackend()) !== undefined && gradients.every((g) => g.tensor === null || g.tensor.dtype === "float32");
}

export class FastAdam extends tf.AdamOptimizer {
  static override get className(): string {
    return "Adam";
  }

  constructor(learningRate = 0.001, beta1 = 0.9, beta2 = 0.999, epsilon: number | null = null) {
    super(learningRate, beta1, beta2, epsilon as number);
  }

  override applyGradients(variableGradients: NamedGradients): void {
    const gradients = namedGradients(variableGradients);
    if (!fusedFor(ADAM_UPDATE_KERNEL, gradients)) {
      super.applyGradients(variableGradients);
      return;
    }
    const state = this as unknown as AdamState;
    const step = this.iterations + 1;
    const attrs: AdamUpdateAttrs = {
      beta1: this.beta1,
      beta2: this.beta2,
      epsilon: this.epsilon,
      learningRate: this.learningRate,
      correction1: 1 - this.beta1 ** step,
      correction2: 1 - this.beta2 ** step,
    };
    gradients.forEach(({ name, tensor: gradient }, i) => {
      const value = tf.engine().registeredVariables[name];
      state.accumulatedFirstMoment[i] ??= zeroState(`${name}/m`, value);
      state.accumulatedSecondMoment[i] ??= zeroState(`${name}/v`, value);
      if (gradient == null) return;
      const m = state.accumulatedFirstMoment[i].variable;
      const v = state.accumulatedSecondMoment[i].variable;
      tf.tidy(() => {
        const [newValue, newM, newV] = tf.engine().runKernel(ADAM_UPDATE_KERNEL, { value, m, v, gradient }, attrs as never) as tf.Tensor[];
        m.assign(newM);
        v.assign(newV);
        value.assign(newValue);
      });
    });
    // The stock path reads these; keep them as it would have left them (β^(t+1)).
    tf.tidy(() => {
      state.accBeta1.assign(tf.scalar(this.beta1 ** (step + 1)));
      state.accBeta2.assign(tf.scalar(this.beta2 ** (step + 1)));
    });
    this.incrementIterations();
  }
}

/** MomentumOptimizer's private state (TF.js 4.22). */
interface MomentumState {
  accumulations: OptimizerVariable[];
  momentum: number;
  useNesterov: boolean;
}

export class FastMomentum extends tf.MomentumOptimizer {
  static override get className(): string {
    return "Momentum";
  }

  override applyGradients(variableGradients: NamedGradients): void {
    const gradients = namedGradients(variableGradients);
    if (!fusedFor(MOMENTUM_UPDATE_KERNEL, gradients)) {
      super.applyGradients(variableGradients);
      return;
    }
    const state = this as unknown as MomentumState;
    const attrs: MomentumUpdateAttrs = { momentum: state.momentum, learningRate: this.learningRate, nesterov: state.useNesterov };
    gradients.forEach(({ name, tensor: gradient }, i) => {
      const value = tf.engine().registeredVariables[name];
      state.accumulations[i] ??= zeroState(`${name}/momentum`, value);
      if (gradient == null) return;
      const accumulation = state.accumulations[i].variable;
      tf.tidy(() => {
        const [newValue, newAccumulation] = tf.engine().runKernel(MOMENTUM_UPDATE_KERNEL, { value, accumulation, gradient }, attrs as never) as tf.Tensor[];
        accumulation.assign(newAccumulation);
        value.assign(newValue);
      });
    });
    this.incrementIterations();
  }
}

// Models loaded from disk (resumed runs) get the fast optimizers too.
tf.serialization.registerClass(FastAdam);
tf.serialization.registerClass(FastMomentum);
