/**
 * npm run results -- [--profile quick|standard|extended] [--markdown | --json]
 *
 * The results table from the run records of a profile's declared runs: recipe, parameters,
 * best epoch, validation and test accuracy (95% Wilson interval), training time, backend, and
 * the command that reproduces each run. Runs not trained yet are listed as such.
 */
import { parseCommandLine, runCommand, textTable, usageCheck, UsageError } from "../lib/tooling/cli";
import { parseProfile } from "../lib/training/declarations";
import { machineLine, markdownTable, RESULT_COLUMNS, resultCells, resultRows } from "../lib/evaluation/results";

const USAGE = `Usage: npm run results -- [--profile quick|standard|extended] [--markdown | --json]

  --profile NAME  whose runs (default standard)
  --markdown      a markdown table (what the README shows), with the date and machine
  --json          the rows as JSON`;

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    { profile: { type: "string", default: "standard" }, markdown: { type: "boolean", default: false }, json: { type: "boolean", default: false } },
    process.argv.slice(2),
  );
  if (values.markdown && values.json) throw new UsageError("--markdown and --json exclude each other.");
  const profile = usageCheck(() => parseProfile(values.profile));
  const rows = await resultRows(profile);
  if (values.json) {
    process.stdout.write(JSON.stringify({ profile, machine: machineLine(), rows }, null, 2) + "\n");
    return;
  }
  if (values.markdown) {
    process.stdout.write(
      `${markdownTable(RESULT_COLUMNS, rows.map(resultCells))}\n\n` +
        `\`npm run results -- --markdown\` (${profile} profile), ${machineLine()}. Each run: \`npm run train -- --experiment NAME\`.\n`,
    );
    return;
  }
  process.stdout.write(textTable(RESULT_COLUMNS, rows.map(resultCells)) + "\n");
  const missing = rows.filter((r) => r.status !== "finished");
  if (missing.length > 0) process.stderr.write(`${missing.length} of ${rows.length} runs not finished: \`npm run plan${profile === "standard" ? "" : ` -- --profile ${profile}`}\` makes them.\n`);
});
