/**
 * Grids of small grey images with captions, drawn into one PNG: survives untrusted notebook
 * views and HTML sanitisers, where script-drawn figures do not.
 */
import { createCanvas } from "@napi-rs/canvas";

export interface GridImage {
  /** Row-major grey pixels 0–255, `height × width`. */
  pixels: ArrayLike<number>;
  caption: string;
  /** Drawn with a red frame and caption (e.g. a wrong prediction). */
  highlight?: boolean;
}

export interface GridOptions {
  height: number;
  width: number;
  columns: number;
  /** Screen pixels per image pixel (default 3). */
  scale?: number;
  /** Caption lines under each image (default 1). */
  captionLines?: number;
}

export function imageGridPng(images: GridImage[], options: GridOptions): Buffer {
  if (images.length === 0) throw new Error("imageGridPng: no images.");
  const scale = options.scale ?? 3;
  const captionLines = options.captionLines ?? 1;
  const lineHeight = 13;
  const cellWidth = Math.max(options.width * scale, 70) + 8;
  const cellHeight = options.height * scale + captionLines * lineHeight + 10;
  const columns = Math.min(options.columns, images.length);
  const rows = Math.ceil(images.length / columns);
  const canvas = createCanvas(columns * cellWidth, rows * cellHeight);
  const context = canvas.getContext("2d");
  context.fillStyle = "white";
  context.fillRect(0, 0, canvas.width, canvas.height);
  const tile = context.createImageData(options.width * scale, options.height * scale);

  images.forEach((image, index) => {
    if (image.pixels.length !== options.height * options.width) {
      throw new Error(`imageGridPng: "${image.caption}" has ${image.pixels.length} pixels, expected ${options.height * options.width}.`);
    }
    // Dark garments on white, as the studies show them: 255 − value.
    for (let y = 0; y < options.height * scale; y++) {
      for (let x = 0; x < options.width * scale; x++) {
        const value = 255 - image.pixels[Math.floor(y / scale) * options.width + Math.floor(x / scale)];
        const offset = (y * options.width * scale + x) * 4;
        tile.data[offset] = tile.data[offset + 1] = tile.data[offset + 2] = value;
        tile.data[offset + 3] = 255;
      }
    }
    const left = (index % columns) * cellWidth + (cellWidth - options.width * scale) / 2;
    const top = Math.floor(index / columns) * cellHeight + 4;
    context.putImageData(tile, left, top);
    if (image.highlight) {
      context.strokeStyle = "#d62728";
      context.lineWidth = 2;
      context.strokeRect(left - 1, top - 1, options.width * scale + 2, options.height * scale + 2);
    }
    context.fillStyle = image.highlight ? "#d62728" : "#222";
    context.font = "11px DejaVu Sans, sans-serif";
    context.textAlign = "center";
    image.caption
      .split("\n")
      .slice(0, captionLines)
      .forEach((line, i) => {
        context.fillText(line, (index % columns) * cellWidth + cellWidth / 2, top + options.height * scale + 12 + i * lineHeight, cellWidth - 4);
      });
  });
  return canvas.toBuffer("image/png");
}
