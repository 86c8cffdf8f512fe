/**
 * Showing things in tslab notebooks: Plotly figures, tables, image grids, progress.
 * The HTML builders are pure (tested); `show*` hand them to tslab's display.
 *
 * Plotly's bundle goes out once per kernel: inlined (live notebooks, ~4.6 MB), or, when the
 * report runner sets PLOTLY_SRC, as a <script src> to one shared copy beside the reports.
 * Classic Jupyter and nbconvert's HTML load require.js, which would capture Plotly's UMD
 * bundle as an anonymous AMD module: `define` is hidden while the bundle runs.
 */
import { readFileSync } from "node:fs";
import * as tslab from "tslab";
import type { PlotlyFigure } from "./plots";

export const PLOTLY_SRC_ENV = "PLOTLY_SRC";

let plotlyShown = false;
let nextFigureId = 0;

/** The <script> tags that load Plotly once in a page. */
export function plotlyLoaderHtml(src: string | undefined = process.env[PLOTLY_SRC_ENV]): string {
  const hide = "<script>window.__defineBeforePlotly = window.define; window.define = undefined;</script>";
  const restore = "<script>window.define = window.__defineBeforePlotly;</script>";
  if (src) return `${hide}<script src="${escapeHtml(src)}"></script>${restore}`;
  const bundle = readFileSync(require.resolve("plotly.js-dist-min/plotly.min.js"), "utf8");
  return `${hide}<script>${bundle.replace(/<\/script/gi, "<\\/script")}</script>${restore}`;
}

/** A figure's <div> and the script that draws it (JSON inside a script: `</` escaped). */
export function figureHtml(figure: PlotlyFigure, id: string): string {
  const json = (value: unknown) => JSON.stringify(value).replace(/</g, "\\u003c");
  return (
    `<div id="${id}" class="plotly-figure"></div>` +
    `<script>Plotly.newPlot(${json(id)}, ${json(figure.data)}, ${json(figure.layout)}, {responsive: true, displaylogo: false});</script>`
  );
}

export function showFigure(figure: PlotlyFigure): void {
  const id = `figure-${process.pid}-${nextFigureId++}`;
  const loader = plotlyShown ? "" : plotlyLoaderHtml();
  plotlyShown = true;
  tslab.display.html(loader + figureHtml(figure, id));
}

export function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

export type Cell = string | number | null | undefined;

/** A pandas-style `<table class="dataframe">`; numbers are right-aligned, floats rounded. */
export function tableHtml(columns: string[], rows: Cell[][], options: { index?: string[]; digits?: number } = {}): string {
  const digits = options.digits ?? 4;
  const format = (cell: Cell) =>
    typeof cell === "number" ? (Number.isInteger(cell) ? cell.toLocaleString("en-US") : cell.toFixed(digits)) : escapeHtml(String(cell ?? ""));
  const head = `<tr>${options.index ? "<th></th>" : ""}${columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}</tr>`;
  const body = rows
    .map((row, r) => {
      if (row.length !== columns.length) throw new Error(`tableHtml: row ${r} has ${row.length} cells for ${columns.length} columns.`);
      const index = options.index ? `<th>${escapeHtml(options.index[r])}</th>` : "";
      return `<tr>${index}${row.map((cell) => `<td style="text-align:${typeof cell === "number" ? "right" : "left"}">${format(cell)}</td>`).join("")}</tr>`;
    })
    .join("");
  return `<table class="dataframe"><thead>${head}</thead><tbody>${body}</tbody></table>`;
}

/** The shape of a danfojs DataFrame that tables need (danfojs is not imported here). */
export interface FrameLike {
  columns: string[];
  values: unknown[][] | unknown[];
  index?: (string | number)[];
}

export function frameHtml(frame: FrameLike, digits = 4): string {
  const rows = (frame.values as unknown[][]).map((row) => (Array.isArray(row) ? row : [row]) as Cell[]);
  return tableHtml(frame.columns, rows, { index: frame.index?.map(String), digits });
}

export function showTable(frame: FrameLike, digits = 4): void {
  tslab.display.html(frameHtml(frame, digits));
}

export function showPng(png: Uint8Array): void {
  tslab.display.png(png);
}

/** One line updated in place (nbconvert keeps the final state), e.g. an epoch counter. */
export function progressLine(): (text: string) => void {
  const display = tslab.newDisplay();
  return (text: string) => display.html(`<pre style="margin:0">${escapeHtml(text)}</pre>`);
}
