/**
 * Downloads a file with a progress bar, atomically: it is written to `<dest>.part`, checked
 * by the caller's `verify`, and only then renamed to `dest`. An interrupted or bad download
 * never leaves a file under the final name.
 */
import { createWriteStream } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { SingleBar } from "cli-progress";

export interface DownloadOptions {
  /** Show a progress bar on stderr. */
  progress: boolean;
  /** Shown beside the bar. */
  label: string;
  /** Throws when the downloaded file (at the temporary path) is not what was expected. */
  verify?: (temporaryPath: string) => Promise<void>;
  /** Aborts a download that takes longer (default 30 minutes). */
  timeoutMs?: number;
}

export async function downloadFile(url: string, dest: string, options: DownloadOptions): Promise<void> {
  await mkdir(path.dirname(dest), { recursive: true });
  const temporary = `${dest}.part`;
  const response = await fetch(url, { signal: AbortSignal.timeout(options.timeoutMs ?? 30 * 60_000) });
  if (!response.ok || !response.body) {
    throw new Error(`HTTP ${response.status} ${response.statusText}`);
  }
  const total = Number(response.headers.get("content-length") ?? 0);
  const bar = options.progress
    ? new SingleBar({
        format: `${options.label} [{bar}] {percentage}% {value}/{total} bytes, ETA {eta_formatted}`,
        stream: process.stderr,
        noTTYOutput: true,
        notTTYSchedule: 5000,
      })
    : undefined;
  bar?.start(total, 0);
  let received = 0;
  const body = Readable.fromWeb(response.body as import("node:stream/web").ReadableStream<Uint8Array>);
  body.on("data", (chunk: Buffer) => {
    received += chunk.length;
    bar?.update(received);
  });
  try {
    await pipeline(body, createWriteStream(temporary));
    bar?.stop();
    if (total > 0 && received !== total) {
      throw new Error(`connection closed after ${received} of ${total} bytes`);
    }
    await options.verify?.(temporary);
    await rename(temporary, dest);
  } catch (error) {
    bar?.stop();
    await rm(temporary, { force: true });
    throw error;
  }
}
