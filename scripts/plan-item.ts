/**
 * Makes one declaration of a plan in its own process, for `npm run plan -- --jobs N` (not a
 * command for people). Arguments: NAME PROFILE, or --measure PROFILE NAME... to time those
 * declarations' networks (the plan's estimate); the parent sets TFJS_WASM_THREADS to the job's
 * share of the cores. Progress and the final summary go to the parent over the IPC channel,
 * which is also the worker's lifeline: when the parent dies, however, the worker stops (the
 * last finished epoch is committed; the next plan resumes from there).
 */
import { initBackend } from "../lib/accelerator";
import { parseProfile } from "../lib/training/declarations";
import { datasetLoadSeconds, makeItem, measureItemCosts, planItems, type ItemEvent, type PlanCosts } from "../lib/training/plan";

/** Messages to the parent. */
export type PlanItemMessage = { event: ItemEvent } | { summary: string } | { costs: PlanCosts };

process.on("disconnect", () => {
  process.stderr.write("the plan's process is gone; stopping\n");
  process.exit(1);
});

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const measure = args[0] === "--measure";
  const [profileName, ...names] = measure ? args.slice(1) : [args[1], ...args.slice(0, 1)];
  if (!profileName || names.length === 0 || !process.send) throw new Error("usage: plan-item.ts NAME PROFILE | --measure PROFILE NAME... (started by npm run plan --jobs)");
  const send = (message: PlanItemMessage) =>
    new Promise<void>((resolve, reject) => process.send!(message, undefined, {}, (error) => (error ? reject(error) : resolve())));
  await initBackend();
  if (measure) {
    // An item's process gets this far before it loads its dataset: Node, the imports, the backend.
    const ready = process.uptime();
    const all = await planItems(parseProfile(profileName));
    const items = names.map((n) => all.find((item) => item.declaration.name === n) ?? missing(n));
    const itemStartSeconds = ready + (await datasetLoadSeconds(items));
    await send({ costs: { networks: await measureItemCosts(items), itemStartSeconds } });
    return;
  }
  const summary = await makeItem(names[0], { profile: parseProfile(profileName) }, (event) => void send({ event }));
  // Exit only once the summary is out: process.exit would drop a message still queued.
  await send({ summary });
}

function missing(name: string): never {
  throw new Error(`${name} is not a declaration of this profile`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
