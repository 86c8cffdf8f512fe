/**
 * The plan's worker process in its timing mode (`scripts/plan-item.ts --measure`), as
 * `npm run plan -- --jobs N` starts it: the project's declarations, one wasm thread.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runWorker } from "../../lib/tooling/workers";
import type { PlanItemMessage } from "../../scripts/plan-item";

async function measure(names: string[]): Promise<{ code: number | null; secondsPerImage?: number[]; stderr: string }> {
  let secondsPerImage: number[] | undefined;
  const exit = await runWorker({
    script: "scripts/plan-item.ts",
    args: ["--measure", "quick", ...names],
    threads: 1,
    onMessage: (message) => {
      const m = message as PlanItemMessage;
      if ("secondsPerImage" in m) secondsPerImage = m.secondsPerImage;
    },
  });
  return { code: exit.code, secondsPerImage, stderr: exit.stderrTail.join("\n") };
}

describe("plan-item --measure", () => {
  it("times each named declaration's network on the thread it was given, in the order named", async () => {
    const { code, secondsPerImage, stderr } = await measure(["vgg-bn", "ann", "vgg-bn"]);
    assert.equal(code, 0, stderr);
    assert.equal(secondsPerImage?.length, 3);
    const [vgg, ann, again] = secondsPerImage!;
    assert.ok(ann > 0 && Number.isFinite(ann), String(ann));
    // The dense baseline's step is a small fraction of the VGG net's (0.4 against 29 million multiply-adds per image; ~26x measured).
    assert.ok(vgg > 5 * ann, `vgg-bn ${vgg} s per image, ann ${ann}`);
    assert.equal(again, vgg, "one network is timed once");
  });

  it("names a declaration the profile lacks", async () => {
    const { code, stderr } = await measure(["no-such-run"]);
    assert.equal(code, 1);
    assert.match(stderr, /no-such-run is not a declaration of this profile/);
  });
});
