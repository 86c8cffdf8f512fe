/**
 * npm run tune -- [--space FILE.json] [--strategy random|grid|halving] [--trials N]
 *   [--epochs N] [--min-epochs N] [--eta N] [--budget 90m|60ep] [--study DIR] [--seed N]
 *   [--architecture capstone|same|double] [--jobs N]
 *   [--quick] [--json]
 *
 * Searches the tunable CNN's hyperparameters on Fashion-MNIST's validation split. Every
 * finished trial is appended to DIR/trials.jsonl; running the same command again resumes the
 * study (finished trials are read back, an interrupted one continues). At the end writes the
 * best configuration as DIR/best-model.json (a model config for `npm run train --model`) and
 * DIR/best.json (its parameters, score and the train command).
 */
import os from "node:os";
import path from "node:path";
import { describeBackend, initBackend } from "../lib/accelerator";
import { parseCommandLine, positiveInt, runCommand, shellCommand, textTable, usageCheck, UsageError } from "../lib/tooling/cli";
import { loadDataset } from "../lib/data/datasets";
import { writeJsonAtomic } from "../lib/models/persist";
import { progressText } from "../lib/display/study-report";
import { describeExit, runWorker } from "../lib/tooling/workers";
import {
  ARCHITECTURES,
  DEFAULT_SPACE,
  readSpace,
  runStudy,
  trainArguments,
  trainingTrialRunner,
  tunableModelConfig,
  validateStudy,
  type Architecture,
  type SearchSpace,
  type Strategy,
  type StudySpec,
  type TrialResult,
  type TrialRunner,
} from "../lib/training/tuning";

const USAGE = `Usage: npm run tune -- [options]

  --space FILE       a JSON search space (lib/training/tuning.ts ParamSpec per parameter); default: filters
                     per block, dense width, dropout and learning rate around the capstone CNN
  --strategy NAME    random (default), grid or halving (successive halving)
  --architecture A   the tunable CNN's layout: capstone (default; valid convolutions), same
                     ('same' convolutions pooled after every block, like cnn-bn3) or double
                     (the same with two convolutions per block)
  --trials N         configurations to draw (random, halving); default 12
  --epochs N         epochs per trial (grid, random); the last rung's epochs (halving); default 3
  --min-epochs N     halving: the first rung's epochs (default 1)
  --eta N            halving: keep 1/eta of the configurations per rung (default 3)
  --budget B         stop starting trials after B minutes ("90m") or B epochs in all ("60ep")
  --study DIR        the study folder (default studies/<strategy>-seed<seed>); rerun to resume
  --seed N           draws and the shared validation split (default 42)
  --jobs N           train up to N trials at once, each in its own process with its share of
                     the cores as wasm threads, all of them when it trains alone (default 1;
                     on 2 cores two single-thread processes did ~1.3× the work of one
                     two-thread process)
  --quick            2,000 training / 500 validation images per trial (CI)
  --json             print the study's outcome as JSON`;

function parseBudget(value: string | undefined): StudySpec["budget"] {
  if (value === undefined) return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*(m|min|ep|epochs)$/.exec(value.trim());
  if (!match) throw new Error(`--budget must look like 90m (minutes) or 60ep (epochs), got "${value}".`);
  const amount = Number(match[1]);
  if (!(amount > 0)) throw new Error(`--budget must be positive, got "${value}".`);
  if (match[2].startsWith("m")) return { minutes: amount };
  if (!Number.isInteger(amount)) throw new Error(`--budget in epochs must be a whole number, got "${value}".`);
  return { epochs: amount };
}

/** Trains each trial in a worker process (scripts/trial-worker.ts), relaying its progress lines. */
function processTrialRunner(spec: StudySpec, threadsFor: (concurrent: number) => number, log: (line: string) => void): TrialRunner {
  return async (trial) => {
    const exit = await runWorker({
      script: "scripts/trial-worker.ts",
      args: [JSON.stringify({ spec, trial })],
      threads: threadsFor(trial.concurrent),
      onStderrLine: (line) => {
        if (/^epoch \d+\//.test(line)) log(`    [${trial.key}] ${line}`);
      },
    });
    const last = exit.stdout.trim().split("\n").pop() ?? "";
    if (exit.code === 0 && last.startsWith("{")) return JSON.parse(last);
    throw new Error(`trial ${trial.key} failed in its process (${describeExit(exit)})`);
  };
}

const format = (value: number | string | boolean) => (typeof value === "number" && !Number.isInteger(value) ? value.toPrecision(3) : String(value));

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    {
      space: { type: "string" },
      strategy: { type: "string", default: "random" },
      architecture: { type: "string", default: "capstone" },
      trials: { type: "string" },
      epochs: { type: "string" },
      "min-epochs": { type: "string" },
      eta: { type: "string" },
      budget: { type: "string" },
      study: { type: "string" },
      seed: { type: "string", default: "42" },
      jobs: { type: "string", default: "1" },
      quick: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
    process.argv.slice(2),
  );
  const spaceFile = values.space;
  const space: SearchSpace = spaceFile
    ? await readSpace(spaceFile).catch((error: Error) => {
        throw new UsageError(`--space ${error.message}`);
      })
    : DEFAULT_SPACE;
  const spec: StudySpec = usageCheck(() => {
    const strategy = values.strategy as Strategy;
    if (!["random", "grid", "halving"].includes(strategy)) throw new Error(`--strategy must be random, grid or halving, got "${values.strategy}".`);
    const architecture = values.architecture as Architecture;
    if (!ARCHITECTURES.includes(architecture)) throw new Error(`--architecture must be one of ${ARCHITECTURES.join(", ")}, got "${values.architecture}".`);
    const seed = Number(values.seed);
    if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got "${values.seed}".`);
    const study: StudySpec = {
      name: values.study ? path.basename(values.study) : `${strategy}-seed${seed}`,
      space,
      strategy,
      seed,
      trials: strategy === "grid" ? undefined : positiveInt(values.trials, "--trials", 12),
      epochs: positiveInt(values.epochs, "--epochs", 3),
      minEpochs: strategy === "halving" ? positiveInt(values["min-epochs"], "--min-epochs", 1) : undefined,
      eta: strategy === "halving" ? positiveInt(values.eta, "--eta", 3) : undefined,
      budget: parseBudget(values.budget),
      // Left out for the default, so studies from before the option still resume.
      ...(architecture === "capstone" ? {} : { architecture }),
      validationFraction: 0.1,
      splitSeed: seed,
      quick: values.quick,
    };
    validateStudy(study);
    return study;
  });
  const jobs = usageCheck(() => positiveInt(values.jobs, "--jobs", 1));
  const studyDir = path.resolve(values.study ?? path.join("studies", spec.name));
  const log = (line: string) => process.stderr.write(line + "\n");
  const backend = await initBackend();
  log(`backend: ${describeBackend(backend)}`);
  // Each job's process loads the data itself.
  const data = jobs > 1 ? undefined : await loadDataset("fashion");
  log(`study ${studyDir}: ${spec.strategy} search, validation split ${spec.validationFraction} (seed ${spec.splitSeed})${spec.quick ? ", quick subsets" : ""}`);

  const cores = os.availableParallelism();
  // A trial's share of the cores: all of them for one that trains alone.
  const threadsFor = (concurrent: number) => Math.max(1, Math.floor(cores / concurrent));
  const threadsPerJob = threadsFor(jobs);
  const runner: TrialRunner =
    jobs > 1
      ? processTrialRunner(spec, threadsFor, log)
      : trainingTrialRunner(spec, data!, {
          onEpochEnd: (epoch, record) => log(`    epoch ${epoch.epoch + 1}/${record.options.epochs}: val acc ${epoch.valAccuracy.toFixed(4)} (${epoch.seconds.toFixed(1)} s)`),
        });
  if (jobs > 1) log(`${jobs} jobs, ${threadsPerJob} wasm thread${threadsPerJob > 1 ? "s" : ""} each (a trial training alone gets ${cores})`);
  const outcome = await runStudy(studyDir, spec, async (trial) => {
    const threads = jobs > 1 ? `, ${threadsFor(trial.concurrent)} thread${threadsFor(trial.concurrent) > 1 ? "s" : ""}` : "";
    log(`  trial ${trial.key}: ${Object.entries(trial.params).map(([k, v]) => `${k}=${format(v)}`).join(" ")}, ${trial.epochs} epochs${threads}`);
    return runner(trial);
  }, (p) => log(progressText(p)), { jobs });
  if (outcome.stoppedBy) log(`stopped by the budget (${outcome.stoppedBy === "budget-epochs" ? "epochs" : "minutes"}) after ${outcome.trials.length} trials`);

  const best = outcome.best;
  const bestModel = tunableModelConfig(best.params, `tuned-${spec.name}`, spec.architecture);
  await writeJsonAtomic(path.join(studyDir, "best-model.json"), bestModel);
  const command = shellCommand(["npm", "run", "train", "--", "--model", path.join(studyDir, "best-model.json"), ...trainArguments(best.params), "--epochs", String(best.epochs), "--schedule", "constant", "--seed", String(spec.splitSeed)]);
  await writeJsonAtomic(path.join(studyDir, "best.json"), { trial: best, trainCommand: command });

  if (values.json) {
    process.stdout.write(JSON.stringify({ study: studyDir, spec, trials: outcome.trials, best, stoppedBy: outcome.stoppedBy ?? null, trainCommand: command }, null, 2) + "\n");
    return;
  }
  const names = Object.keys(spec.space);
  const top: TrialResult[] = [...outcome.trials].sort((a, b) => b.epochs - a.epochs || b.valAccuracy - a.valAccuracy).slice(0, 10);
  process.stdout.write(
    textTable(["trial", "epochs", ...names, "val acc", "seconds"], top.map((t) => [t.key, t.epochs, ...names.map((n) => format(t.params[n as keyof typeof t.params])), t.valAccuracy.toFixed(4), t.seconds.toFixed(0)])) +
      `\n\nbest: ${best.key} (val acc ${best.valAccuracy.toFixed(4)} at ${best.epochs} epochs)\nmodel config: ${path.join(studyDir, "best-model.json")}\nretrain: ${command}\n`,
  );
});
