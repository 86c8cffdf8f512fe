/**
 * A profile's plan: what its declarations still lack, how long that should take, and one
 * progress line for the whole plan (item k of n, epoch, ETA). `npm start` makes the plan
 * before it runs the notebooks, which then only read.
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { performance } from "node:perf_hooks";
import { tf, type Precision } from "../accelerator";
import {
  declaration,
  declaredRunRecord,
  ensureExperiment,
  ensureStudy,
  loadDeclarations,
  planOf,
  staleRun,
  STUDY_DATASET,
  studyDir,
  type Declaration,
  type EnsembleDeclaration,
  type ExperimentContext,
  type RunDeclaration,
  type StudyDeclaration,
  type Profile,
} from "./declarations";
import { buildModel, presetModel, type ModelConfig } from "../models/builder";
import { ensureEnsemble, readCurrentEnsemble } from "./ensembles";
import { describeScores } from "./records";
import { halvingPlan, readTrials, TUNABLE_DEFAULTS, tunableModelConfig, withDefaults, type Architecture } from "./tuning";
import { QUICK_TRAIN_IMAGES, QUICK_VALIDATION_IMAGES } from "./run";
import { augmenter, STANDARD_AUGMENTATION, TTA_VIEWS, type AugmentConfig } from "../data/augment";
import { describeValidation, evaluate, trainStep } from "./loop";
import { requirePositiveInt } from "../tooling/checks";
import { loadDataset, type DatasetName } from "../data/datasets";

/** One item of the plan with the work it still needs. */
export interface PlanItem {
  declaration: Declaration;
  /** Epochs still to train (a study: trial-epochs), and images per epoch. */
  epochsLeft: number;
  epochsTotal: number;
  imagesPerEpoch: number;
  /** Images validated after each epoch, and predicted once at the end (the test split, times its TTA views; a study: 0). */
  validationImages: number;
  testImages: number;
  /** Views each image is predicted in by the run's model once made (its TTA views, else 1): an ensemble's predictions. */
  views: number;
  dataset: DatasetName;
  batchSize: number;
  /** The network whose step time stands for the item's cost (a study: its layout at default widths). */
  network: ModelConfig;
  /** The precision its recipe asks for (bf16 steps are timed in bf16 where they run), and its augmentation. */
  precision: Precision;
  augment: AugmentConfig | null;
}

/** Fashion-MNIST's and MNIST's official training split, before the validation part is taken out, and test split. */
const TRAINING_IMAGES = 60_000;
const TEST_IMAGES = 10_000;

/** The network that stands for a declaration's cost, before any study has chosen. */
function costNetwork(d: RunDeclaration | StudyDeclaration, declarations: Map<string, Declaration>): { network: ModelConfig; batchSize: number } {
  if (d.kind === "study") return { network: tunableModelConfig(withDefaults({ batchNorm: true }), d.name, d.architecture), batchSize: TUNABLE_DEFAULTS.batchSize };
  const model = d.model;
  if ("preset" in model) return { network: presetModel(model.preset), batchSize: d.recipe.batchSize };
  if ("study" in model) {
    const study = declaration(model.study, declarations);
    const architecture: Architecture = model.architecture ?? (study.kind === "study" ? study.architecture : "capstone");
    return { network: tunableModelConfig(withDefaults({ batchNorm: true }), d.name, architecture), batchSize: d.recipe.batchSize };
  }
  return { network: tunableModelConfig(withDefaults(model.params), d.name, model.architecture), batchSize: d.recipe.batchSize };
}

/** What each of the profile's runs and studies still lacks (finished work counts 0); ensembles train nothing. */
export async function planItems(profile: Profile, declarations = loadDeclarations(), root?: string): Promise<PlanItem[]> {
  const items: PlanItem[] = [];
  const stale: Error[] = [];
  for (const d of planOf(profile, declarations)) {
    if (d.kind === "ensemble") continue;
    const { network, batchSize } = costNetwork(d, declarations);
    const quick = profile === "quick";
    const fraction = d.kind === "run" ? d.recipe.validationFraction : d.validationFraction;
    const imagesPerEpoch = quick ? QUICK_TRAIN_IMAGES : Math.round(TRAINING_IMAGES * (1 - fraction));
    const validationImages = fraction === 0 ? 0 : quick ? QUICK_VALIDATION_IMAGES : Math.round(TRAINING_IMAGES * fraction);
    const shared = { imagesPerEpoch, validationImages, batchSize, network, dataset: d.kind === "run" ? d.dataset : STUDY_DATASET };
    if (d.kind === "run") {
      const epochsTotal = quick ? 1 : d.recipe.epochs;
      // A folder of another version of the declaration is refused before anything trains, not read back as finished.
      const { dir, record, stale: isStale } = await declaredRunRecord(d, { profile, declarations, root });
      if (isStale) stale.push(staleRun(dir, d.name));
      const done = record?.status === "finished" ? epochsTotal : record?.history.length ?? 0;
      const views = d.recipe.testTimeAugmentation ? TTA_VIEWS.length : 1;
      const augment = d.recipe.augment === "standard" ? STANDARD_AUGMENTATION : d.recipe.augment;
      items.push({
        declaration: d, epochsTotal, epochsLeft: Math.max(0, epochsTotal - done), ...shared, testImages: TEST_IMAGES * views, views, precision: d.recipe.precision ?? "fp32", augment,
      });
    } else {
      const shape = quick ? d.quick ?? { trials: 3, minEpochs: 1, epochs: 2 } : d;
      const rungs = halvingPlan(shape.trials, shape.minEpochs, shape.epochs, d.eta);
      const epochsTotal = rungs.reduce((sum, r) => sum + r.configs * r.epochs, 0);
      const dir = studyDir(d.name, profile, root);
      const done = existsSync(dir) ? (await readTrials(dir)).reduce((sum, t) => sum + t.epochs, 0) : 0;
      items.push({ declaration: d, epochsTotal, epochsLeft: Math.max(0, epochsTotal - done), ...shared, testImages: 0, views: 1, precision: "fp32", augment: null });
    }
  }
  if (stale.length > 0) throw new Error(stale.map((e) => e.message).join("\n"));
  return items;
}

/** A network's measured seconds per image: a training step's (in the item's precision) and a prediction's (fp32, as validation and test run). */
export interface NetworkCost {
  train: number;
  predict: number;
}

/**
 * Each phase of a measurement: at least this many calls and this many seconds. The warm-up is
 * long because a process's first steps run slow (kernels compiled, memory touched first): `ann`'s
 * steps 3-5 took 1.5x its steady step, which it reached after ~20 steps (~0.3 s, one thread).
 */
const MEASUREMENT_PHASE = { calls: 5, seconds: 1 };

/**
 * A network's cost per image, measured by the training loop's own calls: training steps (batch
 * gathered and augmented as the recipe asks) and validations of one batch of random images,
 * each timed over a phase after a warm-up phase (MEASUREMENT_PHASE).
 */
export async function measureNetworkCost(network: ModelConfig, batchSize: number, precision: Precision = "fp32", augment: AugmentConfig | null = null): Promise<NetworkCost> {
  const model = buildModel(network, { seed: 1 });
  const data = { x: tf.randomUniform([batchSize, ...network.inputShape]) as tf.Tensor4D, y: tf.tensor1d(Array.from({ length: batchSize }, (_, i) => i % 10), "float32") };
  const indices = Array.from({ length: batchSize }, (_, i) => i);
  const augmentation = augment ? augmenter(augment, 1) : undefined;
  const perImage = async (call: (step: number) => Promise<unknown>) => {
    let step = 0;
    const secondsPerCall = async () => {
      const started = performance.now();
      let calls = 0;
      while (calls < MEASUREMENT_PHASE.calls || performance.now() - started < 1000 * MEASUREMENT_PHASE.seconds) {
        await call(step++);
        calls++;
      }
      return (performance.now() - started) / 1000 / calls;
    };
    await secondsPerCall();
    return (await secondsPerCall()) / batchSize;
  };
  try {
    const train = await perImage((step) => trainStep(model, data, indices, augmentation, 0, step, precision));
    const predict = await perImage(async () => evaluate(model, data, batchSize));
    return { train, predict };
  } finally {
    tf.dispose([data.x, data.y]);
    model.dispose();
  }
}

/** An item's estimated seconds per epoch (training and validation) and for its end (the test split's predictions). */
export function itemEstimate(item: PlanItem, cost: NetworkCost): { perEpoch: number; final: number } {
  return { perEpoch: item.imagesPerEpoch * cost.train + item.validationImages * cost.predict, final: item.testImages * cost.predict };
}

/**
 * Seconds to score an ensemble once its members are made: each member's model predicts the validation images its
 * run held out and the test split, in its views (members: the ensemble's runs among `items`, with their costs).
 */
export function ensembleEstimate(members: { item: PlanItem; cost: NetworkCost }[]): number {
  return members.reduce((sum, { item, cost }) => sum + (item.validationImages + TEST_IMAGES) * item.views * cost.predict, 0);
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/**
 * Wall seconds a schedule takes: each item (its seconds left in `seconds`) on one of `jobs`
 * slots, the `running` ones first, then the next of `order` whose dependencies are made as soon
 * as a slot frees, as `makePlan` starts them. Items in neither list count as made.
 */
export function scheduleSeconds(seconds: number[], order: number[], jobs: number, dependsOn: number[][], running: number[] = []): number {
  const waiting = order.filter((k) => !running.includes(k));
  const unmade = new Set([...running, ...waiting]);
  const slots = running.map((k) => ({ item: k, end: seconds[k] }));
  let now = 0;
  for (;;) {
    while (slots.length < jobs) {
      const next = waiting.findIndex((k) => dependsOn[k].every((d) => !unmade.has(d)));
      if (next < 0) break;
      const item = waiting.splice(next, 1)[0];
      slots.push({ item, end: now + seconds[item] });
    }
    if (slots.length === 0) return now;
    now = Math.min(...slots.map((s) => s.end));
    for (const slot of slots.filter((s) => s.end === now)) {
      unmade.delete(slot.item);
      slots.splice(slots.indexOf(slot), 1);
    }
  }
}

/** How the plan starts its items: the order it takes them in, on how many jobs, and what each waits for. */
export interface PlanSchedule {
  order: number[];
  jobs: number;
  dependsOn: number[][];
}

/**
 * The plan's clock: each item's estimated seconds (at its job's threads), scheduled as the plan
 * starts them, and corrected by the wall time between an item's epochs (training, validation
 * and commit): an item goes on at its own pace once it has one, as estimated until then (the
 * estimate was measured on this machine minutes before; one item's pace says little of
 * another's: a study's trials are not the network it was timed with). An item's first epoch
 * after its start counts as done but sets no pace: it also loaded the data and compiled.
 */
export class PlanClock {
  private readonly done: number[];
  private readonly pacedEstimates: number[];
  private readonly pacedActuals: number[];
  /** Each running item's last start or epoch, and whether that was its start. */
  private readonly last = new Map<number, { at: number; start: boolean }>();
  private readonly finished = new Set<number>();
  private starting = true;

  /** tailSeconds: what the plan does once every item is made (its ensembles' scoring). */
  constructor(private readonly estimates: number[], private readonly schedule: PlanSchedule, private readonly tailSeconds = 0) {
    this.done = estimates.map(() => 0);
    this.pacedEstimates = estimates.map(() => 0);
    this.pacedActuals = estimates.map(() => 0);
  }

  /** Item `k` starts at `now` (seconds on any one clock). */
  started(k: number, now: number): void {
    this.last.set(k, { at: now, start: true });
  }

  /** An epoch of item `k`, estimated at `estimateSeconds`, ended at `now`. */
  epochEnded(k: number, estimateSeconds: number, now: number): void {
    this.done[k] += estimateSeconds;
    const last = this.last.get(k);
    if (last && !last.start) {
      this.pacedEstimates[k] += estimateSeconds;
      this.pacedActuals[k] += now - last.at;
    }
    this.last.set(k, { at: now, start: false });
  }

  finish(k: number): void {
    this.last.delete(k);
    this.finished.add(k);
  }

  /** Item `k` failed: the plan starts nothing more, so only the running items are left. */
  failed(k: number): void {
    this.last.delete(k);
    this.starting = false;
  }

  /** Wall seconds left: the estimates' remainders at each item's pace, as the plan schedules them. */
  remaining(): number {
    const pace = (k: number) => (this.pacedEstimates[k] > 0 ? this.pacedActuals[k] / this.pacedEstimates[k] : 1);
    const left = this.estimates.map((e, k) => (this.finished.has(k) ? 0 : Math.max(0, e - this.done[k]) * pace(k)));
    const order = this.starting ? this.schedule.order.filter((k) => !this.finished.has(k)) : [];
    return scheduleSeconds(left, order, this.schedule.jobs, this.schedule.dependsOn, [...this.last.keys()]) + (this.starting ? this.tailSeconds : 0);
  }
}

/** What an item reports after each epoch (a study: each trial epoch) and when a trial ends. */
export type ItemEvent =
  | { kind: "epoch"; epoch: number; epochs: number; validation: string; seconds: number }
  | { kind: "trial"; done: number; planned: number; reused: boolean; valAccuracy: number; bestValAccuracy: number };

/**
 * Makes one item of the plan (trains the run, or runs the study) with this many wasm threads,
 * reporting to `onEvent`; resolves with a one-line summary.
 */
export type ItemRunner = (item: PlanItem, threads: number, onEvent: (event: ItemEvent) => void) => Promise<string>;

/** Makes a declaration in this process (threads: whatever the backend was started with). */
export async function makeItem(
  name: string,
  context: Omit<ExperimentContext, "hooks" | "onStudyProgress">,
  onEvent: (event: ItemEvent) => void,
): Promise<string> {
  const declarations = context.declarations ?? loadDeclarations();
  const withHooks: ExperimentContext = {
    ...context,
    declarations,
    hooks: { onEpochEnd: (e, record) => onEvent({ kind: "epoch", epoch: e.epoch, epochs: record.options.epochs, validation: describeValidation(e), seconds: e.seconds }) },
  };
  if (declaration(name, declarations).kind === "study") {
    const outcome = await ensureStudy(name, {
      ...withHooks,
      onStudyProgress: (p) => onEvent({ kind: "trial", done: p.done, planned: p.planned, reused: p.reused, valAccuracy: p.trial.valAccuracy, bestValAccuracy: p.best.valAccuracy }),
    });
    return `best trial val acc ${outcome.best.valAccuracy.toFixed(4)}`;
  }
  const record = await ensureExperiment(name, withHooks);
  return describeScores(record);
}

/** The declarations an item waits for: a run that trains a study's choice needs the study. */
export function dependenciesOf(d: Declaration): string[] {
  return d.kind === "run" && "study" in d.model ? [d.model.study] : [];
}

export interface PlanOptions {
  profile: Profile;
  log: (line: string) => void;
  context?: Omit<ExperimentContext, "profile" | "hooks" | "train">;
  /** Skip the measurement (tests): every image, trained or predicted, costs this many seconds. */
  secondsPerImage?: number;
  /**
   * Items made at once (default 1). More than one needs a `runner` that makes each item in its
   * own process: one JavaScript thread trains one model at a time.
   */
  jobs?: number;
  /** Threads the machine offers, shared by the jobs (default: the CPU count). */
  cores?: number;
  /** Makes an item; default: in this process (`makeItem`). */
  runner?: ItemRunner;
  /**
   * Measures the cost of each item's network on `threads` threads, the jobs' share; default: in
   * this process, whose threads are right for one job only.
   */
  measurer?: CostMeasurer;
}

/**
 * What the plan's estimate is made of, measured on a job's share of the threads: each item's network, and the
 * seconds an item takes before its first step (its process where it has one, the backend, its dataset).
 */
export interface PlanCosts {
  networks: NetworkCost[];
  itemStartSeconds: number;
}

/** The costs of these items (one network per item) on `threads` threads. */
export type CostMeasurer = (items: PlanItem[], threads: number) => Promise<PlanCosts>;

/** The mean of several measurements of the same items' costs (the plan's jobs, each timing every network at once). */
export function meanCosts(measurements: PlanCosts[]): PlanCosts {
  const count = measurements[0]?.networks.length;
  if (count === undefined || measurements.some((m) => m.networks.length !== count)) throw new Error("meanCosts needs measurements of the same items");
  const mean = (values: number[]) => values.reduce((sum, v) => sum + v, 0) / values.length;
  return {
    networks: measurements[0].networks.map((_, i) => ({
      train: mean(measurements.map((m) => m.networks[i].train)), predict: mean(measurements.map((m) => m.networks[i].predict)),
    })),
    itemStartSeconds: mean(measurements.map((m) => m.itemStartSeconds)),
  };
}

/**
 * Makes every declaration of the profile that is not finished; finished ones are read back.
 * With several jobs, an item starts as soon as a job is free and what it needs is made; the
 * items that others wait for, and then the longest, go first, so that the last to finish is
 * not a long one started late.
 */
export async function makePlan(options: PlanOptions): Promise<{ trained: string[]; seconds: number }> {
  const { profile, log } = options;
  const jobs = options.jobs ?? 1;
  requirePositiveInt(jobs, "jobs");
  if (jobs > 1 && !options.runner) throw new Error("A plan with more than one job needs a runner that makes each item in its own process.");
  if (jobs > 1 && !options.measurer && options.secondsPerImage === undefined) {
    throw new Error("A plan with more than one job needs a measurer that times the networks on a job's share of the threads.");
  }
  const declarations = options.context?.declarations ?? loadDeclarations();
  const root = options.context?.root;
  const items = await planItems(profile, declarations, root);
  const pending = items.filter((i) => i.epochsLeft > 0);
  // Ensembles to score after the items: those with a member to make, or without a record of the members' current runs.
  const ensembles: EnsembleDeclaration[] = [];
  for (const d of planOf(profile, declarations)) {
    if (d.kind !== "ensemble") continue;
    if (d.members.some((m) => pending.some((item) => item.declaration.name === m)) || !(await readCurrentEnsemble(d, profile, root))) ensembles.push(d);
  }
  const memberOf = (item: PlanItem) => ensembles.some((e) => e.members.includes(item.declaration.name));
  const timed = items.filter((item) => item.epochsLeft > 0 || memberOf(item));
  const cores = options.cores ?? availableParallelism();
  const threads = Math.max(1, Math.floor(cores / jobs));
  const jobsText = `${jobs} job${jobs > 1 ? "s" : ""} of ${threads} thread${threads > 1 ? "s" : ""}`;
  if (timed.length > 0 && options.secondsPerImage === undefined) log(`plan (${profile}): timing ${timed.length} declarations' networks on ${jobsText} ...`);
  const fixed = options.secondsPerImage;
  const measure = options.measurer ?? measureInProcess;
  const costs: PlanCosts =
    fixed !== undefined ? { networks: timed.map(() => ({ train: fixed, predict: fixed })), itemStartSeconds: 0 }
    : timed.length > 0 ? await measure(timed, threads)
    : { networks: [], itemStartSeconds: 0 };
  const costOf = (item: PlanItem) => costs.networks[timed.indexOf(item)];
  const perItem = items.map((item) => (item.epochsLeft > 0 ? itemEstimate(item, costOf(item)) : { perEpoch: 0, final: 0 }));
  // An item's start counts with its first epoch.
  const startOf = (k: number) => (items[k].epochsLeft > 0 ? costs.itemStartSeconds : 0);
  const estimates = items.map((item, k) => startOf(k) + item.epochsLeft * perItem[k].perEpoch + perItem[k].final);
  const ensembleSeconds = ensembles.reduce(
    (sum, e) => sum + ensembleEstimate(items.filter((item) => e.members.includes(item.declaration.name)).map((item) => ({ item, cost: costOf(item) }))),
    0,
  );

  // An item's priority: its own estimate plus those of the items waiting for it.
  const priority = (k: number) =>
    estimates[k] + items.reduce((sum, other, j) => sum + (dependenciesOf(other.declaration).includes(items[k].declaration.name) ? estimates[j] : 0), 0);
  const waiting = items.map((_, k) => k).filter((k) => items[k].epochsLeft > 0);
  if (jobs > 1) waiting.sort((a, b) => priority(b) - priority(a));
  const dependsOn = items.map((item) => dependenciesOf(item.declaration).map((name) => items.findIndex((other) => other.declaration.name === name)));
  const clock = new PlanClock(estimates, { order: [...waiting], jobs, dependsOn }, ensembleSeconds);
  log(
    `plan (${profile}): ${items.length} declarations, ${items.length - pending.length} finished, ${pending.length} to make ` +
      `(${pending.reduce((s, i) => s + i.epochsLeft, 0)} epochs); estimated ${formatDuration(clock.remaining())} on ${jobsText}`,
  );
  for (const [k, item] of items.entries()) if (item.epochsLeft === 0) log(`[${k + 1}/${items.length}] ${item.declaration.name}: finished, read back`);
  const unfinished = new Set(waiting.map((k) => items[k].declaration.name));
  const ready = (k: number) => dependenciesOf(items[k].declaration).every((name) => !unfinished.has(name));
  const runner: ItemRunner = options.runner ?? ((item, _threads, onEvent) => makeItem(item.declaration.name, { ...options.context, declarations, profile }, onEvent));

  const started = performance.now();
  const trained: string[] = [];
  const running = new Map<number, Promise<void>>();
  const failures: Error[] = [];
  const start = (k: number) => {
    const item = items[k];
    const d = item.declaration;
    const head = `[${k + 1}/${items.length}] ${d.name}`;
    log(`${head}: ${d.title} (${item.epochsLeft} of ${item.epochsTotal} epochs to train, ~${formatDuration(estimates[k])})`);
    clock.started(k, performance.now() / 1000);
    let first = true;
    const onEvent = (event: ItemEvent) => {
      if (event.kind === "epoch") {
        clock.epochEnded(k, perItem[k].perEpoch + (first ? startOf(k) : 0), performance.now() / 1000);
        first = false;
        const what = d.kind === "study" ? "trial epoch" : "epoch";
        log(`${head}: ${what} ${event.epoch + 1}/${event.epochs} ${event.validation} (${event.seconds.toFixed(1)} s) · plan ETA ${formatDuration(clock.remaining())}`);
      } else {
        log(`${head}: trial ${event.done}/${event.planned}${event.reused ? " (read back)" : ""} val acc ${event.valAccuracy.toFixed(4)}, best ${event.bestValAccuracy.toFixed(4)}`);
      }
    };
    const work = runner(item, threads, onEvent).then(
      (summary) => {
        log(`${head}: done, ${summary}`);
        clock.finish(k);
        trained.push(d.name);
        unfinished.delete(d.name);
      },
      (error: Error) => {
        failures.push(new Error(`${d.name}: ${error.message}`));
        clock.failed(k);
      },
    );
    running.set(k, work.finally(() => running.delete(k)));
  };
  while (waiting.length > 0 || running.size > 0) {
    while (failures.length === 0 && running.size < jobs) {
      const next = waiting.findIndex(ready);
      if (next < 0) break;
      start(waiting.splice(next, 1)[0]);
    }
    if (running.size === 0) break;
    await Promise.race(running.values());
  }
  if (failures.length > 0) throw failures.length === 1 ? failures[0] : new Error(failures.map((f) => f.message).join("\n"));
  await scoreEnsembles(options, declarations);
  return { trained, seconds: (performance.now() - started) / 1000 };
}

/**
 * Seconds to load the datasets the items train on, each distinct one once (their mean): what an item in this process
 * pays before its first step, besides its network.
 */
export async function datasetLoadSeconds(items: PlanItem[]): Promise<number> {
  const names = [...new Set(items.map((item) => item.dataset))];
  let seconds = 0;
  for (const name of names) {
    const started = performance.now();
    await loadDataset(name);
    seconds += (performance.now() - started) / 1000;
  }
  return names.length > 0 ? seconds / names.length : 0;
}

/** The plan's costs measured in this process, whose items start here (no process of their own). */
async function measureInProcess(items: PlanItem[]): Promise<PlanCosts> {
  return { networks: await measureItemCosts(items), itemStartSeconds: await datasetLoadSeconds(items) };
}

/** The cost of each item's network, measured once per network on this process's threads. */
export async function measureItemCosts(items: PlanItem[]): Promise<NetworkCost[]> {
  const costs = new Map<string, NetworkCost>();
  const keyOf = (item: PlanItem) => JSON.stringify([item.network.layers, item.batchSize, item.precision, item.augment]);
  for (const item of items) {
    if (!costs.has(keyOf(item))) costs.set(keyOf(item), await measureNetworkCost(item.network, item.batchSize, item.precision, item.augment));
  }
  return items.map((item) => costs.get(keyOf(item))!);
}

/** Ensembles last: their members are made now; each is scored from the saved models (read back when current). */
async function scoreEnsembles(options: PlanOptions, declarations: Map<string, Declaration>): Promise<void> {
  for (const d of planOf(options.profile, declarations)) {
    if (d.kind !== "ensemble") continue;
    const ensemble = await ensureEnsemble(d.name, { ...options.context, declarations, profile: options.profile });
    options.log(`${d.name}: ensemble of ${d.members.join(", ")}: ${describeScores(ensemble)}`);
  }
}
