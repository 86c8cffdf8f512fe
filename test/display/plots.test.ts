import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { barChart, binnedHistogram, heatmap, imageHeatmapGrid, lineChart, parallelCoordinates, reliabilityDiagram, scatterByGroup, timeToAccuracy } from "../../lib/display/plots";
import { figureHtml, frameHtml, plotlyLoaderHtml, tableHtml } from "../../lib/display/notebook";

describe("figure specs", () => {
  it("bar chart: one trace per series, grouped", () => {
    const figure = barChart(["a", "b"], [{ name: "train", values: [1, 2] }, { name: "test", values: [3, 4] }], { title: "T" });
    assert.equal(figure.data.length, 2);
    assert.deepEqual(figure.data[1], { type: "bar", name: "test", x: ["a", "b"], y: [3, 4] });
    assert.equal(figure.layout.barmode, "group");
    assert.deepEqual(figure.layout.title, { text: "T" });
  });

  it("rejects series whose length differs from the categories", () => {
    assert.throws(() => barChart(["a", "b"], [{ name: "x", values: [1] }]), /barChart "x": 2 labels but 1 values/);
    assert.throws(() => lineChart([{ name: "loss", x: [1, 2], y: [1] }]), /lineChart "loss"/);
  });

  it("heatmap: rows top to bottom, optional value labels", () => {
    const figure = heatmap([[1, 2], [3, 4]], { x: ["p", "q"], y: ["r", "s"], showValues: true });
    const trace = figure.data[0];
    assert.deepEqual(trace.text, [["1", "2"], ["3", "4"]]);
    assert.equal((figure.layout.yaxis as { autorange: string }).autorange, "reversed");
    assert.throws(() => heatmap([[1, 2]], { y: ["a", "b"] }), /heatmap rows/);
  });

  it("image grid: one heatmap per image on its own axes, captions as annotations", () => {
    const figure = imageHeatmapGrid(
      [{ caption: "zero", pixels: [0, 1, 2, 3] }, { caption: "one", pixels: [4, 5, 6, 7] }],
      { height: 2, width: 2, columns: 2 },
    );
    assert.equal(figure.data.length, 2);
    assert.deepEqual(figure.data[1].z, [[4, 5], [6, 7]]);
    assert.equal(figure.data[1].xaxis, "x2");
    assert.deepEqual((figure.layout.annotations as { text: string }[]).map((a) => a.text), ["zero", "one"]);
    assert.throws(() => imageHeatmapGrid([{ caption: "bad", pixels: [1] }], { height: 2, width: 2 }), /"bad" has 1 pixels, expected 4/);
  });

  it("scatter by group keeps the given group order", () => {
    const figure = scatterByGroup([{ x: 1, y: 2, group: "b" }, { x: 3, y: 4, group: "a" }], { groupOrder: ["a", "b"] });
    assert.deepEqual(figure.data.map((t) => t.name), ["a", "b"]);
    assert.deepEqual(figure.data[0].x, [3]);
    assert.equal(figure.layout.annotations, undefined);
    const labelled = scatterByGroup([{ x: 1, y: 2, group: "a" }], { labels: [{ x: 1, y: 2, text: "a" }] });
    assert.deepEqual((labelled.layout.annotations as { x: number; y: number; text: string }[]).map((a) => [a.x, a.y, a.text]), [[1, 2, "a"]]);
  });

  it("time to accuracy: validation over cumulative minutes, the test accuracy at the end, anchors, levels across", () => {
    const figure = timeToAccuracy(
      [{ name: "r", epochSeconds: [60, 120], valAccuracy: [0.8, 0.9], testAccuracy: 0.88 }, { name: "s", epochSeconds: [30], valAccuracy: [0.7], testAccuracy: null }],
      [{ label: "anchor", minutes: 5, testAccuracy: 0.93 }],
      [{ label: "study", accuracy: 0.92 }],
    );
    assert.deepEqual(figure.data.map((t) => t.name), ["r (validation)", "r (test)", "s (validation)", "anchor", "study"]);
    assert.deepEqual([figure.data[0].x, figure.data[0].y], [[1, 3], [0.8, 0.9]]);
    assert.deepEqual([figure.data[1].x, figure.data[1].y], [[3], [0.88]]);
    assert.deepEqual(figure.data[4].x, [0, 5], "a level spans to the longest time shown");
    assert.throws(() => timeToAccuracy([{ name: "bad", epochSeconds: [1], valAccuracy: [], testAccuracy: null }], [], []), /timeToAccuracy "bad": 1 labels but 0 values/);
    // A run without validation: its test diamond alone, in the legend, and the axis ignores the missing values.
    const unvalidated = timeToAccuracy([{ name: "full", epochSeconds: [60, 60], valAccuracy: [null, null], testAccuracy: 0.95 }], [], []);
    assert.deepEqual(unvalidated.data.map((t) => [t.name, t.showlegend]), [["full (test)", true]]);
    assert.deepEqual((unvalidated.layout.yaxis as { range: number[] }).range, [0.945, 0.955]);
  });

  it("binned histogram: x at bin centres", () => {
    const figure = binnedHistogram([0, 10, 20], [{ name: "h", counts: [5, 7] }]);
    assert.deepEqual(figure.data[0].x, [5, 15]);
    assert.throws(() => binnedHistogram([0, 10], [{ name: "h", counts: [1, 2] }]), /1 labels but 2 values/);
    assert.equal((figure.layout.yaxis as { type?: string }).type, undefined);
    const log = binnedHistogram([0, 10, 20], [{ name: "h", counts: [5, 7] }], { logY: true, yTitle: "n" });
    assert.deepEqual(log.layout.yaxis, { title: { text: "n" }, automargin: true, type: "log" });
  });
});

describe("evaluation and tuning figures", () => {
  it("reliability diagram: bars at bin centres for non-empty bins, and the diagonal", () => {
    const figure = reliabilityDiagram([
      { lower: 0, upper: 0.5, count: 0, confidence: 0, accuracy: 0 },
      { lower: 0.5, upper: 1, count: 4, confidence: 0.8, accuracy: 0.75 },
    ]);
    assert.deepEqual(figure.data[0].x, [0.75]);
    assert.deepEqual(figure.data[0].y, [0.75]);
    assert.deepEqual(figure.data[1].y, [0.8]);
    assert.deepEqual(figure.data[2].x, [0, 1]);
  });

  it("parallel coordinates: one axis per dimension plus the colour's, lengths checked", () => {
    const figure = parallelCoordinates([{ label: "lr", values: [1, 2] }], { label: "val acc", values: [0.8, 0.9] });
    const dimensions = (figure.data[0] as { dimensions: { label: string }[] }).dimensions;
    assert.deepEqual(dimensions.map((d) => d.label), ["lr", "val acc"]);
    assert.throws(() => parallelCoordinates([{ label: "lr", values: [1] }], { label: "v", values: [1, 2] }), /parallelCoordinates "lr": 2 labels but 1 values/);
  });
});

describe("notebook HTML", () => {
  it("draws a figure into its own div, with '<' escaped inside the script", () => {
    const html = figureHtml(barChart(["</script>"], [{ name: "n", values: [1] }]), "fig-1");
    assert.match(html, /^<div id="fig-1" class="plotly-figure"><\/div><script>Plotly\.newPlot\("fig-1", /);
    assert.doesNotMatch(html.slice(html.indexOf("<script>") + 8, html.lastIndexOf("</script>")), /<\/script/);
  });

  it("loads plotly from a shared file when given a src, hiding require.js's define meanwhile", () => {
    const html = plotlyLoaderHtml("plotly.min.js");
    assert.match(html, /window\.define = undefined;<\/script><script src="plotly\.min\.js"><\/script><script>window\.define = window\.__defineBeforePlotly;/);
  });

  it("inlines the plotly bundle when no src is given", () => {
    const html = plotlyLoaderHtml(undefined);
    assert.ok(html.length > 1_000_000);
    assert.match(html, /<script>window\.__defineBeforePlotly/);
  });

  it("tables: escaped text, formatted numbers, an index column, and a clear error on ragged rows", () => {
    const html = tableHtml(["name", "value"], [["<b>", 1234], ["x", 0.5]], { index: ["r1", "r2"], digits: 2 });
    assert.match(html, /^<table class="dataframe"><thead><tr><th><\/th><th>name<\/th><th>value<\/th><\/tr><\/thead>/);
    assert.match(html, /<th>r1<\/th><td style="text-align:left">&lt;b&gt;<\/td><td style="text-align:right">1,234<\/td>/);
    assert.match(html, /0\.50/);
    assert.throws(() => tableHtml(["a", "b"], [[1]]), /row 0 has 1 cells for 2 columns/);
    assert.match(frameHtml({ columns: ["c"], values: [[1], [2]], index: [0, 1] }), /<th>1<\/th><td style="text-align:right">2<\/td>/);
  });
});
