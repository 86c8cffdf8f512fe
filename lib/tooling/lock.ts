/**
 * One writer per folder: an exclusive lock file created atomically (O_EXCL), holding the pid
 * and host of its holder. A lock whose holder is gone (same host, process not alive) is stale
 * and taken over; a live holder's lock is an error naming the folder and the holder.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export const LOCK_FILE = ".lock";

interface Holder {
  pid: number;
  host: string;
  since: string;
  command: string;
}

export class LockedError extends Error {}

/** Locks this process holds: released on exit too (process.exit from a signal handler, a worker whose parent died). */
const held = new Set<string>();
process.on("exit", () => {
  for (const file of held) releaseLock(file);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function readHolder(file: string): Holder | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Holder;
  } catch {
    return undefined; // being written, or removed meanwhile
  }
}

function describe(holder: Holder | undefined): string {
  return holder ? `process ${holder.pid} on ${holder.host} since ${holder.since} (${holder.command})` : "another process";
}

function tryCreate(file: string, holder: Holder): boolean {
  try {
    const fd = openSync(file, "wx");
    try {
      writeSync(fd, JSON.stringify(holder));
    } finally {
      closeSync(fd);
    }
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
}

/**
 * Takes the lock of `dir` (creating the folder) and returns its release function. `what`
 * names the kind of folder in the error ("run", "study", "trial").
 */
export function acquireLock(dir: string, what = "folder"): () => void {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  const me: Holder = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), command: process.argv.slice(1).map((a) => path.basename(a)).join(" ") };
  for (let attempt = 0; attempt < 3; attempt++) {
    if (tryCreate(file, me)) {
      held.add(file);
      return () => releaseLock(file);
    }
    const holder = readHolder(file);
    const stale = holder !== undefined && holder.host === me.host && holder.pid !== process.pid && !alive(holder.pid);
    if (!stale) {
      if (holder === undefined && attempt < 2) continue; // written or removed right now: look again
      throw new LockedError(`${dir}: this ${what} is being written by ${describe(holder)}; wait for it or stop it (a second writer would overwrite its files).`);
    }
    // Move the stale lock aside, then check that what moved is the stale lock and not a new holder's.
    const aside = `${file}.${process.pid}.stale`;
    try {
      renameSync(file, aside);
    } catch {
      continue; // someone else moved it first
    }
    const moved = readHolder(aside);
    if (moved && (moved.pid !== holder.pid || moved.since !== holder.since)) {
      renameSync(aside, file); // a live holder's lock: put it back
      continue;
    }
    rmSync(aside, { force: true });
  }
  throw new LockedError(`${dir}: could not take the ${what}'s lock (${describe(readHolder(file))}).`);
}

function releaseLock(file: string): void {
  held.delete(file);
  const holder = readHolder(file);
  if (holder?.pid === process.pid && existsSync(file)) rmSync(file, { force: true });
}

/** Runs `work` holding the lock of `dir`. */
export async function withLock<T>(dir: string, what: string, work: () => Promise<T>): Promise<T> {
  const release = acquireLock(dir, what);
  try {
    return await work();
  } finally {
    release();
  }
}
