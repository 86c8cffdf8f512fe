/**
 * Where a training step's time goes: TF.js's per-kernel timings (tf.profile) over several
 * steps, grouped by kernel and input shapes, each group's median per step, with the
 * arithmetic rate of the convolutions and matrix products. Used by `npm run bench --profile`.
 */
import { tf } from "./backend";

export interface KernelTime {
  /** Kernel name and input shapes, e.g. `Conv2DBackpropFilter [128,13,13,32] [128,11,11,64]`. */
  kernel: string;
  /** Calls per step. */
  calls: number;
  /** Median milliseconds per step over the profiled steps. */
  ms: number;
  /** Share of the summed kernel time. */
  share: number;
  /** Floating-point operations per second (in billions), for convolutions and matrix products. */
  gflops: number | null;
}

export interface StepProfile {
  /** Median wall time of one step without the profiler, in milliseconds. */
  stepMs: number;
  /** Sum of the kernels' medians per step (profiled steps). */
  kernelMs: number;
  /**
   * Median over the profiled steps of each step's wall time minus its kernels' (the engine, JavaScript, the
   * profiler's own bookkeeping). Not stepMs − kernelMs: those come from different steps, and on a noisy machine
   * the profiled ones' kernels alone can take longer than an unprofiled step.
   */
  outsideMs: number;
  /** Floating-point operations per step in the kernels whose count is known (see kernelFlops). */
  flops: number;
  kernels: KernelTime[];
}

const product = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Multiply-adds ×2 of a convolution or matrix product from its input and output shapes
 * (NHWC, filters [h, w, in, out]); null for other kernels.
 */
export function kernelFlops(name: string, inputShapes: number[][], outputShapes: number[][]): number | null {
  const out = outputShapes[0];
  if (!out) return null;
  switch (name) {
    case "Conv2D":
    case "FusedConv2D":
    case "ProjectConv2DBias": {
      const [h, w, channels] = inputShapes[1];
      return 2 * product(out) * h * w * channels;
    }
    case "Conv2DBackpropFilter": {
      // Inputs x and dy; the output is the filter gradient [h, w, in, out].
      const [h, w, channels] = out;
      return 2 * product(inputShapes[1]) * h * w * channels;
    }
    case "Conv2DBackpropInput": {
      // Inputs dy and the filter.
      const [h, w, channels] = inputShapes[1];
      return 2 * product(inputShapes[0]) * h * w * channels;
    }
    case "ProjectConvBnBlock": {
      // Inputs x, filter1, γ1, β1, filter2, …: both convolutions.
      const [first, second] = blockConvolutionFlops(inputShapes[0], inputShapes[1], inputShapes[4]);
      return first + second;
    }
    case "ProjectConvBnBlockGrad": {
      // Inputs dy, x, filter1, γ1, filter2, …: both filter gradients, the second convolution's input gradient and, with
      // a seventh output (dx), the first's.
      const [first, second] = blockConvolutionFlops(inputShapes[1], inputShapes[2], inputShapes[4]);
      return 2 * second + first * (outputShapes.length > 6 ? 2 : 1);
    }
    case "ProjectConvReluPool":
    case "ProjectConvReluPoolGrad": {
      // Forward: inputs x, filter, bias; outputs y (pooled), the activation [n, h, w, ·] (the convolution's output), … .
      // Gradient: inputs dy, x, filter, activation, …: the filter gradient and, with a third output (dx), the input's.
      const forward = name === "ProjectConvReluPool";
      const [h, w, channels, filters] = inputShapes[forward ? 1 : 2];
      const [n, outHeight, outWidth] = forward ? outputShapes[1] : inputShapes[3];
      const convolution = 2 * n * outHeight * outWidth * filters * h * w * channels;
      return forward ? convolution : convolution * (outputShapes.length > 2 ? 2 : 1);
    }
    case "MatMul":
    case "BatchMatMul":
    case "_FusedMatMul": {
      // a holds [m, k] or, transposed, [k, m]; m is the output's second-last dimension.
      const a = inputShapes[0];
      const rows = out[out.length - 2];
      const inner = (a[a.length - 1] * a[a.length - 2]) / rows;
      return 2 * product(out) * inner;
    }
    default:
      return null;
  }
}

/**
 * Multiply-adds ×2 of a block's two convolutions (lib/accelerator/layers.ts, ConvBnBlock) from its input [n, h, w, in]
 * and filters [kh, kw, in, c1], [kh, kw, c1, c2], for blocks whose convolutions keep the size (stride 1, 'same', as
 * vgg-bn's); not from its output, which the pool inside the op may have made smaller.
 */
function blockConvolutionFlops(x: number[], filter1: number[], filter2: number[]): [number, number] {
  const pixels = product(x.slice(0, 3));
  const [h1, w1, in1, c1] = filter1;
  const [h2, w2, , c2] = filter2;
  return [2 * pixels * c1 * h1 * w1 * in1, 2 * pixels * c2 * h2 * w2 * c1];
}

/**
 * Custom-gradient ops (tf.customGrad, e.g. TF.js's fused matMul or batch norm here) are
 * recorded under their scope's name ("unnamed scope", "fusedMatMul__op", "forward", "") with a
 * time that includes the kernels they run, which are recorded too: counting both would count
 * that time twice. Real kernels are the ones registered on the backend.
 */
export const isGradientWrapper = (name: string, backend: string = tf.getBackend()): boolean => tf.getKernel(name, backend) === undefined;

/** The median (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * Times `step` `repeats` times without the profiler (stepMs), then profiles it `repeats`
 * times (the kernels' times and the time outside them). Run a warm-up step first: the first call sets up kernels and optimizer state.
 */
export async function profileStep(step: () => Promise<unknown>, repeats: number): Promise<StepProfile> {
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`repeats must be a positive integer, got ${repeats}.`);
  const wall: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const started = performance.now();
    await step();
    wall.push(performance.now() - started);
  }
  // Per group: the time of each profiled step (0 where a step did not run it), and calls.
  const groups = new Map<string, { times: number[]; calls: number[]; flops: number | null }>();
  const outside: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const started = performance.now();
    const info = await tf.profile(async () => {
      await step();
    });
    const stepWall = performance.now() - started; // before the grouping below, which is not the step's
    let kernelsOfStep = 0;
    for (const k of info.kernels) {
      if (isGradientWrapper(k.name)) continue;
      // kernelTimeMs is an {error} object where the backend cannot time kernels.
      const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
      const key = `${k.name} ${k.inputShapes.map((s) => JSON.stringify(s ?? [])).join(" ")}`;
      const group = groups.get(key) ?? {
        times: new Array<number>(repeats).fill(0),
        calls: new Array<number>(repeats).fill(0),
        flops: kernelFlops(k.name, k.inputShapes, k.outputShapes),
      };
      group.times[r] += ms;
      group.calls[r]++;
      groups.set(key, group);
      kernelsOfStep += ms;
    }
    outside.push(stepWall - kernelsOfStep);
  }
  const medians = [...groups.entries()].map(([kernel, g]) => ({ kernel, flops: g.flops, calls: median(g.calls), ms: median(g.times) }));
  const kernelMs = medians.reduce((sum, { ms }) => sum + ms, 0);
  const flops = medians.reduce((sum, k) => sum + (k.flops ?? 0) * k.calls, 0);
  const kernels = medians
    .map(({ kernel, flops: perCall, calls, ms }) => ({
      kernel, calls, ms, share: kernelMs > 0 ? ms / kernelMs : 0, gflops: perCall !== null && ms > 0 ? (calls * perCall) / (ms * 1e6) : null,
    }))
    .sort((a, b) => b.ms - a.ms);
  return { stepMs: median(wall), kernelMs, outsideMs: median(outside), flops, kernels };
}
