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
import { tf } from "./backend";

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

/** Saves a model (and its optimizer state) into `dir`, replacing what was there atomically. */
export async function saveModel(model: tf.LayersModel, dir: string): Promise<void> {
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
  // Write the new version beside the old one, then swap the folders.
  const staging = `${dir}.${process.pid}.staging`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await writeFile(path.join(staging, MODEL_FILE), JSON.stringify(modelJson));
  await writeFile(path.join(staging, WEIGHTS_FILE), new Uint8Array(weightData));
  const previous = `${dir}.${process.pid}.previous`;
  if (existsSync(dir)) await rename(dir, previous);
  await rename(staging, dir);
  await rm(previous, { recursive: true, force: true });
}

/** Loads a model saved by saveModel (or any layers-format folder with one weights file). */
export async function loadModel(dir: string): Promise<tf.LayersModel> {
  const modelFile = path.join(dir, MODEL_FILE);
  if (!existsSync(modelFile)) throw new Error(`No ${MODEL_FILE} in ${dir}: not a saved model folder.`);
  const modelJson = JSON.parse(await readFile(modelFile, "utf8")) as {
    modelTopology: object;
    trainingConfig?: tf.io.TrainingConfig;
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  };
  const weightSpecs = modelJson.weightsManifest.flatMap((group) => group.weights);
  const buffers = await Promise.all(
    modelJson.weightsManifest.flatMap((group) => group.paths).map((file) => readFile(path.join(dir, file))),
  );
  const joined = Buffer.concat(buffers);
  const weightData = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength);
  return tf.loadLayersModel(
    tf.io.fromMemory({ modelTopology: modelJson.modelTopology, trainingConfig: modelJson.trainingConfig, weightSpecs, weightData }),
  );
}
