import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../../lib/accelerator";
import { classCentres, neighbourAgreement, orthonormalRows, pixelMatrix, principalComponents, symmetricEigen, umapEmbedding } from "../../lib/data/embedding";
import { seededRandom } from "../../lib/tooling/random";

/** Standard normal draws (Box–Muller) from a seeded generator. */
function normals(count: number, seed: number): number[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random()));
}

/** `perCluster` points around each of `clusters` centres in `dims` dimensions, centres `gap` apart. */
function clusters(clustersCount: number, perCluster: number, dims: number, gap: number, seed = 3): { x: number[][]; labels: number[] } {
  const noise = normals(clustersCount * perCluster * dims, seed);
  const x: number[][] = [];
  const labels: number[] = [];
  for (let c = 0; c < clustersCount; c++) {
    for (let i = 0; i < perCluster; i++) {
      const n = c * perCluster + i;
      x.push(Array.from({ length: dims }, (_, j) => (j === c ? gap : 0) + noise[n * dims + j]));
      labels.push(c);
    }
  }
  return { x, labels };
}

describe("embedding", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("symmetricEigen: A·v = λ·v for each pair, eigenvectors orthonormal", () => {
    const a = [[4, 1, 2], [1, 3, 0], [2, 0, 5]];
    const { values, vectors } = symmetricEigen(a);
    for (let k = 0; k < 3; k++) {
      const v = vectors.map((row) => row[k]);
      const av = a.map((row) => row.reduce((sum, x, j) => sum + x * v[j], 0));
      av.forEach((x, i) => assert.ok(Math.abs(x - values[k] * v[i]) < 1e-9, `pair ${k}`));
    }
    const dot = (p: number, q: number) => vectors.reduce((sum, row) => sum + row[p] * row[q], 0);
    assert.ok(Math.abs(dot(0, 0) - 1) < 1e-12 && Math.abs(dot(0, 1)) < 1e-12);
    assert.ok(Math.abs(values.reduce((s, x) => s + x, 0) - 12) < 1e-9, "the trace is kept");
  });

  it("orthonormalRows: orthonormal rows spanning the same space; a dependent row becomes zero", () => {
    const rows = orthonormalRows(Float32Array.from([3, 0, 0, 1, 2, 0, 6, 0, 0]), 3, 3);
    assert.deepEqual(Array.from(rows.subarray(0, 3)), [1, 0, 0]);
    assert.deepEqual(Array.from(rows.subarray(3, 6)), [0, 1, 0]);
    assert.deepEqual(Array.from(rows.subarray(6, 9)), [0, 0, 0], "the third row is twice the first");
  });

  it("principalComponents: the components of a known covariance, in order, with their variance shares", () => {
    // Independent coordinates with standard deviations 5, 3, 1, 0.5, 0.2: the components are the axes.
    const scales = [5, 3, 1, 0.5, 0.2];
    const n = 4000;
    const noise = normals(n * scales.length, 7);
    const values = Float32Array.from({ length: n * scales.length }, (_, i) => noise[i] * scales[i % scales.length]);
    const x = tf.tensor2d(values, [n, scales.length]);
    const { projected, explainedVariance } = principalComponents(x, 3);
    x.dispose();
    const total = scales.reduce((s, v) => s + v * v, 0);
    scales.slice(0, 3).forEach((scale, k) => {
      assert.ok(Math.abs(explainedVariance[k] - (scale * scale) / total) < 0.02, `component ${k}: ${explainedVariance[k]}`);
      // Each projection is (up to its sign) the matching coordinate, centred.
      const correlation = Math.abs(pearson(projected.map((p) => p[k]), Array.from({ length: n }, (_, i) => values[i * scales.length + k])));
      assert.ok(correlation > 0.99, `component ${k} correlates ${correlation} with axis ${k}`);
    });
    assert.throws(() => principalComponents(tf.zeros([3, 2]) as tf.Tensor2D, 3), /k must be an integer in 1\.\.2, got 3/);
  });

  it("umapEmbedding keeps separable clusters apart, and a seed gives the same figure every time", () => {
    const { x: rows, labels } = clusters(3, 40, 20, 12);
    const x = tf.tensor2d(rows);
    const first = umapEmbedding(x, { pcaComponents: 10, seed: 5 });
    const again = umapEmbedding(x, { pcaComponents: 10, seed: 5 });
    const other = umapEmbedding(x, { pcaComponents: 10, seed: 6 });
    x.dispose();
    assert.equal(first.points.length, rows.length);
    assert.deepEqual(again.points, first.points, "same data, options and seed: the same points");
    assert.notDeepEqual(other.points, first.points);
    assert.ok(first.pcaVarianceKept > 0.5 && first.pcaVarianceKept <= 1 + 1e-6, `PCA kept ${first.pcaVarianceKept}`);
    // Every point's nearest neighbour in the plane is of its own cluster.
    first.points.forEach((p, i) => {
      let nearest = -1;
      let best = Infinity;
      first.points.forEach((q, j) => {
        const d = (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2;
        if (j !== i && d < best) [best, nearest] = [d, j];
      });
      assert.equal(labels[nearest], labels[i], `point ${i}'s nearest neighbour is of another cluster`);
    });
    assert.deepEqual(neighbourAgreement(first.points, labels, 3), [1, 1, 1]);
    const centres = classCentres(first.points, labels, 4);
    assert.equal(centres[3], null, "a class without points has no centre");
    assert.ok(centres.slice(0, 3).every((c) => c !== null));
  });
});

describe("embedding helpers", () => {
  it("neighbourAgreement: the share of each class whose nearest point shares its class", () => {
    // Class 0 at 0 and 1; class 1 at 10; class 2 at 10.5 (nearest: 10, class 1) and 30 (nearest: 10.5, class 2).
    const points: [number, number][] = [[0, 0], [1, 0], [10, 0], [10.5, 0], [30, 0]];
    const agreement = neighbourAgreement(points, [0, 0, 1, 2, 2], 4);
    assert.deepEqual(agreement.slice(0, 3), [1, 0, 0.5]);
    assert.ok(Number.isNaN(agreement[3]));
  });

  it("pixelMatrix: rows of pixels/255", () => {
    const m = pixelMatrix({ images: Uint8Array.from([0, 255, 51, 102]), labels: new Uint8Array(2), count: 2, height: 1, width: 2 });
    assert.deepEqual(m.shape, [2, 2]);
    assert.deepEqual(Array.from(m.dataSync()).map((v) => Math.round(v * 100) / 100), [0, 1, 0.2, 0.4]);
    m.dispose();
  });
});

function pearson(a: number[], b: number[]): number {
  const mean = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;
  const [ma, mb] = [mean(a), mean(b)];
  let [ab, aa, bb] = [0, 0, 0];
  for (let i = 0; i < a.length; i++) {
    ab += (a[i] - ma) * (b[i] - mb);
    aa += (a[i] - ma) ** 2;
    bb += (b[i] - mb) ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}
