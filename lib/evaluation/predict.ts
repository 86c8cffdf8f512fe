/**
 * A model's class probabilities for a batch of images, as every report and command predicts:
 * the image alone, or averaged over test-time augmentation views (lib/data/augment.ts's
 * TTA_VIEWS) where a run's recipe declares them.
 */
import { tf } from "../accelerator";
import { TTA_VIEWS, viewBatch, type TtaView } from "../data/augment";

/** Class probabilities as a flat row-major [N × classes] array (inference mode, in batches). */
export function predictProbabilities(model: tf.LayersModel, x: tf.Tensor4D, batchSize = 256): Float32Array {
  const output = model.predict(x, { batchSize }) as tf.Tensor;
  try {
    return output.dataSync() as Float32Array;
  } finally {
    output.dispose();
  }
}

/**
 * Class probabilities averaged over deterministic views of each image (test-time
 * augmentation), predicted in batches. Returns a flat [N × classes] array.
 */
export function predictWithTta(model: tf.LayersModel, x: tf.Tensor4D, batchSize = 256, views: readonly TtaView[] = TTA_VIEWS): Float32Array {
  if (views.length === 0) throw new Error("predictWithTta needs at least one view.");
  const mean = tf.tidy(() => {
    let total: tf.Tensor | undefined;
    for (const view of views) {
      const probabilities = model.predict(viewBatch(x, view), { batchSize }) as tf.Tensor;
      total = total ? tf.add(total, probabilities) : probabilities;
    }
    return tf.div(total!, views.length);
  });
  try {
    return mean.dataSync() as Float32Array;
  } finally {
    mean.dispose();
  }
}

/**
 * What the model's output layer reads, for each image: the penultimate layer's activations as
 * rows [N, features] (inference mode, in batches), e.g. for an embedding of learned features.
 */
export function penultimateFeatures(model: tf.LayersModel, x: tf.Tensor4D, batchSize = 256): tf.Tensor2D {
  if (model.layers.length < 2) throw new Error(`penultimateFeatures: ${model.name} has no layer before its output.`);
  const truncated = tf.model({ inputs: model.inputs, outputs: model.layers[model.layers.length - 2].output as tf.SymbolicTensor });
  return tf.tidy(() => {
    const features = truncated.predict(x, { batchSize }) as tf.Tensor;
    return features.reshape([x.shape[0], -1]) as tf.Tensor2D;
  });
}
