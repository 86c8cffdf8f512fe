/**
 * Pictures from outside the dataset (a user's PNG or JPEG file) checked before decoding, decoded,
 * and turned into the 28×28 grey images the models read (lib/data/picture.ts).
 */
import { createCanvas, loadImage } from "@napi-rs/canvas";
import { rgbaTo28x28, type ConvertedImage } from "./picture";

export type { ConvertedImage };

/** Pictures above this many pixels are refused before decoding (a small file can declare a huge image). */
export const MAX_IMAGE_PIXELS = 40_000_000;

/** Format, declared size and completeness of a PNG or JPEG, read from its bytes without decoding. */
export function imageHeader(contents: Uint8Array): { format: "png" | "jpeg"; width: number; height: number; complete: boolean } | undefined {
  const bytes = Buffer.from(contents.buffer, contents.byteOffset, contents.byteLength);
  if (bytes.length >= 24 && bytes.readUInt32BE(0) === 0x89504e47 && bytes.toString("latin1", 12, 16) === "IHDR") {
    // The last chunk of a whole PNG is IEND (its type 8 bytes from the end, then the CRC).
    const complete = bytes.length >= 12 && bytes.toString("latin1", bytes.length - 8, bytes.length - 4) === "IEND";
    return { format: "png", width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20), complete };
  }
  if (bytes.length >= 4 && bytes[0] === 0xff && bytes[1] === 0xd8) {
    // Walk the segments to a start-of-frame marker (SOF0–SOF15 but DHT, JPG and DAC) for the size.
    let offset = 2;
    while (offset + 9 < bytes.length && bytes[offset] === 0xff) {
      const marker = bytes[offset + 1];
      const length = bytes.readUInt16BE(offset + 2);
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        // A whole JPEG ends with the end-of-image marker (some writers add padding after it).
        const tail = bytes.subarray(Math.max(0, bytes.length - 64));
        const complete = tail.includes(Buffer.from([0xff, 0xd9]));
        return { format: "jpeg", width: bytes.readUInt16BE(offset + 7), height: bytes.readUInt16BE(offset + 5), complete };
      }
      offset += 2 + length;
    }
    return { format: "jpeg", width: 0, height: 0, complete: false };
  }
  return undefined;
}

/** Refuses a truncated picture or one above MAX_IMAGE_PIXELS, before any decoding. */
export function checkImageFile(contents: Uint8Array): void {
  const header = imageHeader(contents);
  if (!header) throw new Error("not a readable PNG or JPEG image (unknown format)");
  if (header.width * header.height > MAX_IMAGE_PIXELS) {
    throw new Error(`the ${header.format.toUpperCase()} declares ${header.width}×${header.height} pixels, above the limit of ${MAX_IMAGE_PIXELS.toLocaleString("en-US")}; scale it down first`);
  }
  if (!header.complete) throw new Error(`the ${header.format.toUpperCase()} file is truncated (it does not end where its format says a whole image ends)`);
}

/**
 * Converts a PNG/JPEG (any size, colour or grey) to a Fashion-MNIST-like image: decoded here,
 * then converted by lib/data/picture.ts's rgbaTo28x28 (the browser demo runs the same code).
 */
export async function imageFileTo28x28(contents: Uint8Array, size = 28): Promise<ConvertedImage> {
  checkImageFile(contents);
  let image: Awaited<ReturnType<typeof loadImage>>;
  try {
    image = await loadImage(Buffer.from(contents));
  } catch (error) {
    throw new Error(`not a readable PNG or JPEG image (${(error as Error).message})`);
  }
  const { width, height } = image;
  if (!width || !height) throw new Error("the image has no pixels");
  const context = createCanvas(width, height).getContext("2d");
  context.drawImage(image, 0, 0);
  return rgbaTo28x28(context.getImageData(0, 0, width, height).data, width, height, size);
}
