import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../../lib/accelerator/backend";
import { FastActivation, FastBatchNorm, FastConv2D, FastDropout, FastMaxPooling2D, fuseBatchNormRelu, fuseConvBnBlocks, fuseConvReluPools, MaskGenerator } from "../../lib/accelerator/layers";
import { seededRandom } from "../../lib/tooling/random";
import { simdKernelsBuilt } from "../../lib/accelerator/wasm/simd";
import { DROPOUT_KERNEL } from "../../lib/accelerator/wasm/random";
import { MOVING_AVERAGES_KERNEL } from "../../lib/accelerator/wasm/normalization";
import {
  bf16Unavailable, CONV_BN_BLOCK_GRAD_KERNEL, CONV_BN_BLOCK_KERNEL, CONV_RELU_POOL_GRAD_KERNEL, CONV_RELU_POOL_KERNEL, inPrecision, nativeImplementations, oneDnnActive, oneDnnIsa, useConvBnBlocks, useOneDnn,
  useOneDnnBatchNorm, useWinnerGradients, type Precision,
} from "../../lib/accelerator/native/onednn";
import { maxRelativeError, onBackend, relativeDistance } from "../helpers/tensors";
import { buildModel, presetModel } from "../../lib/models/builder";

/** One training step's cross-entropy loss and the gradients of every trainable weight (sorted by name), as plain arrays. */
function lossAndGradients(model: tf.LayersModel, x: tf.Tensor, labels: tf.Tensor): { loss: number; gradients: Float32Array[] } {
  return tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(labels, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar);
    return { loss: value.dataSync()[0], gradients: Object.keys(grads).sort().map((name) => grads[name].dataSync().slice() as Float32Array) };
  });
}

describe("MaskGenerator", () => {
  it("keeps each value with probability keep, scaled by 1/keep", () => {
    const mask = new MaskGenerator(42).fill(new Float32Array(200_000), 0.8);
    const kept = mask.filter((v) => v !== 0);
    assert.ok(mask.every((v) => v === 0 || v === Math.fround(1 / 0.8)));
    const fraction = kept.length / mask.length;
    // 200,000 Bernoulli(0.8) draws: standard deviation of the fraction ≈ 0.0009.
    assert.ok(Math.abs(fraction - 0.8) < 0.005, `kept fraction ${fraction}`);
  });

  it("is reproducible by seed and differs between seeds and calls", () => {
    const a = new MaskGenerator(7).fill(new Float32Array(1000), 0.5);
    const b = new MaskGenerator(7).fill(new Float32Array(1000), 0.5);
    const c = new MaskGenerator(8).fill(new Float32Array(1000), 0.5);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    const generator = new MaskGenerator(7);
    assert.notDeepEqual(generator.fill(new Float32Array(1000), 0.5), generator.fill(new Float32Array(1000), 0.5));
  });

  it("seeds a mask's eight lanes apart: neighbouring values and consecutive masks agree as often as chance", () => {
    const generator = new MaskGenerator(3);
    const [a, b] = [generator.fill(new Float32Array(100_000), 0.5), generator.fill(new Float32Array(100_000), 0.5)];
    const agreement = (u: Float32Array, v: Float32Array) => u.filter((value, i) => value === v[i]).length / u.length;
    // Independent fair draws agree with probability 0.5 (standard deviation of the fraction ≈ 0.0016).
    assert.ok(Math.abs(agreement(a, b) - 0.5) < 0.01, `consecutive masks agree ${agreement(a, b)}`);
    // Values 1–9 apart: lanes seeded from one stream's neighbouring states would repeat each other 7 apart.
    for (let apart = 1; apart <= 9; apart++) {
      const share = agreement(a.subarray(apart), a.subarray(0, -apart));
      assert.ok(Math.abs(share - 0.5) < 0.01, `values ${apart} apart agree ${share}`);
    }
  });

  it("survives a zero seed (xorshift would stay at zero)", () => {
    const mask = new MaskGenerator(0).fill(new Float32Array(1000), 0.5);
    assert.ok(mask.some((v) => v !== 0) && mask.some((v) => v === 0));
  });
});

describe("FastDropout", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("passes inputs through unchanged outside training", async () => {
    const layer = new FastDropout({ rate: 0.3 });
    const x = tf.randomNormal([4, 5]);
    const y = layer.apply(x, { training: false }) as tf.Tensor;
    assert.deepEqual(await y.data(), await x.data());
    tf.dispose([x, y]);
  });

  it("in training drops about `rate` of the units and scales the rest by 1/(1 − rate)", async () => {
    const layer = new FastDropout({ rate: 0.25, seed: 3 });
    const x = tf.ones([100, 100]);
    const y = (await (layer.apply(x, { training: true }) as tf.Tensor).data()) as Float32Array;
    const dropped = y.filter((v) => v === 0).length / y.length;
    assert.ok(Math.abs(dropped - 0.25) < 0.02, `dropped ${dropped}`);
    assert.ok(y.every((v) => v === 0 || Math.abs(v - 1 / 0.75) < 1e-6));
    x.dispose();
  });

  it("serialises exactly like the stock Dropout layer", () => {
    const fast = new FastDropout({ rate: 0.2, name: "d" });
    const stock = tf.layers.dropout({ rate: 0.2, name: "d" });
    assert.equal(fast.getClassName(), "Dropout");
    assert.deepEqual(fast.getConfig(), stock.getConfig());
  });

  it("gives the same outputs and gradients on wasm (the SIMD kernel, where built) as on cpu (a JavaScript mask)", async (t) => {
    if (!simdKernelsBuilt()) return t.skip("the project's SIMD kernels are not built");
    const random = seededRandom(9);
    // Sizes around the kernel's eight lanes, and one with a tail after many full rounds.
    for (const shape of [[1], [7], [8], [9], [3, 5, 7], [17, 13, 13, 4]]) {
      const size = shape.reduce((a, b) => a * b, 1);
      // Negative inputs too: a dropped one gives -0 in both ways.
      const values = Float32Array.from({ length: size }, () => random() * 2 - 1);
      const weights = Float32Array.from({ length: size }, () => random() * 2 - 1);
      const results: Float32Array[][] = [];
      for (const backend of ["wasm", "cpu"]) {
        const layer = new FastDropout({ rate: 0.3, seed: 5 });
        await onBackend(backend, async () => {
          const x = tf.tensor(values, shape);
          const w = tf.tensor(weights, shape);
          const { kernelNames } = await tf.profile(() => layer.apply(x, { training: true }) as tf.Tensor);
          assert.equal(kernelNames.includes(DROPOUT_KERNEL), backend === "wasm", kernelNames.join(", "));
          // Two calls: the generator's state moves on between masks the same way on both paths.
          let y: tf.Tensor | undefined;
          const gradient = tf.grad((input: tf.Tensor) => {
            y = tf.keep(layer.apply(input, { training: true }) as tf.Tensor);
            return tf.sum(tf.mul(y, w));
          })(x);
          results.push([(await y!.data()) as Float32Array, (await gradient.data()) as Float32Array]);
          tf.dispose([x, w, y!, gradient]);
        });
      }
      assert.deepEqual(results[0][0], results[1][0], `outputs, shape ${shape}`);
      assert.deepEqual(results[0][1], results[1][1], `gradients, shape ${shape}`);
    }
  });

  it("passes the gradient through the kept units only", async () => {
    const layer = new FastDropout({ rate: 0.5, seed: 11 });
    const x = tf.randomNormal([50]);
    let mask: Float32Array | undefined;
    const gradient = tf.grad((input: tf.Tensor) => {
      const y = layer.apply(input, { training: true }) as tf.Tensor;
      mask = tf.div(y, input).dataSync() as Float32Array;
      return y.sum();
    })(x);
    const g = (await gradient.data()) as Float32Array;
    g.forEach((value, i) => assert.ok(Math.abs(value - mask![i]) < 1e-5));
    tf.dispose([x, gradient]);
  });
});

describe("FastBatchNorm matches the stock BatchNormalization in training", () => {
  it("its SIMD kernels are built where CI runs (npm run setup builds them with clang)", { skip: process.env.CI !== "true" }, () => {
    assert.ok(simdKernelsBuilt(), "lib/accelerator/wasm/simd/kernels-*.wasm missing: scripts/build-wasm.sh did not run or failed");
  });

  /** Output, input/gamma/beta gradients of a weighted sum, and the moving statistics after one call. */
  function trainingStep(layer: tf.layers.Layer, x: tf.Tensor, weights: tf.Tensor) {
    const [gamma, beta] = layer.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
    const loss = () => tf.sum(tf.mul(layer.apply(x, { training: true }) as tf.Tensor, weights)) as tf.Scalar;
    const { value, grads } = tf.variableGrads(loss, [gamma, beta]);
    const dx = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(layer.apply(input, { training: true }) as tf.Tensor, weights)))(x);
    const output = layer.apply(x, { training: true }) as tf.Tensor;
    const moving = layer.getWeights().slice(2).map((t) => Array.from(t.dataSync()));
    return { output: output.dataSync(), dx: dx.dataSync(), dGamma: grads[gamma.name].dataSync(), dBeta: grads[beta.name].dataSync(), loss: value.dataSync()[0], moving };
  }

  const close = (a: ArrayLike<number>, b: ArrayLike<number>, what: string) => {
    assert.equal(a.length, b.length, what);
    let worst = 0;
    let scale = 1e-6;
    for (let i = 0; i < a.length; i++) {
      worst = Math.max(worst, Math.abs(a[i] - b[i]));
      scale = Math.max(scale, Math.abs(b[i]));
    }
    assert.ok(worst / scale < 1e-4, `${what}: max difference ${worst} (scale ${scale})`);
  };

  // On wasm twice: by oneDNN's batch norm (where lib/accelerator/native/onednn.node is built) and by the SIMD kernels.
  for (const [backend, native] of [["wasm", true], ["wasm", false], ["cpu", false]] as const) {
    for (const shape of [[4, 5, 3, 6], [2, 1, 7, 3], [9, 5], [16, 14, 14, 32], [3, 2, 2, 8]]) {
      it(`${backend}${backend === "wasm" ? (native ? ", oneDNN" : ", SIMD") : ""}, input ${shape.join("×")}`, async (t) => {
        await initBackend({ force: "wasm" });
        if (native && !oneDnnActive()) return t.skip("lib/accelerator/native/onednn.node not built or not loading");
        // oneDNN's batch norm runs by default only on more than one thread: asked for here.
        const previous = useOneDnn(native), previousNorm = useOneDnnBatchNorm(native);
        try {
          await onBackend(backend, async () => compare(shape, native));
        } finally {
          useOneDnn(previous);
          useOneDnnBatchNorm(previousNorm);
        }
      });
    }
  }

  async function compare(shape: number[], native: boolean): Promise<void> {
    {
      {
        const random = seededRandom(shape.length * 31 + shape[0]);
        const values = (n: number, offset = 0) => Float32Array.from({ length: n }, () => offset + 3 * random());
        const size = shape.reduce((a, b) => a * b, 1);
        const channels = shape[shape.length - 1];
        const x = tf.tensor(values(size, -1), shape);
        const weights = tf.tensor(values(size, -1.5), shape);
        const config = { momentum: 0.9, epsilon: 1e-3 };
        const stock = tf.layers.batchNormalization(config);
        const fast = new FastBatchNorm(config);
        stock.build(shape);
        fast.build(shape);
        const initial = [values(channels, 0.5), values(channels, -1), values(channels), values(channels, 0.5)].map((v) => tf.tensor1d(v));
        stock.setWeights(initial);
        fast.setWeights(initial);
        const before = tf.memory().numTensors;
        const expected = trainingStep(stock, x, weights);
        const actual = trainingStep(fast, x, weights);
        nativeImplementations().clear();
        // On wasm with channels in fours the project's SIMD kernels run (lib/accelerator/wasm/normalization.ts); else generic ops.
        const { kernelNames } = await tf.profile(() => tf.grad((input: tf.Tensor) => tf.sum(fast.apply(input, { training: true }) as tf.Tensor))(x));
        const simd = tf.getBackend() === "wasm" && channels % 4 === 0 && simdKernelsBuilt();
        assert.equal(kernelNames.includes("ProjectBatchNormTrain") && kernelNames.includes("ProjectBatchNormGrad"), simd, kernelNames.join(", "));
        assert.equal(kernelNames.includes(MOVING_AVERAGES_KERNEL), tf.getBackend() === "wasm", `moving averages in one kernel on wasm: ${kernelNames.join(", ")}`);
        if (simd && native) {
          for (const kernel of ["ProjectBatchNormTrain", "ProjectBatchNormGrad"]) assert.match(nativeImplementations().get(kernel) ?? "none", /bnorm/, `${kernel} ran in oneDNN`);
        }
        close(actual.output, expected.output, "output");
        close(actual.dx, expected.dx, "d input");
        close(actual.dGamma, expected.dGamma, "d gamma");
        close(actual.dBeta, expected.dBeta, "d beta");
        actual.moving.forEach((m, i) => close(m, expected.moving[i], i === 0 ? "moving mean" : "moving variance"));
        const { name: _fastName, ...fastConfig } = fast.getConfig();
        const { name: _stockName, ...stockConfig } = stock.getConfig();
        assert.deepEqual(fastConfig, stockConfig, "serialises like the stock layer");
        assert.equal(FastBatchNorm.className, "BatchNormalization");
        tf.dispose([x, weights, ...initial]);
        assert.ok(tf.memory().numTensors - before < 40, "no tensors leak per step beyond the returned values");
      }
    }
  }
});

describe("the moving-average kernel", () => {
  it("equals the stock layer's three ops per statistic bit for bit", async () => {
    await initBackend({ force: "wasm" });
    const random = seededRandom(17);
    const vector = () => tf.tensor1d(Float32Array.from({ length: 37 }, () => 4 * random() - 2));
    const [movingMean, movingVariance, mean, variance] = [vector(), vector(), vector(), vector()];
    const momentum = 0.99;
    const [newMean, newVariance] = tf.engine().runKernel(MOVING_AVERAGES_KERNEL, { movingMean, movingVariance, mean, variance }, { momentum } as never) as tf.Tensor[];
    const stock = (v: tf.Tensor, batch: tf.Tensor) => tf.sub(v, tf.mul(tf.sub(v, batch), 1 - momentum));
    assert.deepEqual(newMean.dataSync(), stock(movingMean, mean).dataSync());
    assert.deepEqual(newVariance.dataSync(), stock(movingVariance, variance).dataSync());
    assert.notDeepEqual(newMean.dataSync(), movingMean.dataSync(), "the averages moved");
    const other = tf.zeros([36]);
    assert.throws(() => tf.engine().runKernel(MOVING_AVERAGES_KERNEL, { movingMean, movingVariance, mean: other, variance }, { momentum } as never), /shapes differ/);
    tf.dispose([movingMean, movingVariance, mean, variance, newMean, newVariance, other]);
  });
});

describe("batch norm with the relu after it fused (fuseBatchNormRelu)", () => {
  /** A sequential [batch norm, relu] of Fast layers or of stock ones, with the same weights. */
  function pair(fast: boolean, shape: number[], initial: tf.Tensor[]): tf.Sequential {
    const model = tf.sequential();
    const config = { momentum: 0.9, epsilon: 1e-3, inputShape: shape.slice(1) };
    model.add(fast ? new FastBatchNorm(config) : tf.layers.batchNormalization(config));
    model.add(fast ? new FastActivation({ activation: "relu" }) : tf.layers.activation({ activation: "relu" }));
    model.layers[0].setWeights(initial);
    return model;
  }

  /** Output and input gradient of a weighted sum in training, and the kernels the step ran. */
  async function step(model: tf.Sequential, x: tf.Tensor, weights: tf.Tensor) {
    const output = tf.tidy(() => (model.apply(x, { training: true }) as tf.Tensor).dataSync().slice() as Float32Array);
    const dx = tf.tidy(() => tf.grad((input: tf.Tensor) => tf.sum(tf.mul(model.apply(input, { training: true }) as tf.Tensor, weights)))(x).dataSync().slice() as Float32Array);
    const { kernelNames } = await tf.profile(() => tf.grad((input: tf.Tensor) => tf.sum(tf.mul(model.apply(input, { training: true }) as tf.Tensor, weights)))(x));
    const inference = tf.tidy(() => (model.apply(x, { training: false }) as tf.Tensor).dataSync().slice() as Float32Array);
    return { output, dx, kernelNames, inference };
  }

  for (const oneDnnNorm of [false, true]) {
    it(`${oneDnnNorm ? "oneDNN's batch norm (fuse_norm_relu)" : "SIMD batch norm"} with the relu inside: the same values as the stock layers`, async (t) => {
      await initBackend({ force: "wasm" });
      if (!simdKernelsBuilt()) return t.skip("the project's SIMD kernels are not built");
      if (oneDnnNorm && !oneDnnActive()) return t.skip("lib/accelerator/native/onednn.node not built or not loading");
      const previousNorm = useOneDnnBatchNorm(oneDnnNorm);
      try {
        const shape = [8, 6, 6, 16];
        const random = seededRandom(5);
        const values = (n: number, offset = 0) => Float32Array.from({ length: n }, () => offset + 3 * random());
        const size = shape.reduce((a, b) => a * b, 1);
        const x = tf.tensor(values(size, -1.5), shape);
        const weights = tf.tensor(values(size, -1.5), shape);
        const initial = [values(16, 0.5), values(16, -1.5), values(16), values(16, 0.5)].map((v) => tf.tensor1d(v));
        const fast = pair(true, shape, initial);
        assert.equal(fuseBatchNormRelu(fast), 1, "one pair");
        nativeImplementations().clear();
        const [actual, expected] = [await step(fast, x, weights), await step(pair(false, shape, initial), x, weights)];
        const worst = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
        assert.ok(worst(actual.output, expected.output) < 1e-5, "output");
        assert.ok(worst(actual.dx, expected.dx) < 1e-4, "input gradient");
        assert.ok(worst(actual.inference, expected.inference) < 1e-5, "inference (moving statistics, relu by the activation)");
        assert.ok(actual.output.some((v) => v === 0) && actual.output.some((v) => v > 0), "relu clipped some outputs");
        // Fused: no relu kernel and no relu gradient of its own, on the path asked for.
        const reluRan = actual.kernelNames.includes("Relu") || actual.kernelNames.includes("ProjectReluGrad");
        assert.equal(reluRan, false, actual.kernelNames.join(", "));
        for (const kernel of ["ProjectBatchNormTrain", "ProjectBatchNormGrad"]) {
          assert.equal(/bnorm/.test(nativeImplementations().get(kernel) ?? ""), oneDnnNorm, `${kernel} by oneDNN`);
        }
        tf.dispose([x, weights, ...initial]);
      } finally {
        useOneDnnBatchNorm(previousNorm);
      }
    });
  }

  for (const oneDnnNorm of [false, true]) {
    it(`vgg-bn's gradients are the same bit for bit with its six pairs fused or not (${oneDnnNorm ? "oneDNN's" : "SIMD"} batch norm)`, async (t) => {
      await initBackend({ force: "wasm" });
      if (!simdKernelsBuilt()) return t.skip("the project's SIMD kernels are not built");
      if (oneDnnNorm && !oneDnnActive()) return t.skip("lib/accelerator/native/onednn.node not built or not loading");
      // The pairs, not the block op (which runs them in oneDNN either way).
      const previousNorm = useOneDnnBatchNorm(oneDnnNorm), previousBlocks = useConvBnBlocks(false);
      try {
        const model = buildModel(presetModel("vgg-bn"), { seed: 3 });
        const pairs = model.layers.filter((l): l is FastBatchNorm => l instanceof FastBatchNorm && l.reluAfter);
        assert.equal(pairs.length, 6, "buildModel fuses every batch norm + relu pair");
        const random = seededRandom(9);
        const x = tf.tensor4d(Float32Array.from({ length: 8 * 28 * 28 }, () => random()), [8, 28, 28, 1]);
        const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], "int32"), 10);
        const gradients = (fused: boolean) => {
          pairs.forEach((layer) => (layer.reluAfter = fused));
          return tf.tidy(() => {
            const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(labels, model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar);
            return Object.keys(grads).sort().map((name) => grads[name].dataSync().slice());
          });
        };
        const [fused, unfused] = [gradients(true), gradients(false)];
        assert.equal(fused.length, unfused.length);
        fused.forEach((g, i) => assert.deepEqual(g, unfused[i], `gradient ${i}`));
        tf.dispose([x, labels]);
        model.dispose();
      } finally {
        useOneDnnBatchNorm(previousNorm);
        useConvBnBlocks(previousBlocks);
      }
    });
  }

  it("pairs only a batch norm followed by a relu, in sequential models", () => {
    const model = tf.sequential();
    model.add(new FastBatchNorm({ inputShape: [4, 4, 8] }));
    model.add(new FastActivation({ activation: "tanh" }));
    model.add(new FastBatchNorm({}));
    model.add(new FastActivation({ activation: "relu" }));
    model.add(new FastBatchNorm({}));
    assert.equal(fuseBatchNormRelu(model), 1);
    assert.deepEqual(model.layers.map((l) => (l instanceof FastBatchNorm ? l.reluAfter : null)), [false, null, true, null, false]);
    assert.equal(FastActivation.className, "Activation");
  });
});

describe("a block of two convolution + batch norm + relu layers as one op (fuseConvBnBlocks)", () => {
  it("marks vgg-bn's three blocks with their pools, the first one without an input gradient, and nothing in other layouts", () => {
    const blocks = (name: string) =>
      buildModel(presetModel(name), { seed: 1 }).layers.flatMap((l) => (l instanceof FastConv2D && l.block ? [[l.block.inputGradient, l.block.pool]] : []));
    const vgg = [[false, [2, 2]], [true, [2, 2]], [true, [7, 7]]];
    assert.deepEqual(blocks("vgg-bn"), vgg);
    assert.deepEqual(blocks("vgg-bn-16"), vgg);
    // Convolutions with a bias or a relu of their own, or one convolution per batch norm block: no blocks.
    assert.deepEqual(blocks("cnn3"), []);
    const single = tf.sequential();
    single.add(new FastConv2D({ filters: 4, kernelSize: 3, useBias: false, padding: "same", inputShape: [6, 6, 2] }));
    single.add(new FastBatchNorm({}));
    single.add(new FastActivation({ activation: "relu" }));
    single.add(new FastConv2D({ filters: 4, kernelSize: 3, useBias: true, padding: "same" }));
    single.add(new FastBatchNorm({}));
    single.add(new FastActivation({ activation: "relu" }));
    assert.equal(fuseConvBnBlocks(single), 0, "the second convolution has a bias");
    // A pool whose windows do not tile the block's output (7×7 by 2×2) stays a layer of its own.
    const untiled = tf.sequential();
    untiled.add(new FastConv2D({ filters: 4, kernelSize: 3, useBias: false, padding: "same", inputShape: [7, 7, 2] }));
    for (const layer of [new FastBatchNorm({}), new FastActivation({ activation: "relu" }), new FastConv2D({ filters: 4, kernelSize: 3, useBias: false, padding: "same" }),
      new FastBatchNorm({}), new FastActivation({ activation: "relu" }), new FastMaxPooling2D({ poolSize: 2 })]) untiled.add(layer);
    assert.equal(fuseConvBnBlocks(untiled), 1);
    assert.equal((untiled.layers[0] as FastConv2D).block?.pool, null);
  });

  it("FastMaxPooling2D serialises exactly like the stock MaxPooling2D, and pools as it does outside a block", () => {
    const [fast, stock] = [new FastMaxPooling2D({ poolSize: 2, name: "p" }), tf.layers.maxPooling2d({ poolSize: 2, name: "p" })];
    assert.equal(fast.getClassName(), "MaxPooling2D");
    assert.deepEqual(fast.getConfig(), stock.getConfig());
    const x = tf.randomUniform([2, 6, 6, 3], -1, 1, "float32", 9);
    for (const training of [false, true]) {
      const [a, b] = [fast.apply(x, { training }) as tf.Tensor, stock.apply(x, { training }) as tf.Tensor];
      assert.deepEqual(a.shape, [2, 3, 3, 3]);
      assert.deepEqual(a.dataSync(), b.dataSync());
      tf.dispose([a, b]);
    }
    x.dispose();
  });

  /** Loss, gradients of every trainable weight and the weights after one training step's forward pass (moving averages). */
  function step(model: tf.LayersModel, x: tf.Tensor, labels: tf.Tensor, initial: tf.Tensor[]) {
    model.setWeights(initial);
    nativeImplementations().clear();
    return {
      ...lossAndGradients(model, x, labels),
      weights: model.getWeights().map((w) => w.dataSync().slice()),
      blockRan: nativeImplementations().has(CONV_BN_BLOCK_KERNEL) && nativeImplementations().has(CONV_BN_BLOCK_GRAD_KERNEL),
      blockImplementation: nativeImplementations().get(CONV_BN_BLOCK_KERNEL) ?? "",
    };
  }

  /**
   * vgg-bn-16 (three blocks, the first over the image's one channel) with a batch of 8, and a step with blocks on or off,
   * and with the pools after them inside the op (as fuseConvBnBlocks marks them) or run as their layers.
   */
  async function vggSteps(t: { skip: (why: string) => void }, run: (stepWith: (blocks: boolean, pools?: boolean) => ReturnType<typeof step>) => Promise<void>) {
    await initBackend({ force: "wasm" });
    if (!oneDnnActive()) return t.skip("lib/accelerator/native/onednn.node not built or not loading");
    // The op runs where batch norm runs in oneDNN (by default on two or more threads): asked for here.
    const previousNorm = useOneDnnBatchNorm(true), previousBlocks = useConvBnBlocks(true);
    const model = buildModel(presetModel("vgg-bn-16"), { seed: 3 });
    const random = seededRandom(11);
    const x = tf.tensor4d(Float32Array.from({ length: 8 * 28 * 28 }, () => random()), [8, 28, 28, 1]);
    const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], "int32"), 10);
    const initial = model.getWeights().map((w) => w.clone());
    const blocks = model.layers.flatMap((l) => (l instanceof FastConv2D && l.block ? [l.block] : []));
    const pools = blocks.map((b) => b.pool);
    try {
      await run((on, withPools = true) => {
        useConvBnBlocks(on);
        blocks.forEach((b, i) => (b.pool = withPools ? pools[i] : null));
        return step(model, x, labels, initial);
      });
    } finally {
      useOneDnnBatchNorm(previousNorm);
      useConvBnBlocks(previousBlocks);
      tf.dispose([x, labels, ...initial]);
      model.dispose();
    }
  }

  it("in fp32 a training step gives the six layers' loss, gradients and moving averages bit for bit", async (t) => {
    await vggSteps(t, async (stepWith) => {
      await inPrecision("fp32", async () => {
        const before = tf.memory().numTensors;
        const [block, layers] = [stepWith(true), stepWith(false)];
        assert.ok(block.blockRan, "the block kernels ran");
        assert.match(block.blockImplementation, /pooled/, "with the pools inside");
        assert.ok(!layers.blockRan, "the layers ran one by one");
        assert.equal(block.loss, layers.loss);
        block.gradients.forEach((g, i) => assert.deepEqual(g, layers.gradients[i], `gradient ${i}`));
        block.weights.forEach((w, i) => assert.deepEqual(w, layers.weights[i], `weight ${i} (moving averages included)`));
        assert.equal(tf.memory().numTensors, before, "no tensor leaks");
      });
    });
  });

  it("on a backend without the block kernels (cpu) a training step runs layer by layer (both block ops)", async (t) => {
    await initBackend({ force: "wasm" });
    if (!oneDnnActive()) return t.skip("lib/accelerator/native/onednn.node not built or not loading");
    const previousNorm = useOneDnnBatchNorm(true), previousBlocks = useConvBnBlocks(true);
    try {
      await onBackend("cpu", async () => {
        const model = tf.sequential();
        model.add(new FastConv2D({ filters: 4, kernelSize: 3, useBias: false, padding: "same", inputShape: [6, 6, 2] }));
        for (const layer of [new FastBatchNorm({}), new FastActivation({ activation: "relu" }), new FastConv2D({ filters: 4, kernelSize: 3, useBias: false, padding: "same" }),
          new FastBatchNorm({}), new FastActivation({ activation: "relu" })]) model.add(layer);
        assert.equal(fuseConvBnBlocks(model), 1);
        const x = tf.randomUniform([3, 6, 6, 2], -1, 1, "float32", 5);
        const { value, grads } = tf.variableGrads(() => tf.sum(model.apply(x, { training: true }) as tf.Tensor) as tf.Scalar);
        assert.ok(Number.isFinite(value.dataSync()[0]) && Object.keys(grads).length === 6, "a step with six gradients");
        tf.dispose([x, value, ...Object.values(grads)]);
        model.dispose();
        // Likewise a convolution + relu and its pool (fuseConvReluPools).
        const pooled = tf.sequential();
        pooled.add(new FastConv2D({ filters: 4, kernelSize: 3, activation: "relu", inputShape: [6, 6, 2] }));
        pooled.add(new FastMaxPooling2D({ poolSize: 2 }));
        assert.equal(fuseConvReluPools(pooled), 1);
        const input = tf.randomUniform([3, 6, 6, 2], -1, 1, "float32", 6);
        const step = tf.variableGrads(() => tf.sum(pooled.apply(input, { training: true }) as tf.Tensor) as tf.Scalar);
        assert.ok(Number.isFinite(step.value.dataSync()[0]) && Object.keys(step.grads).length === 2, "a step with two gradients");
        tf.dispose([input, step.value, ...Object.values(step.grads)]);
        pooled.dispose();
      });
    } finally {
      useOneDnnBatchNorm(previousNorm);
      useConvBnBlocks(previousBlocks);
    }
  });

  it("in bf16 its gradients are as close to fp32's as the layers' bf16 steps are", async (t) => {
    await vggSteps(t, async (stepWith) => {
      const unavailable = bf16Unavailable();
      if (unavailable) return t.skip(unavailable);
      const reference = await inPrecision("fp32", async () => stepWith(false));
      const [block, layers, unpooled] = await inPrecision("bf16", async () => [stepWith(true), stepWith(false), stepWith(true, false)]);
      assert.ok(block.blockRan, "the block kernels ran");
      // The pools inside the op take the max of the same bf16 values, and route each gradient to the same input.
      assert.match(block.blockImplementation, /pooled/);
      assert.doesNotMatch(unpooled.blockImplementation, /pooled/);
      assert.equal(block.loss, unpooled.loss);
      block.gradients.forEach((g, i) => assert.deepEqual(g, unpooled.gradients[i], `gradient ${i}, pools inside the op or not`));
      // Batch norm's gradient subtracts the batch means of dy and dy·x̂ from dy, so rounding the operands to bf16 (8
      // bits) leaves errors that are large relative to the small gradients of a freshly initialised network: the
      // layers' bf16 steps (bf16 operands, fp32 batch norm) are already 2-40% off here. The block also keeps batch
      // norm's inputs and gradients in bf16, as PyTorch's autocast does: its error may be at most 1.5x theirs on
      // average over the gradients, and must be bf16-sized (not fp32's, which would mean that bf16 did not run).
      const mean = (run: typeof block) => run.gradients.reduce((sum, g, i) => sum + maxRelativeError(g, reference.gradients[i]), 0) / run.gradients.length;
      const [blockError, layersError] = [mean(block), mean(layers)];
      assert.ok(blockError <= 1.5 * layersError, `block ${blockError.toExponential(2)} against the layers' ${layersError.toExponential(2)}`);
      assert.ok(blockError > 1e-3, `bf16-sized errors (${blockError.toExponential(2)})`);
      assert.ok(Math.abs(block.loss - reference.loss) < 0.01 * Math.abs(reference.loss), `loss ${block.loss} against ${reference.loss}`);
    });
  });
});

describe("a convolution with bias + relu and its max pool as one op (fuseConvReluPools)", () => {
  it("marks cnn3's first two convolutions (the first without an input gradient), and nothing in vgg-bn or without a pool", () => {
    const marked = (model: tf.LayersModel) => model.layers.flatMap((l) => (l instanceof FastConv2D && l.reluPool ? [[l.reluPool.inputGradient, l.reluPool.pool]] : []));
    assert.deepEqual(marked(buildModel(presetModel("cnn3"), { seed: 1 })), [[false, [2, 2]], [true, [2, 2]]]);
    assert.deepEqual(marked(buildModel(presetModel("vgg-bn-16"), { seed: 1 })), []);
    const linear = tf.sequential();
    linear.add(new FastConv2D({ filters: 4, kernelSize: 3, activation: "linear", inputShape: [6, 6, 2] }));
    linear.add(new FastMaxPooling2D({ poolSize: 2 }));
    assert.equal(fuseConvReluPools(linear), 0, "a linear convolution");
  });

  /** conv 3×3 (bias, relu) → 2×2 pool → conv → 2×2 pool (11 → 5: a row and a column left out) → dense 10, no dropout. */
  function network(firstFilters: number): tf.Sequential {
    const model = tf.sequential();
    model.add(new FastConv2D({ filters: firstFilters, kernelSize: 3, activation: "relu", inputShape: [28, 28, 1], kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) }));
    model.add(new FastMaxPooling2D({ poolSize: 2 }));
    model.add(new FastConv2D({ filters: 16, kernelSize: 3, activation: "relu", kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }), biasInitializer: tf.initializers.randomNormal({ seed: 4 }) }));
    model.add(new FastMaxPooling2D({ poolSize: 2 }));
    model.add(tf.layers.flatten());
    model.add(tf.layers.dense({ units: 10, kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }));
    return model;
  }

  /** The loss and gradients of one step, with the op on or off, in a precision. */
  async function steps(
    t: { skip: (why: string) => void }, firstFilters: number, run: (stepWith: (op: boolean) => { loss: number; gradients: Float32Array[]; opRan: boolean }) => Promise<void>,
    batchSeed = 5,
  ) {
    await initBackend({ force: "wasm" });
    if (!oneDnnActive()) return t.skip("lib/accelerator/native/onednn.node not built or not loading");
    const previousNorm = useOneDnnBatchNorm(true), previousBlocks = useConvBnBlocks(true);
    const model = network(firstFilters);
    assert.equal(fuseConvReluPools(model), 2);
    const random = seededRandom(batchSeed);
    const x = tf.tensor4d(Float32Array.from({ length: 8 * 28 * 28 }, () => random()), [8, 28, 28, 1]);
    const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], "int32"), 10);
    try {
      await run((op) => {
        useConvBnBlocks(op);
        nativeImplementations().clear();
        const result = lossAndGradients(model, x, labels);
        return { ...result, opRan: nativeImplementations().has(CONV_RELU_POOL_KERNEL) && nativeImplementations().has(CONV_RELU_POOL_GRAD_KERNEL) };
      });
    } finally {
      useOneDnnBatchNorm(previousNorm);
      useConvBnBlocks(previousBlocks);
      tf.dispose([x, labels]);
      model.dispose();
    }
  }

  // 8 first-layer filters: its filter gradient by the addon's loops and its bias gradient by a reduction; 4: by oneDNN.
  for (const firstFilters of [8, 4]) {
    it(`in fp32 a training step gives the layers' loss and gradients (${firstFilters} first-layer filters)`, async (t) => {
      await steps(t, firstFilters, async (stepWith) => {
        await inPrecision("fp32", async () => {
          const before = tf.memory().numTensors;
          const [op, layers] = [stepWith(true), stepWith(false)];
          assert.ok(op.opRan && !layers.opRan, "the op ran, then the layers one by one");
          // The bias gradients sum in another order than the layers' SIMD pass: fp32 rounding apart.
          assert.ok(Math.abs(op.loss - layers.loss) <= 1e-6 * Math.abs(layers.loss), `loss ${op.loss} against ${layers.loss}`);
          op.gradients.forEach((g, i) => assert.ok(maxRelativeError(g, layers.gradients[i]) < 1e-5, `gradient ${i}: ${maxRelativeError(g, layers.gradients[i])}`));
          assert.equal(tf.memory().numTensors, before, "no tensor leaks");
        });
      });
    });
  }

  /**
   * One training step of `model` (its one conv + relu + pool op fused here) on x (six images, classes 0-5), with the
   * op's backward pass from the pool's winners and with oneDNN's over the whole gradient, in a precision: each ran as
   * asked (the forward pass recording the winners where `recordedForward`), the losses are equal (where `sameLoss`), no
   * gradient is all zeros, and `same` holds for each gradient against oneDNN's.
   */
  async function winnersAgainstWhole(
    t: { skip: (why: string) => void }, makeModel: () => tf.Sequential, makeX: () => tf.Tensor4D, precision: Precision,
    same: (g: Float32Array, whole: Float32Array, what: string) => void, recordedForward = false, sameLoss = true,
  ) {
    await initBackend({ force: "wasm" });
    if (!oneDnnActive()) return t.skip("lib/accelerator/native/onednn.node not built or not loading");
    const unavailable = precision === "bf16" ? bf16Unavailable() : undefined;
    if (unavailable) return t.skip(unavailable);
    const previous = [useOneDnnBatchNorm(true), useConvBnBlocks(true), useWinnerGradients(true)] as const;
    const model = makeModel();
    const x = makeX();
    const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 4, 5], "int32"), 10);
    const step = (winners: boolean) => {
      useWinnerGradients(winners);
      nativeImplementations().clear();
      const result = lossAndGradients(model, x, labels);
      const implementations = nativeImplementations();
      return { ...result, forward: implementations.get(CONV_RELU_POOL_KERNEL) ?? "", implementation: implementations.get(CONV_RELU_POOL_GRAD_KERNEL) ?? "" };
    };
    try {
      assert.equal(fuseConvReluPools(model), 1);
      await inPrecision(precision, async () => {
        const [winners, whole] = [step(true), step(false)];
        assert.match(winners.implementation, /winners/);
        assert.doesNotMatch(whole.implementation, /winners/);
        assert.equal(/recording the winners/.test(winners.forward), recordedForward, winners.forward);
        assert.doesNotMatch(whole.forward, /winners/);
        if (sameLoss) assert.equal(winners.loss, whole.loss);
        winners.gradients.forEach((g, i) => {
          assert.ok(g.some((v) => v !== 0), `gradient ${i} is not all zeros`);
          same(g, whole.gradients[i], `gradient ${i}`);
        });
      });
    } finally {
      useOneDnnBatchNorm(previous[0]);
      useConvBnBlocks(previous[1]);
      useWinnerGradients(previous[2]);
      tf.dispose([x, labels]);
      model.dispose();
    }
  }

  /** A model of `layers` (the op's convolution among them), then a 2D max pool, flatten and dense 10. */
  function pooledModel(layers: tf.layers.Layer[], pool: number): tf.Sequential {
    const model = tf.sequential();
    for (const layer of layers) model.add(layer);
    model.add(new FastMaxPooling2D({ poolSize: pool }));
    model.add(tf.layers.flatten());
    model.add(tf.layers.dense({ units: 10, kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) }));
    return model;
  }
  /** The op's convolution: 16 filters, relu, seeded weights and (partly positive) biases. */
  const opConvolution = (config: { kernelSize: number; padding: "valid" | "same"; strides: number; inputShape?: number[] }) =>
    new FastConv2D({ filters: 16, activation: "relu", kernelInitializer: tf.initializers.glorotUniform({ seed: 2 }), biasInitializer: tf.initializers.randomNormal({ seed: 4 }), ...config });

  // The backward pass from the pool windows' winners (pooled_conv.h) against oneDNN's over the whole gradient, in the
  // same op: padding, strides, kernel and window sizes other than cnn3's; with an input gradient, and as a first layer
  // (none). Eight channels in: a filter row fills whole vectors.
  const winnerCases = [
    { kernelSize: 3, padding: "valid", strides: 1, pool: 2, size: 13, first: false },
    { kernelSize: 5, padding: "same", strides: 1, pool: 3, size: 11, first: false },
    { kernelSize: 3, padding: "same", strides: 2, pool: 2, size: 12, first: false },
    { kernelSize: 2, padding: "valid", strides: 2, pool: 2, size: 9, first: false },
    { kernelSize: 3, padding: "valid", strides: 1, pool: 2, size: 13, first: true },
    { kernelSize: 5, padding: "same", strides: 2, pool: 3, size: 14, first: true },
  ] as const;
  for (const c of winnerCases) {
    const what = `${c.kernelSize}×${c.kernelSize}, ${c.padding}, stride ${c.strides}, pool ${c.pool}${c.first ? ", first layer" : ""}`;
    it(`from the pool's winners its fp32 gradients are oneDNN's (${what})`, async (t) => {
      const channels = c.first ? 8 : 3;
      const makeModel = () => pooledModel([
        // Else a linear 1×1 convolution first (not an op), so that the op's input needs a gradient.
        ...(c.first ? [] : [new FastConv2D({ filters: 8, kernelSize: 1, inputShape: [c.size, c.size, 3], kernelInitializer: tf.initializers.glorotUniform({ seed: 1 }) })]),
        opConvolution({ ...(c.first ? { inputShape: [c.size, c.size, 8] } : {}), kernelSize: c.kernelSize, padding: c.padding, strides: c.strides }),
      ], c.pool);
      const random = seededRandom(c.size);
      const makeX = () => tf.tensor4d(Float32Array.from({ length: 6 * c.size * c.size * channels }, () => 2 * random() - 1), [6, c.size, c.size, channels]);
      await winnersAgainstWhole(t, makeModel, makeX, "fp32", (g, whole, what) => assert.ok(maxRelativeError(g, whole) < 1e-5, `${what}: ${maxRelativeError(g, whole)}`));
    });
  }

  // A first layer (one input channel: first_layer.h's loops) computes its forward pass in the addon's loops, recording
  // the pool's winners, and sums the gradient oneDNN's pool and relu gradients make, in the same order: the same bits as
  // oneDNN's convolution, pool and gradients (the dense layer's gradient is the pooled output times the logits' gradient:
  // its bits check the forward pass's). Images with a zero border and positive biases give windows whose pixels tie at
  // the bias (the first in row-major order must win, as oneDNN's pool picks).
  // In bf16 the bits are those of oneDNN's avx512_core_bf16 convolution (one rounding per tap); on AMX oneDNN may sum
  // taps in pairs, so there the gradients are compared to bf16's precision only.
  const firstLayerCases = [
    { size: 14, padding: "valid", strides: 1, pool: 2 },
    { size: 15, padding: "same", strides: 2, pool: 3 },
  ] as const;
  for (const c of firstLayerCases) {
    for (const precision of ["fp32", "bf16"] as const) {
      const what = `${c.size}×${c.size}, ${c.padding}, stride ${c.strides}, pool ${c.pool}, ${precision}`;
      const exactly = precision === "fp32" ? "bit for bit" : "bit for bit on avx512_core_bf16";
      it(`a first layer's forward pass and gradients from its recorded winners are oneDNN's, ${exactly} (${what})`, async (t) => {
        const makeModel = () => pooledModel([opConvolution({ inputShape: [c.size, c.size, 1], kernelSize: 3, padding: c.padding, strides: c.strides })], c.pool);
        const random = seededRandom(c.size);
        // Random pixels inside a border of 4 zeros.
        const inside = (row: number, column: number) => Math.min(row, column) >= 4 && Math.max(row, column) < c.size - 4;
        const pixels = () => Float32Array.from({ length: 6 * c.size * c.size }, (_, i) => (inside(Math.floor(i / c.size) % c.size, i % c.size) ? random() : 0));
        const bits = precision === "fp32" || oneDnnIsa() === "avx512_core_bf16";
        // bf16 on AMX: the unit roundoff is 2⁻⁸ ≈ 0.004, and a window whose two largest pixels round apart moves a gradient.
        const same = bits ? (g: Float32Array, whole: Float32Array, what: string) => assert.deepEqual(g, whole, what)
          : (g: Float32Array, whole: Float32Array, what: string) => assert.ok(relativeDistance(g, whole) < 0.05, `${what}: ${relativeDistance(g, whole)}`);
        await winnersAgainstWhole(t, makeModel, () => tf.tensor4d(pixels(), [6, c.size, c.size, 1]), precision, same, true, bits);
      });
    }
  }

  it("refuses a backward pass whose forward pass saved another mode's tensors (winner gradients switched between them)", async (t) => {
    await initBackend({ force: "wasm" });
    if (!oneDnnActive()) return t.skip("lib/accelerator/native/onednn.node not built or not loading");
    const previous = useWinnerGradients(true);
    const attrs = { strides: [1, 1], pad: "valid", pool: [2, 2], inputGradient: false };
    const x = tf.randomUniform([2, 10, 10, 1], 0, 1, "float32", 1);
    const filter = tf.randomNormal([3, 3, 1, 8], 0, 1, "float32", 2);
    const bias = tf.zeros([8]);
    const saved = tf.engine().runKernel(CONV_RELU_POOL_KERNEL, { x, filter, bias }, attrs as never) as tf.Tensor[];
    const dy = tf.onesLike(saved[0]);
    const backward = () => tf.engine().runKernel(CONV_RELU_POOL_GRAD_KERNEL, { dy, x, filter, activation: saved[1], poolWorkspace: saved[2] }, attrs as never) as tf.Tensor[];
    try {
      assert.match(nativeImplementations().get(CONV_RELU_POOL_KERNEL) ?? "", /recording the winners/);
      tf.dispose(backward());
      useWinnerGradients(false);
      assert.throws(backward, /saved activation is not this mode's/);
    } finally {
      useWinnerGradients(previous);
      tf.dispose([x, filter, bias, dy, ...saved]);
    }
  });

  it("in bf16 its gradients are as close to fp32's as the layers' bf16 steps are", async (t) => {
    const unavailable = bf16Unavailable();
    if (unavailable) return t.skip(unavailable);
    // The op also rounds the activation between convolution and pool to bf16 (the layers keep it fp32). Measured as
    // ‖g − g_fp32‖ / ‖g_fp32‖ averaged over the gradients and four batches (one batch's ratio swings 0.8-1.6x with the
    // data): at most 1.5x the layers' bf16 error, and bf16-sized (not fp32's: bf16 ran).
    let [opError, layersError] = [0, 0];
    for (const batchSeed of [5, 6, 7, 8]) {
      await steps(t, 8, async (stepWith) => {
        const reference = await inPrecision("fp32", async () => stepWith(false));
        const [op, layers] = await inPrecision("bf16", async () => [stepWith(true), stepWith(false)]);
        assert.ok(op.opRan, "the op ran");
        const mean = (run: typeof op) => run.gradients.reduce((sum, g, i) => sum + relativeDistance(g, reference.gradients[i]), 0) / run.gradients.length;
        opError += mean(op) / 4;
        layersError += mean(layers) / 4;
        assert.ok(Math.abs(op.loss - reference.loss) < 0.01 * Math.abs(reference.loss), `loss ${op.loss} against ${reference.loss}`);
      }, batchSeed);
    }
    assert.ok(opError <= 1.5 * layersError, `op ${opError.toExponential(2)} against the layers' ${layersError.toExponential(2)}`);
    assert.ok(opError > 1e-4, `bf16-sized errors (${opError.toExponential(2)})`);
  });
});

describe("FastConv2D matches the stock Conv2D in training", () => {
  const cases = [
    { activation: "linear", padding: "same", strides: 1, shape: [3, 9, 8, 2], filters: 5 },
    { activation: "linear", padding: "valid", strides: 2, shape: [1, 7, 7, 3], filters: 4 },
    { activation: "relu", padding: "same", strides: 1, shape: [2, 6, 6, 1], filters: 3 },
    // Filters in fours: the relu + bias gradient kernel (ProjectReluBiasGrad) on wasm.
    { activation: "relu", padding: "valid", strides: 1, shape: [3, 8, 9, 1], filters: 8 },
    { activation: "relu", padding: "same", strides: 2, shape: [2, 7, 7, 4], filters: 12 },
    // Without a bias (the plain conv2d path).
    { activation: "linear", padding: "same", strides: 1, shape: [2, 6, 5, 3], filters: 4, useBias: false },
    { activation: "relu", padding: "valid", strides: 1, shape: [2, 6, 5, 3], filters: 4, useBias: false },
  ] as const;
  for (const backend of ["wasm", "cpu"] as const) {
    for (const c of cases) {
      const useBias = !("useBias" in c);
      it(`${backend}, ${c.activation}, ${c.padding}, stride ${c.strides}, input ${c.shape.join("×")}${useBias ? "" : ", no bias"}`, async () => {
        await initBackend({ force: "wasm" });
        await onBackend(backend, async () => {
          const random = seededRandom(c.shape[1] * 7 + c.filters);
          const values = (n: number) => Float32Array.from({ length: n }, () => 2 * random() - 1);
          const config = { filters: c.filters, kernelSize: 3, padding: c.padding, strides: c.strides, activation: c.activation, useBias };
          const stock = tf.layers.conv2d(config);
          const fast = new FastConv2D(config);
          const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
          const x = tf.tensor(values(size(c.shape)), [...c.shape]);
          stock.build([...c.shape]);
          fast.build([...c.shape]);
          const initial = stock.getWeights().map((w) => tf.tensor(values(w.size), w.shape));
          stock.setWeights(initial);
          fast.setWeights(initial);
          const outputShape = (stock.apply(x) as tf.Tensor).shape;
          const weights = tf.tensor(values(size(outputShape)), outputShape);
          const step = (layer: tf.layers.Layer) => {
            const loss = (input: tf.Tensor) => tf.sum(tf.mul(layer.apply(input, { training: true }) as tf.Tensor, weights)) as tf.Scalar;
            const variables = layer.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
            const { grads } = tf.variableGrads(() => loss(x), variables);
            return { output: (layer.apply(x, { training: true }) as tf.Tensor).dataSync(), dx: tf.grad(loss)(x).dataSync(), dw: variables.map((v) => grads[v.name].dataSync()) };
          };
          const expected = step(stock);
          const actual = step(fast);
          const close = (a: ArrayLike<number>, b: ArrayLike<number>, what: string) => {
            assert.equal(a.length, b.length, what);
            for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= 1e-4 * (1 + Math.abs(b[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
          };
          close(actual.output, expected.output, "output");
          close(actual.dx, expected.dx, "d input");
          actual.dw.forEach((dw, i) => close(dw, expected.dw[i], i === 0 ? "d kernel" : "d bias"));
          assert.equal(FastConv2D.className, "Conv2D");
          assert.deepEqual({ ...fast.getConfig(), name: "" }, { ...stock.getConfig(), name: "" }, "serialises like the stock layer");
          tf.dispose([x, weights, ...initial]);
        });
      });
    }
  }

  for (const activation of ["linear", "relu"] as const) it(`does not compute the gradient of a first layer's input (the data), ${activation}`, async () => {
    await initBackend({ force: "wasm" });
    const layer = new FastConv2D({ filters: 4, kernelSize: 3, padding: "same", activation });
    const x = tf.randomNormal([2, 8, 8, 1]);
    layer.build(x.shape);
    const variables = layer.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
    const { kernelNames } = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(() => tf.sum(layer.apply(x, { training: true }) as tf.Tensor) as tf.Scalar, variables);
      tf.dispose([value, ...Object.values(grads)]);
    });
    assert.ok(kernelNames.includes("Conv2DBackpropFilter"), kernelNames.join(", "));
    assert.ok(!kernelNames.includes("Conv2DBackpropInput"), kernelNames.join(", "));
    x.dispose();
  });
});
