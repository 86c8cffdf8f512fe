/**
 * Figures as plain Plotly specs ({ data, layout }): built here as data, so tests can check
 * them; shown in notebooks by lib/display/notebook.ts.
 */

export interface PlotlyFigure {
  data: Record<string, unknown>[];
  layout: Record<string, unknown>;
}

interface Titles {
  title?: string;
  xTitle?: string;
  yTitle?: string;
  height?: number;
  width?: number;
}

function baseLayout({ title, xTitle, yTitle, height, width }: Titles): Record<string, unknown> {
  return {
    title: title ? { text: title } : undefined,
    xaxis: { title: xTitle ? { text: xTitle } : undefined, automargin: true },
    yaxis: { title: yTitle ? { text: yTitle } : undefined, automargin: true },
    height: height ?? 400,
    width,
    margin: { t: title ? 50 : 20, r: 20, b: 50, l: 60 },
  };
}

function assertSameLength(what: string, a: ArrayLike<unknown>, b: ArrayLike<unknown>): void {
  if (a.length !== b.length) throw new Error(`${what}: ${a.length} labels but ${b.length} values.`);
}

/** One bar per category; several series side by side. */
export function barChart(
  categories: string[],
  series: { name: string; values: number[] }[],
  titles: Titles = {},
): PlotlyFigure {
  for (const s of series) assertSameLength(`barChart "${s.name}"`, categories, s.values);
  return {
    data: series.map((s) => ({ type: "bar", name: s.name, x: categories, y: s.values })),
    layout: { ...baseLayout(titles), barmode: "group", showlegend: series.length > 1 },
  };
}

/** Lines over a shared or per-series x; a null y is a gap (e.g. the validation of a run without one). */
export function lineChart(series: { name: string; x: number[]; y: (number | null)[] }[], titles: Titles = {}): PlotlyFigure {
  for (const s of series) assertSameLength(`lineChart "${s.name}"`, s.x, s.y);
  return {
    data: series.map((s) => ({ type: "scatter", mode: "lines+markers", name: s.name, x: s.x, y: s.y })),
    layout: baseLayout(titles),
  };
}

/**
 * Accuracy against training minutes: each run's validation accuracy after each epoch (a line
 * over its cumulative training time) and its test accuracy at the end (a diamond); outside
 * points (anchors) as crosses; published accuracies without a time as dashed levels.
 */
export function timeToAccuracy(
  /** valAccuracy null: a run without validation (trained on every training image) has its test diamond only. */
  runs: { name: string; epochSeconds: number[]; valAccuracy: (number | null)[]; testAccuracy: number | null }[],
  anchors: readonly { label: string; minutes: number; testAccuracy: number }[],
  levels: { label: string; accuracy: number }[],
  titles: Titles = {},
): PlotlyFigure {
  const data: Record<string, unknown>[] = [];
  let longest = Math.max(1, ...anchors.map((a) => a.minutes));
  const shown: number[] = [...anchors.map((a) => a.testAccuracy), ...levels.map((l) => l.accuracy)];
  runs.forEach((run, i) => {
    assertSameLength(`timeToAccuracy "${run.name}"`, run.epochSeconds, run.valAccuracy);
    let total = 0;
    const minutes = run.epochSeconds.map((s) => (total += s) / 60);
    longest = Math.max(longest, total / 60);
    const validated = run.valAccuracy.filter((a): a is number => a !== null);
    shown.push(...validated, ...(run.testAccuracy === null ? [] : [run.testAccuracy]));
    // A run's line and its test diamond share a colour.
    const color = COLORWAY[i % COLORWAY.length];
    if (validated.length > 0) data.push({ type: "scatter", mode: "lines", name: `${run.name} (validation)`, legendgroup: run.name, x: minutes, y: run.valAccuracy, line: { color } });
    if (run.testAccuracy !== null) {
      const marker = { symbol: "diamond", size: 10, color };
      data.push({ type: "scatter", mode: "markers", name: `${run.name} (test)`, legendgroup: run.name, showlegend: validated.length === 0, x: [total / 60], y: [run.testAccuracy], marker });
    }
  });
  for (const anchor of anchors) data.push({ type: "scatter", mode: "markers", name: anchor.label, x: [anchor.minutes], y: [anchor.testAccuracy], marker: { symbol: "x", size: 11, color: "#333" } });
  for (const level of levels) {
    data.push({ type: "scatter", mode: "lines", name: level.label, x: [0, longest], y: [level.accuracy, level.accuracy], line: { dash: "dot", width: 1, color: "#888" } });
  }
  // The first epochs of slow starters would stretch the axis far below where runs compete.
  const low = Math.max(0.8, Math.min(...shown) - 0.005);
  const layout = baseLayout(titles);
  return { data, layout: { ...layout, yaxis: { ...(layout.yaxis as object), range: [low, Math.max(...shown) + 0.005] }, height: titles.height ?? 550 } };
}

/** Plotly's default colours, named so that two traces can share one. */
const COLORWAY = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/** A matrix as colours, rows top to bottom (like an image or a confusion matrix). */
export function heatmap(
  z: number[][],
  options: Titles & { x?: string[]; y?: string[]; colorscale?: string; showValues?: boolean; zmin?: number; zmax?: number } = {},
): PlotlyFigure {
  const rows = z.length;
  if (options.y) assertSameLength("heatmap rows", options.y, z);
  if (options.x && rows > 0) assertSameLength("heatmap columns", options.x, z[0]);
  return {
    data: [
      {
        type: "heatmap",
        z,
        x: options.x,
        y: options.y,
        colorscale: options.colorscale ?? "Viridis",
        zmin: options.zmin,
        zmax: options.zmax,
        text: options.showValues ? z.map((row) => row.map((v) => (Number.isInteger(v) ? String(v) : v.toFixed(2)))) : undefined,
        texttemplate: options.showValues ? "%{text}" : undefined,
      },
    ],
    layout: { ...baseLayout(options), yaxis: { autorange: "reversed", automargin: true, title: options.yTitle ? { text: options.yTitle } : undefined } },
  };
}

/**
 * Small-multiple heatmaps (e.g. the mean image of each class) in a grid of subplots, each
 * with its caption; images are row-major `height × width` arrays.
 */
export function imageHeatmapGrid(
  images: { caption: string; pixels: ArrayLike<number> }[],
  options: { height: number; width: number; columns?: number; colorscale?: string; title?: string; zmin?: number; zmax?: number },
): PlotlyFigure {
  const columns = options.columns ?? 5;
  const rows = Math.ceil(images.length / columns);
  const data: Record<string, unknown>[] = [];
  const layout: Record<string, unknown> = {
    title: options.title ? { text: options.title } : undefined,
    grid: { rows, columns, pattern: "independent" },
    height: 40 + rows * 170,
    margin: { t: options.title ? 60 : 30, r: 10, b: 10, l: 10 },
    annotations: [] as Record<string, unknown>[],
  };
  images.forEach((image, index) => {
    if (image.pixels.length !== options.height * options.width) {
      throw new Error(`imageHeatmapGrid: "${image.caption}" has ${image.pixels.length} pixels, expected ${options.height * options.width}.`);
    }
    const z: number[][] = [];
    for (let r = 0; r < options.height; r++) z.push(Array.from({ length: options.width }, (_, c) => image.pixels[r * options.width + c]));
    const axis = index === 0 ? "" : String(index + 1);
    data.push({
      type: "heatmap",
      z,
      xaxis: `x${axis}`,
      yaxis: `y${axis}`,
      colorscale: options.colorscale ?? "Greys",
      reversescale: options.colorscale === undefined,
      zmin: options.zmin,
      zmax: options.zmax,
      showscale: index === 0,
      name: image.caption,
    });
    layout[`xaxis${axis}`] = { visible: false };
    layout[`yaxis${axis}`] = { visible: false, autorange: "reversed", scaleanchor: `x${axis}` };
    (layout.annotations as Record<string, unknown>[]).push({
      text: image.caption,
      xref: `x${axis} domain`,
      yref: `y${axis} domain`,
      x: 0.5,
      y: 1.12,
      showarrow: false,
    });
  });
  return { data, layout };
}

/** Points coloured by group (e.g. a 2-D embedding coloured by class), with optional text labels placed on the plot (e.g. class names at their clusters). */
export function scatterByGroup(
  points: { x: number; y: number; group: string }[],
  titles: Titles & { groupOrder?: string[]; labels?: { x: number; y: number; text: string }[] } = {},
): PlotlyFigure {
  const groups = titles.groupOrder ?? [...new Set(points.map((p) => p.group))];
  const annotations = titles.labels?.map((l) => ({ x: l.x, y: l.y, text: l.text, showarrow: false, font: { size: 13 }, bgcolor: "rgba(255,255,255,0.7)" }));
  return {
    data: groups.map((group) => {
      const members = points.filter((p) => p.group === group);
      return { type: "scatter", mode: "markers", name: group, x: members.map((p) => p.x), y: members.map((p) => p.y), marker: { size: 4, opacity: 0.7 } };
    }),
    layout: { ...baseLayout(titles), height: titles.height ?? 550, ...(annotations ? { annotations } : {}) },
  };
}

/** Histograms given as precomputed bin counts (one line per series, bins shared). */
export function binnedHistogram(
  binEdges: number[],
  series: { name: string; counts: number[] }[],
  titles: Titles & { logY?: boolean } = {},
): PlotlyFigure {
  const centres = binEdges.slice(0, -1).map((edge, i) => (edge + binEdges[i + 1]) / 2);
  for (const s of series) assertSameLength(`binnedHistogram "${s.name}"`, centres, s.counts);
  const layout = baseLayout(titles);
  // A log axis shows the small bins beside one that holds most of the mass.
  if (titles.logY) layout.yaxis = { ...(layout.yaxis as Record<string, unknown>), type: "log" };
  return {
    data: series.map((s) => ({ type: "scatter", mode: "lines", line: { shape: "hvh" }, name: s.name, x: centres, y: s.counts })),
    layout,
  };
}

/**
 * Reliability diagram: accuracy per confidence bin as bars against the diagonal of perfect
 * calibration, with the bins' mean confidence as points (empty bins are left out).
 */
export function reliabilityDiagram(
  bins: { lower: number; upper: number; count: number; confidence: number; accuracy: number }[],
  titles: Titles = {},
): PlotlyFigure {
  const used = bins.filter((b) => b.count > 0);
  const centres = used.map((b) => (b.lower + b.upper) / 2);
  return {
    data: [
      { type: "bar", name: "accuracy", x: centres, y: used.map((b) => b.accuracy), width: used.map((b) => b.upper - b.lower), customdata: used.map((b) => b.count), hovertemplate: "accuracy %{y:.3f}<br>%{customdata} images<extra></extra>" },
      { type: "scatter", mode: "markers", name: "mean confidence", x: centres, y: used.map((b) => b.confidence) },
      { type: "scatter", mode: "lines", name: "perfect calibration", x: [0, 1], y: [0, 1], line: { dash: "dash", color: "grey" } },
    ],
    layout: { ...baseLayout({ xTitle: "confidence (top probability)", yTitle: "accuracy", ...titles }), xaxis: { range: [0, 1], title: { text: titles.xTitle ?? "confidence (top probability)" } }, yaxis: { range: [0, 1], title: { text: titles.yTitle ?? "accuracy" } } },
  };
}

/** Parallel coordinates: one vertical axis per dimension, one line per row, coloured by `color`. */
export function parallelCoordinates(
  dimensions: { label: string; values: number[]; tickvals?: number[]; ticktext?: string[] }[],
  color: { label: string; values: number[] },
  titles: Titles = {},
): PlotlyFigure {
  for (const d of dimensions) assertSameLength(`parallelCoordinates "${d.label}"`, color.values, d.values);
  return {
    data: [
      {
        type: "parcoords",
        line: { color: color.values, colorscale: "Viridis", showscale: true, colorbar: { title: { text: color.label } } },
        dimensions: [...dimensions.map((d) => ({ label: d.label, values: d.values, tickvals: d.tickvals, ticktext: d.ticktext })), { label: color.label, values: color.values }],
      },
    ],
    layout: { ...baseLayout(titles), height: titles.height ?? 450 },
  };
}
