/**
 * npm run plan -- [--profile quick|standard|extended] [--jobs N] [--dry-run] [--json]
 *
 * Makes what the profile's declarations (experiments/*.json) still lack: runs, studies, and
 * the runs that train a study's choice once the study is made. Finished work is read back, an
 * interrupted run resumes from its last epoch, a study from its last trial. Prints the
 * estimate for the whole plan first, then one line per epoch with the plan's ETA.
 */
import { availableParallelism } from "node:os";
import { describeBackend, initBackend } from "../lib/accelerator";
import { parseCommandLine, positiveInt, runCommand, textTable, usageCheck } from "../lib/tooling/cli";
import { readCurrentEnsemble } from "../lib/training/ensembles";
import { parseProfile, planOf, type Profile } from "../lib/training/declarations";
import { formatDuration, makePlan, meanCosts, planItems, type CostMeasurer, type ItemRunner, type PlanCosts, type PlanItem } from "../lib/training/plan";
import { describeExit, runWorker } from "../lib/tooling/workers";
import type { PlanItemMessage } from "./plan-item";

const USAGE = `Usage: npm run plan -- [--profile quick|standard|extended] [--jobs N] [--dry-run] [--json]

  --profile NAME  quick (CI: small subsets, one epoch), standard (default: what npm start
                  reports), extended (standard plus the long runs)
  --jobs N        make up to N declarations at once, each in its own process with its share of
                  the cores (default: the number of cores; 1 trains in this process). On 2 cores,
                  two 1-thread processes train 1.4-1.7x the images per second of one 2-thread
                  process (docs/backend.md)
  --dry-run       list what is finished and what is left, train nothing
  --json          print the outcome as JSON`;

/** Makes each item in a worker process (scripts/plan-item.ts) with `threads` wasm threads. */
function processRunner(profile: Profile): ItemRunner {
  return async (item, threads, onEvent) => {
    let summary: string | undefined;
    const exit = await runWorker({
      script: "scripts/plan-item.ts",
      args: [item.declaration.name, profile],
      threads,
      // stdout stays this process's own (--json), so whatever a worker prints goes to stderr.
      stdout: "stderr",
      onMessage: (message) => {
        const m = message as PlanItemMessage;
        if ("event" in m) onEvent(m.event);
        else if ("summary" in m) summary = m.summary;
      },
    });
    if (exit.code === 0 && summary !== undefined) return summary;
    throw new Error(`its process failed (${describeExit(exit)})`);
  };
}

/** Times the items' networks, and an item's start, in a worker process with a job's `threads` wasm threads. */
async function measureInWorker(profile: Profile, items: PlanItem[], threads: number): Promise<PlanCosts> {
  let costs: PlanCosts | undefined;
  const exit = await runWorker({
    script: "scripts/plan-item.ts",
    args: ["--measure", profile, ...items.map((item) => item.declaration.name)],
    threads,
    stdout: "stderr",
    onMessage: (message) => {
      const m = message as PlanItemMessage;
      if ("costs" in m) costs = m.costs;
    },
  });
  if (exit.code === 0 && costs?.networks.length === items.length) return costs;
  throw new Error(`timing the networks failed (${describeExit(exit)})`);
}

/**
 * Times the networks in one worker per job at once, each timing them all: every network is timed while the other jobs'
 * processes train too, as the plan's jobs will (sharing the memory bus and caches); the costs are their means.
 */
function processMeasurer(profile: Profile, jobs: number): CostMeasurer {
  return async (items, threads) => meanCosts(await Promise.all(Array.from({ length: jobs }, () => measureInWorker(profile, items, threads))));
}

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    {
      profile: { type: "string", default: "standard" },
      jobs: { type: "string", default: String(availableParallelism()) },
      "dry-run": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
    process.argv.slice(2),
  );
  const profile = usageCheck(() => parseProfile(values.profile));
  const jobs = usageCheck(() => positiveInt(values.jobs, "--jobs", 1));
  const log = (line: string) => process.stderr.write(line + "\n");
  if (values["dry-run"]) {
    const rows = (await planItems(profile)).map((i) => ({
      name: i.declaration.name, kind: i.declaration.kind, epochs: i.epochsTotal, done: i.epochsTotal - i.epochsLeft, status: i.epochsLeft === 0 ? "finished" : "to make",
    }));
    // Ensembles train nothing: they are scored from their members' models once those are made.
    for (const d of planOf(profile)) {
      if (d.kind === "ensemble") rows.push({ name: d.name, kind: d.kind, epochs: 0, done: 0, status: (await readCurrentEnsemble(d, profile)) ? "finished" : "to make" });
    }
    if (values.json) process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
    else process.stdout.write(textTable(["declaration", "kind", "epochs", "done", "status"], rows.map((r) => [r.name, r.kind, r.epochs, r.done, r.status])) + "\n");
    return;
  }
  const backend = await initBackend();
  log(`backend: ${describeBackend(backend)}`);
  const outcome = await makePlan({
    profile, log, jobs, runner: jobs > 1 ? processRunner(profile) : undefined, measurer: jobs > 1 ? processMeasurer(profile, jobs) : undefined,
  });
  if (values.json) process.stdout.write(JSON.stringify({ profile, jobs, ...outcome }, null, 2) + "\n");
  else log(`plan (${profile}) done in ${formatDuration(outcome.seconds)}; trained: ${outcome.trained.join(", ") || "nothing (all finished)"}`);
});
