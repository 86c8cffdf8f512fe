/**
 * npm run predict -- --model DIR [--json] FILES…
 *
 * Classifies pictures with a saved model. Each file is a PNG or JPEG (converted the way
 * lib/data/images.ts `imageFileTo28x28` documents: grey, fitted into 28×28, inverted when its
 * background is light) or an IDX images file (gzip'd or not; every image in it is answered).
 * An unreadable file is reported on stderr and the others still get answers; the exit code
 * is then 1.
 */
import { readFile } from "node:fs/promises";
import { initBackend, tf } from "../lib/accelerator";
import { parseCommandLine, runCommand, textTable, usageCheck, UsageError } from "../lib/tooling/cli";
import { requireOneOf } from "../lib/tooling/checks";
import { DATASET_NAMES, datasetSpec, readIdxFile } from "../lib/data/datasets";
import { imageFileTo28x28 } from "../lib/data/images";
import { argmaxRow } from "../lib/evaluation/metrics";
import { loadModel } from "../lib/models/persist";
import { resolveModelDir } from "../lib/training/records";
import { predictProbabilities } from "../lib/evaluation/predict";

const USAGE = `Usage: npm run predict -- --model DIR [options] FILE...

  --model DIR      a run folder (runs/NAME: its best model) or a folder with model.json
  --dataset NAME   class names of ${DATASET_NAMES.join(" or ")} (default: the run's dataset, else fashion)
  --json           print JSON for machines
  FILE...          PNG or JPEG pictures (any size or colour) or IDX image files`;

const SIDE = 28;

interface Answer {
  file: string;
  /** Position within an IDX file; absent for a picture. */
  index?: number;
  label?: number;
  className?: string;
  probability?: number;
  probabilities?: Record<string, number>;
  /** For pictures: how they were converted. */
  converted?: { originalWidth: number; originalHeight: number; inverted: boolean };
  error?: string;
}

/** Grey 28×28 images of one file, with what to report about each. */
async function readInputs(file: string): Promise<{ pixels: Uint8Array; count: number; converted?: Answer["converted"] }> {
  const contents = await readFile(file).catch((error: NodeJS.ErrnoException) => {
    throw new Error(error.code === "ENOENT" ? "no such file" : error.message);
  });
  const isGzip = contents[0] === 0x1f && contents[1] === 0x8b;
  const isIdx = contents.length >= 4 && contents.readUInt32BE(0) === 0x00000803;
  if (isGzip || isIdx) {
    const idx = await readIdxFile(file, "images", undefined, { title: "a 28×28 dataset", imageHeight: SIDE, imageWidth: SIDE });
    return { pixels: idx.values, count: idx.dims[0] };
  }
  const { pixels, originalWidth, originalHeight, inverted } = await imageFileTo28x28(contents, SIDE);
  return { pixels, count: 1, converted: { originalWidth, originalHeight, inverted } };
}

runCommand(USAGE, async () => {
  const { values, positionals } = parseCommandLine(
    { model: { type: "string" }, dataset: { type: "string" }, json: { type: "boolean", default: false } },
    process.argv.slice(2),
    true,
  );
  if (!values.model) throw new UsageError("--model DIR is required.");
  if (positionals.length === 0) throw new UsageError("Name at least one image or IDX file to classify.");
  const dataset = values.dataset === undefined ? undefined : usageCheck(() => requireOneOf(values.dataset!, DATASET_NAMES, "--dataset"));
  const { modelDir, record } = await resolveModelDir(values.model);
  const classNames = datasetSpec(dataset ?? record?.dataset.name ?? "fashion").classNames;
  await initBackend();
  const model = await loadModel(modelDir);

  const answers: Answer[] = [];
  for (const file of positionals) {
    try {
      const { pixels, count, converted } = await readInputs(file);
      const x = tf.tidy(() => tf.tensor4d(Float32Array.from(pixels, (v) => v / 255), [count, SIDE, SIDE, 1]));
      const probabilities = predictProbabilities(model, x);
      x.dispose();
      for (let i = 0; i < count; i++) {
        const label = argmaxRow(probabilities, i, classNames.length);
        const row = probabilities.subarray(i * classNames.length, (i + 1) * classNames.length);
        answers.push({
          file: file,
          ...(converted ? { converted } : { index: i }),
          label,
          className: classNames[label],
          probability: row[label],
          probabilities: Object.fromEntries(classNames.map((name, k) => [name, row[k]])),
        });
      }
    } catch (error) {
      answers.push({ file: file, error: (error as Error).message });
      process.stderr.write(`error: ${file}: ${(error as Error).message}\n`);
    }
  }
  model.dispose();
  const failed = answers.filter((a) => a.error).length;

  if (values.json) {
    process.stdout.write(JSON.stringify({ model: modelDir, answers }, null, 2) + "\n");
  } else {
    const rows = answers
      .filter((a) => !a.error)
      .map((a) => {
        const runnerUp = Object.entries(a.probabilities!).sort((x, y) => y[1] - x[1])[1];
        return [a.index === undefined ? a.file : `${a.file}[${a.index}]`, a.className!, a.probability!.toFixed(3), `${runnerUp[0]} ${runnerUp[1].toFixed(3)}`];
      });
    if (rows.length > 0) process.stdout.write(textTable(["file", "class", "probability", "runner-up"], rows) + "\n");
  }
  if (failed > 0) {
    process.stderr.write(`${failed} of ${positionals.length} file${positionals.length > 1 ? "s" : ""} could not be classified.\n`);
    process.exitCode = 1;
  }
});
