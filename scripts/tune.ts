/**
 * npm run tune -- [--space FILE.json] [--strategy random|grid|halving] [--trials N]
 *   [--epochs N] [--min-epochs N] [--eta N] [--budget 90m|60ep] [--study DIR] [--seed N]
 *   [--architecture capstone|same|double] [--jobs N]
 *   [--quick] [--json] [--report]
 * npm run tune -- --storage postgresql://USER@HOST/DB --study NAME [study options] --worker
 *
 * Searches the tunable CNN's hyperparameters on Fashion-MNIST's validation split. Every
 * finished trial is appended to DIR/trials.jsonl; running the same command again resumes the
 * study (finished trials are read back, an interrupted one continues). At the end writes the
 * best configuration as DIR/best-model.json (a model config for `npm run train --model`) and
 * DIR/best.json (its parameters, score and the train command). With --storage the study lives
 * in PostgreSQL and any number of workers, on any machines, train its trials.
 */
import os from "node:os";
import path from "node:path";
import { describeBackend, initBackend } from "../lib/accelerator";
import { parseCommandLine, positiveInt, runCommand, shellCommand, textTable, usageCheck, UsageError } from "../lib/tooling/cli";
import { requireOneOf } from "../lib/tooling/checks";
import { loadDataset } from "../lib/data/datasets";
import { writeJsonAtomic } from "../lib/models/persist";
import { progressText } from "../lib/display/study-report";
import { describeExit, runWorker } from "../lib/tooling/workers";
import { PostgresStudyStore, workerName, type ClaimedTrial, type StoredStudy } from "../lib/training/postgres-store";
import { runStudyWorker } from "../lib/training/study-worker";
import { loadDeclarations, declaration, parseProfile, storedStudyName, studyDir as declaredStudyDir, studySpecOf } from "../lib/training/declarations";
import { describeValidation } from "../lib/training/loop";
import { bestByValidation } from "../lib/evaluation/selection";
import { PROJECT_ROOT } from "../lib/tooling/paths";
import {
  ARCHITECTURES,
  DEFAULT_SPACE,
  readSpace,
  readTrials,
  runStudy,
  studyBest,
  trainArguments,
  trainingTrialRunner,
  tunableModelConfig,
  STRATEGIES,
  validateStudy,
  type SearchSpace,
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
  --experiment NAME  the study a declaration in experiments/ makes (its options; --profile
                     quick|standard|extended, default standard), instead of the options above
  --report           print the study's trials, best so far and choice, training nothing
  --json             print the study's outcome as JSON

Many machines (the study in PostgreSQL; the password from the URL or PGPASSWORD, never printed):
  --storage URL      postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE; --study then names the study
  --worker           join the study (create it when its options are given and it does not exist)
                     and train its trials until it is finished; start one per core, on any machine
  --work-dir DIR     where this worker keeps its trials' training folders (default studies/NAME)
  --heartbeat-timeout S  a trial whose worker was silent this long is re-queued (default 120)
  --reconnect-timeout S  how long a worker waits for a database that went away (default 300)`;

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

/** The options that define a study; any of them given means "this study" rather than "join whichever exists". */
const STUDY_OPTIONS = ["space", "strategy", "architecture", "trials", "epochs", "min-epochs", "eta", "budget", "seed", "quick"] as const;

/** The command line's options, as parseArgs reads them. */
const OPTIONS = {
  space: { type: "string" },
  strategy: { type: "string" },
  architecture: { type: "string" },
  trials: { type: "string" },
  epochs: { type: "string" },
  "min-epochs": { type: "string" },
  eta: { type: "string" },
  budget: { type: "string" },
  study: { type: "string" },
  seed: { type: "string" },
  jobs: { type: "string" },
  quick: { type: "boolean" },
  json: { type: "boolean", default: false },
  report: { type: "boolean", default: false },
  experiment: { type: "string" },
  profile: { type: "string" },
  storage: { type: "string" },
  worker: { type: "boolean", default: false },
  "work-dir": { type: "string" },
  "heartbeat-timeout": { type: "string" },
  "reconnect-timeout": { type: "string" },
} as const;
type Values = ReturnType<typeof parseCommandLine<typeof OPTIONS>>["values"];

async function specFromOptions(values: Values, studyName: string | undefined): Promise<StudySpec> {
  const spaceFile = values.space;
  const space: SearchSpace = spaceFile
    ? await readSpace(spaceFile).catch((error: Error) => {
        throw new UsageError(`--space ${error.message}`);
      })
    : DEFAULT_SPACE;
  return usageCheck(() => {
    const strategy = requireOneOf(values.strategy ?? "random", STRATEGIES, "--strategy");
    const architecture = requireOneOf(values.architecture ?? "capstone", ARCHITECTURES, "--architecture");
    const seed = Number(values.seed ?? "42");
    if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got "${values.seed}".`);
    const study: StudySpec = {
      name: studyName ? path.basename(studyName) : `${strategy}-seed${seed}`,
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
      quick: values.quick === true,
    };
    validateStudy(study);
    return study;
  });
}

/**
 * A declared study's spec and its names (the folder for files, the study name in a database),
 * when --experiment names one; its options then come from the declaration alone.
 */
async function declaredStudy(values: Values) {
  if (values.experiment === undefined) {
    if (values.profile !== undefined) throw new UsageError("--profile goes with --experiment NAME.");
    return undefined;
  }
  if (STUDY_OPTIONS.some((option) => values[option] !== undefined) || values.study !== undefined) {
    throw new UsageError("--experiment takes the study's options and name from its declaration; leave out --study, --strategy, --trials and the like.");
  }
  const name = values.experiment;
  const profile = usageCheck(() => parseProfile(values.profile ?? "standard"));
  const d = usageCheck(() => declaration(name, loadDeclarations()));
  if (d.kind !== "study") throw new UsageError(`--experiment ${name} is ${d.kind === "run" ? "a run" : "an ensemble"}, not a study; train it with npm run train -- --experiment ${name}.`);
  const spec = studySpecOf(d, profile, await readSpace(path.resolve(PROJECT_ROOT, d.space)));
  return { spec, dir: declaredStudyDir(name, profile), storedName: storedStudyName(name, profile) };
}

/** The trials in the strategy's order with the best so far, the choice and how to retrain it. */
function printReport(spec: StudySpec, trials: TrialResult[], state: string, best: TrialResult | undefined, command: string | undefined): void {
  const names = Object.keys(spec.space);
  const ordered = [...trials].sort((a, b) => a.index - b.index);
  const rows = ordered.map((t, i) => {
    const bestSoFar = bestByValidation(ordered.slice(0, i + 1), (x) => x)!;
    return [t.index, t.key, t.rung, t.epochs, ...names.map((n) => format(t.params[n as keyof typeof t.params])), t.valAccuracy.toFixed(4), bestSoFar.valAccuracy.toFixed(4), t.seconds.toFixed(0)];
  });
  process.stdout.write(
    `${state}\n\n` + textTable(["#", "trial", "rung", "epochs", ...names, "val acc", "best so far", "seconds"], rows) +
      (best ? `\n\nbest: ${best.key} (val acc ${best.valAccuracy.toFixed(4)} at ${best.epochs} epochs): ${names.map((n) => `${n}=${format(best.params[n as keyof typeof best.params])}`).join(" ")}\nretrain: ${command}\n` : "\n"),
  );
}

/** Writes the choice's model config and best.json in dir; returns the command that retrains it. */
async function saveChoice(dir: string, spec: StudySpec, best: TrialResult): Promise<string> {
  const modelFile = path.join(dir, "best-model.json");
  await writeJsonAtomic(modelFile, tunableModelConfig(best.params, `tuned-${spec.name}`, spec.architecture));
  const command = shellCommand(["npm", "run", "train", "--", "--model", modelFile, ...trainArguments(best.params), "--epochs", String(best.epochs), "--schedule", "constant", "--seed", String(spec.splitSeed)]);
  await writeJsonAtomic(path.join(dir, "best.json"), { trial: best, trainCommand: command });
  return command;
}

/** --storage: a worker (or a report) of a study in PostgreSQL. */
async function storageCommand(url: string, values: Values, log: (line: string) => void): Promise<void> {
  if (values.jobs !== undefined) throw new UsageError("--jobs is for a study in files; with --storage start one worker per core (each with --worker), on as many machines as you like.");
  const declared = await declaredStudy(values);
  const given = STUDY_OPTIONS.some((option) => values[option] !== undefined);
  const name = declared?.storedName ?? values.study;
  if (!name) throw new UsageError("--storage needs --study NAME (or --experiment NAME): the study's name in the database.");
  const spec = declared?.spec ?? (given ? await specFromOptions(values, name) : undefined);
  const seconds = (flag: "heartbeat-timeout" | "reconnect-timeout", fallback: number) => {
    const value = values[flag] === undefined ? fallback : Number(values[flag]);
    if (!(value > 0)) throw new UsageError(`--${flag} must be a positive number of seconds, got "${values[flag]}".`);
    return value;
  };
  const staleSeconds = seconds("heartbeat-timeout", 120);
  const reconnectSeconds = seconds("reconnect-timeout", 300);
  const store = await PostgresStudyStore.open(url);
  try {
    if (values.report) {
      const stored = await store.readStudy(name);
      if (!stored) {
        const names = await store.studyNames();
        throw new Error(`No study "${name}" in ${store.location}${names.length ? `; it has ${names.join(", ")}` : ""}.`);
      }
      await reportStored(stored, store, values);
      return;
    }
    const study = await store.openStudy(name, spec);
    log(`study "${name}" in ${store.location} (${study.created ? "created" : "joined"}): ${study.spec.strategy} search, validation split ${study.spec.validationFraction} (seed ${study.spec.splitSeed})${study.spec.quick ? ", quick subsets" : ""}`);
    const backend = await initBackend();
    log(`backend: ${describeBackend(backend)}`);
    const data = await loadDataset("fashion");
    const worker = workerName();
    const workDir = path.resolve(values["work-dir"] ?? declared?.dir ?? path.join("studies", name));
    const runner = trainingTrialRunner(study.spec, data, {
      onEpochEnd: (epoch, record) => log(`    epoch ${epoch.epoch + 1}/${record.options.epochs}: ${describeValidation(epoch)} (${epoch.seconds.toFixed(1)} s)`),
    });
    log(`worker ${worker}: training in ${workDir}`);
    // Stopped by Ctrl-C or a TERM signal: the trial in hand goes back to the queue at once (its
    // finished epochs stay in its folder, for this machine to resume).
    let current: ClaimedTrial | undefined;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      process.once(signal, () => {
        log(`worker ${worker}: stopped by ${signal}${current ? `; trial ${current.key} goes back to the queue` : ""}`);
        const release = current ? store.release(current, worker).catch(() => undefined) : Promise.resolve();
        void release.finally(() => process.exit(signal === "SIGINT" ? 130 : 143));
      });
    }
    const outcome = await runStudyWorker(store, { id: study.id, name, spec: study.spec }, async (trial) => {
      log(`  trial ${trial.key}: ${Object.entries(trial.params).map(([k, v]) => `${k}=${format(v)}`).join(" ")}, ${trial.epochs} epochs`);
      return runner(trial);
    }, {
      worker, workDir, staleSeconds, reconnectSeconds,
      heartbeatSeconds: Math.max(1, staleSeconds / 6),
      pollSeconds: Math.min(5, staleSeconds / 4),
      log,
      onClaim: (trial) => (current = trial),
      onTrial: (t) => log(`  trial ${t.key} done: val acc ${t.valAccuracy.toFixed(4)} after ${t.epochs} epochs (${t.seconds.toFixed(0)} s)`),
    });
    await store.saveBestModel(study.id, tunableModelConfig(outcome.best.params, `tuned-${study.spec.name}`, study.spec.architecture));
    log(`worker ${worker}: the study is finished; this worker trained ${outcome.trained.length} trial${outcome.trained.length === 1 ? "" : "s"}`);
    await reportStored((await store.readStudy(name))!, store, { ...values, "work-dir": workDir });
  } finally {
    await store.close();
  }
}

async function reportStored(stored: StoredStudy, store: PostgresStudyStore, values: Values): Promise<void> {
  const best = stored.best ?? (stored.trials.length > 0 ? studyBest(stored.trials) : undefined);
  // The choice's model config and retrain command, written where this machine can use them.
  const command = best ? await saveChoice(path.resolve(values["work-dir"] ?? path.join("studies", stored.name)), stored.spec, best) : undefined;
  if (values.json) {
    process.stdout.write(JSON.stringify({ study: stored.name, storage: store.location, spec: stored.spec, finished: stored.finished, planned: stored.planned, running: stored.running, trials: stored.trials, best: best ?? null, trainCommand: command ?? null }, null, 2) + "\n");
    return;
  }
  const requeued = [...stored.attempts.values()].filter((n) => n > 1).length;
  const state = `study "${stored.name}" in ${store.location}: ${stored.trials.length} of ${stored.planned} trials finished${stored.running.length ? `, ${stored.running.length} running (${stored.running.map((r) => r.worker).join(", ")})` : ""}${requeued ? `, ${requeued} re-queued after a lost worker` : ""}${stored.finished ? "; finished" : ""}`;
  printReport(stored.spec, stored.trials, state, best, command);
}

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(OPTIONS, process.argv.slice(2));
  const log = (line: string) => process.stderr.write(line + "\n");
  if (values.storage !== undefined) {
    await storageCommand(values.storage, values, log);
    return;
  }
  for (const flag of ["worker", "work-dir", "heartbeat-timeout", "reconnect-timeout"] as const) {
    if (values[flag] !== undefined && values[flag] !== false) throw new UsageError(`--${flag} is for a study in PostgreSQL: give --storage URL too.`);
  }
  const declared = await declaredStudy(values);
  const spec = declared?.spec ?? (await specFromOptions(values, values.study));
  const studyDir = declared?.dir ?? path.resolve(values.study ?? path.join("studies", spec.name));
  if (values.report) {
    const trials = await readTrials(studyDir);
    if (trials.length === 0) throw new Error(`${studyDir}: no finished trial yet.`);
    const best = studyBest(trials);
    printReport(spec, trials, `study ${studyDir}: ${trials.length} trials finished`, best, await saveChoice(studyDir, spec, best));
    return;
  }
  const jobs = usageCheck(() => positiveInt(values.jobs, "--jobs", 1));
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
          onEpochEnd: (epoch, record) => log(`    epoch ${epoch.epoch + 1}/${record.options.epochs}: ${describeValidation(epoch)} (${epoch.seconds.toFixed(1)} s)`),
        });
  if (jobs > 1) log(`${jobs} jobs, ${threadsPerJob} wasm thread${threadsPerJob > 1 ? "s" : ""} each (a trial training alone gets ${cores})`);
  const outcome = await runStudy(studyDir, spec, async (trial) => {
    const threads = jobs > 1 ? `, ${threadsFor(trial.concurrent)} thread${threadsFor(trial.concurrent) > 1 ? "s" : ""}` : "";
    log(`  trial ${trial.key}: ${Object.entries(trial.params).map(([k, v]) => `${k}=${format(v)}`).join(" ")}, ${trial.epochs} epochs${threads}`);
    return runner(trial);
  }, (p) => log(progressText(p)), { jobs });
  if (outcome.stoppedBy) log(`stopped by the budget (${outcome.stoppedBy === "budget-epochs" ? "epochs" : "minutes"}) after ${outcome.trials.length} trials`);

  const best = outcome.best;
  const command = await saveChoice(studyDir, spec, best);
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
