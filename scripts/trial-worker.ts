/**
 * Trains one tuning trial in its own process, for `npm run tune -- --jobs N` (not a command
 * for people). Argument: JSON { spec: StudySpec, trial: { key, params, epochs, dir, concurrent } };
 * the parent sets TFJS_WASM_THREADS to the trial's share of the cores.
 * Progress goes to stderr, one line per epoch; the result is the last line of stdout (JSON).
 * The parent holds an IPC channel open: when it goes, however it died, the worker stops (its
 * last finished epoch is committed; the next run of the study resumes the trial from there).
 */
import { initBackend } from "../lib/accelerator";
import { loadDataset } from "../lib/data/datasets";
import { trainingTrialRunner, type StudySpec, type TrialParams } from "../lib/training/tuning";
import { describeValidation } from "../lib/training/loop";

interface WorkerRequest {
  spec: StudySpec;
  trial: { key: string; params: TrialParams; epochs: number; dir: string; concurrent: number };
}

process.on("disconnect", () => {
  process.stderr.write("the study's process is gone; stopping this trial\n");
  process.exit(1);
});

async function main(): Promise<void> {
  if (process.argv.length !== 3) throw new Error("usage: trial-worker.ts '<JSON request>' (started by npm run tune --jobs)");
  const request = JSON.parse(process.argv[2]) as WorkerRequest;
  await initBackend();
  const data = await loadDataset("fashion");
  const runner = trainingTrialRunner(request.spec, data, {
    onEpochEnd: (epoch, record) => process.stderr.write(`epoch ${epoch.epoch + 1}/${record.options.epochs}: ${describeValidation(epoch)} (${epoch.seconds.toFixed(1)} s)\n`),
  });
  const result = await runner(request.trial);
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
