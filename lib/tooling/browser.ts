/**
 * Checks that HTML reports render their figures offline, in a real headless Chromium: a
 * report whose Plotly figures stay blank (script blocked, bundle missing) fails the check.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

export function findChromium(): string | undefined {
  const candidates = [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
  return candidates.find((c): c is string => !!c && existsSync(c));
}

/** The DOM of a local HTML file after its scripts ran (no network, fresh profile). */
export async function renderedDom(file: string, chromium = findChromium()): Promise<string> {
  if (!chromium) throw new Error("No Chromium found (on Debian: apt-get install chromium; or set CHROMIUM).");
  const profile = mkdtempSync(path.join(os.tmpdir(), "report-check-"));
  try {
    const { stdout } = await promisify(execFile)(
      chromium,
      [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", `--user-data-dir=${profile}`,
        "--virtual-time-budget=15000", "--dump-dom", pathToFileURL(path.resolve(file)).href,
      ],
      { maxBuffer: 256 * 1024 * 1024, timeout: 120_000 },
    );
    return stdout;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

export interface FigureCheck {
  /** Figure containers the notebook emitted (lib/display/notebook.ts gives them class plotly-figure). */
  figures: number;
  /** Those Plotly drew into (it adds js-plotly-plot and an SVG). */
  rendered: number;
}

export function countFigures(dom: string): FigureCheck {
  const figures = (dom.match(/class="plotly-figure[ "]/g) ?? []).length;
  const rendered = Math.min((dom.match(/class="plotly-figure js-plotly-plot"/g) ?? []).length, (dom.match(/class="main-svg"/g) ?? []).length);
  return { figures, rendered };
}
