import { tf } from "../../lib/accelerator";
import { seededRandom } from "../../lib/tooling/random";

/** Uniform values in [-1, 1), fresh on every call (a new random input each test run) unless a generator is given. */
export function randomArray(length: number, random: () => number = Math.random): Float32Array {
  const values = new Float32Array(length);
  for (let i = 0; i < length; i++) values[i] = random() * 2 - 1;
  return values;
}

/** max |actual − expected| / max |expected|: the error relative to the result's scale. */
export function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new Error(`lengths differ: ${actual.length} vs ${expected.length}`);
  }
  let maxDiff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return scale === 0 ? maxDiff : maxDiff / scale;
}

/** ‖actual − expected‖ / ‖expected‖ (Euclidean norms): the error over the whole result, one stray element diluted. */
export function relativeDistance(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`lengths differ: ${actual.length} vs ${expected.length}`);
  let [difference, size] = [0, 0];
  for (let i = 0; i < expected.length; i++) (difference += (actual[i] - expected[i]) ** 2), (size += expected[i] ** 2);
  return Math.sqrt(difference / size);
}

/** Runs fn with the named backend active, then restores the previous one. */
export async function onBackend<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const previous = tf.getBackend();
  await tf.setBackend(name);
  try {
    return await fn();
  } finally {
    await tf.setBackend(previous);
  }
}

export interface HostTensor {
  values: Float32Array;
  shape: number[];
}

export function randomTensor(shape: number[], random: () => number = Math.random): HostTensor {
  return { values: randomArray(shape.reduce((a, b) => a * b, 1), random), shape };
}

/**
 * Runs one kernel on the named backend with the given inputs and attributes; returns its
 * output values and shape, and how many tensors the call left behind.
 */
export async function runKernelOn(
  backend: string,
  kernelName: string,
  inputs: Record<string, HostTensor>,
  attrs: Record<string, unknown>,
): Promise<HostTensor & { leaked: number }> {
  return onBackend(backend, async () => {
    const tensors = Object.fromEntries(
      Object.entries(inputs).map(([name, t]) => [name, tf.tensor(t.values, t.shape)]),
    );
    // Data buffers, not tensors: a kernel's intermediates live in the backend, not the engine.
    const before = tf.memory().numDataBuffers;
    const output = tf.engine().runKernel(kernelName, tensors, attrs as never) as tf.Tensor;
    const values = (await output.data()) as Float32Array;
    const shape = output.shape;
    output.dispose();
    const leaked = tf.memory().numDataBuffers - before;
    tf.dispose(Object.values(tensors));
    return { values, shape, leaked };
  });
}

/** A batch of distinct, asymmetric seeded random images in [0, 1], [count, size, size, 1]. */
export function seededImages(count: number, seed = 1, size = 28): tf.Tensor4D {
  const random = seededRandom(seed);
  return tf.tensor4d(Float32Array.from({ length: count * size * size }, () => random()), [count, size, size, 1]);
}

/** A tensor's values as a plain array. */
export const valuesOf = (t: tf.Tensor): number[] => Array.from(t.dataSync());
