/**
 * Hyperparameter search: a typed search space over a tunable CNN and its training options,
 * grid / random / successive-halving strategies, and a study file that makes a study
 * resumable (finished trials are read back, never re-run). Trials are scored on the
 * validation split only; the test split is not touched.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { STANDARD_AUGMENTATION } from "../data/augment";
import type { Dataset } from "../data/datasets";
import { ensureRun, type RunHooks } from "./run";
import { withLock } from "../tooling/lock";
import { bestByValidation, rankByValidation } from "../evaluation/selection";
import { convNet, type ModelConfig } from "../models/builder";
import { canonicalJson, writeFileAtomic, writeJsonAtomic } from "../models/persist";
import { seededRandom } from "../tooling/random";
import { requireOneOf, requirePositiveInt } from "../tooling/checks";

// ---------------------------------------------------------------------------------------
// Search space

export type ParamValue = number | string | boolean;

export type ParamSpec =
  | { kind: "choice"; values: ParamValue[] }
  | { kind: "int"; low: number; high: number; step?: number }
  | { kind: "float"; low: number; high: number }
  | { kind: "logUniform"; low: number; high: number };

/** The knobs a trial understands, with the value used when a space leaves one out. */
export const TUNABLE_DEFAULTS = {
  filters1: 32,
  filters2: 64,
  filters3: 128,
  dense: 128,
  dropout: 0.2,
  l2: 0,
  batchNorm: false,
  learningRate: 0.001,
  batchSize: 128,
  augment: false,
};

export type TunableName = keyof typeof TUNABLE_DEFAULTS;
export type SearchSpace = Partial<Record<TunableName, ParamSpec>>;
export type TrialParams = typeof TUNABLE_DEFAULTS;

const TUNABLE_NAMES = Object.keys(TUNABLE_DEFAULTS) as TunableName[];

function checkValueType(name: TunableName, value: ParamValue): void {
  const expected = typeof TUNABLE_DEFAULTS[name];
  if (typeof value !== expected) throw new Error(`${name}: ${JSON.stringify(value)} is not a ${expected}.`);
}

/** The legal values of each numeric parameter: [low, high] with open or closed ends, integer or not. */
const DOMAINS: Partial<Record<TunableName, { low: number; high: number; lowOpen: boolean; highOpen: boolean; integer: boolean }>> = {
  filters1: { low: 1, high: Infinity, lowOpen: false, highOpen: true, integer: true },
  filters2: { low: 1, high: Infinity, lowOpen: false, highOpen: true, integer: true },
  filters3: { low: 1, high: Infinity, lowOpen: false, highOpen: true, integer: true },
  dense: { low: 1, high: Infinity, lowOpen: false, highOpen: true, integer: true },
  batchSize: { low: 1, high: Infinity, lowOpen: false, highOpen: true, integer: true },
  dropout: { low: 0, high: 1, lowOpen: false, highOpen: true, integer: false },
  l2: { low: 0, high: Infinity, lowOpen: false, highOpen: true, integer: false },
  learningRate: { low: 0, high: 1, lowOpen: true, highOpen: true, integer: false },
};

function domainText(name: TunableName): string {
  const d = DOMAINS[name]!;
  return `${d.lowOpen ? "(" : "["}${d.low}, ${d.high === Infinity ? "∞" : d.high}${d.highOpen ? ")" : "]"}`;
}

function inDomain(name: TunableName, value: number): boolean {
  const d = DOMAINS[name];
  if (!d) return true;
  if (d.integer && !Number.isInteger(value)) return false;
  return (d.lowOpen ? value > d.low : value >= d.low) && (d.highOpen ? value < d.high : value <= d.high);
}

/** Checks a space (e.g. read from JSON); every problem is an error naming the parameter. */
export function validateSpace(space: SearchSpace): SearchSpace {
  if (typeof space !== "object" || space === null || Array.isArray(space)) throw new Error("A search space must be an object of parameters.");
  const names = Object.keys(space);
  if (names.length === 0) throw new Error("The search space is empty: declare at least one parameter.");
  for (const name of names) {
    if (!(TUNABLE_NAMES as string[]).includes(name)) throw new Error(`Unknown parameter "${name}"; tunable: ${TUNABLE_NAMES.join(", ")}.`);
    const spec = space[name as TunableName]!;
    const where = `${name}`;
    switch (spec.kind) {
      case "choice":
        if (!Array.isArray(spec.values) || spec.values.length === 0) throw new Error(`${where}: a choice needs at least one value.`);
        spec.values.forEach((v) => {
          checkValueType(name as TunableName, v);
          if (typeof v === "number" && !inDomain(name as TunableName, v)) throw new Error(`${where}: ${v} is outside ${domainText(name as TunableName)}.`);
        });
        break;
      case "int":
      case "float":
      case "logUniform": {
        if (typeof TUNABLE_DEFAULTS[name as TunableName] !== "number") throw new Error(`${where}: ${spec.kind} ranges need a numeric parameter; use a choice.`);
        if (!Number.isFinite(spec.low) || !Number.isFinite(spec.high)) throw new Error(`${where}: low and high must be numbers.`);
        if (spec.low > spec.high) throw new Error(`${where}: low ${spec.low} is above high ${spec.high}.`);
        if (spec.kind === "int") {
          if (!Number.isInteger(spec.low) || !Number.isInteger(spec.high)) throw new Error(`${where}: an int range needs integer bounds.`);
          if (spec.step !== undefined && (!Number.isInteger(spec.step) || spec.step < 1)) throw new Error(`${where}: step must be a positive integer.`);
        }
        if (spec.kind === "logUniform" && spec.low <= 0) throw new Error(`${where}: a log-uniform range needs low > 0, got ${spec.low}.`);
        const domain = DOMAINS[name as TunableName];
        if (domain?.integer && spec.kind !== "int") throw new Error(`${where}: ${name} takes whole numbers; use an int range or a choice.`);
        if (domain && (!inDomain(name as TunableName, spec.low) || !inDomain(name as TunableName, spec.high))) {
          throw new Error(`${where}: the range ${spec.low}–${spec.high} leaves ${domainText(name as TunableName)}.`);
        }
        break;
      }
      default:
        throw new Error(`${where}: unknown kind "${(spec as { kind: string }).kind}" (choice, int, float, logUniform).`);
    }
  }
  return space;
}

/** Reads and validates a search space from a JSON file (e.g. `spaces/*.json`). */
export async function readSpace(file: string): Promise<SearchSpace> {
  if (!existsSync(file)) throw new Error(`${file}: no such file.`);
  let space: SearchSpace;
  try {
    space = JSON.parse(await readFile(file, "utf8")) as SearchSpace;
  } catch (error) {
    throw new Error(`${file}: not JSON (${(error as Error).message}).`);
  }
  try {
    return validateSpace(space);
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`);
  }
}

/** All parameter settings of a space whose parameters are choices or int ranges, in order. */
export function gridPoints(space: SearchSpace): Partial<TrialParams>[] {
  validateSpace(space);
  const axes = Object.entries(space).map(([name, spec]) => {
    if (spec!.kind === "choice") return { name, values: spec!.values };
    if (spec!.kind === "int") {
      const values: number[] = [];
      for (let v = spec!.low; v <= spec!.high; v += spec!.step ?? 1) values.push(v);
      return { name, values };
    }
    throw new Error(`Grid search needs choice or int parameters; ${name} is a ${spec!.kind} range.`);
  });
  let points: Record<string, ParamValue>[] = [{}];
  for (const axis of axes) points = points.flatMap((point) => axis.values.map((value) => ({ ...point, [axis.name]: value })));
  return points as Partial<TrialParams>[];
}

/** n settings drawn at random from the space, reproducibly for a seed. */
export function randomPoints(space: SearchSpace, n: number, seed: number): Partial<TrialParams>[] {
  validateSpace(space);
  requirePositiveInt(n, "The number of trials");
  const random = seededRandom(seed);
  return Array.from({ length: n }, () => {
    const point: Record<string, ParamValue> = {};
    for (const [name, spec] of Object.entries(space)) {
      switch (spec!.kind) {
        case "choice":
          point[name] = spec!.values[Math.floor(random() * spec!.values.length)];
          break;
        case "int": {
          const step = spec!.step ?? 1;
          const count = Math.floor((spec!.high - spec!.low) / step) + 1;
          point[name] = spec!.low + step * Math.floor(random() * count);
          break;
        }
        case "float":
          point[name] = spec!.low + (spec!.high - spec!.low) * random();
          break;
        case "logUniform":
          point[name] = Math.exp(Math.log(spec!.low) + (Math.log(spec!.high) - Math.log(spec!.low)) * random());
          break;
      }
    }
    return point as Partial<TrialParams>;
  });
}

/**
 * The search this project runs by default: conv widths, dense width, dropout and learning
 * rate around the capstone CNN (whose values are all inside the space).
 */
export const DEFAULT_SPACE: SearchSpace = {
  filters1: { kind: "choice", values: [16, 32, 48] },
  filters2: { kind: "choice", values: [32, 64, 96] },
  filters3: { kind: "choice", values: [64, 128, 192] },
  dense: { kind: "choice", values: [64, 128, 256] },
  dropout: { kind: "float", low: 0.1, high: 0.45 },
  learningRate: { kind: "logUniform", low: 3e-4, high: 3e-3 },
};

export function withDefaults(point: Partial<TrialParams>): TrialParams {
  return { ...TUNABLE_DEFAULTS, ...point };
}

// ---------------------------------------------------------------------------------------
// The tunable model

/**
 * The tunable network's layout. `capstone`: the capstone CNN's valid convolutions, pooled after
 * the first two (28 → 26 → 13 → 11 → 5 → 3). `same`: 'same' convolutions pooled after every
 * block (28 → 14 → 7 → 3), the layout of this project's stronger CNN `cnn-bn3`. `double`: the
 * same with two convolutions per block (VGG-style, as `cnn-bn-wide`), twice the depth.
 */
export type Architecture = "capstone" | "same" | "double";
export const ARCHITECTURES: readonly Architecture[] = ["capstone", "same", "double"];

/**
 * A CNN with its widths, dropout, L2 and batch norm as parameters (`double`: each conv twice): conv(f1) → pool → dropout →
 * conv(f2) → pool → dropout → conv(f3) → [pool, `same` only] → dropout → flatten → dense(d) →
 * dropout → softmax; with batchNorm, each conv and the dense layer are followed by batch
 * normalisation before their relu.
 */
export function tunableModelConfig(params: TrialParams, name = "tuned-cnn", architecture: Architecture = "capstone"): ModelConfig {
  if (!ARCHITECTURES.includes(architecture)) throw new Error(`Unknown architecture "${architecture}"; known: ${ARCHITECTURES.join(", ")}.`);
  const same = architecture !== "capstone";
  const convsPerBlock = architecture === "double" ? 2 : 1;
  const filters = [params.filters1, params.filters2, params.filters3];
  return convNet(
    name,
    `Tunable CNN${same ? ` (${convsPerBlock === 2 ? "two " : ""}'same' convolutions${convsPerBlock === 2 ? " per block" : ""}, pooled after each block)` : ""}: conv ${filters.join("/")}, dense ${params.dense}, dropout ${params.dropout}` +
      `${params.l2 > 0 ? `, L2 ${params.l2}` : ""}${params.batchNorm ? ", batch norm" : ""}`,
    {
      padding: same ? "same" : "valid",
      convsPerBlock,
      // The capstone layout pools after its first two blocks only (28 → 26 → 13 → 11 → 5 → 3).
      blocks: filters.map((f, i) => ({ filters: f, pool: same || i < 2 ? 2 : null, dropout: params.dropout })),
      batchNorm: params.batchNorm,
      l2: params.l2,
      hidden: { units: params.dense, dropout: params.dropout },
      outputL2: 0,
    },
  );
}

/** How `npm run train` reproduces a trial's training options. */
export function trainArguments(params: TrialParams): string[] {
  return ["--lr", String(params.learningRate), "--batch-size", String(params.batchSize), ...(params.augment ? ["--augment", "standard"] : [])];
}

export const augmentationFor = (params: TrialParams) => (params.augment ? STANDARD_AUGMENTATION : null);

// ---------------------------------------------------------------------------------------
// Strategies

export interface Rung {
  /** How many configurations train in this rung. */
  configs: number;
  epochs: number;
}

/**
 * Successive halving: `configs` settings train `minEpochs`; the best 1/eta go on to train
 * eta times longer, and so on while the epochs stay within maxEpochs and more than one
 * configuration is left.
 */
export function halvingPlan(configs: number, minEpochs: number, maxEpochs: number, eta = 3): Rung[] {
  requirePositiveInt(configs, "configs");
  requirePositiveInt(minEpochs, "minEpochs");
  if (!Number.isInteger(maxEpochs) || maxEpochs < minEpochs) throw new Error(`maxEpochs must be an integer ≥ minEpochs (${minEpochs}), got ${maxEpochs}.`);
  if (!Number.isInteger(eta) || eta < 2) throw new Error(`eta must be an integer ≥ 2, got ${eta}.`);
  const rungs: Rung[] = [{ configs, epochs: minEpochs }];
  for (;;) {
    const last = rungs[rungs.length - 1];
    const survivors = Math.floor(last.configs / eta);
    const epochs = Math.min(maxEpochs, last.epochs * eta);
    if (survivors < 1 || last.epochs >= maxEpochs) break;
    rungs.push({ configs: survivors, epochs });
  }
  return rungs;
}

// ---------------------------------------------------------------------------------------
// Studies

export const STRATEGIES = ["grid", "random", "halving"] as const;
export type Strategy = (typeof STRATEGIES)[number];

export interface StudySpec {
  name: string;
  space: SearchSpace;
  strategy: Strategy;
  seed: number;
  /** random/halving: configurations to draw. */
  trials?: number;
  /** grid/random: epochs per trial; halving: the last rung's epochs. */
  epochs: number;
  /** halving: the first rung's epochs and the reduction factor. */
  minEpochs?: number;
  eta?: number;
  /** Stop starting trials once this many epochs (sum over trials) or minutes are spent. */
  budget?: { epochs?: number; minutes?: number };
  /** The tunable network's layout (default capstone; left out of the study file then). */
  architecture?: Architecture;
  /** Shared by every trial: the validation split and quick (subset) mode. */
  validationFraction: number;
  splitSeed: number;
  quick: boolean;
}

export interface TrialResult {
  /** Identifies the trial: a hash of its parameters and epochs. */
  key: string;
  /** 0-based position in the strategy's order, and its rung (0 for grid/random). */
  index: number;
  rung: number;
  params: TrialParams;
  epochs: number;
  valAccuracy: number;
  valLoss: number;
  bestEpoch: number;
  seconds: number;
  backend: string;
  finishedAt: string;
}

/**
 * Trains one trial. `concurrent` is how many trials of the study train at the same time as this
 * one starts, itself included (at most the job count): a runner can give the trial that share
 * of the cores, e.g. all of them to a rung's last trial when nothing else is left to train.
 */
export type TrialRunner = (trial: { key: string; params: TrialParams; epochs: number; dir: string; concurrent: number }) => Promise<Omit<TrialResult, "key" | "index" | "rung" | "params" | "epochs" | "finishedAt">>;

export const STUDY_FILE = "study.json";
export const TRIALS_FILE = "trials.jsonl";

export function trialKey(params: TrialParams, epochs: number): string {
  const sorted = Object.fromEntries(Object.entries(params).sort(([a], [b]) => (a < b ? -1 : 1)));
  return createHash("sha256").update(JSON.stringify({ params: sorted, epochs })).digest("hex").slice(0, 12);
}

export async function readTrials(studyDir: string): Promise<TrialResult[]> {
  const file = path.join(studyDir, TRIALS_FILE);
  if (!existsSync(file)) return [];
  const lines = (await readFile(file, "utf8")).split("\n").filter((line) => line.trim() !== "");
  return lines.map((line, i) => {
    try {
      return JSON.parse(line) as TrialResult;
    } catch (error) {
      throw new Error(`${file} line ${i + 1} is not a trial record: ${(error as Error).message}`);
    }
  });
}

/** Appends one finished trial: the whole file is rewritten through a temporary file and a rename. */
async function appendTrial(studyDir: string, trial: TrialResult): Promise<void> {
  const file = path.join(studyDir, TRIALS_FILE);
  const before = existsSync(file) ? await readFile(file, "utf8") : "";
  await writeFileAtomic(file, before + JSON.stringify(trial) + "\n");
}

export function validateStudy(spec: StudySpec): void {
  validateSpace(spec.space);
  const positive = (value: number | undefined, what: string) => {
    if (value !== undefined) requirePositiveInt(value, what);
  };
  requireOneOf(spec.strategy, STRATEGIES, "strategy");
  if (spec.architecture !== undefined) requireOneOf(spec.architecture, ARCHITECTURES, "architecture");
  positive(spec.epochs, "epochs");
  positive(spec.trials, "trials");
  positive(spec.minEpochs, "minEpochs");
  if (spec.strategy !== "grid" && spec.trials === undefined) throw new Error(`The ${spec.strategy} strategy needs a number of trials.`);
  if (spec.budget?.epochs !== undefined) positive(spec.budget.epochs, "budget epochs");
  if (spec.budget?.minutes !== undefined && !(spec.budget.minutes > 0)) throw new Error(`budget minutes must be positive, got ${spec.budget.minutes}.`);
}

export interface StudyProgress {
  trial: TrialResult;
  done: number;
  planned: number;
  best: TrialResult;
  /** Seconds left: the plan's remaining trial-epochs at the seconds per epoch measured so far, shared by the jobs. */
  etaSeconds: number;
  reused: boolean;
}

export interface StudyOutcome {
  trials: TrialResult[];
  best: TrialResult;
  /** Why the study stopped before its plan was done, if it did. */
  stoppedBy?: "budget-epochs" | "budget-minutes";
}

/**
 * Runs (or resumes) a study in studyDir. Trials already in the study file are read back and
 * not re-run; the study file must describe the same study. `runTrial` trains one trial in its
 * own folder (an interrupted trial's folder is handed to it again). With `jobs` > 1, up to that
 * many trials of a rung train at once (the runner must then train out of process, as
 * `npm run tune --jobs` does: one JavaScript thread cannot train two models at once); the
 * outcome is the same as with one job.
 */
export async function runStudy(
  studyDir: string,
  spec: StudySpec,
  runTrial: TrialRunner,
  onProgress?: (progress: StudyProgress) => void,
  options: { jobs?: number } = {},
): Promise<StudyOutcome> {
  validateStudy(spec);
  const jobs = options.jobs ?? 1;
  requirePositiveInt(jobs, "jobs");
  // Everything the plan needs is computed (and checked) before the study folder is written.
  const { points, rungs } = studyPlan(spec);
  return withLock(studyDir, "study", async () => {
    await openStudyFolder(studyDir, spec);
    const runner = new StudyRunner(studyDir, spec, runTrial, jobs, new Map((await readTrials(studyDir)).map((t) => [t.key, t])), rungs, onProgress);
    let candidates = points;
    let firstIndex = 0;
    for (const [rungIndex, rung] of rungs.entries()) {
      const configs = candidates.slice(0, rung.configs);
      const rungResults = await runner.runRung(rungIndex, rung, configs, firstIndex);
      firstIndex += configs.length;
      if (runner.stoppedBy) break;
      candidates = promoted(rungResults);
    }
    // Trials in the strategy's order, whatever order parallel jobs finished them in.
    const results = [...runner.results].sort((a, b) => a.index - b.index);
    if (results.length === 0) throw new Error("The budget allowed no trial to run.");
    return { trials: results, best: studyBest(results), stoppedBy: runner.stoppedBy };
  });
}

/** A study's configurations in the strategy's order and its rungs (one rung for grid and random). */
export function studyPlan(spec: StudySpec): { points: TrialParams[]; rungs: Rung[] } {
  const points = spec.strategy === "grid" ? gridPoints(spec.space) : randomPoints(spec.space, spec.trials!, spec.seed);
  const rungs = spec.strategy === "halving" ? halvingPlan(points.length, spec.minEpochs ?? 1, spec.epochs, spec.eta ?? 3) : [{ configs: points.length, epochs: spec.epochs }];
  return { points: points.map(withDefaults), rungs };
}

/**
 * The configurations a finished rung sends on, best first by the selection rule (ties keep the
 * earlier trial); the next rung takes as many from the front as it trains.
 */
export function promoted(rungResults: TrialResult[]): TrialParams[] {
  return rankByValidation([...rungResults].sort((a, b) => a.index - b.index), (t) => t).map((t) => t.params);
}

/** A study's choice: the best trial by the selection rule among those trained longest. */
export function studyBest(results: TrialResult[]): TrialResult {
  const ordered = [...results].sort((a, b) => a.index - b.index);
  const longest = Math.max(...ordered.map((t) => t.epochs));
  return bestByValidation(ordered.filter((t) => t.epochs === longest), (t) => t)!;
}

/** Writes the study file of a new study, or checks that the folder holds this same study. */
async function openStudyFolder(studyDir: string, spec: StudySpec): Promise<void> {
  const specFile = path.join(studyDir, STUDY_FILE);
  if (!existsSync(specFile)) {
    await writeJsonAtomic(specFile, spec);
    return;
  }
  let stored: StudySpec;
  try {
    stored = JSON.parse(await readFile(specFile, "utf8")) as StudySpec;
  } catch (error) {
    throw new Error(`${specFile} is not readable: ${(error as Error).message}`);
  }
  // A study is its content: its name (the folder's) may change when the folder moves.
  if (canonicalJson({ ...stored, name: "" }) !== canonicalJson({ ...spec, name: "" })) {
    throw new Error(`${studyDir} holds a different study (${STUDY_FILE} differs); choose another --study folder or delete it.`);
  }
}

/** A study's trials as they train: what is finished, claimed or running, the budget spent, progress. */
class StudyRunner {
  readonly results: TrialResult[] = [];
  stoppedBy: StudyOutcome["stoppedBy"];
  private readonly started = Date.now();
  // Spent so far, including the trials of earlier sessions that are read back.
  private epochsSpent = 0;
  private epochsInFlight = 0;
  private secondsBefore = 0;
  private secondsSpent = 0;
  // Trials finishing together append one after the other (each append rewrites the file).
  private appending: Promise<void> = Promise.resolve();
  private readonly inFlight = new Map<string, Promise<TrialResult | undefined>>();
  private readonly claimed = new Set<string>();
  private readonly planned: number;
  private readonly plannedEpochs: number;

  constructor(
    private readonly studyDir: string,
    private readonly spec: StudySpec,
    private readonly runTrial: TrialRunner,
    private readonly jobs: number,
    private readonly finished: Map<string, TrialResult>,
    rungs: Rung[],
    private readonly onProgress?: (progress: StudyProgress) => void,
  ) {
    this.planned = rungs.reduce((sum, rung) => sum + rung.configs, 0);
    this.plannedEpochs = rungs.reduce((sum, rung) => sum + rung.configs * rung.epochs, 0);
  }

  /**
   * Trains a rung's configurations: up to `jobs` workers take them in order, each one at a
   * time. Trials that finished beside a failing one are on disk; the failure still stops the study.
   */
  async runRung(rungIndex: number, rung: Rung, configs: TrialParams[], firstIndex: number): Promise<TrialResult[]> {
    const rungResults: TrialResult[] = [];
    const pool = { next: 0, failure: undefined as { error: unknown } | undefined };
    const worker = async () => {
      while (pool.next < configs.length && !pool.failure && !this.stoppedBy) {
        const position = pool.next++;
        await this.trainOrReuse(rungIndex, rung, configs, position, firstIndex + position, pool, rungResults);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.jobs, configs.length) }, worker));
    if (pool.failure) throw pool.failure.error;
    return rungResults;
  }

  private async trainOrReuse(
    rungIndex: number, rung: Rung, configs: TrialParams[], position: number, index: number,
    pool: { next: number; failure: { error: unknown } | undefined }, rungResults: TrialResult[],
  ): Promise<void> {
    const params = configs[position];
    const key = trialKey(params, rung.epochs);
    // Claimed before any await, so that workers starting together count each other: the
    // trial's `concurrent` is the claimed trials plus those of the rung still to train.
    const claims = !this.finished.has(key) && !this.claimed.has(key);
    if (claims) this.claimed.add(key);
    const later = new Set(configs.slice(pool.next).map((p) => trialKey(p, rung.epochs)).filter((k) => !this.finished.has(k) && !this.claimed.has(k)));
    const concurrent = Math.min(this.jobs, this.claimed.size + later.size);
    try {
      // A configuration drawn twice is trained once; its twin waits for that trial if it is running.
      const done = this.finished.get(key) ?? (await this.inFlight.get(key));
      if (done) {
        this.finish({ ...done, index, rung: rungIndex }, true, rungResults);
        return;
      }
      if (pool.failure || this.overBudget(rung)) return;
      this.epochsInFlight += rung.epochs;
      let settle: (trial: TrialResult | undefined) => void = () => {};
      this.inFlight.set(key, new Promise((resolve) => (settle = resolve)));
      let trial: TrialResult;
      try {
        const measured = await this.runTrial({ key, params, epochs: rung.epochs, dir: path.join(this.studyDir, "trials", key), concurrent });
        trial = { key, index, rung: rungIndex, params, epochs: rung.epochs, ...measured, finishedAt: new Date().toISOString() };
        this.appending = this.appending.then(() => appendTrial(this.studyDir, trial));
        await this.appending;
      } catch (error) {
        pool.failure ??= { error };
        settle(undefined);
        return;
      } finally {
        this.epochsInFlight -= rung.epochs;
        this.inFlight.delete(key);
      }
      this.finished.set(key, trial);
      settle(trial);
      this.finish(trial, false, rungResults);
    } finally {
      if (claims) this.claimed.delete(key);
    }
  }

  /** Whether starting a trial of this rung would pass the study's budget (then the study stops). */
  private overBudget(rung: Rung): boolean {
    const budget = this.spec.budget;
    if (budget?.epochs !== undefined && this.epochsSpent + this.epochsInFlight + rung.epochs > budget.epochs) this.stoppedBy = "budget-epochs";
    if (budget?.minutes !== undefined && (this.secondsBefore + (Date.now() - this.started) / 1000) / 60 >= budget.minutes) this.stoppedBy = "budget-minutes";
    return this.stoppedBy !== undefined;
  }

  private finish(trial: TrialResult, reused: boolean, rungResults: TrialResult[]): void {
    if (reused) this.secondsBefore += trial.seconds;
    this.epochsSpent += trial.epochs;
    this.secondsSpent += trial.seconds;
    rungResults.push(trial);
    this.results.push(trial);
    const best = bestByValidation([...this.results].sort((a, b) => a.index - b.index), (t) => t)!;
    const etaSeconds = ((this.plannedEpochs - this.epochsSpent) * this.secondsSpent) / this.epochsSpent / this.jobs;
    this.onProgress?.({ trial, done: this.results.length, planned: this.planned, best, reused, etaSeconds });
  }
}

/**
 * Trials trained for real: the tunable CNN with the trial's parameters, on the study's shared
 * validation split, via ensureRun (an interrupted trial resumes from its last epoch), scored
 * by the best validation epoch; the test split is never evaluated.
 */
export function trainingTrialRunner(spec: StudySpec, data: Dataset, hooks: RunHooks = {}): TrialRunner {
  return async ({ params, epochs, dir }) => {
    const record = await ensureRun({
      config: tunableModelConfig(params, undefined, spec.architecture),
      outDir: dir,
      data,
      dataset: data.name,
      skipTest: true,
      hooks,
      settings: {
        epochs,
        batchSize: params.batchSize,
        seed: spec.splitSeed,
        validationFraction: spec.validationFraction,
        schedule: { kind: "constant", rate: params.learningRate },
        patience: null,
        quick: spec.quick,
        augment: augmentationFor(params),
      },
    });
    return {
      valAccuracy: record.validation!.accuracy,
      valLoss: record.validation!.loss,
      bestEpoch: record.bestEpoch!,
      seconds: record.trainSeconds,
      backend: record.backend.name,
    };
  };
}
