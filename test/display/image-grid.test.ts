import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createCanvas, loadImage } from "@napi-rs/canvas";
import { imageGridPng } from "../../lib/display/image-grid";

/** RGBA pixels of a PNG, read back with the same library's decoder. */
async function decode(png: Buffer): Promise<{ width: number; height: number; data: Uint8ClampedArray }> {
  const image = await loadImage(png);
  const context = createCanvas(image.width, image.height).getContext("2d");
  context.drawImage(image, 0, 0);
  return { width: image.width, height: image.height, data: context.getImageData(0, 0, image.width, image.height).data };
}


describe("image grid", () => {
  it("a grid PNG: cells of the right size, garments dark on white, mistakes framed in red", async () => {
    const bright = new Array(4).fill(255);
    const png = imageGridPng(
      [
        { pixels: bright, caption: "a" },
        { pixels: bright, caption: "b", highlight: true },
        { pixels: bright, caption: "c" },
      ],
      { height: 2, width: 2, columns: 2, scale: 3 },
    );
    const { width, height, data } = await decode(png);
    // Cells are at least 70 + 8 wide; 2·3 + 13 + 10 high; 3 images in 2 columns → 2 rows.
    assert.deepEqual([width, height], [2 * 78, 2 * 29]);
    const at = (x: number, y: number) => [...data.subarray(4 * (y * width + x), 4 * (y * width + x) + 3)];
    const left = (78 - 6) / 2;
    assert.deepEqual(at(left + 1, 5), [0, 0, 0], "a bright pixel is drawn black");
    assert.deepEqual(at(1, 1), [255, 255, 255], "the background is white");
    assert.deepEqual(at(78 + left - 1, 4), [0xd6, 0x27, 0x28], "the highlighted cell has a red frame");
    assert.throws(() => imageGridPng([{ pixels: [1], caption: "x" }], { height: 2, width: 2, columns: 1 }), /"x" has 1 pixels, expected 4/);
    assert.throws(() => imageGridPng([], { height: 2, width: 2, columns: 1 }), /no images/);
  });
});
