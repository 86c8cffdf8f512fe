/**
 * npm start -- [--profile quick|standard|extended] [--quick] [--only NAME] [--jobs N] [--no-plan] [--timeout SECONDS] [--json]
 *
 * First makes the profile's plan (`npm run plan`: every declared run and study it lacks,
 * resumed where interrupted, nothing finished retrained), then executes every
 * notebooks/NN-name.ipynb in order, headless, into reports/: the executed
 * notebook (signed, opens trusted) and NN-name.html, with one shared copy of Plotly beside
 * them. On a failing cell it prints that cell and its error, keeps the partial report, and
 * exits non-zero.
 */
import { execFile, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { parseCommandLine, runCommand, textTable, usageCheck, UsageError } from "../lib/tooling/cli";
import { findJupyterPython, installKernel, jupyterEnv, kernelInstalled, KERNEL_NAME } from "../lib/tooling/jupyter";
import { PROJECT_ROOT } from "../lib/tooling/paths";
import { PLOTLY_SRC_ENV } from "../lib/display/notebook";
import { parseProfile, type Profile } from "../lib/training/declarations";
import { formatDuration } from "../lib/training/plan";

const USAGE = `Usage: npm start -- [--profile NAME] [--quick] [--only NAME] [--jobs N] [--no-plan] [--timeout SECONDS] [--json]

  --profile NAME     standard (default), extended (plus the long runs) or quick; the notebooks
                     read it as NOTEBOOK_MODE
  --quick            the quick profile (CI: small subsets, one epoch)
  --only NAME        run one notebook (e.g. 01 or 01-data-analysis)
  --jobs N           declarations the plan makes at once (npm run plan --jobs; default: the cores)
  --no-plan          do not train: the notebooks read what is there (and train what they lack)
  --timeout SECONDS  per cell (default 600 in quick mode, 7200 in full mode)
  --json             print JSON for machines

Writes reports/NN-name.html and reports/NN-name.ipynb. Set NOTEBOOKS_DIR / REPORTS_DIR /
EXPERIMENTS_DIR to run another folder of notebooks or declarations (used by the tests).`;

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

/** `npm run plan` in its own process (its memory and threads are gone before the notebooks start). */
function makePlan(profile: Profile, jobs: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = [require.resolve("tsx/cli"), path.join(PROJECT_ROOT, "scripts", "plan.ts"), "--profile", profile, ...(jobs === undefined ? [] : ["--jobs", jobs])];
    const child = spawn(process.execPath, args, {
      stdio: ["ignore", "inherit", "inherit"],
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => (code === 0 ? resolve() : reject(new Error(`the ${profile} plan failed (${signal ?? `exit ${code}`}); run \`npm run plan -- --profile ${profile}\` to see and resume it.`))));
  });
}

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    {
      profile: { type: "string" },
      "no-plan": { type: "boolean", default: false },
      jobs: { type: "string" },
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      timeout: { type: "string" },
      json: { type: "boolean", default: false },
    },
    process.argv.slice(2),
  );
  if (values.quick && values.profile !== undefined && values.profile !== "quick") throw new UsageError(`--quick is the quick profile; it contradicts --profile ${values.profile}.`);
  const mode: Profile = values.quick ? "quick" : usageCheck(() => parseProfile(values.profile ?? "standard"));
  const timeout = usageCheck(() => {
    const seconds = Number(values.timeout ?? (mode === "quick" ? 600 : 7200));
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
  const started = Date.now();
  if (!values["no-plan"]) {
    log(`plan: making what the ${mode} profile's declarations lack (experiments/) ...`);
    await makePlan(mode, values.jobs);
    log(`plan: ready after ${formatDuration((Date.now() - started) / 1000)}`);
  }
  const results: NotebookResult[] = [];
  for (const [i, notebook] of notebooks.entries()) {
    log(`[${i + 1}/${notebooks.length}] ${path.basename(notebook)} (${mode} mode) ...`);
    const result = await runNotebook(python, notebook, outDir, timeout, mode);
    results.push(result);
    log(`    ${result.status} in ${result.seconds.toFixed(1)} s${result.html ? ` → ${path.relative(process.cwd(), result.html)}` : ""}`);
    if (result.status === "failed") break; // later stages build on earlier ones
  }

  log(`npm start (${mode}): ${formatDuration((Date.now() - started) / 1000)} in all`);
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
