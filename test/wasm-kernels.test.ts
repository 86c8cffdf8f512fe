import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../lib/backend";
import { maxRelativeError, onBackend, randomArray } from "./helpers/tensors";

interface FilterGradCase {
  xShape: [number, number, number, number];
  filterShape: [number, number, number, number];
  stride: number;
  pad: "same" | "valid";
}

const CASES: FilterGradCase[] = [];
for (const stride of [1, 2]) {
  for (const pad of ["same", "valid"] as const) {
    CASES.push(
      { xShape: [2, 8, 8, 3], filterShape: [3, 3, 3, 4], stride, pad },
      { xShape: [1, 7, 9, 1], filterShape: [3, 3, 1, 5], stride, pad }, // batch 1, odd, non-square
      { xShape: [3, 13, 13, 16], filterShape: [5, 5, 16, 8], stride, pad },
      { xShape: [4, 28, 28, 1], filterShape: [3, 3, 1, 32], stride, pad }, // capstone conv1
      { xShape: [2, 6, 5, 4], filterShape: [2, 3, 4, 2], stride, pad }, // even, non-square kernel
    );
  }
}

/** dW through the kernel itself, on the named backend, as plain numbers. */
async function filterGradient(backend: string, c: FilterGradCase, x: Float32Array, dy: Float32Array) {
  return onBackend(backend, async () => {
    const outShape = tf.conv2d(tf.zeros(c.xShape) as tf.Tensor4D, tf.zeros(c.filterShape) as tf.Tensor4D, c.stride, c.pad).shape;
    const xT = tf.tensor4d(x, c.xShape);
    const dyT = tf.tensor4d(dy.subarray(0, outShape.reduce((a, b) => a * b, 1)), outShape);
    const before = tf.memory().numTensors;
    const dw = tf.engine().runKernel("Conv2DBackpropFilter", { x: xT, dy: dyT }, {
      strides: c.stride, pad: c.pad, dataFormat: "NHWC", filterShape: c.filterShape,
    }) as tf.Tensor4D;
    assert.deepEqual(dw.shape, c.filterShape);
    const values = await dw.data();
    dw.dispose();
    const leaked = tf.memory().numTensors - before;
    tf.dispose([xT, dyT]);
    return { values: values as Float32Array, leaked };
  });
}

describe("wasm Conv2DBackpropFilter", () => {
  before(async () => {
    const info = await initBackend({ force: "wasm" });
    assert.ok(info.registeredKernels.includes("Conv2DBackpropFilter"));
  });

  for (const c of CASES) {
    const name = `x ${c.xShape.join("×")}, filter ${c.filterShape.join("×")}, stride ${c.stride}, ${c.pad}`;
    it(`matches cpu: ${name}`, async () => {
      const x = randomArray(c.xShape.reduce((a, b) => a * b, 1));
      const dy = randomArray(c.xShape[0] * c.xShape[1] * c.xShape[2] * c.filterShape[3]);
      const expected = await filterGradient("cpu", c, x, dy);
      const actual = await filterGradient("wasm", c, x, dy);
      const error = maxRelativeError(actual.values, expected.values);
      assert.ok(error < 1e-4, `max relative error ${error}`);
      assert.equal(actual.leaked, 0, "the kernel leaked tensors");
    });
  }

  it("gives the same filter and input gradients as cpu through tf.grads of conv2d", async () => {
    const xShape: [number, number, number, number] = [3, 11, 11, 2];
    const wShape: [number, number, number, number] = [3, 3, 2, 6];
    const x = randomArray(3 * 11 * 11 * 2);
    const w = randomArray(3 * 3 * 2 * 6);
    const gradients = (backend: string) =>
      onBackend(backend, async () => {
        const lossOf = (xs: tf.Tensor, ws: tf.Tensor) =>
          tf.conv2d(xs as tf.Tensor4D, ws as tf.Tensor4D, 2, "same").square().sum();
        const [gx, gw] = tf.grads(lossOf)([tf.tensor4d(x, xShape), tf.tensor4d(w, wShape)]);
        return { gx: await gx.data(), gw: await gw.data() };
      });
    const expected = await gradients("cpu");
    const actual = await gradients("wasm");
    assert.ok(maxRelativeError(actual.gw, expected.gw) < 1e-4);
    assert.ok(maxRelativeError(actual.gx, expected.gx) < 1e-4);
  });
});
