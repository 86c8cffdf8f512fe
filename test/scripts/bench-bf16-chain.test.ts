/** scripts/bench-bf16-chain.sh: builds and runs the oneDNN benchmark of a bf16 convolution + batch norm chain (tiny sizes here). */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { PROJECT_ROOT } from "../../lib/tooling/paths";

const script = path.join(PROJECT_ROOT, "scripts", "bench-bf16-chain.sh");
// Where npm run setup installed g++ and oneDNN's headers (always in CI); elsewhere the test is skipped.
const buildable = existsSync("/usr/include/oneapi/dnnl/dnnl.hpp") && ["/usr/bin/g++", "/usr/local/bin/g++"].some(existsSync);

async function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)("bash", [script, ...args], { env: { ...process.env, OMP_NUM_THREADS: "1" } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe("scripts/bench-bf16-chain.sh", { skip: buildable ? false : "g++ or oneDNN's headers are not installed" }, () => {
  for (const caches of ["warm", "cold"]) it(`times six layers today, in bf16 throughout and as two fused designs, and sums them per step (${caches} caches)`, async () => {
    const { code, stdout, stderr } = await bench(["8", "2", "1", caches]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, new RegExp(`medians of 1, ${caches} caches`));
    const rows = stdout.split("\n").filter((line) => /^\s*\d+x\d+\s+\d+->\d+\s+\|/.test(line));
    assert.deepEqual(rows.map((row) => row.split("|")[0].trim().replace(/\s+/g, " ")), ["28x28 1->8", "28x28 8->8", "14x14 8->16", "14x14 16->16", "7x7 16->32", "7x7 32->32"]);
    const numbers = (line: string) => line.split("|").slice(1).map((cell) => cell.trim().split(/\s+/).map(Number));
    for (const row of rows) for (const cell of numbers(row)) for (const ms of cell) assert.ok(Number.isFinite(ms) && ms >= 0, row);
    const perStep = stdout.split("\n").find((line) => line.startsWith("per step"));
    assert.ok(perStep, stdout);
    const [today, chain, [layerConversions, blockConversions]] = numbers(perStep);
    const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
    const total = (what: string) => Number(new RegExp(`^${what} ([\\d.]+) ms per step`, "m").exec(stdout)?.[1]);
    // The totals are the per-step columns summed (each printed to 0.01 ms); the two ops run the chain's primitives.
    assert.ok(Math.abs(total("bf16 chain \\(upper bound\\)") - sum(chain)) < 0.03, stdout);
    assert.ok(Math.abs(total("op per layer") - sum(chain) - layerConversions) < 0.04, stdout);
    assert.ok(Math.abs(total("op per block") - sum(chain) - blockConversions) < 0.04, stdout);
    const todayTotals = [...stdout.matchAll(/less than today's ([\d.]+) ms/g)].map((match) => Number(match[1]));
    assert.equal(todayTotals.length, 3, stdout);
    for (const todayTotal of todayTotals) assert.ok(Math.abs(todayTotal - sum(today)) < 0.03, stdout);
    // A block op converts at its edges only: a subset of the per-layer op's conversions, timed once.
    assert.ok(blockConversions <= layerConversions, stdout);
  });

  it("refuses a width, batch or repeat count below 1, and caches neither warm nor cold", async () => {
    for (const args of [["0"], ["8", "2", "1", "tepid"]]) {
      const { code, stderr } = await bench(args);
      assert.equal(code, 2, args.join(" "));
      assert.match(stderr, /usage: bench_bf16_chain .* \[warm\|cold\]/);
    }
  });
});
