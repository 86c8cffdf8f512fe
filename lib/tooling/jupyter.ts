/**
 * The project's Jupyter set-up: prerequisites, and the tslab kernel registered under the
 * project (.jupyter/) instead of the user's global Jupyter configuration. Commands that run
 * Jupyter pass `jupyterEnv()` so that it finds that kernel.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT } from "./paths";

/** Where the kernelspec lives: <project>/.jupyter/share/jupyter/kernels/{tslab,jslab}. */
export const JUPYTER_PREFIX = path.join(PROJECT_ROOT, ".jupyter");
export const KERNEL_NAME = "tslab";
const MIN_NODE = [20, 19];

/** A python3 that can import Jupyter's notebook and nbconvert, or undefined. */
export function findJupyterPython(): string | undefined {
  const candidates = [process.env.JUPYTER_PYTHON, "/usr/bin/python3", "python3"].filter((p): p is string => !!p);
  for (const python of candidates) {
    try {
      execFileSync(python, ["-c", "import nbconvert, nbformat, jupyter_client, notebook"], { stdio: "ignore" });
      return python;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

/** Problems that stop notebooks from running here, each with what to install where. */
export function missingPrerequisites(): string[] {
  const problems: string[] = [];
  const [major, minor] = process.versions.node.split(".").map(Number);
  if (major < MIN_NODE[0] || (major === MIN_NODE[0] && minor < MIN_NODE[1])) {
    problems.push(`Node.js ${process.versions.node} is too old: tslab cells need ≥ ${MIN_NODE.join(".")} (ESM packages, top-level await).`);
  }
  if (!findJupyterPython()) {
    problems.push(
      "No python3 with Jupyter found (it needs the modules notebook, nbconvert, nbformat, jupyter_client). " +
        "On Debian: `sudo apt-get install jupyter-nbconvert python3-notebook jupyter-client`; elsewhere: " +
        "`python3 -m pip install notebook nbconvert`; or set JUPYTER_PYTHON to such an interpreter.",
    );
  }
  if (!existsSync(tslabBinary())) problems.push("node_modules/.bin/tslab is missing: run `npm ci` first.");
  return problems;
}

export function tslabBinary(): string {
  return path.join(PROJECT_ROOT, "node_modules", ".bin", "tslab");
}

/** Environment for Jupyter commands: finds the project's kernel, keeps the user's config. */
export function jupyterEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const own = path.join(JUPYTER_PREFIX, "share", "jupyter");
  const inherited = process.env.JUPYTER_PATH ? `${path.delimiter}${process.env.JUPYTER_PATH}` : "";
  return { ...process.env, JUPYTER_PATH: own + inherited, ...extra };
}

export function kernelInstalled(): boolean {
  return existsSync(path.join(JUPYTER_PREFIX, "share", "jupyter", "kernels", KERNEL_NAME, "kernel.json"));
}

/** Registers tslab for this project only (idempotent). Throws with the prerequisites missing. */
export function installKernel(): void {
  const problems = missingPrerequisites();
  if (problems.length > 0) throw new Error(problems.join("\n"));
  const python = findJupyterPython()!;
  execFileSync(tslabBinary(), ["install", `--python=${python}`, `--prefix=${JUPYTER_PREFIX}`, `--binary=${tslabBinary()}`], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  if (!kernelInstalled()) throw new Error(`tslab install ran but ${JUPYTER_PREFIX} has no ${KERNEL_NAME} kernelspec.`);
}

export interface ExecutedCell {
  cell_type: string;
  source: string | string[];
  execution_count?: number | null;
  outputs?: { output_type: string; name?: string; text?: string | string[]; ename?: string; evalue?: string; data?: Record<string, string | string[]> }[];
}

const joined = (text: string | string[] | undefined) => (Array.isArray(text) ? text.join("") : text ?? "");

/**
 * What is wrong with an executed notebook as a report: a failed cell (an error output, or the
 * last cell that ran when later ones never did; tslab reports errors on stderr), code cells
 * that never ran, or a cell that draws figures (showFigure) with none in its outputs. Empty
 * when the report is whole.
 */
export function executedNotebookProblems(notebook: { cells: ExecutedCell[] }): string[] {
  const problems: string[] = [];
  const code = notebook.cells.map((cell, index) => ({ cell, index })).filter(({ cell }) => cell.cell_type === "code" && joined(cell.source).trim() !== "");
  const lastRun = Math.max(-1, ...code.filter(({ cell }) => cell.execution_count != null).map(({ index }) => index));
  const stopped = code.some(({ cell, index }) => cell.execution_count == null && index > lastRun);
  for (const { cell, index } of code) {
    const outputs = cell.outputs ?? [];
    const error = outputs.find((o) => o.output_type === "error");
    const stderr = outputs.filter((o) => o.output_type === "stream" && o.name === "stderr").map((o) => joined(o.text)).join("").trim();
    if (error || (stopped && index === lastRun)) {
      // tslab's stderr starts with the source position; the error's own line says what happened.
      const lines = stderr.split("\n").map((l) => l.trim()).filter(Boolean);
      const message = error ? `${error.ename ?? "error"}: ${error.evalue ?? ""}`.trim() : lines.find((l) => /^\w*(Error|Exception)\b[^:]*:/.test(l)) ?? lines[0] ?? "the run stopped here";
      problems.push(`cell ${index} failed: ${message}`);
    } else if (cell.execution_count == null) {
      problems.push(`cell ${index} did not run`);
    } else if (/\bshowFigure\(/.test(joined(cell.source))) {
      const html = outputs.map((o) => joined(o.data?.["text/html"])).join("");
      if (!/class="plotly-figure/.test(html)) problems.push(`cell ${index} draws figures but has none in its outputs`);
    }
  }
  return problems;
}
