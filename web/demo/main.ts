/**
 * The demo page: loads the model the server names with TF.js in the browser (WebGL, else wasm,
 * else cpu, and says which runs), shows test images with their top-3 probabilities, and
 * classifies the user's own pictures, converted by the same code as `npm run predict`.
 * Bundled by scripts/demo.ts with esbuild; runs offline.
 */
import * as tf from "@tensorflow/tfjs";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { rgbaTo28x28 } from "../../lib/data/picture";

interface ModelInfo {
  name: string;
  description: string;
  parameters: number | null;
  testAccuracy: number | null;
  /** The record's test accuracy averaged test-time augmentation views; this page predicts the image alone. */
  testTimeAugmentation: boolean;
  classNames: string[];
}
interface TestImage {
  index: number;
  label: number;
  /** 784 grey values 0–255, base64. */
  pixels: string;
}

const $ = (id: string) => document.getElementById(id)!;
const SIZE = 28;
const GALLERY = 12;

function showError(message: string): void {
  $("error").textContent = message;
  document.body.dataset.error = message;
}

async function fetchJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${(await response.text()).trim()}`);
  return (await response.json()) as T;
}

/** WebGL where the browser has it, else wasm, else cpu; returns the one that runs. */
async function chooseBackend(wanted: string | null): Promise<string> {
  setWasmPaths("/wasm/");
  const order = wanted ? [wanted] : ["webgl", "wasm", "cpu"];
  for (const name of order) {
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        return name;
      }
    } catch {
      // try the next one
    }
  }
  throw new Error(`no TF.js backend could start (tried ${order.join(", ")})`);
}

function drawGrey(pixels: Uint8Array): HTMLCanvasElement {
  const canvas = document.createElement("canvas");
  canvas.width = SIZE;
  canvas.height = SIZE;
  const context = canvas.getContext("2d")!;
  const image = context.createImageData(SIZE, SIZE);
  pixels.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  context.putImageData(image, 0, 0);
  return canvas;
}

function predict(model: tf.LayersModel, images: Uint8Array[]): Float32Array[] {
  return tf.tidy(() => {
    const x = tf.tensor4d(Float32Array.from(images.flatMap((p) => Array.from(p, (v) => v / 255))), [images.length, SIZE, SIZE, 1]);
    const probabilities = (model.predict(x) as tf.Tensor).dataSync() as Float32Array;
    const classes = probabilities.length / images.length;
    return images.map((_, i) => probabilities.slice(i * classes, (i + 1) * classes));
  });
}

/** The answer for one image: its picture, the predicted class, the top-3 bars; full probabilities in data-probabilities. */
function answerCard(pixels: Uint8Array, probabilities: Float32Array, classNames: string[], truth?: number, caption?: string): HTMLElement {
  const card = document.createElement("div");
  card.className = "card";
  const ranked = Array.from(probabilities, (p, k) => [k, p] as const).sort((a, b) => b[1] - a[1]);
  const predicted = ranked[0][0];
  if (truth !== undefined && truth !== predicted) card.classList.add("mistake");
  card.dataset.predicted = String(predicted);
  card.dataset.probabilities = JSON.stringify(Array.from(probabilities));
  card.append(drawGrey(pixels));
  const title = document.createElement("div");
  title.innerHTML = `<b>${classNames[predicted]}</b>` + (truth !== undefined ? ` <span class="truth">(true: ${classNames[truth]})</span>` : "");
  card.append(title);
  for (const [k, p] of ranked.slice(0, 3)) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.innerHTML = `<span>${classNames[k]}</span><div style="width:${(60 * p).toFixed(1)}px"></div>${(100 * p).toFixed(1)}%`;
    card.append(bar);
  }
  if (caption) {
    const note = document.createElement("div");
    note.className = "truth";
    note.textContent = caption;
    card.append(note);
  }
  return card;
}

async function showGallery(model: tf.LayersModel, info: ModelInfo, indices: number[]): Promise<void> {
  document.body.dataset.gallery = "loading";
  const { images } = await fetchJson<{ images: TestImage[] }>(`/test-images.json?indices=${indices.join(",")}`);
  const pixels = images.map((image) => Uint8Array.from(atob(image.pixels), (c) => c.charCodeAt(0)));
  const started = performance.now();
  const answers = predict(model, pixels);
  const seconds = (performance.now() - started) / 1000;
  const gallery = $("gallery");
  gallery.replaceChildren(...images.map((image, i) => {
    const card = answerCard(pixels[i], answers[i], info.classNames, image.label, `test image ${image.index}`);
    card.dataset.index = String(image.index);
    return card;
  }));
  document.body.dataset.galleryMs = String((1000 * seconds) / images.length);
  document.body.dataset.gallery = "ready";
}

async function decodePicture(file: File): Promise<{ rgba: Uint8ClampedArray; width: number; height: number }> {
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(`${file.name}: not a readable PNG or JPEG image`);
  }
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d")!;
  context.drawImage(bitmap, 0, 0);
  return { rgba: context.getImageData(0, 0, bitmap.width, bitmap.height).data, width: bitmap.width, height: bitmap.height };
}

async function classifyFile(model: tf.LayersModel, info: ModelInfo, file: File): Promise<void> {
  $("error").textContent = "";
  delete document.body.dataset.error;
  try {
    const { rgba, width, height } = await decodePicture(file);
    const converted = rgbaTo28x28(rgba, width, height);
    const [probabilities] = predict(model, [converted.pixels]);
    const card = answerCard(converted.pixels, probabilities, info.classNames, undefined,
      `${file.name}: ${width}×${height}${converted.inverted ? ", inverted (light background)" : ""}; the 28×28 image the model sees`);
    card.id = "upload-answer";
    $("upload-result").replaceChildren(card);
  } catch (error) {
    $("upload-result").replaceChildren();
    showError((error as Error).message);
  }
}

async function main(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const loadStarted = performance.now();
  const backend = await chooseBackend(params.get("backend"));
  const info = await fetchJson<ModelInfo>("/info.json");
  const model = await tf.loadLayersModel("/model/model.json");
  document.body.dataset.backend = backend;
  const accuracy = info.testAccuracy === null
    ? "test accuracy not recorded"
    : `test accuracy ${(100 * info.testAccuracy).toFixed(2)}%${info.testTimeAugmentation ? " with test-time augmentation; this page predicts each image alone" : ""}`;
  const parameters = info.parameters === null ? "" : `, ${info.parameters.toLocaleString("en-US")} parameters`;
  $("model").innerHTML = `<b>${info.name}</b>: ${info.description} (${accuracy}${parameters})`;
  const fixed = params.get("indices")?.split(",").map(Number);
  const randomIndices = () => Array.from({ length: GALLERY }, () => Math.floor(Math.random() * 10_000));
  await showGallery(model, info, fixed ?? randomIndices());
  const loadMs = performance.now() - loadStarted;
  document.body.dataset.loadMs = String(loadMs);
  $("status").textContent = `TF.js ${tf.version.tfjs} on the ${backend} backend; model and first images in ${(loadMs / 1000).toFixed(1)} s, ` +
    `${Number(document.body.dataset.galleryMs).toFixed(1)} ms per image.`;
  $("another").addEventListener("click", () => void showGallery(model, info, randomIndices()).catch((e: Error) => showError(e.message)));
  const input = $("file") as HTMLInputElement;
  input.addEventListener("change", () => input.files?.[0] && void classifyFile(model, info, input.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => (event.preventDefault(), drop.classList.add("over")));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer?.files[0];
    if (file) void classifyFile(model, info, file);
  });
  document.body.dataset.ready = "true";
}

main().catch((error: Error) => {
  $("model").textContent = "";
  showError(`The demo could not start: ${error.message}`);
});
