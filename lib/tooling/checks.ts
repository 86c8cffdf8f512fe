/** Argument checks shared by the library (the command line's own live in lib/tooling/cli.ts). */

/** Throws "`name` must be a positive integer, got `value`." unless `value` is one. */
export function requirePositiveInt(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${value}.`);
}
