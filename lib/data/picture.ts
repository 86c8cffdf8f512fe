/**
 * A picture's RGBA pixels turned into the 28×28 grey image the models read, the same way in
 * Node (`npm run predict`, lib/data/images.ts decodes the file) and in the browser demo (the
 * page decodes it): grey over white, fitted into 28×28 keeping the aspect by area averaging,
 * centred on the background, inverted when the picture's border is light (the dataset has light
 * garments on black). Plain arithmetic, no canvas: both sides compute the same bytes.
 */

/** How an input picture was turned into a 28×28 grey image (reported with each prediction). */
export interface ConvertedImage {
  /** Row-major grey pixels 0–255, size × size, light object on a dark background. */
  pixels: Uint8Array;
  originalWidth: number;
  originalHeight: number;
  /** True when the picture had a light background and was inverted to match the dataset. */
  inverted: boolean;
}

/** ITU-R 601 luma, composited over white (transparent areas count as background). */
export function grey(r: number, g: number, b: number, a: number): number {
  const alpha = a / 255;
  return (0.299 * r + 0.587 * g + 0.114 * b) * alpha + 255 * (1 - alpha);
}

/** Averages `source` ([rows][length], row-major) along each row into `target` columns, weighting by overlap. */
function resampleRows(source: Float32Array | Float64Array, rows: number, length: number, target: number): Float64Array {
  const out = new Float64Array(rows * target);
  const step = length / target;
  for (let t = 0; t < target; t++) {
    const from = t * step;
    const to = from + step;
    for (let s = Math.floor(from); s < Math.min(length, Math.ceil(to)); s++) {
      const weight = (Math.min(to, s + 1) - Math.max(from, s)) / step;
      if (weight <= 0) continue;
      for (let r = 0; r < rows; r++) out[r * target + t] += weight * source[r * length + s];
    }
  }
  return out;
}

/** Transposes a [rows][cols] row-major matrix. */
function transpose(values: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(values.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  return out;
}

export function rgbaTo28x28(rgba: ArrayLike<number>, width: number, height: number, size = 28): ConvertedImage {
  if (!(width > 0 && height > 0) || !Number.isInteger(width) || !Number.isInteger(height)) throw new Error("the image has no pixels");
  if (rgba.length !== width * height * 4) throw new Error(`expected ${width * height * 4} RGBA values for ${width}×${height}, got ${rgba.length}`);
  // Float32: a picture may have 40 million pixels (lib/data/images.ts's limit).
  const greys = new Float32Array(width * height);
  for (let p = 0; p < greys.length; p++) greys[p] = grey(rgba[4 * p], rgba[4 * p + 1], rgba[4 * p + 2], rgba[4 * p + 3]);
  // The border's mean grey decides what counts as background.
  let borderSum = 0;
  let borderCount = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (x !== 0 && y !== 0 && x !== width - 1 && y !== height - 1) continue;
      borderSum += greys[y * width + x];
      borderCount++;
    }
  }
  const inverted = borderSum / borderCount > 127;
  const scale = Math.min(size / width, size / height);
  const drawWidth = Math.max(1, Math.round(width * scale));
  const drawHeight = Math.max(1, Math.round(height * scale));
  // Along rows, then (transposed) along columns.
  const narrowed = resampleRows(greys, height, width, drawWidth);
  const small = transpose(resampleRows(transpose(narrowed, height, drawWidth), drawWidth, height, drawHeight), drawWidth, drawHeight);
  const left = Math.floor((size - drawWidth) / 2);
  const top = Math.floor((size - drawHeight) / 2);
  const pixels = new Uint8Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const inside = x >= left && x < left + drawWidth && y >= top && y < top + drawHeight;
      const value = inside ? Math.round(small[(y - top) * drawWidth + (x - left)]) : inverted ? 255 : 0;
      pixels[y * size + x] = inverted ? 255 - value : value;
    }
  }
  return { pixels, originalWidth: width, originalHeight: height, inverted };
}
