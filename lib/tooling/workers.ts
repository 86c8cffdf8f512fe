/**
 * Training work in child processes, each with its own share of the cores (wasm threads are
 * fixed when a process starts): the plan's items (`npm run plan --jobs`) and a study's trials
 * (`npm run tune --jobs`). A worker is a TypeScript script run by tsx with an IPC channel, which
 * carries its messages and is its lifeline: a worker exits when its parent dies, even by
 * SIGKILL. Stopping the parent with SIGINT or SIGTERM stops its workers too; every finished
 * epoch and trial is committed, so the next command resumes from there.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { WASM_THREADS_ENV_VAR } from "../accelerator";
import { PROJECT_ROOT } from "./paths";

const workers = new Set<ChildProcess>();
let signalsHandled = false;

function stopWorkersOnSignals(): void {
  if (signalsHandled) return;
  signalsHandled = true;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      for (const worker of workers) worker.kill(signal);
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  }
}

export interface WorkerOptions {
  /** Path of the script, relative to the project root (e.g. scripts/plan-item.ts). */
  script: string;
  args: string[];
  /** The worker's wasm threads (TFJS_WASM_THREADS). */
  threads: number;
  onMessage?: (message: unknown) => void;
  /** Each non-empty line the worker writes to stderr. */
  onStderrLine?: (line: string) => void;
  /** Where the worker's stdout goes: collected for the result (default), or passed to this process's stderr. */
  stdout?: "collect" | "stderr";
}

export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** What it wrote to stdout, when collected. */
  stdout: string;
  /** Its last stderr lines, for an error message. */
  stderrTail: string[];
}

const STDERR_TAIL_LINES = 3;

/** Runs one worker to its end; rejects only when it cannot be started. */
export function runWorker(options: WorkerOptions): Promise<WorkerExit> {
  stopWorkersOnSignals();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(PROJECT_ROOT, options.script), ...options.args], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, [WASM_THREADS_ENV_VAR]: String(options.threads) },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    workers.add(child);
    let stdout = "";
    // Written, not piped: every pipe into process.stderr adds listeners to it that outlive the worker.
    if (options.stdout === "stderr") child.stdout!.on("data", (chunk: Buffer) => process.stderr.write(chunk));
    else child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    const stderrTail: string[] = [];
    createInterface({ input: child.stderr! }).on("line", (line) => {
      if (line.trim() === "") return;
      stderrTail.push(line);
      if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
      options.onStderrLine?.(line);
    });
    if (options.onMessage) child.on("message", options.onMessage);
    child.on("error", (error) => {
      workers.delete(child);
      reject(error);
    });
    child.on("close", (code, signal) => {
      workers.delete(child);
      resolve({ code, signal, stdout, stderrTail });
    });
  });
}

/** "exit 1: last | stderr | lines", for the error that names a failed worker. */
export const describeExit = (exit: WorkerExit) =>
  `${exit.signal ?? `exit ${exit.code}`}: ${exit.stderrTail.join(" | ") || "no message"}`;
