/**
 * Models and run records on disk, written atomically: everything goes to a temporary name
 * first and is renamed into place, so an interrupted run never leaves a half-written model
 * or record behind.
 *
 * Models use TF.js's layers format (model.json + weights.bin; with the optimizer's state,
 * so that training can resume). A saved model takes [N,28,28,1] float32 pixels/255; any
 * further normalisation lives inside the model. TF.js's `file://` handler exists only in
 * tfjs-node; this works on every backend through tf.io's in-memory handlers.
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fuseBatchNormRelu, fuseConvBnBlocks, fuseConvReluPools, tf } from "../accelerator";

export const MODEL_FILE = "model.json";
export const WEIGHTS_FILE = "weights.bin";

/** JSON with object keys sorted, so equal values compare equal whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v,
  );
}

/** Writes a file atomically (temporary file in the same folder, then rename). */
export async function writeFileAtomic(file: string, contents: string | Uint8Array): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, contents);
  await rename(temporary, file);
}

export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(value, null, 2) + "\n");
}

/**
 * Writes a model (and its optimizer state) as a layers-format folder `dir` (replaced if it
 * exists, not atomically), with `extra` files beside model.json.
 */
export async function writeModelFolder(model: tf.LayersModel, dir: string, extra: Record<string, string | Uint8Array> = {}): Promise<void> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (saved) => {
      artifacts = saved;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } };
    }),
    { includeOptimizer: true },
  );
  if (!artifacts?.weightData || !artifacts.weightSpecs) throw new Error("saveModel: TF.js returned no weights.");
  const weightData = tf.io.CompositeArrayBuffer.join(artifacts.weightData);
  const modelJson = {
    format: "layers-model",
    generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
    convertedBy: null,
    modelTopology: artifacts.modelTopology,
    trainingConfig: artifacts.trainingConfig,
    weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs }],
  };
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, MODEL_FILE), JSON.stringify(modelJson));
  await writeFile(path.join(dir, WEIGHTS_FILE), new Uint8Array(weightData));
  for (const [name, contents] of Object.entries(extra)) await writeFile(path.join(dir, name), contents);
}

/**
 * Moves folder `next` into place as `dir`, replacing it; safe to run again after a crash at any
 * point (the old version waits in `dir.old` until the new one is in place).
 */
export async function replaceFolder(next: string, dir: string): Promise<void> {
  const old = `${dir}.old`;
  if (existsSync(next)) {
    if (existsSync(dir)) {
      await rm(old, { recursive: true, force: true });
      await rename(dir, old);
    }
    await rename(next, dir);
  }
  await rm(old, { recursive: true, force: true });
}

/** Saves a model (and its optimizer state) into `dir`, replacing what was there atomically. */
export async function saveModel(model: tf.LayersModel, dir: string): Promise<void> {
  const staging = `${dir}.${process.pid}.staging`;
  await writeModelFolder(model, staging);
  await replaceFolder(staging, dir);
}

/** Loads a model saved by saveModel (or any layers-format folder with one weights file); errors name the file. */
export async function loadModel(dir: string): Promise<tf.LayersModel> {
  const modelFile = path.join(dir, MODEL_FILE);
  if (!existsSync(modelFile)) throw new Error(`No ${MODEL_FILE} in ${dir}: not a saved model folder.`);
  let modelJson: {
    modelTopology: object;
    trainingConfig?: tf.io.TrainingConfig;
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  };
  try {
    modelJson = JSON.parse(await readFile(modelFile, "utf8"));
    if (!modelJson?.modelTopology || !Array.isArray(modelJson.weightsManifest)) throw new Error("no modelTopology or weightsManifest");
  } catch (error) {
    throw new Error(`${modelFile} is not a readable layers model (${(error as Error).message}).`);
  }
  const weightSpecs = modelJson.weightsManifest.flatMap((group) => group.weights);
  const files = modelJson.weightsManifest.flatMap((group) => group.paths).map((file) => path.join(dir, file));
  for (const file of files) if (!existsSync(file)) throw new Error(`${file} is missing (named by ${modelFile}).`);
  const buffers = await Promise.all(files.map((file) => readFile(file)));
  const joined = Buffer.concat(buffers);
  const bytesPer: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8, string: 0 };
  const expected = weightSpecs.reduce((sum, w) => sum + w.shape.reduce((a, b) => a * b, 1) * (bytesPer[w.dtype] ?? 4), 0);
  if (!weightSpecs.some((w) => w.dtype === "string" || w.quantization) && joined.byteLength !== expected) {
    throw new Error(`${files.join(", ")}: ${joined.byteLength} bytes where ${modelFile} describes ${expected}: the weights are truncated or do not belong to this model.`);
  }
  const weightData = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength);
  const model = await tf.loadLayersModel(
    tf.io.fromMemory({ modelTopology: modelJson.modelTopology, trainingConfig: modelJson.trainingConfig, weightSpecs, weightData }),
  );
  // A resumed run trains as a freshly built one does.
  fuseBatchNormRelu(model);
  fuseConvBnBlocks(model);
  fuseConvReluPools(model);
  return model;
}
