/**
 * A profile's plan: what its declarations still lack, how long that should take, and one
 * progress line for the whole plan (item k of n, epoch, ETA). `npm start` makes the plan
 * before it runs the notebooks, which then only read.
 */
import { existsSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { tf } from "./backend";
import {
  declaration,
  ensureExperiment,
  ensureStudy,
  loadDeclarations,
  planOf,
  runDir,
  studyDir,
  type Declaration,
  type ExperimentContext,
  type Profile,
} from "./experiments";
import { buildModel, presetModel, type ModelConfig } from "./models";
import { readRecord } from "./runs";
import { halvingPlan, readTrials, TUNABLE_DEFAULTS, tunableModelConfig, withDefaults, type Architecture } from "./tuning";
import { QUICK_TRAIN_IMAGES } from "./experiment";

/** One item of the plan with the work it still needs. */
export interface PlanItem {
  declaration: Declaration;
  /** Epochs still to train (a study: trial-epochs), and images per epoch. */
  epochsLeft: number;
  epochsTotal: number;
  imagesPerEpoch: number;
  batchSize: number;
  /** The network whose step time stands for the item's cost (a study: its layout at default widths). */
  network: ModelConfig;
}

/** Fashion-MNIST's and MNIST's official training split, before the validation part is taken out. */
const TRAINING_IMAGES = 60_000;
/** Validation after each epoch: forward passes over a tenth as many images, about a third of a training step each. */
const VALIDATION_OVERHEAD = 0.1 / 3;

/** The network that stands for a declaration's cost, before any study has chosen. */
function costNetwork(d: Declaration, declarations: Map<string, Declaration>): { network: ModelConfig; batchSize: number } {
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

/** What each of the profile's declarations still lacks (finished work counts 0). */
export async function planItems(profile: Profile, declarations = loadDeclarations(), root?: string): Promise<PlanItem[]> {
  const items: PlanItem[] = [];
  for (const d of planOf(profile, declarations)) {
    const { network, batchSize } = costNetwork(d, declarations);
    const quick = profile === "quick";
    const imagesPerEpoch = quick ? QUICK_TRAIN_IMAGES : Math.round(TRAINING_IMAGES * (1 - (d.kind === "run" ? d.recipe.validationFraction : d.validationFraction)));
    if (d.kind === "run") {
      const epochsTotal = quick ? 1 : d.recipe.epochs;
      const record = await readRecord(runDir(d.name, profile, root));
      const done = record?.status === "finished" ? epochsTotal : record?.history.length ?? 0;
      items.push({ declaration: d, epochsTotal, epochsLeft: Math.max(0, epochsTotal - done), imagesPerEpoch, batchSize, network });
    } else {
      const shape = quick ? d.quick ?? { trials: 3, minEpochs: 1, epochs: 2 } : d;
      const rungs = halvingPlan(shape.trials, shape.minEpochs, shape.epochs, d.eta);
      const epochsTotal = rungs.reduce((sum, r) => sum + r.configs * r.epochs, 0);
      const dir = studyDir(d.name, profile, root);
      const done = existsSync(dir) ? (await readTrials(dir)).reduce((sum, t) => sum + t.epochs, 0) : 0;
      items.push({ declaration: d, epochsTotal, epochsLeft: Math.max(0, epochsTotal - done), imagesPerEpoch, batchSize, network });
    }
  }
  return items;
}

/**
 * Seconds per training image of a network, measured: a few steps on random data after a
 * warm-up (the first steps compile kernels and allocate). Validation adds its forward passes.
 */
export async function measureSecondsPerImage(network: ModelConfig, batchSize: number, steps = 3): Promise<number> {
  const model = buildModel(network, { seed: 1 });
  const x = tf.randomUniform([batchSize, ...network.inputShape]);
  const y = tf.tensor1d(Array.from({ length: batchSize }, (_, i) => i % 10), "float32");
  try {
    for (let i = 0; i < 2; i++) await model.trainOnBatch(x, y);
    const started = performance.now();
    for (let i = 0; i < steps; i++) await model.trainOnBatch(x, y);
    return (performance.now() - started) / 1000 / steps / batchSize;
  } finally {
    tf.dispose([x, y]);
    model.dispose();
  }
}

/** Seconds an item still needs, at a measured cost per training image. */
export const itemSeconds = (item: PlanItem, secondsPerImage: number) => item.epochsLeft * item.imagesPerEpoch * secondsPerImage * (1 + VALIDATION_OVERHEAD);

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/**
 * The plan's clock: estimated seconds per item, corrected as work finishes by how fast the
 * finished part went against its estimate.
 */
export class PlanClock {
  private doneEstimate = 0;
  private doneActual = 0;
  constructor(private readonly estimates: number[]) {}

  /** An epoch of item `index` took `actualSeconds` where `estimateSeconds` was expected. */
  record(estimateSeconds: number, actualSeconds: number): void {
    this.doneEstimate += estimateSeconds;
    this.doneActual += actualSeconds;
  }

  /** Seconds left: what the estimates leave, scaled by actual/estimated so far. */
  remaining(): number {
    const total = this.estimates.reduce((a, b) => a + b, 0);
    const ratio = this.doneEstimate > 0 ? this.doneActual / this.doneEstimate : 1;
    return Math.max(0, total - this.doneEstimate) * ratio;
  }
}

export interface PlanOptions {
  profile: Profile;
  log: (line: string) => void;
  context?: Omit<ExperimentContext, "profile" | "hooks" | "train">;
  /** Skip the step-time measurement (tests): every image costs this many seconds. */
  secondsPerImage?: number;
}

/** Makes every declaration of the profile that is not finished; finished ones are read back. */
export async function makePlan(options: PlanOptions): Promise<{ trained: string[]; seconds: number }> {
  const { profile, log } = options;
  const declarations = options.context?.declarations ?? loadDeclarations();
  const root = options.context?.root;
  const items = await planItems(profile, declarations, root);
  const pending = items.filter((i) => i.epochsLeft > 0);
  const costs = new Map<string, number>();
  for (const item of pending) {
    const key = JSON.stringify([item.network.layers, item.batchSize]);
    if (!costs.has(key)) costs.set(key, options.secondsPerImage ?? (await measureSecondsPerImage(item.network, item.batchSize)));
  }
  const costOf = (item: PlanItem) => costs.get(JSON.stringify([item.network.layers, item.batchSize])) ?? 0;
  const estimates = items.map((item) => (item.epochsLeft > 0 ? itemSeconds(item, costOf(item)) : 0));
  const clock = new PlanClock(estimates);
  log(
    `plan (${profile}): ${items.length} declarations, ${items.length - pending.length} finished, ${pending.length} to make ` +
      `(${pending.reduce((s, i) => s + i.epochsLeft, 0)} epochs); estimated ${formatDuration(clock.remaining())}`,
  );
  const started = performance.now();
  const trained: string[] = [];
  for (const [k, item] of items.entries()) {
    const d = item.declaration;
    const head = `[${k + 1}/${items.length}] ${d.name}`;
    if (item.epochsLeft === 0) {
      log(`${head}: finished, read back`);
      continue;
    }
    const perEpoch = estimates[k] / item.epochsLeft;
    const eta = () => `plan ETA ${formatDuration(clock.remaining())}`;
    const context: ExperimentContext = {
      ...options.context,
      declarations,
      profile,
      hooks: {
        onEpochEnd: (epoch, record) => {
          clock.record(perEpoch, epoch.seconds);
          const what = d.kind === "study" ? `trial epoch ${epoch.epoch + 1}/${record.options.epochs}` : `epoch ${epoch.epoch + 1}/${record.options.epochs}`;
          log(`${head}: ${what} val acc ${epoch.valAccuracy.toFixed(4)} (${epoch.seconds.toFixed(1)} s) · ${eta()}`);
        },
      },
      onStudyProgress: d.kind !== "study" ? undefined : (p) => log(`${head}: trial ${p.done}/${p.planned}${p.reused ? " (read back)" : ""} val acc ${p.trial.valAccuracy.toFixed(4)}, best ${p.best.valAccuracy.toFixed(4)}`),
    };
    log(`${head}: ${d.title} (${item.epochsLeft} of ${item.epochsTotal} epochs to train, ~${formatDuration(estimates[k])})`);
    if (d.kind === "study") {
      const outcome = await ensureStudy(d.name, context);
      log(`${head}: done, best trial val acc ${outcome.best.valAccuracy.toFixed(4)}`);
    } else {
      const record = await ensureExperiment(d.name, context);
      log(`${head}: done, val acc ${record.validation!.accuracy.toFixed(4)}, test acc ${record.test!.accuracy.toFixed(4)}`);
    }
    trained.push(d.name);
  }
  return { trained, seconds: (performance.now() - started) / 1000 };
}
