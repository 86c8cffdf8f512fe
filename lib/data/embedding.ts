/**
 * Low-dimensional views of images or of learned features: principal components (subspace
 * iteration on the covariance, then the exact rotation within that subspace), and 2-D UMAP
 * (umap-js) on a PCA-reduced sample, seeded so that a figure is the same on every run.
 */
import { UMAP } from "umap-js";
import { tf } from "../accelerator";
import { seededRandom } from "../tooling/random";
import type { Split } from "./datasets";

export interface PrincipalComponents {
  /** Each row's coordinates on the components, [n][k]. */
  projected: number[][];
  /** The share of the total variance along each component, largest first. */
  explainedVariance: number[];
}

/**
 * The first k principal components of the rows of x ([n, d]) and each row's coordinates on
 * them. A subspace a few dimensions larger than k is iterated on the covariance matrix (from a
 * seeded start), then diagonalised exactly within (Rayleigh–Ritz), so components come out
 * ordered; signs are arbitrary, as in any PCA.
 */
export function principalComponents(x: tf.Tensor2D, k: number, options: { iterations?: number; seed?: number } = {}): PrincipalComponents {
  const [n, d] = x.shape;
  if (!Number.isInteger(k) || k < 1 || k > d) throw new Error(`principalComponents: k must be an integer in 1..${d}, got ${k}.`);
  if (n < 2) throw new Error("principalComponents: needs at least 2 rows.");
  const size = Math.min(d, k + 8);
  return tf.tidy(() => {
    const centred = x.sub(x.mean(0)) as tf.Tensor2D;
    const covariance = tf.matMul(centred, centred, true, false).div(n - 1) as tf.Tensor2D;
    // Orthonormalised in JavaScript: TF.js's gramSchmidt runs several ops per row, ~20× slower here.
    const orthonormal = (t: tf.Tensor) => tf.tensor2d(orthonormalRows(t.dataSync() as Float32Array, size, d), [size, d]);
    let basis = orthonormal(tf.randomNormal([size, d], 0, 1, "float32", options.seed ?? 1));
    for (let i = 0; i < (options.iterations ?? 100); i++) {
      const product = tf.matMul(basis, covariance);
      const next = orthonormal(product);
      tf.dispose([basis, product]);
      basis = next;
    }
    // Rayleigh–Ritz: the covariance within the subspace, diagonalised exactly.
    const within = tf.matMul(tf.matMul(basis, covariance), basis, false, true).arraySync() as number[][];
    const { values, vectors } = symmetricEigen(within);
    const order = values.map((_, i) => i).sort((a, b) => values[b] - values[a]).slice(0, k);
    const rotation = tf.tensor2d(order.map((i) => vectors.map((row) => row[i])), [k, size]);
    const components = tf.matMul(rotation, basis);
    // The total variance is the covariance's trace: the centred values' squares over n − 1.
    const total = tf.sum(tf.square(centred)).dataSync()[0] / (n - 1);
    return {
      projected: tf.matMul(centred, components, false, true).arraySync() as number[][],
      explainedVariance: order.map((i) => (total > 0 ? values[i] / total : 0)),
    };
  });
}

/**
 * The rows of a [rows, cols] matrix made orthonormal, in order (modified Gram–Schmidt, float64
 * sums). A row that the rows before it already span (a rank-deficient covariance) becomes zero.
 */
export function orthonormalRows(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = Float64Array.from(values);
  let largest = 0;
  for (let r = 0; r < rows; r++) {
    let norm = 0;
    for (let j = 0; j < cols; j++) norm += out[r * cols + j] ** 2;
    largest = Math.max(largest, Math.sqrt(norm));
  }
  for (let r = 0; r < rows; r++) {
    const row = out.subarray(r * cols, (r + 1) * cols);
    for (let q = 0; q < r; q++) {
      const previous = out.subarray(q * cols, (q + 1) * cols);
      let dot = 0;
      for (let j = 0; j < cols; j++) dot += row[j] * previous[j];
      for (let j = 0; j < cols; j++) row[j] -= dot * previous[j];
    }
    let norm = 0;
    for (let j = 0; j < cols; j++) norm += row[j] * row[j];
    norm = Math.sqrt(norm);
    if (norm <= 1e-6 * largest) row.fill(0);
    else for (let j = 0; j < cols; j++) row[j] /= norm;
  }
  return Float32Array.from(out);
}

/** Eigenvalues and eigenvectors (columns) of a small symmetric matrix, by cyclic Jacobi rotations. */
export function symmetricEigen(matrix: number[][], sweeps = 50): { values: number[]; vectors: number[][] } {
  const m = matrix.length;
  const a = matrix.map((row) => [...row]);
  const v: number[][] = a.map((_, i) => a.map((__, j) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < sweeps; sweep++) {
    let off = 0;
    for (let p = 0; p < m; p++) for (let q = p + 1; q < m; q++) off += a[p][q] ** 2;
    if (off < 1e-20) break;
    for (let p = 0; p < m; p++) {
      for (let q = p + 1; q < m; q++) {
        if (Math.abs(a[p][q]) < 1e-30) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let r = 0; r < m; r++) {
          const [arp, arq] = [a[r][p], a[r][q]];
          a[r][p] = c * arp - s * arq;
          a[r][q] = s * arp + c * arq;
        }
        for (let r = 0; r < m; r++) {
          const [apr, aqr] = [a[p][r], a[q][r]];
          a[p][r] = c * apr - s * aqr;
          a[q][r] = s * apr + c * aqr;
        }
        for (let r = 0; r < m; r++) {
          const [vrp, vrq] = [v[r][p], v[r][q]];
          v[r][p] = c * vrp - s * vrq;
          v[r][q] = s * vrp + c * vrq;
        }
      }
    }
  }
  return { values: a.map((row, i) => row[i]), vectors: v };
}

export interface EmbeddingOptions {
  /** PCA components kept before UMAP (fewer when the data has fewer dimensions). */
  pcaComponents?: number;
  /** UMAP's neighbourhood size and minimum distance (umap-js defaults 15 and 0.1). */
  neighbours?: number;
  minDistance?: number;
  seed?: number;
}

export interface Embedding {
  points: [number, number][];
  /** The share of variance the PCA step kept. */
  pcaVarianceKept: number;
  seconds: { pca: number; umap: number };
}

/**
 * A 2-D UMAP embedding of the rows of x ([n, d]: pixels/255 or a layer's features), after PCA
 * to `pcaComponents` dimensions. Seeded: the same data and options give the same points.
 */
export function umapEmbedding(x: tf.Tensor2D, options: EmbeddingOptions = {}): Embedding {
  const seed = options.seed ?? 42;
  const started = performance.now();
  const pca = principalComponents(x, Math.min(options.pcaComponents ?? 50, x.shape[1]), { seed });
  const pcaSeconds = (performance.now() - started) / 1000;
  const umap = new UMAP({ nComponents: 2, nNeighbors: options.neighbours ?? 15, minDist: options.minDistance ?? 0.1, random: seededRandom(seed) });
  const points = umap.fit(pca.projected).map((p) => [p[0], p[1]] as [number, number]);
  return {
    points,
    pcaVarianceKept: pca.explainedVariance.reduce((sum, v) => sum + v, 0),
    seconds: { pca: pcaSeconds, umap: (performance.now() - started) / 1000 - pcaSeconds },
  };
}

/** Each class's median point of an embedding: where to write its name on the figure. */
export function classCentres(points: [number, number][], labels: ArrayLike<number>, classes: number): ([number, number] | null)[] {
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  };
  return Array.from({ length: classes }, (_, c) => {
    const mine = points.filter((_, i) => labels[i] === c);
    return mine.length === 0 ? null : [median(mine.map((p) => p[0])), median(mine.map((p) => p[1]))];
  });
}

/** A split's images as rows of pixels/255, [count, height·width]: what PCA and UMAP of pixels read. */
export function pixelMatrix(split: Split): tf.Tensor2D {
  return tf.tidy(() => tf.tensor2d(split.images, [split.count, split.height * split.width], "int32").toFloat().div(255) as tf.Tensor2D);
}

/**
 * For each class, the share of its points whose nearest other point in the embedding has the
 * same class (1: a clean cluster; low: the class overlaps others). NaN for a class without points.
 */
export function neighbourAgreement(points: [number, number][], labels: ArrayLike<number>, classes: number): number[] {
  const same = new Array<number>(classes).fill(0);
  const count = new Array<number>(classes).fill(0);
  points.forEach((p, i) => {
    let nearest = -1;
    let best = Infinity;
    points.forEach((q, j) => {
      const d = (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2;
      if (j !== i && d < best) [best, nearest] = [d, j];
    });
    count[labels[i]]++;
    if (nearest >= 0 && labels[nearest] === labels[i]) same[labels[i]]++;
  });
  return same.map((s, c) => (count[c] === 0 ? NaN : s / count[c]));
}
