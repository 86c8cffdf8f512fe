/**
 * Experiments declared as data: every run and study that a report or the README shows is a
 * file in experiments/ (model, recipe, profiles), made by one command and read back by the
 * notebooks. A declaration's content, not its prose, is the run's identity.
 *
 * Profiles: `standard` (what `npm start` makes), `extended` (standard plus the long runs) and
 * `quick` (CI: every standard declaration on 2,000 / 500 images, one epoch, small studies).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { STANDARD_AUGMENTATION, validateAugmentConfig, type AugmentConfig } from "../data/augment";
import { DATASET_NAMES, loadDataset, type Dataset, type DatasetName } from "../data/datasets";
import { ensureRun, holdsRun, MAX_LABEL_SMOOTHING, type RunHooks } from "./run";
import { OPTIMIZERS, presetModel, PRESET_MODELS, type ModelConfig, type OptimizerName } from "../models/builder";
import { PROJECT_ROOT } from "../tooling/paths";
import { requireOneOf } from "../tooling/checks";
import { readRecord, type RunRecord, type RunSettings } from "./records";
import { checkStorageUrl, PostgresStudyStore } from "./postgres-store";
import { checkAverageDecay } from "./weight-average";
import { PRECISIONS, type Precision } from "../accelerator";
import type { LearningRateSchedule } from "./loop";
import {
  ARCHITECTURES,
  readSpace,
  runStudy,
  STUDY_FILE,
  TUNABLE_DEFAULTS,
  trainingTrialRunner,
  tunableModelConfig,
  validateStudy,
  withDefaults,
  type Architecture,
  type StudyOutcome,
  type StudyProgress,
  type StudySpec,
  type TrialParams,
  type TrialRunner,
} from "./tuning";

export const PROFILES = ["quick", "standard", "extended"] as const;
export type Profile = (typeof PROFILES)[number];
/** The declarations (EXPERIMENTS_DIR overrides, for tests). */
export const EXPERIMENTS_DIR = path.resolve(process.env.EXPERIMENTS_DIR ?? path.join(PROJECT_ROOT, "experiments"));
export const SCHEDULES = ["constant", "step", "one-cycle", "warmup-linear", "warmup-cosine"] as const;
/** warmup-linear and warmup-cosine: the fraction of the steps that warm up (issue 19's PyTorch recipe). */
export const WARMUP_FRACTION = 0.15;
export type ScheduleName = (typeof SCHEDULES)[number];

/** What a run trains: a preset, the tunable CNN with its parameters, or a study's best trial. */
export type ModelSpec =
  | { preset: string }
  | { architecture: Architecture; params: Partial<TrialParams> }
  /** The best trial of a study (by validation accuracy), optionally on another layout. */
  | { study: string; architecture?: Architecture };

export interface Recipe {
  epochs: number;
  batchSize: number;
  /** The (peak) rate; `{ timesTuned: k }`: k × the study's chosen rate (study models only). */
  learningRate: number | { timesTuned: number };
  schedule: ScheduleName;
  /** Absent: Adam. */
  optimizer?: OptimizerName;
  /** Absent: none. */
  labelSmoothing?: number;
  /** "standard" (lib/data/augment's STANDARD_AUGMENTATION), a transform config, or none. */
  augment: "standard" | AugmentConfig | null;
  /** Test predictions averaged over TTA views (lib/data/augment); absent: the image alone. */
  testTimeAugmentation?: boolean;
  /** Validate, keep and test an exponential moving average of the weights (lib/training/weight-average.ts); absent: the trained weights. */
  ema?: { decay: number };
  /** "bf16": the training steps' products in bf16 where the CPU has it (lib/accelerator/native/onednn.ts); absent: fp32. */
  precision?: Precision;
  seed: number;
  /** The seed of the validation split; absent: seed. Replicates with other seeds that keep one split can be compared and ensembled on it. */
  splitSeed?: number;
  validationFraction: number;
}

export interface RunDeclaration {
  kind: "run";
  name: string;
  /** What the run shows, for tables and progress. */
  title: string;
  profiles: Exclude<Profile, "quick">[];
  dataset: DatasetName;
  model: ModelSpec;
  recipe: Recipe;
  /** The minutes of training this run is declared to fit (`npm run results -- --budgets` checks its record). */
  budgetMinutes?: number;
}

export interface StudyDeclaration {
  kind: "study";
  name: string;
  title: string;
  profiles: Exclude<Profile, "quick">[];
  /** A search space file, relative to the project (spaces/*.json). */
  space: string;
  architecture: Architecture;
  strategy: "halving";
  trials: number;
  minEpochs: number;
  epochs: number;
  eta: number;
  seed: number;
  validationFraction: number;
  /** The study's shape in the quick profile (default 3 trials, 1 → 2 epochs). */
  quick?: { trials: number; minEpochs: number; epochs: number };
}

/**
 * Runs whose test predictions are averaged (each member predicting as its record declares);
 * made once its members are, from their saved models, without training.
 */
export interface EnsembleDeclaration {
  kind: "ensemble";
  name: string;
  title: string;
  profiles: Exclude<Profile, "quick">[];
  dataset: DatasetName;
  /** Run declarations on the same dataset and validation split (seed and fraction). */
  members: string[];
  /** The minutes of training its members together are declared to fit. */
  budgetMinutes?: number;
}

export type Declaration = RunDeclaration | StudyDeclaration | EnsembleDeclaration;

// ---------------------------------------------------------------------------------------
// Reading and validating declarations

type Json = Record<string, unknown>;

/** The error for a bad field; thrown where found (`throw invalid(...)` narrows types in every compiler, tslab's too). */
function invalid(file: string, field: string, message: string): Error {
  return new Error(`${file}: ${field}: ${message}`);
}

function need<T>(file: string, object: Json, field: string, check: (v: unknown) => v is T, what: string): T {
  const value = object[field];
  if (!check(value)) throw invalid(file, field, `must be ${what}, got ${JSON.stringify(value)}`);
  return value;
}

const isString = (v: unknown): v is string => typeof v === "string" && v.length > 0;
const isPositiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
const isInt = (v: unknown): v is number => Number.isInteger(v);
const isFraction = (v: unknown): v is number => typeof v === "number" && v > 0 && v < 0.5;
/** A run may also train on every training image (0: no validation, its epochs fixed by earlier validated runs). */
const isRunFraction = (v: unknown): v is number => v === 0 || isFraction(v);
const isPositive = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v > 0;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** The optional budgetMinutes of a run or ensemble, spread into its declaration. */
function budgetOf(file: string, object: Json): { budgetMinutes?: number } {
  return object.budgetMinutes === undefined ? {} : { budgetMinutes: need(file, object, "budgetMinutes", isPositive, "a positive number of minutes") };
}

function profilesOf(file: string, object: Json): Exclude<Profile, "quick">[] {
  const profiles = need(file, object, "profiles", (v): v is string[] => Array.isArray(v) && v.length > 0 && v.every(isString), "a non-empty list of profiles");
  for (const p of profiles) if (p !== "standard" && p !== "extended") throw invalid(file, "profiles", `"${p}" is not standard or extended (quick is every standard declaration, made small)`);
  return profiles as Exclude<Profile, "quick">[];
}

function modelSpecOf(file: string, value: unknown): ModelSpec {
  if (!isObject(value)) throw invalid(file, "model", "must be an object: { preset }, { architecture, params } or { study }");
  if ("preset" in value) {
    const preset = need(file, value, "preset", isString, "a preset name");
    if (!(preset in PRESET_MODELS)) throw invalid(file, "model.preset", `unknown preset "${preset}" (known: ${Object.keys(PRESET_MODELS).join(", ")})`);
    return { preset };
  }
  const architecture = value.architecture;
  if (architecture !== undefined && !ARCHITECTURES.includes(architecture as Architecture)) {
    throw invalid(file, "model.architecture", `must be one of ${ARCHITECTURES.join(", ")}, got ${JSON.stringify(architecture)}`);
  }
  if ("study" in value) return { study: need(file, value, "study", isString, "a study name"), ...(architecture ? { architecture: architecture as Architecture } : {}) };
  if (!architecture || !isObject(value.params)) throw invalid(file, "model", "needs a preset, a study, or an architecture with params");
  for (const [key, v] of Object.entries(value.params)) {
    if (!(key in TUNABLE_DEFAULTS)) throw invalid(file, `model.params.${key}`, `unknown parameter (known: ${Object.keys(TUNABLE_DEFAULTS).join(", ")})`);
    if (typeof v !== typeof TUNABLE_DEFAULTS[key as keyof TrialParams]) throw invalid(file, `model.params.${key}`, `must be a ${typeof TUNABLE_DEFAULTS[key as keyof TrialParams]}`);
  }
  return { architecture: architecture as Architecture, params: value.params as Partial<TrialParams> };
}

function recipeOf(file: string, value: unknown, model: ModelSpec): Recipe {
  if (!isObject(value)) throw invalid(file, "recipe", "must be an object");
  const learningRate = value.learningRate;
  if (isObject(learningRate)) {
    if (!("study" in model)) throw invalid(file, "recipe.learningRate", "{ timesTuned } needs a model taken from a study");
    need(file, learningRate, "timesTuned", isPositive, "a positive factor");
  } else if (!isPositive(learningRate) || learningRate >= 1) {
    throw invalid(file, "recipe.learningRate", `must be a rate in (0, 1) or { "timesTuned": k }, got ${JSON.stringify(learningRate)}`);
  }
  const augment = value.augment;
  if (isObject(augment)) {
    try {
      validateAugmentConfig(augment as AugmentConfig);
    } catch (error) {
      throw invalid(file, "recipe.augment", (error as Error).message);
    }
  } else if (augment !== null && augment !== "standard") {
    throw invalid(file, "recipe.augment", `must be "standard", a transform config (lib/data/augment.ts) or null, got ${JSON.stringify(augment)}`);
  }
  const testTimeAugmentation = value.testTimeAugmentation;
  if (testTimeAugmentation !== undefined && typeof testTimeAugmentation !== "boolean") {
    throw invalid(file, "recipe.testTimeAugmentation", `must be true or false, got ${JSON.stringify(testTimeAugmentation)}`);
  }
  const ema = value.ema as { decay?: unknown } | undefined;
  if (ema !== undefined) {
    if (typeof ema !== "object" || ema === null || Object.keys(ema).some((k) => k !== "decay")) throw invalid(file, "recipe.ema", `must be { "decay": d }, got ${JSON.stringify(ema)}`);
    try {
      checkAverageDecay(ema.decay, "decay");
    } catch (error) {
      throw invalid(file, "recipe.ema", (error as Error).message);
    }
  }
  const precision = value.precision;
  if (precision !== undefined && !PRECISIONS.includes(precision as Precision)) throw invalid(file, "recipe.precision", `must be ${PRECISIONS.join(" or ")}, got ${JSON.stringify(precision)}`);
  const optimizer = value.optimizer;
  if (optimizer !== undefined && !OPTIMIZERS.includes(optimizer as OptimizerName)) throw invalid(file, "recipe.optimizer", `must be ${OPTIMIZERS.join(" or ")}, got ${JSON.stringify(optimizer)}`);
  const labelSmoothing = value.labelSmoothing;
  if (labelSmoothing !== undefined && !(typeof labelSmoothing === "number" && labelSmoothing >= 0 && labelSmoothing <= MAX_LABEL_SMOOTHING)) {
    throw invalid(file, "recipe.labelSmoothing", `must be a number in [0, ${MAX_LABEL_SMOOTHING}], got ${JSON.stringify(labelSmoothing)}`);
  }
  const splitSeed = value.splitSeed;
  if (splitSeed !== undefined && !isInt(splitSeed)) throw invalid(file, "recipe.splitSeed", `must be an integer, got ${JSON.stringify(splitSeed)}`);
  return {
    ...(splitSeed === undefined ? {} : { splitSeed: splitSeed as number }),
    ...(optimizer === undefined ? {} : { optimizer: optimizer as OptimizerName }),
    ...(labelSmoothing === undefined ? {} : { labelSmoothing: labelSmoothing as number }),
    ...(testTimeAugmentation ? { testTimeAugmentation: true } : {}),
    ...(ema === undefined ? {} : { ema: { decay: ema.decay as number } }),
    ...(precision === undefined ? {} : { precision: precision as Precision }),
    epochs: need(file, value, "epochs", isPositiveInt, "a positive integer"),
    batchSize: need(file, value, "batchSize", isPositiveInt, "a positive integer"),
    learningRate: learningRate as Recipe["learningRate"],
    schedule: need(file, value, "schedule", (v): v is ScheduleName => SCHEDULES.includes(v as ScheduleName), SCHEDULES.join(" | ")),
    augment: augment as Recipe["augment"],
    seed: need(file, value, "seed", isInt, "an integer"),
    validationFraction: need(file, value, "validationFraction", isRunFraction, "0 (every training image, no validation) or a fraction in (0, 0.5)"),
  };
}

/** Checks one parsed declaration file; errors name the file and the field. */
export function parseDeclaration(file: string, json: unknown): Declaration {
  if (!isObject(json)) throw invalid(file, "(top)", "a declaration must be a JSON object");
  const name = need(file, json, "name", (v): v is string => isString(v) && /^[a-z0-9][a-z0-9-]*$/.test(v), "a name of lower-case letters, digits and dashes");
  const expected = path.basename(file, ".json");
  if (name !== expected) throw invalid(file, "name", `"${name}" must equal the file's name ("${expected}")`);
  const title = need(file, json, "title", isString, "a short description");
  const profiles = profilesOf(file, json);
  if (json.kind === "run") {
    const dataset = need(file, json, "dataset", (v): v is DatasetName => DATASET_NAMES.includes(v as DatasetName), DATASET_NAMES.join(" | "));
    const model = modelSpecOf(file, json.model);
    return { kind: "run", name, title, profiles, dataset, model, recipe: recipeOf(file, json.recipe, model), ...budgetOf(file, json) };
  }
  if (json.kind === "study") {
    const declaration: StudyDeclaration = {
      kind: "study", name, title, profiles,
      space: need(file, json, "space", isString, "a search space file"),
      architecture: need(file, json, "architecture", (v): v is Architecture => ARCHITECTURES.includes(v as Architecture), ARCHITECTURES.join(" | ")),
      strategy: need(file, json, "strategy", (v): v is "halving" => v === "halving", '"halving"'),
      trials: need(file, json, "trials", isPositiveInt, "a positive integer"),
      minEpochs: need(file, json, "minEpochs", isPositiveInt, "a positive integer"),
      epochs: need(file, json, "epochs", isPositiveInt, "a positive integer"),
      eta: need(file, json, "eta", (v): v is number => isInt(v) && (v as number) >= 2, "an integer ≥ 2"),
      seed: need(file, json, "seed", isInt, "an integer"),
      validationFraction: need(file, json, "validationFraction", isFraction, "a fraction in (0, 0.5)"),
    };
    if (json.quick !== undefined) {
      if (!isObject(json.quick)) throw invalid(file, "quick", "must be { trials, minEpochs, epochs }");
      declaration.quick = {
        trials: need(file, json.quick, "trials", isPositiveInt, "a positive integer"),
        minEpochs: need(file, json.quick, "minEpochs", isPositiveInt, "a positive integer"),
        epochs: need(file, json.quick, "epochs", isPositiveInt, "a positive integer"),
      };
    }
    if (!existsSync(path.resolve(PROJECT_ROOT, declaration.space))) throw invalid(file, "space", `${declaration.space}: no such file`);
    return declaration;
  }
  if (json.kind === "ensemble") {
    const dataset = need(file, json, "dataset", (v): v is DatasetName => DATASET_NAMES.includes(v as DatasetName), DATASET_NAMES.join(" | "));
    const members = need(file, json, "members", (v): v is string[] => Array.isArray(v) && v.length >= 2 && v.every(isString) && new Set(v).size === v.length, "a list of two or more different run names");
    return { kind: "ensemble", name, title, profiles, dataset, members, ...budgetOf(file, json) };
  }
  throw invalid(file, "kind", `must be "run", "study" or "ensemble", got ${JSON.stringify(json.kind)}`);
}

/** Every declaration in a folder (default experiments/), checked, with cross-references resolved. */
export function loadDeclarations(dir: string = EXPERIMENTS_DIR): Map<string, Declaration> {
  if (!existsSync(dir)) throw new Error(`${dir}: no experiments folder.`);
  const declarations = new Map<string, Declaration>();
  for (const entry of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
    const file = path.join(dir, entry);
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, "utf8"));
    } catch (error) {
      throw new Error(`${file}: not JSON (${(error as Error).message})`);
    }
    const declaration = parseDeclaration(file, json);
    declarations.set(declaration.name, declaration);
  }
  for (const d of declarations.values()) if (d.kind === "ensemble") checkMembers(d, declarations, path.join(dir, `${d.name}.json`));
  for (const d of declarations.values()) {
    if (d.kind !== "run" || !("study" in d.model)) continue;
    const study = declarations.get(d.model.study);
    const file = path.join(dir, `${d.name}.json`);
    if (study?.kind !== "study") throw invalid(file, "model.study", `no study declaration named "${d.model.study}"`);
    for (const p of d.profiles) if (!study.profiles.includes(p) && !(p === "extended" && study.profiles.includes("standard"))) {
      throw invalid(file, "profiles", `"${p}" needs study "${study.name}" in that profile too`);
    }
  }
  return declarations;
}

/** An ensemble's members are runs of its dataset, on one validation split, made in its profiles. */
function checkMembers(d: EnsembleDeclaration, declarations: Map<string, Declaration>, file: string): void {
  const runs = d.members.map((name) => {
    const member = declarations.get(name);
    if (member?.kind !== "run") throw invalid(file, "members", `"${name}" is not a run declaration`);
    if (member.dataset !== d.dataset) throw invalid(file, "members", `"${name}" trains on ${member.dataset}, not ${d.dataset}`);
    for (const p of d.profiles) if (!member.profiles.includes(p) && !(p === "extended" && member.profiles.includes("standard"))) {
      throw invalid(file, "profiles", `"${p}" needs run "${name}" in that profile too`);
    }
    return member;
  });
  const split = (r: RunDeclaration) => (r.recipe.validationFraction === 0 ? "no validation split" : `seed ${r.recipe.splitSeed ?? r.recipe.seed}, validation fraction ${r.recipe.validationFraction}`);
  const other = runs.find((r) => split(r) !== split(runs[0]));
  if (other) throw invalid(file, "members", `"${other.name}" validates on another split (${split(other)}) than "${runs[0].name}" (${split(runs[0])})`);
}

export function declaration(name: string, declarations = loadDeclarations()): Declaration {
  const found = declarations.get(name);
  if (!found) throw new Error(`No experiment named "${name}" in experiments/ (declared: ${[...declarations.keys()].join(", ")}).`);
  return found;
}

/** Whether a declaration is made in a profile: quick makes every standard one. */
export function inProfile(d: Declaration, profile: Profile): boolean {
  if (profile === "quick") return d.profiles.includes("standard");
  if (profile === "extended") return true;
  return d.profiles.includes("standard");
}

/** The profile's declarations in the order they are made: studies before the runs that use them, ensembles last. */
export function planOf(profile: Profile, declarations = loadDeclarations()): Declaration[] {
  const chosen = [...declarations.values()].filter((d) => inProfile(d, profile));
  const dependsOnStudy = (d: Declaration) => d.kind === "run" && "study" in d.model;
  return [
    ...chosen.filter((d) => d.kind === "run" && !dependsOnStudy(d)),
    ...chosen.filter((d) => d.kind === "study"),
    ...chosen.filter(dependsOnStudy),
    ...chosen.filter((d) => d.kind === "ensemble"),
  ];
}

/** The profile notebooks run in: NOTEBOOK_MODE (quick, standard, extended; "full" is standard). */
export function notebookProfile(mode: string | undefined = process.env.NOTEBOOK_MODE): Profile {
  if (mode === undefined || mode === "full") return "standard";
  return requireOneOf(mode, PROFILES, "NOTEBOOK_MODE");
}

/**
 * Where notebooks read studies from: STUDY_STORAGE, a PostgreSQL URL whose studies workers made
 * (`npm run tune -- --storage URL --experiment NAME --worker`); undefined: the files under studies/.
 */
export function notebookStudyStorage(url: string | undefined = process.env.STUDY_STORAGE): string | undefined {
  if (url === undefined || url === "") return undefined;
  try {
    checkStorageUrl(url);
  } catch (error) {
    throw new Error(`STUDY_STORAGE: ${(error as Error).message.replace(/^--storage /, "")}`);
  }
  return url;
}

export function parseProfile(value: string): Profile {
  return requireOneOf(value, PROFILES, "--profile");
}

// ---------------------------------------------------------------------------------------
// Where things live

const profileFolder = (profile: Profile) => (profile === "quick" ? ["quick"] : []);
export const runDir = (name: string, profile: Profile, root = PROJECT_ROOT) => path.join(root, "runs", ...profileFolder(profile), name);
export const studyDir = (name: string, profile: Profile, root = PROJECT_ROOT) => path.join(root, "studies", ...profileFolder(profile), name);

// ---------------------------------------------------------------------------------------
// From a declaration to what trains

export function scheduleFor(kind: ScheduleName, rate: number, epochs: number): LearningRateSchedule {
  switch (kind) {
    case "constant":
      return { kind: "constant", rate };
    case "step":
      return { kind: "step", rate, factor: 0.5, every: Math.max(1, Math.round(epochs / 4)) };
    case "one-cycle":
      return { kind: "oneCycle", rate };
    case "warmup-linear":
      return { kind: "warmupLinear", rate, warmup: WARMUP_FRACTION };
    case "warmup-cosine":
      return { kind: "warmupCosine", rate, warmup: WARMUP_FRACTION };
  }
}

export function studySpecOf(d: StudyDeclaration, profile: Profile, space: StudySpec["space"]): StudySpec {
  const quick = profile === "quick";
  const shape = quick ? d.quick ?? { trials: 3, minEpochs: 1, epochs: 2 } : d;
  return {
    name: d.name, space, strategy: d.strategy, seed: d.seed, trials: shape.trials, epochs: shape.epochs, minEpochs: shape.minEpochs,
    eta: d.eta, architecture: d.architecture, validationFraction: d.validationFraction, splitSeed: d.seed, quick,
  };
}

export interface ExperimentContext {
  profile: Profile;
  /** Datasets already loaded (notebooks load each once). */
  data?: Partial<Record<DatasetName, Dataset>>;
  hooks?: RunHooks;
  /** Train what is missing (default); false: only read back, an error when not finished. */
  train?: boolean;
  declarations?: Map<string, Declaration>;
  onStudyProgress?: (progress: StudyProgress) => void;
  /** Where runs/ and studies/ live (tests); default the project. */
  root?: string;
  /**
   * A PostgreSQL URL: studies are read from that database (made there by
   * `npm run tune -- --storage URL --experiment NAME --worker`), not from studies/.
   */
  storage?: string;
}

const notMade = (what: string, name: string, profile: Profile) =>
  new Error(`${what} "${name}" (${profile} profile) is not finished: make it with \`npm run train -- --experiment ${name}${profile === "standard" ? "" : ` --profile ${profile}`}\` or \`npm start${profile === "standard" ? "" : ` -- --profile ${profile}`}\`.`);

/** A study's outcome: trials read back, missing ones trained (unless context.train is false). */
export async function ensureStudy(name: string, context: ExperimentContext): Promise<StudyOutcome & { spec: StudySpec; dir: string }> {
  const declarations = context.declarations ?? loadDeclarations();
  const d = declaration(name, declarations);
  if (d.kind !== "study") throw new Error(`"${name}" is ${d.kind === "run" ? "a run" : "an ensemble"}, not a study.`);
  const spec = studySpecOf(d, context.profile, await readSpace(path.resolve(PROJECT_ROOT, d.space)));
  validateStudy(spec);
  const dir = studyDir(name, context.profile, context.root);
  if (context.storage) return { ...(await readStoredStudy(name, spec, context)), spec, dir };
  // Only reading: a study that never ran is not created by looking for it.
  if (context.train === false && !existsSync(path.join(dir, STUDY_FILE))) throw notMade("Study", name, context.profile);
  const data = await datasetFor(STUDY_DATASET, context);
  const runner: TrialRunner = context.train === false
    ? async () => { throw notMade("Study", name, context.profile); }
    : trainingTrialRunner(spec, data, context.hooks);
  const outcome = await runStudy(dir, spec, runner, context.onStudyProgress);
  return { ...outcome, spec, dir };
}

/** A declared study's outcome from a database; an error when it is not there, not finished, or another study. */
async function readStoredStudy(name: string, spec: StudySpec, context: ExperimentContext): Promise<StudyOutcome> {
  const stored = storedStudyName(name, context.profile);
  const store = await PostgresStudyStore.open(context.storage!);
  try {
    // Opening with the declaration's spec checks that the database holds this same study.
    const found = (await store.studyNames()).includes(stored) ? await store.openStudy(stored, spec).then(() => store.readStudy(stored)) : undefined;
    const start = `npm run tune -- --storage URL --experiment ${name}${context.profile === "standard" ? "" : ` --profile ${context.profile}`} --worker`;
    if (!found) throw new Error(`Study "${stored}" is not in ${store.location}: start its workers with \`${start}\`.`);
    if (!found.finished) throw new Error(`Study "${stored}" in ${store.location} is not finished (${found.trials.length} of ${found.planned} trials): let its workers finish (\`${start}\`).`);
    return { trials: found.trials, best: found.best! };
  } finally {
    await store.close();
  }
}

/** The dataset a study's trials train on. */
export const STUDY_DATASET: DatasetName = "fashion";

export async function datasetFor(name: DatasetName, context: ExperimentContext): Promise<Dataset> {
  const loaded = context.data?.[name];
  if (loaded) return loaded;
  const data = await loadDataset(name);
  context.data = { ...context.data, [name]: data };
  return data;
}

/** The model config and settings a run declaration trains, in a profile. */
export async function runRequestOf(d: RunDeclaration, context: ExperimentContext): Promise<{ config: ModelConfig; settings: RunSettings }> {
  let config: ModelConfig;
  let rate: number;
  const model = d.model;
  if ("preset" in model) {
    config = presetModel(model.preset);
  } else if ("study" in model) {
    const study = await ensureStudy(model.study, context);
    config = tunableModelConfig(study.best.params, d.name, model.architecture ?? study.spec.architecture);
    if (typeof d.recipe.learningRate !== "number") rate = d.recipe.learningRate.timesTuned * study.best.params.learningRate;
  } else {
    config = tunableModelConfig(withDefaults(model.params), d.name, model.architecture);
  }
  rate ??= d.recipe.learningRate as number;
  const quick = context.profile === "quick";
  const epochs = quick ? 1 : d.recipe.epochs;
  return {
    config,
    settings: {
      epochs,
      batchSize: d.recipe.batchSize,
      seed: d.recipe.seed,
      ...(d.recipe.splitSeed === undefined ? {} : { splitSeed: d.recipe.splitSeed }),
      validationFraction: d.recipe.validationFraction,
      schedule: scheduleFor(d.recipe.schedule, rate, epochs),
      patience: null,
      quick,
      augment: d.recipe.augment === "standard" ? STANDARD_AUGMENTATION : d.recipe.augment,
      ...(d.recipe.optimizer === undefined ? {} : { optimizer: d.recipe.optimizer }),
      ...(d.recipe.labelSmoothing === undefined ? {} : { labelSmoothing: d.recipe.labelSmoothing }),
      ...(d.recipe.testTimeAugmentation ? { testTimeAugmentation: true } : {}),
      ...(d.recipe.ema ? { ema: d.recipe.ema } : {}),
      ...(d.recipe.precision ? { precision: d.recipe.precision } : {}),
    },
  };
}

/**
 * A declared run's finished record: read back when it finished with the same content, resumed
 * when interrupted, trained when absent (unless context.train is false: then an error naming
 * the command that makes it).
 */
/** A declared run's record, with its folder and its declaration's name. */
export type ExperimentRun = RunRecord & { dir: string; experiment: string };

export async function ensureExperiment(name: string, context: ExperimentContext): Promise<ExperimentRun> {
  const declarations = context.declarations ?? loadDeclarations();
  const d = declaration(name, declarations);
  if (d.kind !== "run") throw new Error(`"${name}" is ${d.kind === "study" ? "a study; use ensureStudy" : "an ensemble; use ensureEnsemble"}.`);
  if (!inProfile(d, context.profile)) throw new Error(`"${name}" is not in the ${context.profile} profile (its profiles: ${d.profiles.join(", ")}).`);
  const dir = runDir(name, context.profile, context.root);
  if (context.train === false) {
    const { record, stale } = await declaredRunRecord(d, { ...context, declarations });
    if (stale) throw staleRun(dir, name);
    if (record?.status !== "finished") throw notMade("Run", name, context.profile);
    return { ...record, dir, experiment: name };
  }
  const { config, settings } = await runRequestOf(d, { ...context, declarations });
  const data = await datasetFor(d.dataset, context);
  const record = await ensureRun({ config, settings, outDir: dir, dataset: d.dataset, data, hooks: context.hooks }).catch((error: Error) => {
    if (!/holds a different run/.test(error.message)) throw error;
    throw staleRun(dir, name);
  });
  return { ...record, dir, experiment: name };
}

/** The error for a run folder made by another version of its declaration. */
export const staleRun = (dir: string, name: string) =>
  new Error(`${dir} was trained by another version of experiments/${name}.json (its model, recipe or dataset changed since); delete the folder to train the declared one, or give the changed declaration a new name.`);

/**
 * A declared run's record as its folder holds it, and whether it is stale: made by another version of the declaration
 * (its model, recipe or dataset changed since), so that nothing reads or reports it under the declaration's name. A
 * run of a study's choice is not called stale before the study is made (ensureExperiment tells then).
 */
export async function declaredRunRecord(d: RunDeclaration, context: ExperimentContext): Promise<{ dir: string; record?: RunRecord; stale: boolean }> {
  const dir = runDir(d.name, context.profile, context.root);
  const record = await readRecord(dir);
  // A run that had not finished an epoch is trained again from the start (ensureRun).
  if (!record || (record.status === "running" && record.history.length === 0)) return { dir, record: undefined, stale: false };
  let request: { config: ModelConfig; settings: RunSettings };
  try {
    request = await runRequestOf(d, { ...context, train: false });
  } catch (error) {
    if ("study" in d.model && /is not finished/.test((error as Error).message)) return { dir, record, stale: false };
    throw error;
  }
  return { dir, record, stale: !holdsRun(record, request.config, request.settings, d.dataset) };
}

/** A declared study's name in a database (`npm run tune -- --storage URL --experiment NAME`): the profile's folder as a prefix, as under studies/. */
export const storedStudyName = (name: string, profile: Profile) => [...profileFolder(profile), name].join("/");
