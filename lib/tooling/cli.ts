/** What every command-line entry point shares: argument errors, failures on stderr, exit codes. */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A mistake in how the command was called: printed with the usage, exit code 2. */
export class UsageError extends Error {}

/** Runs a check of the command's arguments; its error becomes a UsageError. */
export function usageCheck<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Parses argv strictly (unknown flags, and positionals unless allowed, are usage errors). */
export function parseCommandLine<T extends NonNullable<ParseArgsConfig["options"]>>(options: T, argv: string[], allowPositionals = false) {
  return usageCheck(() => parseArgs({ args: argv, options, strict: true, allowPositionals }));
}

/**
 * Runs a command's main function (or prints the usage for --help / -h): on failure prints
 * `error: <message>` on stderr (the usage too for a UsageError) and exits non-zero, so no
 * entry point ever fails silently.
 */
export function runCommand(usage: string, main: () => Promise<void>, argv: string[] = process.argv.slice(2)): void {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(usage + "\n");
    return;
  }
  main().then(
    () => {
      process.exitCode = process.exitCode ?? 0;
    },
    (error: unknown) => {
      const message = error instanceof Error ? error.message : String(error);
      process.stderr.write(`error: ${message}\n`);
      if (error instanceof UsageError) {
        process.stderr.write(`\n${usage}\n`);
        process.exitCode = 2;
      } else {
        if (process.env.DEBUG && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
        process.exitCode = 1;
      }
    },
  );
}

/** A command-line flag's value as a positive integer (`fallback` when absent); anything else is an error. */
export function positiveInt(value: string | undefined, flag: string, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw new Error(`${flag} needs a value.`);
    return fallback;
  }
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got "${value}".`);
  return n;
}

/** Right-aligned numbers with thousands separators, for tables people read. */
export function formatCount(value: number): string {
  return value.toLocaleString("en-US");
}

/** A plain text table: first column left-aligned, the others right-aligned. */
export function textTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((row) => row.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((row) => row[c].length)));
  return cells
    .map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  "))
    .join("\n");
}

/** A command line people can paste: arguments with spaces or shell characters single-quoted. */
export function shellCommand(args: string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
}
