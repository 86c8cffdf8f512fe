/**
 * Tables and figures of a tuning study (notebook 05): every trial as a row, validation
 * accuracy in the order the trials ran with the best so far, parallel coordinates of the
 * parameters against the score, and each parameter's effect.
 */
import { frame } from "./frames";
import { lineChart, parallelCoordinates, scatterByGroup, type PlotlyFigure } from "./plots";
import type { SearchSpace, StudyProgress, TrialResult, TunableName } from "../training/tuning";

/** The parameters a space actually varies (a choice of one value is a constant, not searched). */
export function searchedParameters(space: SearchSpace): TunableName[] {
  return (Object.keys(space) as TunableName[]).filter((name) => {
    const spec = space[name]!;
    return spec.kind === "choice" ? spec.values.length > 1 : spec.low !== spec.high;
  });
}

/** The line a study prints after each trial (`npm run tune` and notebook 05): trial k of n, best so far, time left. */
export function progressText(p: StudyProgress): string {
  const eta = p.etaSeconds > 0 ? `, ETA ~${Math.ceil(p.etaSeconds / 60)} min` : "";
  return `trial ${p.done} of ${p.planned}${p.reused ? " (read back)" : ""}: val acc ${p.trial.valAccuracy.toFixed(4)} at ${p.trial.epochs} epochs | best so far ${p.best.valAccuracy.toFixed(4)}${eta}`;
}

/** What a study cost: trials, trial-epochs, training minutes summed over trials, and the backends that ran them. */
export function studySummary(trials: TrialResult[]): string {
  const minutes = trials.reduce((sum, t) => sum + t.seconds, 0) / 60;
  return `${trials.length} trials, ${trials.reduce((sum, t) => sum + t.epochs, 0)} trial-epochs, ${minutes.toFixed(1)} minutes of training` +
    ` (summed over trials; backends: ${[...new Set(trials.map((t) => t.backend))].join(", ")})`;
}

/** A parameter's value as a number for plotting (booleans as 0/1). */
const numeric = (trial: TrialResult, name: TunableName): number => Number(trial.params[name]);

/** All trials, the longest-trained first and best first within a budget. */
export function studyTable(trials: TrialResult[], names: TunableName[]) {
  const sorted = [...trials].sort((a, b) => b.epochs - a.epochs || b.valAccuracy - a.valAccuracy);
  return frame(
    sorted.map((t) => [t.rung, t.epochs, ...names.map((name) => numeric(t, name)), t.valAccuracy, Math.round(t.seconds)]),
    ["rung", "epochs", ...names, "val acc", "seconds"],
  );
}

/** The per-trial line with the best so far, rung 0's parallel coordinates, one effect plot per parameter. */
export function studyFigures(trials: TrialResult[], names: TunableName[], title: string): PlotlyFigure[] {
  if (trials.length === 0) throw new Error("studyFigures: the study has no finished trials.");
  const order = trials.map((_, i) => i + 1);
  let bestSoFar = -Infinity;
  const progress = lineChart(
    [
      { name: "trial", x: order, y: trials.map((t) => t.valAccuracy) },
      { name: "best so far", x: order, y: trials.map((t) => (bestSoFar = Math.max(bestSoFar, t.valAccuracy))) },
    ],
    { title: `${title}: validation accuracy per trial`, xTitle: "trial (in the order they ran)", yTitle: "validation accuracy", height: 360 },
  );
  // Rung 0 trains every configuration for the same epochs, so its scores compare like with like.
  const firstRung = trials.filter((t) => t.rung === 0);
  const epochs = firstRung[0]?.epochs ?? trials[0].epochs;
  const coordinates = parallelCoordinates(
    names.map((name) => ({ label: name, values: firstRung.map((t) => numeric(t, name)) })),
    { label: "val acc", values: firstRung.map((t) => t.valAccuracy) },
    { title: `${title}: parameters against score, rung 0 (${epochs} epoch${epochs === 1 ? "" : "s"} each)` },
  );
  const effects = names.map((name) =>
    scatterByGroup(
      trials.map((t) => ({ x: numeric(t, name), y: t.valAccuracy, group: `${t.epochs} epoch${t.epochs === 1 ? "" : "s"}` })),
      { title: `${title}: effect of ${name}`, xTitle: name, yTitle: "validation accuracy", height: 300 },
    ),
  );
  return [progress, coordinates, ...effects];
}
