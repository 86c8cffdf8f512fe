/**
 * Fashion-MNIST and MNIST from gzip'd IDX files: located (environment variable, data/, system copy, download), verified, and returned
 * as typed arrays. A truncated, wrong or mismatched file is an error naming the file; never
 * a silently short or shifted dataset.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { gunzip } from "node:zlib";
import { downloadFile } from "./download";
import { PROJECT_ROOT } from "../tooling/paths";

const gunzipAsync = promisify(gunzip);

export const FILE_KEYS = ["trainImages", "trainLabels", "testImages", "testLabels"] as const;
export type FileKey = (typeof FILE_KEYS)[number];

/** Standard IDX file names (without `.gz`; either form is accepted on disk). */
export const FILE_NAMES: Record<FileKey, string> = {
  trainImages: "train-images-idx3-ubyte",
  trainLabels: "train-labels-idx1-ubyte",
  testImages: "t10k-images-idx3-ubyte",
  testLabels: "t10k-labels-idx1-ubyte",
};

const FILE_KIND: Record<FileKey, "images" | "labels"> = {
  trainImages: "images",
  trainLabels: "labels",
  testImages: "images",
  testLabels: "labels",
};

export const DATASET_NAMES = ["fashion", "mnist"] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

export interface DatasetSpec {
  name: DatasetName;
  title: string;
  /** Environment variable naming a directory of the four files; when set, only it is used. */
  envVar: string;
  /** Folder under the project's `data/`. */
  projectSubdir: string;
  /** System-wide install locations (Debian packages), tried after `data/`. */
  systemDirs: string[];
  /** How to get the files on this kind of machine, for the "not found" message. */
  installHint: string;
  /** Base URLs of the official mirror(s), each ending in `/`; files are `<base><name>.gz`. */
  mirrors: string[];
  classNames: string[];
  imageHeight: number;
  imageWidth: number;
  /** SHA-256 of each decompressed file. */
  sha256: Record<FileKey, string>;
}

export const FASHION_MNIST: DatasetSpec = {
  name: "fashion",
  title: "Fashion-MNIST",
  envVar: "FASHION_MNIST_DIR",
  projectSubdir: "fashion-mnist",
  systemDirs: ["/usr/share/datasets/fashion-mnist"],
  installHint: "on Debian: `sudo apt-get install dataset-fashion-mnist`",
  mirrors: ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
  classNames: ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
  imageHeight: 28,
  imageWidth: 28,
  sha256: {
    trainImages: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    trainLabels: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    testImages: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    testLabels: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
  },
};

export const MNIST: DatasetSpec = {
  name: "mnist",
  title: "MNIST",
  envVar: "MNIST_DIR",
  projectSubdir: "mnist",
  systemDirs: [],
  installHint: "copy the four official files into data/mnist/ or point MNIST_DIR at them",
  mirrors: ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"],
  classNames: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
  imageHeight: 28,
  imageWidth: 28,
  sha256: {
    trainImages: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    trainLabels: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    testImages: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    testLabels: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
  },
};

export const DATASETS: Record<DatasetName, DatasetSpec> = { fashion: FASHION_MNIST, mnist: MNIST };

/** The project's data/ folder (this file lives in <project>/lib). */
export const PROJECT_DATA_DIR = path.join(PROJECT_ROOT, "data");

export function datasetSpec(name: string): DatasetSpec {
  if (!(DATASET_NAMES as readonly string[]).includes(name)) {
    throw new Error(`Unknown dataset "${name}"; use one of ${DATASET_NAMES.join(", ")}.`);
  }
  return DATASETS[name as DatasetName];
}

// ---------------------------------------------------------------------------------------
// Locating the files

export type DataOrigin = "env" | "project" | "system" | "download";

export interface LocatedFiles {
  dir: string;
  origin: DataOrigin;
  files: Record<FileKey, string>;
}

export interface LocateOptions {
  /** Replaces process.env (tests). */
  env?: NodeJS.ProcessEnv;
  /** Replaces <project>/data (tests). */
  projectDataDir?: string;
  /** Replaces the spec's system directories (tests). */
  systemDirs?: string[];
  /** Try the official mirror when no copy is found (default true). */
  download?: boolean;
  /** Replaces the spec's mirrors (tests, or a local mirror). */
  mirrors?: string[];
  /** Show download progress on stderr (default true). */
  progress?: boolean;
}

/** The path of `name` in `dir`, gzip'd or not, or undefined. */
function findFile(dir: string, name: string): string | undefined {
  for (const candidate of [`${name}.gz`, name]) {
    const full = path.join(dir, candidate);
    if (existsSync(full)) return full;
  }
  return undefined;
}

function scanDir(dir: string): { found: Partial<Record<FileKey, string>>; missing: FileKey[] } {
  const found: Partial<Record<FileKey, string>> = {};
  const missing: FileKey[] = [];
  for (const key of FILE_KEYS) {
    const file = findFile(dir, FILE_NAMES[key]);
    if (file) found[key] = file;
    else missing.push(key);
  }
  return { found, missing };
}

function missingNames(missing: FileKey[]): string {
  return missing.map((k) => FILE_NAMES[k] + "[.gz]").join(", ");
}

/**
 * Finds the four files: the directory in the spec's environment variable (only it, when
 * set); else <project>/data/<subdir>; else the system directories; else downloads them from
 * the official mirror into <project>/data/<subdir>.
 */
export async function locateDataset(spec: DatasetSpec, options: LocateOptions = {}): Promise<LocatedFiles> {
  const env = options.env ?? process.env;
  const envValue = env[spec.envVar];
  if (envValue) {
    const envDir = path.resolve(envValue);
    const { found, missing } = scanDir(envDir);
    if (missing.length > 0) {
      const why = existsSync(envDir) ? `it lacks ${missingNames(missing)}` : "it does not exist";
      throw new Error(
        `${spec.envVar}=${envValue} names the ${spec.title} directory, but ${why}. ` +
          `Put the four IDX files there, or unset ${spec.envVar} to use data/ or the system copy.`,
      );
    }
    return { dir: envDir, origin: "env", files: found as Record<FileKey, string> };
  }

  const projectDir = path.join(options.projectDataDir ?? PROJECT_DATA_DIR, spec.projectSubdir);
  const looked: string[] = [];
  const project = scanDir(projectDir);
  if (project.missing.length === 0) {
    return { dir: projectDir, origin: "project", files: project.found as Record<FileKey, string> };
  }
  looked.push(`${projectDir} (${project.missing.length === 4 ? "no files" : `lacks ${missingNames(project.missing)}`})`);

  for (const dir of options.systemDirs ?? spec.systemDirs) {
    const system = scanDir(dir);
    if (system.missing.length === 0) {
      return { dir, origin: "system", files: system.found as Record<FileKey, string> };
    }
    looked.push(`${dir} (${existsSync(dir) ? `lacks ${missingNames(system.missing)}` : "not present"})`);
  }

  const howToGet =
    `Get them: ${spec.installHint}; or put the four files (${FILE_KEYS.map((k) => FILE_NAMES[k] + ".gz").join(", ")}) ` +
    `in ${projectDir}; or set ${spec.envVar} to a directory holding them.`;
  if (options.download === false) {
    throw new Error(`${spec.title} files not found. Looked in: ${looked.join("; ")}. ${howToGet}`);
  }
  try {
    await downloadMissing(spec, projectDir, project.missing, options);
  } catch (error) {
    throw new Error(
      `${spec.title} files not found and the download failed (${(error as Error).message}). ` +
        `Looked in: ${looked.join("; ")}. ${howToGet}`,
    );
  }
  const downloaded = scanDir(projectDir);
  return { dir: projectDir, origin: "download", files: downloaded.found as Record<FileKey, string> };
}

/** Downloads the missing files, verifying each one's content before it takes its final name. */
async function downloadMissing(spec: DatasetSpec, dir: string, missing: FileKey[], options: LocateOptions): Promise<void> {
  const mirrors = options.mirrors ?? spec.mirrors;
  for (const key of missing) {
    const fileName = `${FILE_NAMES[key]}.gz`;
    const errors: string[] = [];
    let done = false;
    for (const base of mirrors) {
      try {
        await downloadFile(`${base}${fileName}`, path.join(dir, fileName), {
          progress: options.progress ?? true,
          label: fileName,
          verify: async (tmpPath) => {
            await readIdxFile(tmpPath, FILE_KIND[key], spec.sha256[key], spec);
          },
        });
        done = true;
        break;
      } catch (error) {
        errors.push(`${base}${fileName}: ${(error as Error).message}`);
      }
    }
    if (!done) throw new Error(errors.join("; "));
  }
}

// ---------------------------------------------------------------------------------------
// Reading and verifying IDX files

const IDX_IMAGES_MAGIC = 2051; // 0x00000803: unsigned bytes, 3 dimensions
const IDX_LABELS_MAGIC = 2049; // 0x00000801: unsigned bytes, 1 dimension

export interface IdxFile {
  /** The values after the header: a view on the decompressed buffer, not a copy. */
  values: Uint8Array;
  /** Dimensions from the header: [count] for labels, [count, rows, cols] for images. */
  dims: number[];
  sha256: string;
}

/**
 * Reads one IDX file (gzip'd or not), checks its magic number, dimensions and length, and
 * its content SHA-256 against `expectedSha256` unless that is undefined.
 */
export async function readIdxFile(
  file: string,
  kind: "images" | "labels",
  expectedSha256: string | undefined,
  spec: Pick<DatasetSpec, "title" | "imageHeight" | "imageWidth">,
): Promise<IdxFile> {
  const raw = await readFile(file);
  let content: Buffer = raw;
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      content = await gunzipAsync(raw);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code === "Z_BUF_ERROR" ? "truncated" : "corrupt";
      throw new Error(`${file}: the gzip data is ${reason} (${(error as Error).message}); fetch the file again.`);
    }
  }
  const expectedMagic = kind === "images" ? IDX_IMAGES_MAGIC : IDX_LABELS_MAGIC;
  const headerLength = kind === "images" ? 16 : 8;
  const magic = content.length >= 4 ? content.readUInt32BE(0) : undefined;
  if (magic !== expectedMagic) {
    const seen = magic === IDX_IMAGES_MAGIC ? " (an images file)" : magic === IDX_LABELS_MAGIC ? " (a labels file)" : "";
    const found = magic === undefined ? `only ${content.length} bytes, no magic number` : `magic number ${magic}${seen}`;
    throw new Error(`${file}: ${found}, expected ${expectedMagic} for IDX ${kind}.`);
  }
  if (content.length < headerLength) {
    throw new Error(`${file}: only ${content.length} bytes, shorter than an IDX ${kind} header (${headerLength} bytes).`);
  }
  const dims = [];
  for (let offset = 4; offset < headerLength; offset += 4) dims.push(content.readUInt32BE(offset));
  if (kind === "images" && (dims[1] !== spec.imageHeight || dims[2] !== spec.imageWidth)) {
    throw new Error(
      `${file}: images are ${dims[1]}×${dims[2]}, expected ${spec.imageHeight}×${spec.imageWidth} for ${spec.title}.`,
    );
  }
  const expectedBytes = dims.reduce((a, b) => a * b, 1);
  const actualBytes = content.length - headerLength;
  if (actualBytes !== expectedBytes) {
    const what = actualBytes < expectedBytes ? "truncated" : `${actualBytes - expectedBytes} bytes too long`;
    throw new Error(
      `${file}: the header promises ${dims[0]} ${kind} (${expectedBytes} bytes) but the file holds ${actualBytes} bytes: ${what}.`,
    );
  }
  const sha256 = createHash("sha256").update(content).digest("hex");
  if (expectedSha256 !== undefined && sha256 !== expectedSha256) {
    throw new Error(
      `${file}: SHA-256 of the decompressed content is ${sha256}, expected ${expectedSha256} ` +
        `(the official ${spec.title} file). If these are your own IDX files, skip the check ` +
        `(--skip-checksum, or verifyChecksums: false).`,
    );
  }
  return { values: new Uint8Array(content.buffer, content.byteOffset + headerLength, actualBytes), dims, sha256 };
}

// ---------------------------------------------------------------------------------------
// The dataset

export interface Split {
  /** Pixels, row-major [count, height, width], 0–255. */
  images: Uint8Array;
  /** Class indices 0–9. */
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
}

/** The pixels of image `index` of a split (a view, not a copy), row-major height × width. */
export function imagePixels(split: Split, index: number): Uint8Array {
  if (!Number.isInteger(index) || index < 0 || index >= split.count) throw new Error(`image ${index} is not in a split of ${split.count} images.`);
  const size = split.height * split.width;
  return split.images.subarray(index * size, (index + 1) * size);
}

export interface Dataset {
  name: DatasetName;
  title: string;
  classNames: string[];
  train: Split;
  test: Split;
  source: LocatedFiles;
  /** SHA-256 of each decompressed file. */
  sha256: Record<FileKey, string>;
  /** False when the caller skipped the comparison with the official checksums. */
  checksumsVerified: boolean;
}

export interface LoadOptions extends LocateOptions {
  /** Compare with the official SHA-256 (default true). Turn off for your own IDX files. */
  verifyChecksums?: boolean;
}

async function loadSplit(
  spec: DatasetSpec,
  files: Record<FileKey, string>,
  split: "train" | "test",
  verify: boolean,
): Promise<{ split: Split; imagesSha: string; labelsSha: string }> {
  const imagesKey: FileKey = split === "train" ? "trainImages" : "testImages";
  const labelsKey: FileKey = split === "train" ? "trainLabels" : "testLabels";
  const [images, labels] = await Promise.all([
    readIdxFile(files[imagesKey], FILE_KIND[imagesKey], verify ? spec.sha256[imagesKey] : undefined, spec),
    readIdxFile(files[labelsKey], FILE_KIND[labelsKey], verify ? spec.sha256[labelsKey] : undefined, spec),
  ]);
  if (images.dims[0] !== labels.dims[0]) {
    throw new Error(
      `${split} split: ${files[imagesKey]} has ${images.dims[0]} images but ${files[labelsKey]} has ${labels.dims[0]} labels.`,
    );
  }
  const numClasses = spec.classNames.length;
  const bad = labels.values.findIndex((label) => label >= numClasses);
  if (bad >= 0) {
    throw new Error(
      `${files[labelsKey]}: label ${labels.values[bad]} at index ${bad} is outside 0–${numClasses - 1}.`,
    );
  }
  return {
    split: {
      images: images.values,
      labels: labels.values,
      count: images.dims[0],
      height: images.dims[1],
      width: images.dims[2],
    },
    imagesSha: images.sha256,
    labelsSha: labels.sha256,
  };
}

/** Locates, reads and verifies a dataset. */
export async function loadDataset(dataset: DatasetName | DatasetSpec, options: LoadOptions = {}): Promise<Dataset> {
  const spec = typeof dataset === "string" ? datasetSpec(dataset) : dataset;
  const source = await locateDataset(spec, options);
  const verify = options.verifyChecksums ?? true;
  const [train, test] = await Promise.all([
    loadSplit(spec, source.files, "train", verify),
    loadSplit(spec, source.files, "test", verify),
  ]);
  return {
    name: spec.name,
    title: spec.title,
    classNames: spec.classNames,
    train: train.split,
    test: test.split,
    source,
    sha256: {
      trainImages: train.imagesSha,
      trainLabels: train.labelsSha,
      testImages: test.imagesSha,
      testLabels: test.labelsSha,
    },
    checksumsVerified: verify,
  };
}

// ---------------------------------------------------------------------------------------
// Summaries

export function classCounts(labels: Uint8Array, numClasses: number): number[] {
  const counts = new Array<number>(numClasses).fill(0);
  for (const label of labels) counts[label]++;
  return counts;
}

/** Mean and (population) standard deviation of pixel values, 0–255. */
export function pixelStats(images: Uint8Array): { mean: number; std: number } {
  if (images.length === 0) throw new Error("pixelStats: no pixels.");
  // A histogram is exact and avoids floating-point drift over 47 million values.
  const histogram = new Float64Array(256);
  for (const value of images) histogram[value]++;
  let sum = 0;
  let sumSquares = 0;
  for (let v = 0; v < 256; v++) {
    sum += v * histogram[v];
    sumSquares += v * v * histogram[v];
  }
  const mean = sum / images.length;
  return { mean, std: Math.sqrt(Math.max(0, sumSquares / images.length - mean * mean)) };
}
