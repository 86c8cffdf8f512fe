/**
 * FastL1L2: TF.js's L1L2 weight regularizer (what `tf.regularizers.l2` returns), with the pure L2 penalty λ·Σw² and
 * its gradient 2λ·w·dy as one custom-gradient op. The stock penalty records six ops per weight on the tape, and its
 * gradient builds a tensor of ones of the weight's shape in JavaScript (Sum's gradient) and makes five passes over
 * the weight; on vgg-bn that was 2.7 ms of a 97 ms bf16 step at two threads (docs/backend.md, 2026-12-02). The same
 * value up to float rounding, the same class name and config, so saved models load either way; with an L1 term it is
 * the stock regularizer.
 */
import { tf } from "./backend";

interface L1L2Instance extends tf.serialization.Serializable {
  readonly l1: number;
  readonly l2: number;
  apply(x: tf.Tensor): tf.Scalar;
  getConfig(): tf.serialization.ConfigDict;
}
interface L1L2Class {
  new (args: { l1?: number; l2?: number }): L1L2Instance;
}
// TF.js exports only the factory functions; the class is what they return.
const StockL1L2 = tf.regularizers.l1l2({ l1: 0, l2: 0 }).constructor as unknown as L1L2Class;

export class FastL1L2 extends StockL1L2 {
  static readonly className = "L1L2";
  private penalty?: (w: tf.Tensor) => tf.Scalar;

  override apply(x: tf.Tensor): tf.Scalar {
    if (this.l1 !== 0 || this.l2 === 0) return super.apply(x);
    const l2 = this.l2;
    this.penalty ??= tf.customGrad((w, save) => {
      (save as tf.GradSaveFunc)([w as tf.Tensor]);
      return {
        value: tf.mul(tf.sum(tf.square(w as tf.Tensor)), l2) as tf.Scalar,
        gradFunc: (dy: tf.Scalar, [saved]: tf.Tensor[]) => tf.mul(saved, tf.mul(dy, 2 * l2)),
      };
    }) as (w: tf.Tensor) => tf.Scalar;
    return this.penalty(x);
  }
}

/** An L2 weight regularizer: the loss gains λ·Σw². */
export const l2Regularizer = (l2: number): FastL1L2 => new FastL1L2({ l1: 0, l2 });

// Loaded models get it too: the same class name replaces the stock class in TF.js's deserialisation map.
tf.serialization.registerClass(FastL1L2 as unknown as tf.serialization.SerializableConstructor<tf.serialization.Serializable>);
