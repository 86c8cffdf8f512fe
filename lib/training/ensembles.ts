/**
 * Declared ensembles (`"kind": "ensemble"` in experiments/): the mean of their member runs'
 * class probabilities, each member predicting as its record declares (TTA views averaged when
 * its recipe says so). An ensemble trains nothing; its record (runs/NAME/ensemble.json) holds
 * the validation and test scores measured from the members' saved models, and names the member
 * runs it was made from, so a retrained member makes it again.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { describeBackend, initBackend } from "../accelerator";
import { runProbabilities, runSplit } from "./run";
import { datasetFor, declaration, ensureExperiment, loadDeclarations, runDir, type EnsembleDeclaration, type ExperimentContext, type ExperimentRun, type Profile } from "./declarations";
import { readRecord } from "./records";
import { accuracy, argmaxRows, logLoss } from "../evaluation/metrics";
import { writeJsonAtomic } from "../models/persist";
import { subset, toImageTensor } from "../data/preprocess";
import type { Split } from "../data/datasets";

export const ENSEMBLE_FILE = "ensemble.json";

export interface EnsembleRecord {
  name: string;
  /** The member runs it was made from: a member trained again (another start) makes it stale. */
  members: { name: string; startedAt: string; parameters: number; trainSeconds: number }[];
  /** null when the members train on every training image (no validation split). */
  validation: { loss: number; accuracy: number; images: number } | null;
  test: { loss: number; accuracy: number; correct: number; incorrect: number; images: number };
  createdAt: string;
  backend: string;
}

export type EnsembleResult = EnsembleRecord & { dir: string; experiment: string };

/** The element-wise mean of probability arrays of one shape. */
export function meanProbabilities(members: readonly Float32Array[]): Float32Array {
  if (members.length === 0) throw new Error("An ensemble needs at least one member's probabilities.");
  const mean = new Float32Array(members[0].length);
  for (const p of members) {
    if (p.length !== mean.length) throw new Error(`Members' probabilities differ in size (${p.length} against ${mean.length}).`);
    for (let i = 0; i < p.length; i++) mean[i] += p[i] / members.length;
  }
  return mean;
}

export async function readEnsemble(dir: string): Promise<EnsembleRecord | null> {
  const file = path.join(dir, ENSEMBLE_FILE);
  return existsSync(file) ? (JSON.parse(await readFile(file, "utf8")) as EnsembleRecord) : null;
}

/** Whether a record was made from these member runs (names in order, each run's start). */
const isCurrent = (record: EnsembleRecord | null, runs: readonly { experiment: string; startedAt?: string }[]): record is EnsembleRecord =>
  record !== null &&
  record.members.length === runs.length &&
  record.members.every((m, i) => m.name === runs[i].experiment && m.startedAt === runs[i].startedAt);

/**
 * A declared ensemble's record if it was made from the declared members' current runs; null
 * when it is missing or stale (a member changed or was trained again), so nothing reports
 * scores of other members under the declaration's name.
 */
export async function readCurrentEnsemble(d: EnsembleDeclaration, profile: Profile, root?: string): Promise<EnsembleRecord | null> {
  const record = await readEnsemble(runDir(d.name, profile, root));
  const runs = await Promise.all(d.members.map(async (experiment) => ({ experiment, startedAt: (await readRecord(runDir(experiment, profile, root)))?.startedAt })));
  return isCurrent(record, runs) ? record : null;
}

/**
 * A declared ensemble's record: read back when it was made from the members' current runs,
 * made otherwise. Members are ensured like any run (trained when missing, unless
 * context.train is false).
 */
export async function ensureEnsemble(name: string, context: ExperimentContext): Promise<EnsembleResult> {
  const declarations = context.declarations ?? loadDeclarations();
  const d = declaration(name, declarations);
  if (d.kind !== "ensemble") throw new Error(`"${name}" is a ${d.kind}, not an ensemble.`);
  const runs: ExperimentRun[] = [];
  for (const member of d.members) runs.push(await ensureExperiment(member, { ...context, declarations }));
  const dir = runDir(name, context.profile, context.root);
  const existing = await readEnsemble(dir);
  if (isCurrent(existing, runs)) return { ...existing, dir, experiment: name };

  const data = await datasetFor(d.dataset, context);
  // Members share the validation split (checked when the declarations load).
  const split = runSplit(data.train.labels, runs[0].options);
  const validation = subset(data.train, split.validation.slice(0, runs[0].options.validationImages));
  const classes = data.classNames.length;
  const score = async (images: Split) => {
    const x = toImageTensor(images);
    try {
      const members: Float32Array[] = [];
      for (const run of runs) members.push(await runProbabilities(run.dir, x));
      const mean = meanProbabilities(members);
      return { loss: logLoss(mean, images.labels, classes), accuracy: accuracy(images.labels, argmaxRows(mean, classes), classes) };
    } finally {
      x.dispose();
    }
  };
  const onValidation = validation.count > 0 ? { ...(await score(validation)), images: validation.count } : null;
  const onTest = await score(data.test);
  const correct = Math.round(onTest.accuracy * data.test.count);
  const record: EnsembleRecord = {
    name,
    members: runs.map((r) => ({ name: r.experiment, startedAt: r.startedAt, parameters: r.parameters, trainSeconds: r.trainSeconds })),
    validation: onValidation,
    test: { ...onTest, correct, incorrect: data.test.count - correct, images: data.test.count },
    createdAt: new Date().toISOString(),
    backend: describeBackend(await initBackend()),
  };
  await writeJsonAtomic(path.join(dir, ENSEMBLE_FILE), record);
  return { ...record, dir, experiment: name };
}
