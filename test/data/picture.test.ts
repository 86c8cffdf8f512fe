import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { grey, rgbaTo28x28 } from "../../lib/data/picture";

/** RGBA of an opaque grey image from grey values. */
const opaque = (values: number[]) => values.flatMap((v) => [v, v, v, 255]);

describe("rgbaTo28x28", () => {
  it("averages areas when it shrinks: each target pixel is the mean of the source block it covers", () => {
    // 4×4 on a dark border (not inverted) → 2×2: the means of the four 2×2 blocks.
    const values = [
      0, 0, 40, 40,
      0, 100, 40, 40,
      8, 8, 0, 0,
      8, 8, 0, 20,
    ];
    const converted = rgbaTo28x28(opaque(values), 4, 4, 2);
    assert.equal(converted.inverted, false);
    assert.deepEqual(Array.from(converted.pixels), [25, 40, 8, 5]);
  });

  it("fits keeping the aspect, centred on the background; a light border inverts", () => {
    // A 4×2 picture, white with one black pixel, into 4×4: rows 1–2 hold it, rows 0 and 3 are background.
    const values = [255, 255, 255, 255, 255, 0, 255, 255];
    const converted = rgbaTo28x28(opaque(values), 4, 2, 4);
    assert.equal(converted.inverted, true);
    assert.deepEqual(Array.from(converted.pixels), [
      0, 0, 0, 0,
      0, 0, 0, 0,
      0, 255, 0, 0,
      0, 0, 0, 0,
    ]);
    assert.equal(converted.originalWidth, 4);
    assert.equal(converted.originalHeight, 2);
  });

  it("composites transparency over white and refuses inconsistent input", () => {
    assert.equal(grey(0, 0, 0, 0), 255);
    assert.equal(grey(0, 0, 0, 255), 0);
    assert.throws(() => rgbaTo28x28([0, 0, 0], 1, 1), /expected 4 RGBA values for 1×1, got 3/);
    assert.throws(() => rgbaTo28x28([], 0, 0), /the image has no pixels/);
  });
});
