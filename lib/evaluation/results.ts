/**
 * The results table, computed from run records: one row per declared run of a profile, with
 * the recipe it was trained by and the command that reproduces it. The README's table is the
 * output of `npm run results -- --markdown`, never typed in.
 */
import os from "node:os";
import { ONEDNN_WORDS } from "../accelerator";
import { readCurrentEnsemble } from "../training/ensembles";
import { declaredRunRecord, loadDeclarations, planOf, type Declaration, type EnsembleDeclaration, type Profile, type RunDeclaration } from "../training/declarations";
import { STANDARD_AUGMENTATION } from "../data/augment";
import { wilsonInterval } from "./metrics";
import type { RunRecord } from "../training/records";

/** Test accuracies the reference studies publish for the presets they share with this project. */
export const REFERENCE_TEST_ACCURACY: Readonly<Record<string, number>> = { ann: 0.899, cnn1: 0.918, cnn2: 0.923, cnn3: 0.929 };

/**
 * Time-to-accuracy anchors measured outside this project, shown beside its runs: PyTorch 1.13
 * (Debian) training a VGG-style BN net like vgg-bn in bf16 on 2 threads of the project's Xeon
 * with AMX (SGD-Nesterov, label smoothing 0.1, flip + crop, warm-up then linear decay; random
 * erasing from 32 epochs), test accuracy with flip TTA, as measured for the time-to-accuracy
 * issue in November 2026. Their machine ran up to 2.5× faster or slower within the hour.
 */
export const PYTORCH_ANCHORS: readonly { label: string; minutes: number; testAccuracy: number }[] = [
  { label: "PyTorch bf16, 7 epochs", minutes: 3.6, testAccuracy: 0.9358 },
  { label: "PyTorch bf16, 32 epochs", minutes: 16.6, testAccuracy: 0.9464 },
  { label: "PyTorch bf16, 58 epochs", minutes: 41.3, testAccuracy: 0.9491 },
];

export interface ResultRow {
  run: string;
  title: string;
  dataset: string;
  model: string;
  recipe: string;
  parameters: number | null;
  /** 1-based, as people count epochs. */
  bestEpoch: number | null;
  epochs: number | null;
  valAccuracy: number | null;
  testAccuracy: number | null;
  testInterval: [number, number] | null;
  trainSeconds: number | null;
  backend: string | null;
  /** stale: the folder holds a run of another version of the declaration, whose scores are not shown. */
  status: "finished" | "running" | "missing" | "stale";
  command: string;
}

function recipeText(d: RunDeclaration, record: RunRecord | undefined): string {
  const r = d.recipe;
  const rate = record ? record.options.schedule.rate : typeof r.learningRate === "number" ? r.learningRate : NaN;
  const tuned = typeof r.learningRate === "number" ? "" : ` (${r.learningRate.timesTuned}× tuned)`;
  const epochs = record?.options.epochs ?? r.epochs;
  const optimizer = r.optimizer && r.optimizer !== "adam" ? `${r.optimizer} ` : "";
  const augment = record ? record.options.augment : r.augment === "standard" ? STANDARD_AUGMENTATION : r.augment;
  return `${epochs} ep, ${optimizer}${r.schedule} lr ${Number.isNaN(rate) ? "?" : rate.toPrecision(3)}${tuned}, batch ${record?.options.batchSize ?? r.batchSize}` +
    `${r.labelSmoothing ? `, label smoothing ${r.labelSmoothing}` : ""}${augment ? `, augmented (${Object.keys(augment).join(", ")})` : ""}` +
    `${r.ema ? `, EMA ${r.ema.decay}` : ""}${r.precision === "bf16" ? ", bf16 steps" : ""}${r.testTimeAugmentation ? ", test-time augmentation" : ""}, seed ${r.seed}` +
    `${r.splitSeed !== undefined && r.splitSeed !== r.seed ? ` (split seed ${r.splitSeed})` : ""}`;
}

/**
 * A record's backend in a few words: name, threads, oneDNN where it ran, and the precision when not fp32 (e.g. "wasm, 1
 * thread + oneDNN, bf16"). Where oneDNN did not run, the line still names it in the reason why.
 */
export function backendSummary(backend: RunRecord["backend"]): string {
  const { name, threads, description, precision } = backend;
  const oneDnn = description.includes(ONEDNN_WORDS) ? " + oneDNN" : "";
  return `${name}, ${threads ?? "?"} thread${threads === 1 ? "" : "s"}${oneDnn}${precision && precision !== "fp32" ? `, ${precision}` : ""}`;
}

export const experimentCommand = (name: string, profile: Profile) =>
  `npm run train -- --experiment ${name}${profile === "standard" ? "" : ` --profile ${profile}`}`;

export async function resultRows(profile: Profile, declarations: Map<string, Declaration> = loadDeclarations(), root?: string): Promise<ResultRow[]> {
  const rows: ResultRow[] = [];
  for (const d of planOf(profile, declarations)) {
    if (d.kind === "ensemble") {
      rows.push(await ensembleRow(d, profile, root));
      continue;
    }
    if (d.kind !== "run") continue;
    const found = await declaredRunRecord(d, { profile, declarations, root });
    const record = found.stale ? undefined : found.record;
    const test = record?.test ?? null;
    const interval = test ? wilsonInterval(test.correct, test.images) : null;
    rows.push({
      run: d.name,
      title: d.title,
      dataset: d.dataset,
      model: record?.model.name ?? ("preset" in d.model ? d.model.preset : "study" in d.model ? `best of ${d.model.study}` : d.model.architecture),
      recipe: recipeText(d, record),
      parameters: record?.parameters ?? null,
      bestEpoch: record?.bestEpoch === null || record?.bestEpoch === undefined ? null : record.bestEpoch + 1,
      epochs: record ? record.history.length : null,
      valAccuracy: record?.validation?.accuracy ?? null,
      testAccuracy: test?.accuracy ?? null,
      testInterval: interval ? [interval.lower, interval.upper] : null,
      trainSeconds: record ? record.trainSeconds : null,
      backend: record ? backendSummary(record.backend) : null,
      status: found.stale ? "stale" : record?.status === "finished" ? "finished" : record ? "running" : "missing",
      command: experimentCommand(d.name, profile),
    });
  }
  // An ensemble with a stale member shows no scores either.
  const stale = new Set(rows.filter((row) => row.status === "stale").map((row) => row.run));
  return rows.map((row) => {
    const d = declarations.get(row.run);
    if (d?.kind !== "ensemble" || !d.members.some((member) => stale.has(member))) return row;
    return { ...row, status: "stale", parameters: null, valAccuracy: null, testAccuracy: null, testInterval: null, trainSeconds: null, backend: null };
  });
}

/** An ensemble's row: its members' parameters and training time summed, scored from its record (when current). */
async function ensembleRow(d: EnsembleDeclaration, profile: Profile, root?: string): Promise<ResultRow> {
  const record = await readCurrentEnsemble(d, profile, root);
  const interval = record ? wilsonInterval(record.test.correct, record.test.images) : null;
  return {
    run: d.name,
    title: d.title,
    dataset: d.dataset,
    model: `mean of ${d.members.join(", ")}`,
    recipe: "members' probabilities averaged (each predicting as its recipe declares)",
    parameters: record ? record.members.reduce((sum, m) => sum + m.parameters, 0) : null,
    bestEpoch: null,
    epochs: null,
    valAccuracy: record?.validation?.accuracy ?? null,
    testAccuracy: record?.test.accuracy ?? null,
    testInterval: interval ? [interval.lower, interval.upper] : null,
    trainSeconds: record ? record.members.reduce((sum, m) => sum + m.trainSeconds, 0) : null,
    backend: record ? "its members'" : null,
    status: record ? "finished" : "missing",
    command: experimentCommand(d.name, profile),
  };
}

const percent = (v: number | null) => (v === null ? "–" : `${(100 * v).toFixed(2)}%`);

export const RESULT_COLUMNS = ["run", "dataset", "model", "recipe", "parameters", "best epoch", "val acc", "test acc (95% CI)", "train time", "backend"];

export function resultCells(row: ResultRow): string[] {
  return [
    row.run,
    row.dataset,
    row.model,
    row.recipe,
    row.parameters === null ? "–" : row.parameters.toLocaleString("en-US"),
    row.bestEpoch === null ? "–" : `${row.bestEpoch}/${row.epochs}`,
    percent(row.valAccuracy),
    row.testAccuracy === null ? { missing: "not trained", stale: "stale: declaration changed", running: "running", finished: "–" }[row.status] : `${percent(row.testAccuracy)} (${(100 * row.testInterval![0]).toFixed(2)}–${(100 * row.testInterval![1]).toFixed(2)})`,
    row.trainSeconds === null ? "–" : `${Math.round(row.trainSeconds).toLocaleString("en-US")} s`,
    row.backend ?? "–",
  ];
}

/** A declaration with a training budget, against its record: the time-to-accuracy table. */
export interface BudgetRow {
  run: string;
  budgetMinutes: number;
  /** Training minutes as recorded (an ensemble: its members' summed). */
  minutes: number | null;
  withinBudget: boolean | null;
  epochs: number | null;
  valAccuracy: number | null;
  testAccuracy: number | null;
  backend: string | null;
  /** The best PyTorch anchor that trained no longer than the budget, for comparison. */
  anchor: (typeof PYTORCH_ANCHORS)[number] | null;
  command: string;
}

/** The profile's declarations that declare budgetMinutes, shortest budget first, from their records. */
export async function budgetRows(profile: Profile, declarations: Map<string, Declaration> = loadDeclarations(), root?: string): Promise<BudgetRow[]> {
  const budgets = new Map(planOf(profile, declarations).flatMap((d) => (d.kind !== "study" && d.budgetMinutes !== undefined ? [[d.name, d.budgetMinutes] as const] : [])));
  const rows = (await resultRows(profile, declarations, root)).filter((row) => budgets.has(row.run));
  return rows
    .map((row): BudgetRow => {
      const budgetMinutes = budgets.get(row.run)!;
      const minutes = row.trainSeconds === null ? null : row.trainSeconds / 60;
      const anchor = PYTORCH_ANCHORS.filter((a) => a.minutes <= budgetMinutes).reduce<BudgetRow["anchor"]>((best, a) => (best && best.testAccuracy >= a.testAccuracy ? best : a), null);
      return {
        run: row.run, budgetMinutes, minutes, withinBudget: minutes === null ? null : minutes <= budgetMinutes,
        epochs: row.epochs, valAccuracy: row.valAccuracy, testAccuracy: row.testAccuracy, backend: row.backend, anchor, command: row.command,
      };
    })
    .sort((a, b) => a.budgetMinutes - b.budgetMinutes);
}

export const BUDGET_COLUMNS = ["budget", "run", "training", "epochs", "val acc", "test acc", "backend", "PyTorch anchor within the budget"];

export function budgetCells(row: BudgetRow): string[] {
  const minutes = (m: number) => `${m.toFixed(1)} min`;
  return [
    `${row.budgetMinutes} min`,
    row.run,
    row.minutes === null ? "not trained" : `${minutes(row.minutes)}${row.withinBudget ? "" : " (over budget)"}`,
    row.epochs === null ? "–" : String(row.epochs),
    percent(row.valAccuracy),
    percent(row.testAccuracy),
    row.backend ?? "–",
    row.anchor ? `${percent(row.anchor.testAccuracy)} (${row.anchor.label}, ${minutes(row.anchor.minutes)})` : "none",
  ];
}

/** Where and when the table was made: pasted with it. */
export function machineLine(now = new Date()): string {
  const cpus = os.cpus();
  return `${now.toISOString().slice(0, 16).replace("T", " ")} UTC, ${cpus[0]?.model.trim() ?? "unknown CPU"}, ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}`;
}

export function markdownTable(header: string[], rows: string[][]): string {
  const escape = (cell: string) => cell.replace(/\|/g, "\\|");
  return [
    `| ${header.map(escape).join(" | ")} |`,
    `| ${header.map((_, i) => (i < 4 ? "---" : "---:")).join(" | ")} |`,
    ...rows.map((row) => `| ${row.map(escape).join(" | ")} |`),
  ].join("\n");
}
