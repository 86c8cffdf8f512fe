/**
 * npm run demo in a real browser (Debian's Chromium driven by playwright-core): the page loads a
 * saved model, its answers for fixed test images equal `npm run predict` on the same images, an
 * uploaded picture is converted and answered as predict answers it, and a bad file is an error
 * on the page. The screenshot is kept as reports/demo.png.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createCanvas } from "@napi-rs/canvas";
import { chromium, type Browser, type Page } from "playwright-core";
import { initBackend, tf } from "../../lib/accelerator";
import { imagePixels, loadDataset, type Dataset } from "../../lib/data/datasets";
import { toImageTensor, toLabelTensor, subset } from "../../lib/data/preprocess";
import { buildModel, presetModel } from "../../lib/models/builder";
import { saveModel } from "../../lib/models/persist";
import { findChromium } from "../../lib/tooling/browser";
import { idxImages, tempDir } from "../helpers/idx";
import { ROOT, runScript } from "../helpers/scripts";

const skip = !process.env.CI && !findChromium() ? "no Chromium here" : false;
const INDICES = [0, 1, 2, 3, 4, 5, 6, 7];

interface Answer {
  index?: number;
  label: number;
  probabilities: Record<string, number>;
}

/** The demo server on a free port; resolves with its URL. */
function startDemo(modelDir: string): Promise<{ child: ChildProcess; url: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join("scripts", "demo.ts"), "--model", modelDir, "--port", "0"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    child.stdout!.on("data", (chunk: Buffer) => {
      const url = /http:\/\/127\.0\.0\.1:\d+\//.exec(chunk.toString())?.[0];
      if (url) resolve({ child, url });
    });
    child.on("exit", (code) => reject(new Error(`demo exited (${code}) before serving: ${stderr}`)));
  });
}

const probabilitiesOf = (answer: Answer) => Object.values(answer.probabilities);
const argmax = (values: number[]) => values.indexOf(Math.max(...values));

function assertSameAnswer(page: number[], node: number[], what: string): void {
  assert.equal(page.length, node.length, what);
  assert.equal(argmax(page), argmax(node), `${what}: the same class`);
  const worst = Math.max(...page.map((p, k) => Math.abs(p - node[k])));
  assert.ok(worst < 1e-4, `${what}: probabilities differ by up to ${worst}`);
}

describe("npm run demo in Chromium", { skip }, () => {
  const dir = tempDir();
  const modelDir = path.join(dir, "model");
  let data: Dataset;
  let demo: { child: ChildProcess; url: string } | undefined;
  let browser: Browser | undefined;
  let page: Page;

  before(async () => {
    await initBackend({ force: "wasm" });
    data = await loadDataset("fashion");
    // A quickly trained dense net: confident answers, so "the same class" is a real check.
    const model = buildModel(presetModel("ann"), { seed: 1 });
    const part = subset(data.train, Array.from({ length: 3000 }, (_, i) => i));
    const [x, y] = [toImageTensor(part), toLabelTensor(part)];
    await model.fit(x, y, { epochs: 2, batchSize: 64, verbose: 0 });
    tf.dispose([x, y]);
    await saveModel(model, modelDir);
    model.dispose();
    writeFileSync(path.join(dir, "fixed.idx"), idxImages(INDICES.length, 28, 28, (n, i) => imagePixels(data.test, INDICES[n])[i]));
    // A dark boot-like shape on a light, wide photo: converted (inverted, fitted) before it is answered.
    const canvas = createCanvas(90, 60);
    const context = canvas.getContext("2d");
    context.fillStyle = "#f4f4f4";
    context.fillRect(0, 0, 90, 60);
    context.fillStyle = "#202020";
    context.fillRect(20, 15, 25, 35);
    context.fillRect(20, 38, 55, 12);
    writeFileSync(path.join(dir, "photo.png"), canvas.toBuffer("image/png"));
    writeFileSync(path.join(dir, "broken.png"), "not a picture");
    demo = await startDemo(modelDir);
    browser = await chromium.launch({ executablePath: findChromium(), args: ["--no-sandbox"] });
    page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  });

  after(async () => {
    await browser?.close();
    demo?.child.kill();
  });

  it("loads the model and answers fixed test images as npm run predict does", async () => {
    const started = Date.now();
    await page.goto(`${demo!.url}?indices=${INDICES.join(",")}`);
    await page.waitForSelector("body[data-gallery='ready']", { timeout: 60_000 });
    const backend = await page.getAttribute("body", "data-backend");
    const loadMs = Number(await page.getAttribute("body", "data-load-ms"));
    const perImageMs = Number(await page.getAttribute("body", "data-gallery-ms"));
    const cards = await page.$$eval(".card[data-index]", (nodes) =>
      nodes.map((n) => ({ index: Number(n.getAttribute("data-index")), probabilities: JSON.parse(n.getAttribute("data-probabilities")!) as number[] })));
    const predicted = await runScript("predict.ts", ["--model", modelDir, "--json", path.join(dir, "fixed.idx")]);
    assert.equal(predicted.code, 0, predicted.stderr);
    const answers = (JSON.parse(predicted.stdout) as { answers: Answer[] }).answers;
    assert.deepEqual(cards.map((c) => c.index), INDICES);
    cards.forEach((card, n) => assertSameAnswer(card.probabilities, probabilitiesOf(answers[n]), `test image ${card.index} on ${backend}`));
    assert.match(await page.textContent("#status") ?? "", new RegExp(`on the ${backend} backend`));
    // Another sample: twelve random test images, predicted with the kernels warm.
    await page.click("#another");
    await page.waitForFunction(`document.body.dataset.gallery === "ready" && document.querySelectorAll(".card[data-index]").length === 12`, undefined, { timeout: 30_000 });
    const warmMs = Number(await page.getAttribute("body", "data-gallery-ms"));
    // What the closing note quotes: the page's own timings in Chromium.
    console.log(`demo: ${backend} backend; page load ${Date.now() - started} ms (model and first 8 images ${loadMs.toFixed(0)} ms, ` +
      `${perImageMs.toFixed(1)} ms per image cold); another 12 images ${warmMs.toFixed(2)} ms per image`);
  });

  it("answers an uploaded picture as npm run predict converts and answers it", async () => {
    await page.setInputFiles("#file", path.join(dir, "photo.png"));
    await page.waitForSelector("#upload-answer", { timeout: 30_000 });
    const probabilities = JSON.parse((await page.getAttribute("#upload-answer", "data-probabilities"))!) as number[];
    const predicted = await runScript("predict.ts", ["--model", modelDir, "--json", path.join(dir, "photo.png")]);
    assert.equal(predicted.code, 0, predicted.stderr);
    const [answer] = (JSON.parse(predicted.stdout) as { answers: (Answer & { converted: { inverted: boolean } })[] }).answers;
    assert.equal(answer.converted.inverted, true);
    assertSameAnswer(probabilities, probabilitiesOf(answer), "photo.png");
    assert.match(await page.textContent("#upload-answer") ?? "", /photo\.png: 90×60, inverted \(light background\)/);
    mkdirSync(path.join(ROOT, "reports"), { recursive: true });
    await page.screenshot({ path: path.join(ROOT, "reports", "demo.png"), fullPage: true });
  });

  it("shows a bad file's error on the page", async () => {
    await page.setInputFiles("#file", path.join(dir, "broken.png"));
    await page.waitForSelector("body[data-error]", { timeout: 30_000 });
    assert.match(await page.textContent("#error") ?? "", /broken\.png: not a readable PNG or JPEG image/);
    assert.equal(await page.$("#upload-answer"), null, "no answer for a bad file");
  });

  it("without a model to show, the command says how to make one", async () => {
    const result = await runScript("demo.ts", ["--model", path.join(dir, "nothing-here"), "--port", "0"]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /does not exist: pass a run folder/);
  });
});
