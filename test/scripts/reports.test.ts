/**
 * The report runner on fixture notebooks, with the real Jupyter, tslab kernel and Chromium
 * (skipped, saying why, where they are missing; CI installs them).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { countFigures, findChromium, renderedDom } from "../../lib/tooling/browser";
import { executedNotebookProblems, type ExecutedCell } from "../../lib/tooling/jupyter";
import { findJupyterPython, missingPrerequisites } from "../../lib/tooling/jupyter";
import { ROOT, runScript } from "../helpers/scripts";

const FIXTURES = path.join(ROOT, "test", "fixtures", "notebooks");
const missing = missingPrerequisites();
const skipJupyter = !process.env.CI && missing.length > 0 ? `notebook prerequisites missing: ${missing.join("; ")}` : undefined;
const skipChromium = !process.env.CI && !findChromium() ? "no Chromium here" : skipJupyter;

// No declarations: the plan step has nothing to train for the fixture notebooks.
const noExperiments = mkdtempSync(path.join(os.tmpdir(), "experiments-"));
const runReports = (args: string[], reportsDir: string) =>
  runScript("reports.ts", args, { ...process.env, NOTEBOOKS_DIR: FIXTURES, REPORTS_DIR: reportsDir, EXPERIMENTS_DIR: noExperiments });

describe("npm start (report runner) on fixture notebooks", () => {
  const reportsDir = mkdtempSync(path.join(os.tmpdir(), "reports-"));

  it("stops at a failing cell: exit 1, that cell and its error on stderr, partial report kept", { skip: skipJupyter }, async () => {
    const result = await runReports(["--quick", "--json"], reportsDir);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /error: 02-fails: cell 1 failed\./);
    assert.match(result.stderr, /--- cell 1 ---\nif \(answer !== 42\) throw new Error/);
    assert.match(result.stderr, /Error: deliberate failure: answer is 41/);
    const summary = JSON.parse(result.stdout);
    assert.deepEqual(summary.notebooks.map((n: { status: string }) => n.status), ["ok", "failed"]);
    assert.ok(existsSync(path.join(reportsDir, "02-fails.html")), "partial report");
    const executed = JSON.parse(readFileSync(path.join(reportsDir, "02-fails.ipynb"), "utf8"));
    assert.equal(executed.cells[2].execution_count, null, "cells after the failure do not run");
    // Signed, so that it opens trusted in Jupyter (nbformat keeps signatures in its own store).
    const check = "import nbformat, sys; from nbformat.sign import NotebookNotary; print(NotebookNotary().check_signature(nbformat.read(sys.argv[1], 4)))";
    const { stdout: trusted } = await promisify(execFile)(findJupyterPython()!, ["-c", check, path.join(reportsDir, "01-figure.ipynb")]);
    assert.equal(trusted.trim(), "True");
    assert.ok(existsSync(path.join(reportsDir, "plotly.min.js")), "one shared copy of plotly beside the reports");
  });

  it("runs one notebook with --only, passing the mode to its cells", { skip: skipJupyter }, async () => {
    const result = await runReports(["--only", "01", "--quick"], reportsDir);
    assert.equal(result.code, 0, result.stderr);
    const executed = readFileSync(path.join(reportsDir, "01-figure.ipynb"), "utf8");
    assert.match(executed, /mode quick/);
    // The progress line was updated in place: one output holding the final state.
    const progressCell = JSON.parse(executed).cells.at(-1);
    assert.equal(progressCell.outputs.length, 1);
    assert.match(JSON.stringify(progressCell.outputs[0].data), /epoch 3\/3/);
    assert.ok(readFileSync(path.join(reportsDir, "01-figure.html"), "utf8").length < 200_000, "plotly is not inlined");
  });

  it("the HTML report's figure renders offline in headless Chromium", { skip: skipChromium }, async () => {
    if (!existsSync(path.join(reportsDir, "01-figure.html"))) await runReports(["--only", "01", "--quick"], reportsDir);
    const dom = await renderedDom(path.join(reportsDir, "01-figure.html"));
    assert.deepEqual(countFigures(dom), { figures: 1, rendered: 1 });
    assert.match(dom, /Fixture bars/);
  });

  it("check-reports fails a report whose notebook failed, naming the cell", { skip: skipChromium || skipJupyter }, async () => {
    if (!existsSync(path.join(reportsDir, "02-fails.ipynb"))) await runReports(["--quick"], reportsDir);
    const result = await runScript("check-reports.ts", [reportsDir]);
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr, /02-fails\.html: cell 1 failed: Error: deliberate failure: answer is 41/);
    assert.match(result.stderr, /02-fails\.html: cell 2 did not run/);
    assert.doesNotMatch(result.stderr, /01-figure\.html/);
  });

  it("rejects an unknown notebook name with the list of notebooks", { skip: skipJupyter }, async () => {
    const result = await runReports(["--only", "99"], reportsDir);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /No notebook in .* matches "99" \(have: 01-figure\.ipynb, 02-fails\.ipynb\)/);
  });
});

describe("executedNotebookProblems", () => {
  const code = (source: string, outputs: NonNullable<ExecutedCell["outputs"]>, count: number | null = 1): ExecutedCell => ({ cell_type: "code", source, execution_count: count, outputs });
  it("a whole report has none; an error, a cell that never ran and a figure cell without figures are each named", () => {
    const figure = { output_type: "display_data", data: { "text/html": '<div class="plotly-figure" id="f1"></div>' } };
    assert.deepEqual(executedNotebookProblems({ cells: [{ cell_type: "markdown", source: "# t" }, code("showFigure(x);", [figure])] }), []);
    assert.deepEqual(
      executedNotebookProblems({ cells: [
        code("showFigure(x);", [{ output_type: "stream" }]),
        code("boom()", [{ output_type: "error", ename: "Error", evalue: "boom" }]),
        code("later()", [], null),
      ] }),
      ["cell 0 draws figures but has none in its outputs", "cell 1 failed: Error: boom", "cell 2 did not run"],
    );
  });
});
