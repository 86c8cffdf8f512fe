/** Argument checks shared by the library and the scripts (turning flags' strings into values lives in lib/tooling/cli.ts). */

/** Throws "`name` must be a positive integer, got `value`." unless `value` is one. */
export function requirePositiveInt(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${value}.`);
}

/** Returns `value` narrowed to the names it may take; throws "`name` must be one of a, b, got "`value`"." otherwise. */
export function requireOneOf<T extends string>(value: string, allowed: readonly T[], name: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`${name} must be one of ${allowed.join(", ")}, got "${value}".`);
  return value as T;
}
