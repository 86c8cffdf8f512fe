/**
 * npm start -- [--quick] [--only NAME] [--timeout SECONDS] [--json]
 *
 * Executes every notebooks/NN-name.ipynb in order, headless, into reports/: the executed
 * notebook (signed, opens trusted) and NN-name.html, with one shared copy of Plotly beside
 * them. On a failing cell it prints that cell and its error, keeps the partial report, and
 * exits non-zero.
 */
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { parseCommandLine, runCommand, textTable, usageCheck } from "../lib/cli";
import { findJupyterPython, installKernel, jupyterEnv, kernelInstalled, KERNEL_NAME } from "../lib/jupyter";
import { PROJECT_ROOT } from "../lib/paths";
import { PLOTLY_SRC_ENV } from "../lib/notebook";

const USAGE = `Usage: npm start -- [--quick] [--only NAME] [--timeout SECONDS] [--json]

  --quick            CI mode: small subsets, one epoch (notebooks read NOTEBOOK_MODE=quick)
  --only NAME        run one notebook (e.g. 01 or 01-data-analysis)
  --timeout SECONDS  per cell (default 600 in quick mode, 7200 in full mode)
  --json             print JSON for machines

Writes reports/NN-name.html and reports/NN-name.ipynb. Set NOTEBOOKS_DIR / REPORTS_DIR to
run another folder of notebooks (used by the tests).`;

interface NotebookResult {
  notebook: string;
  status: "ok" | "failed";
  seconds: number;
  html?: string;
  executed?: string;
  cellIndex?: number;
  cellSource?: string;
  error?: string;
}

function notebooksIn(dir: string, only: string | undefined): string[] {
  const all = readdirSync(dir)
    .filter((f) => /^\d\d-.+\.ipynb$/.test(f))
    .sort();
  const chosen = only ? all.filter((f) => f.startsWith(only)) : all;
  if (chosen.length === 0) {
    throw new Error(only ? `No notebook in ${dir} matches "${only}" (have: ${all.join(", ") || "none"}).` : `No NN-name.ipynb notebooks in ${dir}.`);
  }
  return chosen.map((f) => path.join(dir, f));
}

async function runNotebook(python: string, notebook: string, outDir: string, timeout: number, mode: string): Promise<NotebookResult> {
  const script = path.join(PROJECT_ROOT, "scripts", "run_notebook.py");
  const env = jupyterEnv({ NOTEBOOK_MODE: mode, [PLOTLY_SRC_ENV]: "plotly.min.js" });
  try {
    const { stdout } = await promisify(execFile)(python, [script, notebook, outDir, "--timeout", String(timeout), "--kernel", KERNEL_NAME], {
      env,
      maxBuffer: 64 * 1024 * 1024,
    });
    return JSON.parse(stdout.trim().split("\n").pop()!) as NotebookResult;
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    const last = e.stdout?.trim().split("\n").pop();
    if (last?.startsWith("{")) return JSON.parse(last) as NotebookResult;
    return { notebook: path.basename(notebook, ".ipynb"), status: "failed", seconds: 0, error: (e.stderr || e.message).trim() };
  }
}

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      timeout: { type: "string" },
      json: { type: "boolean", default: false },
    },
    process.argv.slice(2),
  );
  const mode = values.quick ? "quick" : "full";
  const timeout = usageCheck(() => {
    const seconds = Number(values.timeout ?? (values.quick ? 600 : 7200));
    if (!Number.isInteger(seconds) || seconds < 1) throw new Error(`--timeout must be a positive number of seconds, got "${values.timeout}".`);
    return seconds;
  });
  const notebooksDir = path.resolve(process.env.NOTEBOOKS_DIR ?? path.join(PROJECT_ROOT, "notebooks"));
  const outDir = path.resolve(process.env.REPORTS_DIR ?? path.join(PROJECT_ROOT, "reports"));
  const notebooks = notebooksIn(notebooksDir, values.only);

  if (!kernelInstalled()) installKernel();
  const python = findJupyterPython();
  if (!python) throw new Error("No python3 with Jupyter found (see `npm run kernel`).");
  mkdirSync(outDir, { recursive: true });
  copyFileSync(require.resolve("plotly.js-dist-min/plotly.min.js"), path.join(outDir, "plotly.min.js"));

  const log = (line: string) => process.stderr.write(line + "\n");
  const results: NotebookResult[] = [];
  for (const [i, notebook] of notebooks.entries()) {
    log(`[${i + 1}/${notebooks.length}] ${path.basename(notebook)} (${mode} mode) ...`);
    const result = await runNotebook(python, notebook, outDir, timeout, mode);
    results.push(result);
    log(`    ${result.status} in ${result.seconds.toFixed(1)} s${result.html ? ` → ${path.relative(process.cwd(), result.html)}` : ""}`);
    if (result.status === "failed") break; // later stages build on earlier ones
  }

  const failed = results.find((r) => r.status === "failed");
  if (values.json) {
    process.stdout.write(JSON.stringify({ mode, reportsDir: outDir, notebooks: results }, null, 2) + "\n");
  } else {
    process.stdout.write(
      textTable(["notebook", "status", "seconds", "report"], results.map((r) => [r.notebook, r.status, r.seconds.toFixed(1), r.html && existsSync(r.html) ? path.relative(process.cwd(), r.html) : "-"])) + "\n",
    );
  }
  if (failed) {
    const where = failed.cellIndex !== undefined ? `cell ${failed.cellIndex}` : "the run";
    throw new Error(
      `${failed.notebook}: ${where} failed.\n` +
        (failed.cellSource ? `--- cell ${failed.cellIndex} ---\n${failed.cellSource}\n--- error ---\n` : "") +
        `${failed.error || "(no message)"}` +
        (failed.html ? `\nPartial report: ${failed.html}` : ""),
    );
  }
});
