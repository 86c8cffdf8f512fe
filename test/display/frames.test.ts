import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { frame } from "../../lib/display/frames";
import { frameHtml } from "../../lib/display/notebook";

describe("frames", () => {
  it("builds a danfojs DataFrame that renders as an HTML table", () => {
    const df = frame([["Shirt", 6000], ["Bag", 6000]], ["class", "train"]);
    assert.deepEqual(df.columns, ["class", "train"]);
    assert.deepEqual(df.shape, [2, 2]);
    const html = frameHtml(df);
    assert.match(html, /<th>class<\/th><th>train<\/th>/);
    assert.match(html, /<th>1<\/th><td style="text-align:left">Bag<\/td><td style="text-align:right">6,000<\/td>/);
  });

  it("rejects ragged rows", () => {
    assert.throws(() => frame([["a"]], ["x", "y"]), /row 0 has 1 values for 2 columns/);
  });

  it("rejects a column name that would hide a DataFrame member", () => {
    assert.throws(() => frame([["a", "b"]], ["name", "values"]), /a column named "values" would hide the DataFrame's own "values"/);
    assert.throws(() => frame([[1]], ["index"]), /"index" would hide/);
    // Columns named like other DataFrame methods are fine: tables read only values, columns and index.
    assert.deepEqual(frame([[1, 2]], ["min", "mean"]).values, [[1, 2]]);
  });
});
