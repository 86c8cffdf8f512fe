/** Writes small synthetic IDX datasets for tests. */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { FASHION_MNIST, FILE_NAMES, type DatasetSpec, type FileKey } from "../../lib/data/datasets";

export function idxImages(count: number, rows: number, cols: number, pixel: (n: number, i: number) => number): Buffer {
  const buffer = Buffer.alloc(16 + count * rows * cols);
  buffer.writeUInt32BE(2051, 0);
  buffer.writeUInt32BE(count, 4);
  buffer.writeUInt32BE(rows, 8);
  buffer.writeUInt32BE(cols, 12);
  for (let n = 0; n < count; n++) {
    for (let i = 0; i < rows * cols; i++) buffer[16 + n * rows * cols + i] = pixel(n, i);
  }
  return buffer;
}

export function idxLabels(labels: number[]): Buffer {
  const buffer = Buffer.alloc(8 + labels.length);
  buffer.writeUInt32BE(2049, 0);
  buffer.writeUInt32BE(labels.length, 4);
  labels.forEach((label, i) => (buffer[8 + i] = label));
  return buffer;
}

export function sha256(buffer: Buffer): string {
  return createHash("sha256").update(buffer).digest("hex");
}

export interface SyntheticDataset {
  dir: string;
  contents: Record<FileKey, Buffer>;
  /** FASHION_MNIST with this dataset's checksums, so verification passes. */
  spec: DatasetSpec;
}

export function tempDir(prefix = "fmnist-test-"): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Pixel of image n at index i: deterministic, covers 0–255. */
export const syntheticPixel = (n: number, i: number) => (n * 31 + i * 7) % 256;

/** Label of image n: cycles through the ten classes. */
export const syntheticLabel = (n: number) => n % 10;

/**
 * Writes the four files (train 20, test 10 images of 28×28) into `dir`, gzip'd unless
 * `gzip` is false. `override` replaces a file's decompressed bytes (for broken-file tests).
 */
export function writeSyntheticDataset(
  dir: string,
  options: { gzip?: boolean; override?: Partial<Record<FileKey, Buffer>> } = {},
): SyntheticDataset {
  mkdirSync(dir, { recursive: true });
  const trainLabels = Array.from({ length: 20 }, (_, n) => syntheticLabel(n));
  const testLabels = Array.from({ length: 10 }, (_, n) => syntheticLabel(n));
  const contents: Record<FileKey, Buffer> = {
    trainImages: idxImages(20, 28, 28, syntheticPixel),
    trainLabels: idxLabels(trainLabels),
    testImages: idxImages(10, 28, 28, syntheticPixel),
    testLabels: idxLabels(testLabels),
    ...options.override,
  };
  const gzip = options.gzip ?? true;
  for (const key of Object.keys(contents) as FileKey[]) {
    const name = FILE_NAMES[key] + (gzip ? ".gz" : "");
    writeFileSync(path.join(dir, name), gzip ? gzipSync(contents[key]) : contents[key]);
  }
  const spec: DatasetSpec = {
    ...FASHION_MNIST,
    sha256: {
      trainImages: sha256(contents.trainImages),
      trainLabels: sha256(contents.trainLabels),
      testImages: sha256(contents.testImages),
      testLabels: sha256(contents.testLabels),
    },
  };
  return { dir, contents, spec };
}
