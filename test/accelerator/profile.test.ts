import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../../lib/accelerator/backend";
import { isGradientWrapper, kernelFlops, profileStep } from "../../lib/accelerator/profile";

describe("kernelFlops", () => {
  it("counts 2 × multiply-adds of a convolution and of both its gradients", () => {
    // 3×3 conv, 32 → 64 channels, 13×13 → 11×11, batch 2: 2 · (2·11·11·64) · (3·3·32).
    const expected = 2 * (2 * 11 * 11 * 64) * (3 * 3 * 32);
    assert.equal(kernelFlops("Conv2D", [[2, 13, 13, 32], [3, 3, 32, 64]], [[2, 11, 11, 64]]), expected);
    assert.equal(kernelFlops("FusedConv2D", [[2, 13, 13, 32], [3, 3, 32, 64], [64]], [[2, 11, 11, 64]]), expected);
    assert.equal(kernelFlops("Conv2DBackpropFilter", [[2, 13, 13, 32], [2, 11, 11, 64]], [[3, 3, 32, 64]]), expected);
    assert.equal(kernelFlops("Conv2DBackpropInput", [[2, 11, 11, 64], [3, 3, 32, 64]], [[2, 13, 13, 32]]), expected);
  });

  it("finds the inner dimension of a matrix product whether or not a is transposed", () => {
    assert.equal(kernelFlops("BatchMatMul", [[1, 5, 7], [1, 7, 3]], [[1, 5, 3]]), 2 * 5 * 3 * 7);
    assert.equal(kernelFlops("BatchMatMul", [[1, 7, 5], [1, 7, 3]], [[1, 5, 3]]), 2 * 5 * 3 * 7);
    assert.equal(kernelFlops("_FusedMatMul", [[4, 5, 7], [4, 7, 3], [3]], [[4, 5, 3]]), 4 * 2 * 5 * 3 * 7);
  });

  it("is null for kernels without a count", () => {
    assert.equal(kernelFlops("Relu", [[4, 4]], [[4, 4]]), null);
    // A block: 3×3 convolutions 1 → 8 and 8 → 8 over 2×5×5 pixels ('same'); its gradient has both filter gradients, the
    // second's input gradient and, with a seventh output (dx), the first's.
    const [first, second] = [2 * 2 * 5 * 5 * 8 * 9 * 1, 2 * 2 * 5 * 5 * 8 * 9 * 8];
    const block = [[2, 5, 5, 1], [3, 3, 1, 8], [8], [8], [3, 3, 8, 8], [8], [8]];
    assert.equal(kernelFlops("ProjectConvBnBlock", block, [[2, 5, 5, 8], [8], [8], [8], [8]]), first + second);
    const grad = [[2, 5, 5, 8], [2, 5, 5, 1], [3, 3, 1, 8], [8], [3, 3, 8, 8], [8]];
    const gradients = [[3, 3, 1, 8], [8], [8], [3, 3, 8, 8], [8], [8]];
    assert.equal(kernelFlops("ProjectConvBnBlockGrad", grad, gradients), first + 2 * second);
    assert.equal(kernelFlops("ProjectConvBnBlockGrad", grad, [...gradients, [2, 5, 5, 1]]), 2 * first + 2 * second);
    // With a 5×5 pool inside the op, its output and incoming gradient are [2, 1, 1, 8]: the same convolutions.
    assert.equal(kernelFlops("ProjectConvBnBlock", block, [[2, 1, 1, 8], [8], [8], [8], [8]]), first + second);
    assert.equal(kernelFlops("ProjectConvBnBlockGrad", [[2, 1, 1, 8], ...grad.slice(1)], gradients), first + 2 * second);
    // A 3×3 convolution 4 → 8 over 2×5×5 output pixels with its 2×2 pool: the activation [2, 5, 5, ·] gives the pixels.
    const convolution = 2 * 2 * 5 * 5 * 8 * 9 * 4;
    assert.equal(kernelFlops("ProjectConvReluPool", [[2, 7, 7, 4], [3, 3, 4, 8], [8]], [[2, 2, 2, 8], [2, 5, 5, 4], [50]]), convolution);
    const poolGrad = [[2, 2, 2, 8], [2, 7, 7, 4], [3, 3, 4, 8], [2, 5, 5, 4], [50]];
    assert.equal(kernelFlops("ProjectConvReluPoolGrad", poolGrad, [[3, 3, 4, 8], [8]]), convolution);
    assert.equal(kernelFlops("ProjectConvReluPoolGrad", poolGrad, [[3, 3, 4, 8], [8], [2, 7, 7, 4]]), 2 * convolution);
  });
});

describe("profileStep", () => {
  before(async () => {
    await initBackend();
  });

  it("groups a step's kernels by input shapes, with calls, shares and rates", async () => {
    const a = tf.randomUniform([64, 32]);
    const b = tf.randomUniform([32, 16]);
    const step = async () => {
      const result = tf.tidy(() => tf.relu(tf.matMul(tf.matMul(a, b), b, false, true)));
      await result.data();
      result.dispose();
    };
    await step();
    const profile = await profileStep(step, 3);
    const products = profile.kernels.filter((k) => k.kernel.startsWith("BatchMatMul"));
    assert.equal(products.length, 2, JSON.stringify(profile.kernels.map((k) => k.kernel)));
    assert.ok(profile.kernels.some((k) => k.kernel.startsWith("Relu") && k.calls === 1 && k.gflops === null));
    // [64,32]·[32,16] then [64,16]·[16,32]: 2·64·16·32 multiply-adds ×2 each.
    assert.equal(profile.flops, 2 * (2 * 64 * 16 * 32));
    const shares = profile.kernels.reduce((sum, k) => sum + k.share, 0);
    assert.ok(Math.abs(shares - 1) < 1e-9 || profile.kernelMs === 0, `shares sum to ${shares}`);
    assert.ok(Math.abs(profile.kernels.reduce((sum, k) => sum + k.ms, 0) - profile.kernelMs) < 1e-9);
    assert.deepEqual(profile.kernels.map((k) => k.ms), [...profile.kernels.map((k) => k.ms)].sort((x, y) => y - x));
    assert.ok(profile.stepMs > 0);
    // Measured within the profiled steps, which hold their kernels: never negative.
    assert.ok(profile.outsideMs >= 0, `outside ${profile.outsideMs} ms`);
    tf.dispose([a, b]);
  });

  it("leaves out custom-gradient wrappers, whose kernels are counted already", async () => {
    const square = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const x = args[0] as tf.Tensor;
      return { value: tf.mul(x, x), gradFunc: (dy: tf.Tensor) => tf.mul(dy, tf.mul(x, 2)) };
    });
    const x = tf.randomUniform([100]);
    const step = async () => {
      const y = square(x);
      await y.data();
      y.dispose();
    };
    const profile = await profileStep(step, 2);
    const names = profile.kernels.map((k) => k.kernel.split(" ")[0]);
    assert.deepEqual(names, ["Multiply"]);
    assert.ok(isGradientWrapper("unnamed scope") && isGradientWrapper("") && !isGradientWrapper("Multiply"));
    x.dispose();
  });

  it("rejects a repeat count that is not a positive integer", async () => {
    await assert.rejects(profileStep(async () => {}, 0), /repeats must be a positive integer/);
  });
});
