/** npm run bench-store: 24 simulated workers share one study in a real PostgreSQL; no trial trained twice, none lost. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runScript } from "../helpers/scripts";

describe("npm run bench-store", () => {
  it("24 workers claim 120 trivial trials: each written once, none lost", async () => {
    const result = await runScript("bench-store.ts", ["--workers", "24", "--trials", "120", "--json"]);
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout);
    assert.deepEqual([report.written, report.duplicates, report.lost], [120, 0, 0]);
    assert.equal(report.perWorker.length, 24);
    assert.equal(report.perWorker.reduce((a: number, b: number) => a + b, 0), 120);
    assert.ok(report.claimsPerSecond > 0);
  });

  it("bad options are usage errors", async () => {
    const result = await runScript("bench-store.ts", ["--workers", "0"]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--workers must be a positive integer, got "0"/);
  });
});
