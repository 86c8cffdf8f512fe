/**
 * npm run results -- [--profile quick|standard|extended] [--budgets] [--markdown | --json]
 *
 * The results table from the run records of a profile's declared runs: recipe, parameters,
 * best epoch, validation and test accuracy (95% Wilson interval), training time, backend, and
 * the command that reproduces each run. Runs not trained yet are listed as such. --budgets:
 * the declarations with a training budget, each against its recorded minutes.
 */
import { parseCommandLine, runCommand, textTable, usageCheck, UsageError } from "../lib/tooling/cli";
import { parseProfile } from "../lib/training/declarations";
import { BUDGET_COLUMNS, budgetCells, budgetRows, machineLine, markdownTable, RESULT_COLUMNS, resultCells, resultRows } from "../lib/evaluation/results";

const USAGE = `Usage: npm run results -- [--profile quick|standard|extended] [--budgets] [--markdown | --json]

  --profile NAME  whose runs (default standard; extended with --budgets)
  --budgets       only the runs and ensembles that declare budgetMinutes: training minutes
                  against the budget, test accuracy, and the best PyTorch anchor within it
  --markdown      a markdown table (what the README shows), with the date and machine
  --json          the rows as JSON`;

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    {
      profile: { type: "string" }, budgets: { type: "boolean", default: false },
      markdown: { type: "boolean", default: false }, json: { type: "boolean", default: false },
    },
    process.argv.slice(2),
  );
  if (values.markdown && values.json) throw new UsageError("--markdown and --json exclude each other.");
  // The budget recipes are declared in the extended profile.
  const defaultProfile = values.budgets ? "extended" : "standard";
  const profile = usageCheck(() => parseProfile(values.profile ?? defaultProfile));
  const command = `npm run results -- ${profile === defaultProfile ? "" : `--profile ${profile} `}${values.budgets ? "--budgets " : ""}--markdown`;
  if (values.budgets) {
    const rows = await budgetRows(profile);
    if (rows.length === 0) throw new UsageError(`No declaration of the ${profile} profile declares budgetMinutes.`);
    if (values.json) process.stdout.write(JSON.stringify({ profile, machine: machineLine(), rows }, null, 2) + "\n");
    else if (values.markdown) process.stdout.write(`${markdownTable(BUDGET_COLUMNS, rows.map(budgetCells))}\n\n\`${command}\`, ${machineLine()}.\n`);
    else process.stdout.write(textTable(BUDGET_COLUMNS, rows.map(budgetCells)) + "\n");
    return;
  }
  const rows = await resultRows(profile);
  if (values.json) process.stdout.write(JSON.stringify({ profile, machine: machineLine(), rows }, null, 2) + "\n");
  else if (values.markdown) {
    process.stdout.write(
      `${markdownTable(RESULT_COLUMNS, rows.map(resultCells))}\n\n` +
        `\`${command}\` (${profile} profile), ${machineLine()}. Each run: \`npm run train -- --experiment NAME${profile === "standard" ? "" : ` --profile ${profile}`}\`.\n`,
    );
  } else process.stdout.write(textTable(RESULT_COLUMNS, rows.map(resultCells)) + "\n");
  const missing = rows.filter((r) => r.status === "missing" || r.status === "running");
  const stale = rows.filter((r) => r.status === "stale");
  if (missing.length > 0) process.stderr.write(`${missing.length} of ${rows.length} runs not finished: \`npm run plan${profile === "standard" ? "" : ` -- --profile ${profile}`}\` makes them.\n`);
  if (stale.length > 0) {
    const names = stale.map((r) => r.run).join(", ");
    process.stderr.write(`${names}: trained by another version of ${stale.length === 1 ? "its declaration" : "their declarations"} (scores not shown); delete ${stale.length === 1 ? "its folder" : "their folders"} under runs/ and \`npm run plan\` trains the declared ${stale.length === 1 ? "run" : "runs"}.\n`);
  }
});
