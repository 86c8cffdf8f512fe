/**
 * The project's one rule for "best", for epochs of a run, trials of a study and runs of a
 * report alike: the higher validation accuracy; at equal accuracy (6,000 validation images
 * give steps of 1/6,000) the lower validation loss; still equal, the earlier candidate. Test
 * accuracy never takes part.
 */
export interface Validated {
  valAccuracy: number;
  /** Left out where a candidate has none (it then only breaks ties between candidates that have one). */
  valLoss?: number;
}

/** Negative when `a` is better than `b`, positive when worse, 0 when the rule cannot tell them apart. */
export function compareByValidation(a: Validated, b: Validated): number {
  if (a.valAccuracy !== b.valAccuracy) return b.valAccuracy - a.valAccuracy;
  if (a.valLoss !== undefined && b.valLoss !== undefined && a.valLoss !== b.valLoss) return a.valLoss - b.valLoss;
  return 0;
}

/**
 * Whether `candidate` improves on `incumbent` by the rule, its accuracy by more than `minDelta`
 * when one is given (early stopping's patience counts epochs without such an improvement).
 */
export function improvesOn(candidate: Validated, incumbent: Validated | undefined, minDelta = 0): boolean {
  if (incumbent === undefined) return true;
  if (minDelta > 0) return candidate.valAccuracy > incumbent.valAccuracy + minDelta;
  return compareByValidation(candidate, incumbent) < 0;
}

/** The best of `items` by the rule (the earliest among equals); undefined for none. */
export function bestByValidation<T>(items: readonly T[], validation: (item: T) => Validated): T | undefined {
  let best: T | undefined;
  for (const item of items) if (best === undefined || compareByValidation(validation(item), validation(best)) < 0) best = item;
  return best;
}

/** `items` from best to worst by the rule (stable: equals keep their order). */
export function rankByValidation<T>(items: readonly T[], validation: (item: T) => Validated): T[] {
  return [...items].sort((a, b) => compareByValidation(validation(a), validation(b)));
}
