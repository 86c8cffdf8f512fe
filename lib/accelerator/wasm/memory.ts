/** Kernels that only move or share data: Tile, Identity, Cast, and matmul operand layout. */
import { runWasmKernel, disposeIntermediates, type KernelArgs, type KernelFunc, type TensorInfo } from "./common";

/**
 * Tile that repeats a whole block (every repeated axis has extent 1 in x and comes before
 * the others, e.g. a batch-norm [1,1,1,C] over [N,H,W,1]) by doubling copies on the heap;
 * the stock kernel computes an index per element (~100 ms per capstone BN layer).
 */
export function tile(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  const reps = attrs.reps as number[];
  const firstKept = reps.findIndex((r) => r === 1) === -1 ? reps.length : reps.findIndex((r) => r === 1);
  const blockRepeat = reps.slice(0, firstKept).every((r, axis) => x.shape[axis] === 1 || r === 1) && reps.slice(firstKept).every((r) => r === 1);
  if (!blockRepeat || x.dtype === "string" || x.dtype === "complex64") return original(args as never) as TensorInfo;
  const outShape = x.shape.map((d, axis) => d * reps[axis]);
  const out = backend.makeOutput(outShape, x.dtype);
  const outValues = backend.typedArrayFromHeap(out);
  const block = backend.typedArrayFromHeap(x);
  outValues.set(block, 0);
  for (let filled = block.length; filled < outValues.length; filled *= 2) {
    outValues.copyWithin(filled, 0, Math.min(filled, outValues.length - filled));
  }
  return out;
}

/**
 * Matrix products with a transpose flag fall back to a scalar loop in wasm (~2 GFLOP/s);
 * transposing the operand explicitly keeps them on XNNPACK. For BatchMatMul and _FusedMatMul.
 */
export function matMulWithoutTransposeFlags(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { inputs, backend, attrs } = args;
  if (!attrs.transposeA && !attrs.transposeB) return original(args as never) as TensorInfo;
  const transposeLastTwo = (t: TensorInfo) => {
    const perm = t.shape.map((_, i) => i);
    const rank = perm.length;
    [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
    return runWasmKernel("Transpose", { x: t }, { perm }, backend);
  };
  const temporaries: TensorInfo[] = [];
  try {
    const a = attrs.transposeA ? transposeLastTwo(inputs.a) : inputs.a;
    const b = attrs.transposeB ? transposeLastTwo(inputs.b) : inputs.b;
    if (a !== inputs.a) temporaries.push(a);
    if (b !== inputs.b) temporaries.push(b);
    return original({ ...args, inputs: { ...inputs, a, b }, attrs: { ...attrs, transposeA: false, transposeB: false } } as never) as TensorInfo;
  } finally {
    disposeIntermediates(backend, Object.values(inputs), temporaries);
  }
}

/**
 * Identity shares the input's data instead of copying it: wasm tensors are immutable, as on
 * the cpu backend, which shares too. The engine clones every tensor it keeps for a gradient,
 * so the stock copy cost ~11 ms per capstone CNN training step.
 */
export function identity(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { x } = args.inputs;
  if (x.dtype === "string") return original(args as never) as TensorInfo;
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** A cast to the same dtype (the gradient of every engine clone) is an identity. */
export function cast(args: KernelArgs, original: KernelFunc): TensorInfo {
  const { x } = args.inputs;
  if (x.dtype !== args.attrs.dtype || x.dtype === "string") return original(args as never) as TensorInfo;
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}
