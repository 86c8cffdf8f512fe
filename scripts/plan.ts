/**
 * npm run plan -- [--profile quick|standard|extended] [--dry-run] [--json]
 *
 * Makes what the profile's declarations (experiments/*.json) still lack, in order: runs,
 * studies, then the runs that train a study's choice. Finished work is read back, an
 * interrupted run resumes from its last epoch, a study from its last trial. Prints the
 * estimate for the whole plan first, then one line per epoch with the plan's ETA.
 */
import { describeBackend, initBackend } from "../lib/backend";
import { parseCommandLine, runCommand, textTable, usageCheck } from "../lib/cli";
import { parseProfile } from "../lib/experiments";
import { formatDuration, makePlan, planItems } from "../lib/plan";

const USAGE = `Usage: npm run plan -- [--profile quick|standard|extended] [--dry-run] [--json]

  --profile NAME  quick (CI: small subsets, one epoch), standard (default: what npm start
                  reports), extended (standard plus the long runs)
  --dry-run       list what is finished and what is left, train nothing
  --json          print the outcome as JSON`;

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    { profile: { type: "string", default: "standard" }, "dry-run": { type: "boolean", default: false }, json: { type: "boolean", default: false } },
    process.argv.slice(2),
  );
  const profile = usageCheck(() => parseProfile(values.profile));
  const log = (line: string) => process.stderr.write(line + "\n");
  if (values["dry-run"]) {
    const items = await planItems(profile);
    const rows = items.map((i) => [i.declaration.name, i.declaration.kind, i.epochsTotal, i.epochsTotal - i.epochsLeft, i.epochsLeft === 0 ? "finished" : "to make"]);
    if (values.json) process.stdout.write(JSON.stringify(items.map((i) => ({ name: i.declaration.name, kind: i.declaration.kind, epochs: i.epochsTotal, done: i.epochsTotal - i.epochsLeft })), null, 2) + "\n");
    else process.stdout.write(textTable(["declaration", "kind", "epochs", "done", "status"], rows) + "\n");
    return;
  }
  const backend = await initBackend();
  log(`backend: ${describeBackend(backend)}`);
  const outcome = await makePlan({ profile, log });
  if (values.json) process.stdout.write(JSON.stringify({ profile, ...outcome }, null, 2) + "\n");
  else log(`plan (${profile}) done in ${formatDuration(outcome.seconds)}; trained: ${outcome.trained.join(", ") || "nothing (all finished)"}`);
});
