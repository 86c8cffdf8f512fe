/**
 * The plan's worker process in its timing mode (`scripts/plan-item.ts --measure`), as
 * `npm run plan -- --jobs N` starts it: the project's declarations, one wasm thread.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runWorker } from "../../lib/tooling/workers";
import type { PlanCosts } from "../../lib/training/plan";
import type { PlanItemMessage } from "../../scripts/plan-item";

async function measure(names: string[]): Promise<{ code: number | null; costs?: PlanCosts; stderr: string }> {
  let costs: PlanCosts | undefined;
  const exit = await runWorker({
    script: "scripts/plan-item.ts",
    args: ["--measure", "quick", ...names],
    threads: 1,
    onMessage: (message) => {
      const m = message as PlanItemMessage;
      if ("costs" in m) costs = m.costs;
    },
  });
  return { code: exit.code, costs, stderr: exit.stderrTail.join("\n") };
}

describe("plan-item --measure", () => {
  it("times each named declaration's network on the thread it was given, in the order named, and an item's start", async () => {
    const started = performance.now();
    const { code, costs, stderr } = await measure(["vgg-bn", "ann", "vgg-bn"]);
    const seconds = (performance.now() - started) / 1000;
    assert.equal(code, 0, stderr);
    assert.equal(costs?.networks.length, 3);
    const [vgg, ann, again] = costs!.networks;
    for (const seconds of [ann.train, ann.predict]) assert.ok(seconds > 0 && Number.isFinite(seconds), String(seconds));
    // The dense baseline is a small fraction of the VGG net (0.4 against 29 million multiply-adds per image; ~26x measured in training).
    assert.ok(vgg.train > 5 * ann.train, `training: vgg-bn ${vgg.train} s per image, ann ${ann.train}`);
    assert.ok(vgg.predict > 5 * ann.predict, `predicting: vgg-bn ${vgg.predict} s per image, ann ${ann.predict}`);
    assert.deepEqual(again, vgg, "one network is timed once");
    // Node, the imports and the backend (each well over 0.1 s), then Fashion-MNIST's 70,000 images loaded and checked;
    // all inside the worker's own lifetime.
    assert.ok(costs!.itemStartSeconds > 0.3 && costs!.itemStartSeconds < seconds, `an item's start: ${costs!.itemStartSeconds} s of the worker's ${seconds} s`);
  });

  it("names a declaration the profile lacks", async () => {
    const { code, stderr } = await measure(["no-such-run"]);
    assert.equal(code, 1);
    assert.match(stderr, /no-such-run is not a declaration of this profile/);
  });
});
