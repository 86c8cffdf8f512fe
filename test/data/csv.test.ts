import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseLabelCsv } from "../../lib/data/csv";

const names = ["cat", "dog", "bird"];

describe("parseLabelCsv", () => {
  it("reads true/pred columns in any order, by index or name, ignoring other columns", () => {
    const { yTrue, yPred } = parseLabelCsv("id,pred,true\r\n7,1,0\n8,bird,dog\n9, 2 ,cat\n\n", names);
    assert.deepEqual([...yTrue], [0, 1, 0]);
    assert.deepEqual([...yPred], [1, 2, 2]);
  });

  it("names the line of every malformed row", () => {
    assert.throws(() => parseLabelCsv("true,pred\n0,1\n0,3\n", names, "p.csv"), /p\.csv line 3: "3" is not a class \(0–2 or one of cat, dog, bird\)/);
    assert.throws(() => parseLabelCsv("true,pred\n0\n", names, "p.csv"), /p\.csv line 2 has 1 fields; the header has 2/);
    assert.throws(() => parseLabelCsv("true,pred\n-1,0\n", names), /"-1" is not a class/);
  });

  it("rejects a missing header, no rows, an empty file and quotes", () => {
    assert.throws(() => parseLabelCsv("0,1\n1,1\n", names), /header must name "true" and "pred"/);
    assert.throws(() => parseLabelCsv("true,pred\n", names), /has a header but no rows/);
    assert.throws(() => parseLabelCsv("", names), /is empty/);
    assert.throws(() => parseLabelCsv('true,pred\n"cat",dog\n', names), /quoted fields are not supported/);
  });
});
