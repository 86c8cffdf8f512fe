import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { initBackend, tf } from "../../lib/accelerator";
import { augmentBatch, augmenter, mixSeed, STANDARD_AUGMENTATION, validateAugmentConfig, viewBatch, type AugmentConfig, type TtaView } from "../../lib/data/augment";
import { onBackend, seededImages, valuesOf } from "../helpers/tensors";

const SIZE = 28;

describe("augmentation", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("keeps shapes and the [0, 1] range, and leaks no tensors", () => {
    const images = seededImages(6);
    const before = tf.memory().numTensors;
    const everything: AugmentConfig = {
      ...STANDARD_AUGMENTATION,
      rotate: { maxDegrees: 15 },
      zoom: { maxFraction: 0.1 },
      noise: { std: 0.2 },
      erase: { probability: 1, area: [0.1, 0.3], aspect: [0.3, 3.3], value: 0.5 },
    };
    const output = augmentBatch(images, everything, 7);
    assert.deepEqual(output.shape, images.shape);
    const pixels = valuesOf(output);
    assert.ok(pixels.every((v) => v >= 0 && v <= 1), `range ${Math.min(...pixels)}..${Math.max(...pixels)}`);
    output.dispose();
    assert.equal(tf.memory().numTensors, before, "no leaked tensors");
    images.dispose();
  });

  it("same seed → same output, different seed → different output", () => {
    const images = seededImages(4);
    const config: AugmentConfig = { ...STANDARD_AUGMENTATION, rotate: { maxDegrees: 10 }, noise: { std: 0.05 } };
    const [a, b, c] = [3, 3, 4].map((seed) => augmentBatch(images, config, seed));
    assert.deepEqual(valuesOf(a), valuesOf(b));
    assert.notDeepEqual(valuesOf(a), valuesOf(c));
    tf.dispose([images, a, b, c]);
  });

  it("a horizontal flip mirrors columns exactly; flipping twice is the identity", () => {
    const images = seededImages(3);
    const flip: AugmentConfig = { flipHorizontal: { probability: 1 } };
    const once = augmentBatch(images, flip, 1);
    const mirrored = tf.reverse(images, 2);
    assert.deepEqual(valuesOf(once), valuesOf(mirrored));
    const twice = augmentBatch(once, flip, 2);
    assert.deepEqual(valuesOf(twice), valuesOf(images));
    tf.dispose([images, once, mirrored, twice]);
  });

  it("a vertical flip is off unless asked for", () => {
    const images = seededImages(2);
    const standard = augmentBatch(images, { flipHorizontal: { probability: 0 } }, 1);
    assert.deepEqual(valuesOf(standard), valuesOf(images));
    const vertical = augmentBatch(images, { flipVertical: { probability: 1 } }, 1);
    const expected = tf.reverse(images, 1);
    assert.deepEqual(valuesOf(vertical), valuesOf(expected));
    tf.dispose([images, standard, vertical, expected]);
  });

  it("a shift of 0 is the identity; a shift moves whole pixels with black filling in", () => {
    const images = seededImages(5);
    const none = augmentBatch(images, { shift: { maxPixels: 0 } }, 1);
    assert.deepEqual(valuesOf(none), valuesOf(images));
    const shifted = augmentBatch(images, { shift: { maxPixels: 2 } }, 9);
    const source = valuesOf(images);
    const output = valuesOf(shifted);
    let moved = 0;
    for (let n = 0; n < 5; n++) {
      // The output must equal the input translated by some (dx, dy) in [-2, 2]², zeros outside.
      const matches: string[] = [];
      for (let dy = -2; dy <= 2; dy++) {
        for (let dx = -2; dx <= 2; dx++) {
          let same = true;
          for (let y = 0; y < SIZE && same; y++) {
            for (let x = 0; x < SIZE && same; x++) {
              const sy = y - dy;
              const sx = x - dx;
              const expected = sy >= 0 && sy < SIZE && sx >= 0 && sx < SIZE ? source[n * SIZE * SIZE + sy * SIZE + sx] : 0;
              same = Math.abs(output[n * SIZE * SIZE + y * SIZE + x] - expected) < 1e-6;
            }
          }
          if (same) matches.push(`${dx},${dy}`);
        }
      }
      assert.equal(matches.length, 1, `image ${n} is one exact translation (found ${matches.join(" ")})`);
      if (matches[0] !== "0,0") moved++;
    }
    assert.ok(moved > 0, "some images moved");
    tf.dispose([images, none, shifted]);
  });

  it("random erasing blanks the requested area fraction", () => {
    const ones = tf.ones([8, SIZE, SIZE, 1]) as tf.Tensor4D;
    const erased = augmentBatch(ones, { erase: { probability: 1, area: [0.25, 0.25], aspect: [1, 1] } }, 5);
    const pixels = valuesOf(erased);
    for (let n = 0; n < 8; n++) {
      const zeros = pixels.slice(n * SIZE * SIZE, (n + 1) * SIZE * SIZE).filter((v) => v === 0).length;
      assert.equal(zeros, 14 * 14, `image ${n}: a 14×14 square is a quarter of 28×28`);
    }
    const wide = augmentBatch(ones, { erase: { probability: 1, area: [0.02, 0.4], aspect: [0.3, 3.3] } }, 6);
    const fractions = Array.from({ length: 8 }, (_, n) => valuesOf(wide).slice(n * SIZE * SIZE, (n + 1) * SIZE * SIZE).filter((v) => v === 0).length / (SIZE * SIZE));
    // Rounding the box's sides to whole pixels moves the area a little beyond the drawn fraction.
    assert.ok(fractions.every((f) => f >= 0.01 && f <= 0.45), fractions.join(" "));
    const never = augmentBatch(ones, { erase: { probability: 0, area: [0.2, 0.2], aspect: [1, 1] } }, 5);
    assert.ok(valuesOf(never).every((v) => v === 1));
    tf.dispose([ones, erased, wide, never]);
  });

  it("Gaussian noise has the requested spread", () => {
    const grey = tf.fill([4, SIZE, SIZE, 1], 0.5) as tf.Tensor4D;
    const noisy = augmentBatch(grey, { noise: { std: 0.05 } }, 3);
    const deviations = valuesOf(noisy).map((v) => v - 0.5);
    const std = Math.sqrt(deviations.reduce((s, d) => s + d * d, 0) / deviations.length);
    assert.ok(Math.abs(std - 0.05) < 0.005, `std ${std}`);
    tf.dispose([grey, noisy]);
  });

  it("rejects invalid parameters with a message", () => {
    const bad: [unknown, RegExp][] = [
      [{ flipHorizontal: { probability: 1.5 } }, /flipHorizontal\.probability must be a probability in \[0, 1\], got 1\.5/],
      [{ shift: { maxPixels: -1 } }, /shift\.maxPixels must be a non-negative integer, got -1/],
      [{ shift: { maxPixels: 1.5 } }, /shift\.maxPixels must be a non-negative integer/],
      [{ rotate: { maxDegrees: 270 } }, /rotate\.maxDegrees must be in \[0, 180\]/],
      [{ zoom: { maxFraction: 1 } }, /zoom\.maxFraction must be in \[0, 1\)/],
      [{ erase: { probability: 0.5, area: [0.4, 0.1], aspect: [1, 1] } }, /erase\.area: min 0\.4 is above max 0\.1/],
      [{ erase: { probability: 0.5, area: [0, 0.1], aspect: [1, 1] } }, /erase\.area must be above 0/],
      [{ erase: { probability: 0.5, area: [0.1, 0.2] } }, /erase\.aspect must be a pair \[min, max\]/],
      [{ noise: { std: -0.1 } }, /noise\.std must be a non-negative number/],
      [{ blur: {} }, /Unknown transform "blur"/],
    ];
    for (const [config, message] of bad) assert.throws(() => validateAugmentConfig(config as AugmentConfig), message);
    assert.throws(() => augmenter({ shift: { maxPixels: -2 } }, 1), /shift\.maxPixels/);
  });

  it("moves whole pixels in JavaScript to tf.image.transform's values bit for bit (flips, shifts, shifts past the edge)", () => {
    const gray = seededImages(3, 5);
    // Three channels as well (the loops move a pixel's channels together).
    const colour = tf.tensor4d(valuesOf(seededImages(3, 6)).concat(valuesOf(seededImages(3, 7)), valuesOf(seededImages(3, 8))), [3, SIZE, SIZE, 3]);
    const views: TtaView[] = [{}, { flip: true }, { shiftX: 1 }, { shiftX: -1 }, { flip: true, shiftX: 2, shiftY: -3 }, { shiftY: 40 }, { flip: true, shiftX: -30 }];
    for (const images of [gray, colour]) {
      for (const view of views) {
        const moved = viewBatch(images, view);
        const shiftX = view.shiftX ?? 0;
        const shiftY = view.shiftY ?? 0;
        // The wasm kernel with the move's matrix: input = output − shift; mirrored, input = width − 1 − output + shift.
        const matrix = [view.flip ? -1 : 1, 0, view.flip ? SIZE - 1 + shiftX : -shiftX, 0, 1, -shiftY, 0, 0];
        const reference = tf.tidy(() => tf.image.transform(images, tf.tensor2d(Array(3).fill(matrix).flat(), [3, 8]), "bilinear", "constant", 0));
        assert.deepEqual(valuesOf(moved), valuesOf(reference), `${images.shape[3]} channels, ${JSON.stringify(view)}`);
        tf.dispose([moved, reference]);
      }
    }
    assert.throws(() => viewBatch(gray, { shiftX: 0.5 }), /whole pixels/);
    tf.dispose([gray, colour]);
  });

  it("on cpu, whose Transform kernel moves only a batch's first image, every image is rotated and viewed as on wasm", async () => {
    const results: number[][][] = [];
    for (const backend of ["wasm", "cpu"]) {
      await onBackend(backend, async () => {
        const images = seededImages(3, 7);
        const rotated = augmentBatch(images, { rotate: { maxDegrees: 20 } }, 4);
        const viewed = viewBatch(images, { flip: true, shiftX: 1 });
        results.push([valuesOf(rotated), valuesOf(viewed)]);
        tf.dispose([images, rotated, viewed]);
      });
    }
    const [wasm, cpu] = results;
    assert.deepEqual(cpu[1], wasm[1]);
    // Bilinear weights in float64 (cpu) against float32 (wasm).
    const largest = wasm[0].reduce((most, v, i) => Math.max(most, Math.abs(v - cpu[0][i])), 0);
    assert.ok(largest < 1e-5, `rotated images differ by up to ${largest}`);
    assert.ok(cpu[0].slice(2 * SIZE * SIZE).some((v) => v > 0), "the last image is not blank");
  });

  it("the training hook depends on (seed, epoch, step) only", () => {
    const images = seededImages(4);
    const hook = augmenter(STANDARD_AUGMENTATION, 42);
    const [a, b, c, d] = [hook(images, 0, 1), hook(images, 0, 1), hook(images, 1, 0), augmenter(STANDARD_AUGMENTATION, 43)(images, 0, 1)];
    assert.deepEqual(valuesOf(a), valuesOf(b));
    assert.notDeepEqual(valuesOf(a), valuesOf(c));
    assert.notDeepEqual(valuesOf(a), valuesOf(d));
    assert.notEqual(mixSeed(42, 0, 1), mixSeed(42, 1, 0));
    tf.dispose([images, a, b, c, d]);
  });

});
