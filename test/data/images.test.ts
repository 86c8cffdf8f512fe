import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createCanvas } from "@napi-rs/canvas";
import { imageFileTo28x28, imageHeader, MAX_IMAGE_PIXELS } from "../../lib/data/images";

describe("images", () => {
  it("a dark object on a light, wide picture becomes a light object on black, centred in 28×28", async () => {
    const canvas = createCanvas(112, 56);
    const context = canvas.getContext("2d");
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, 112, 56);
    context.fillStyle = "#000080"; // dark blue square in the middle
    context.fillRect(40, 12, 32, 32);
    const converted = await imageFileTo28x28(canvas.toBuffer("image/png"));
    assert.equal(converted.inverted, true);
    assert.deepEqual([converted.originalWidth, converted.originalHeight], [112, 56]);
    const pixel = (x: number, y: number) => converted.pixels[y * 28 + x];
    // Scale 1/4: the picture fills rows 7–20; the square maps to columns 10–17, rows 10–17.
    assert.ok(pixel(14, 14) > 200, `centre ${pixel(14, 14)}`);
    assert.equal(pixel(1, 1), 0, "padding above the picture is background");
    assert.equal(pixel(2, 14), 0, "the light background is inverted to black");
  });

  it("a picture with a dark background is kept as it is; transparency counts as background", async () => {
    const canvas = createCanvas(28, 28);
    const context = canvas.getContext("2d");
    context.fillStyle = "#000000";
    context.fillRect(0, 0, 28, 28);
    context.fillStyle = "#ffffff";
    context.fillRect(10, 10, 8, 8);
    const dark = await imageFileTo28x28(canvas.toBuffer("image/jpeg"));
    assert.equal(dark.inverted, false);
    assert.ok(dark.pixels[14 * 28 + 14] > 240 && dark.pixels[0] < 15);

    const transparent = createCanvas(28, 28);
    const tctx = transparent.getContext("2d");
    tctx.fillStyle = "#000000";
    tctx.fillRect(10, 10, 8, 8); // opaque black square, the rest transparent (= white)
    const converted = await imageFileTo28x28(transparent.toBuffer("image/png"));
    assert.equal(converted.inverted, true);
    assert.equal(converted.pixels[14 * 28 + 14], 255);
    assert.equal(converted.pixels[0], 0);
  });

  it("a truncated PNG or JPEG is an error, not an answer", async () => {
    const canvas = createCanvas(40, 60);
    const context = canvas.getContext("2d");
    context.fillStyle = "#808080";
    context.fillRect(5, 5, 30, 50);
    for (const [format, file] of [["PNG", canvas.toBuffer("image/png")], ["JPEG", canvas.toBuffer("image/jpeg")]] as const) {
      await imageFileTo28x28(file); // whole: fine
      await assert.rejects(imageFileTo28x28(file.subarray(0, Math.floor(file.length / 2))), new RegExp(`the ${format} file is truncated`));
    }
  });

  it("a picture declaring more than MAX_IMAGE_PIXELS is refused before decoding", async () => {
    const png = createCanvas(4, 4).toBuffer("image/png");
    // The same small file, its header declaring 20000×20000 pixels.
    const huge = Buffer.from(png);
    huge.writeUInt32BE(20000, 16);
    huge.writeUInt32BE(20000, 20);
    assert.deepEqual(imageHeader(huge), { format: "png", width: 20000, height: 20000, complete: true });
    await assert.rejects(imageFileTo28x28(huge), /declares 20000×20000 pixels, above the limit of 40,000,000/);
    assert.ok(20000 * 20000 > MAX_IMAGE_PIXELS);
  });

  it("something that is not a picture is a clear error", async () => {
    await assert.rejects(imageFileTo28x28(Buffer.from("hello")), /not a readable PNG or JPEG image/);
  });
});
