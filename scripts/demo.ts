/**
 * npm run demo -- [--model DIR] [--port N] [--profile NAME]
 *
 * Serves the browser demo (web/demo/) on localhost only: the page, its bundle (built here by
 * esbuild from TypeScript, nothing from a CDN), TF.js's wasm binaries, the model's files, its
 * record, and test images on request. The default model is the best run by validation among
 * the profile's finished Fashion-MNIST runs.
 */
import { readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import path from "node:path";
import { build } from "esbuild";
import { parseCommandLine, positiveInt, runCommand, UsageError, usageCheck } from "../lib/tooling/cli";
import { PROJECT_ROOT } from "../lib/tooling/paths";
import { loadDataset, imagePixels, type Dataset } from "../lib/data/datasets";
import { resolveModelDir, type RunRecord } from "../lib/training/records";
import { declaredRunRecord, parseProfile, planOf, type Profile } from "../lib/training/declarations";
import { bestByValidation } from "../lib/evaluation/selection";

const USAGE = `Usage: npm run demo -- [--model DIR] [--port N] [--profile NAME]

  --model DIR      a run folder (runs/NAME: its best model) or a folder with model.json;
                   default: the best finished Fashion-MNIST run of the profile, by validation
  --port N         the port on 127.0.0.1 (default 8421; 0 picks a free one)
  --profile NAME   whose runs the default model comes from (default standard)`;

const WASM_DIR = path.join(path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json")), "dist");
const PAGE_DIR = path.join(PROJECT_ROOT, "web", "demo");

/** The profile's best finished Fashion-MNIST run by validation, or a clear error with the command that makes one. */
async function defaultModel(profile: Profile): Promise<string> {
  const runs: { dir: string; record: RunRecord }[] = [];
  for (const d of planOf(profile)) {
    if (d.kind !== "run" || d.dataset !== "fashion") continue;
    const { dir, record, stale } = await declaredRunRecord(d, { profile });
    if (!stale && record?.status === "finished" && record.validation) runs.push({ dir, record });
  }
  const best = bestByValidation(runs, (r) => ({ valAccuracy: r.record.validation!.accuracy, valLoss: r.record.validation!.loss }));
  if (!best) {
    const hint = profile === "quick" ? "npm start -- --quick" : `npm run plan -- --profile ${profile}`;
    throw new UsageError(`No finished Fashion-MNIST run of the ${profile} profile to show: train them first (\`${hint}\`), or pass --model DIR.`);
  }
  return best.dir;
}

async function bundle(): Promise<string> {
  const result = await build({
    entryPoints: [path.join(PAGE_DIR, "main.ts")],
    bundle: true,
    write: false,
    format: "iife",
    platform: "browser",
    target: "es2020",
    minify: true,
    logLevel: "silent",
  });
  return result.outputFiles[0].text;
}

function send(response: ServerResponse, status: number, type: string, body: string | Buffer): void {
  response.writeHead(status, { "Content-Type": type, "Cache-Control": "no-store" });
  response.end(body);
}

const sendJson = (response: ServerResponse, value: unknown) => send(response, 200, "application/json", JSON.stringify(value));

/** Test images by index, as base64 grey pixels with their labels. */
function testImages(data: Dataset, query: URLSearchParams): unknown {
  const indices = (query.get("indices") ?? "").split(",").filter((s) => s !== "").map(Number);
  if (indices.length === 0 || indices.length > 100) throw new Error("give 1 to 100 test image indices, as ?indices=0,1,2");
  for (const i of indices) if (!Number.isInteger(i) || i < 0 || i >= data.test.count) throw new Error(`test image ${i} does not exist (0 to ${data.test.count - 1})`);
  return { images: indices.map((index) => ({ index, label: data.test.labels[index], pixels: Buffer.from(imagePixels(data.test, index)).toString("base64") })) };
}

runCommand(USAGE, async () => {
  const { values } = parseCommandLine({ model: { type: "string" }, port: { type: "string" }, profile: { type: "string" } }, process.argv.slice(2));
  const port = values.port === "0" ? 0 : values.port === undefined ? 8421 : usageCheck(() => {
    const n = positiveInt(values.port!, "--port");
    if (n > 65535) throw new Error(`--port must be at most 65535, got ${n}.`);
    return n;
  });
  const profile = usageCheck(() => parseProfile(values.profile ?? "standard"));
  const chosen = values.model ?? (await defaultModel(profile));
  const { modelDir, record } = await resolveModelDir(chosen).catch((error: Error) => {
    throw new UsageError(error.message);
  });
  const data = await loadDataset(record?.dataset.name === "mnist" ? "mnist" : "fashion");
  const info = {
    // A run's best model sits in its run folder, which names it.
    name: path.basename(record ? path.dirname(modelDir) : modelDir),
    description: record?.model.description ?? "a saved model without a run record",
    parameters: record?.parameters ?? null,
    testAccuracy: record?.test?.accuracy ?? null,
    testTimeAugmentation: record?.options.testTimeAugmentation ?? false,
    classNames: data.classNames,
  };
  process.stderr.write(`demo: bundling web/demo/main.ts ...\n`);
  const script = await bundle();
  const page = await readFile(path.join(PAGE_DIR, "index.html"));

  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? "/", "http://localhost");
    const serveFile = async (dir: string, name: string, type: string) => {
      // Only plain file names inside the folder (no "..", no slashes): no other path is reachable.
      if (!/^[\w-][\w.-]*$/.test(name) || !existsSync(path.join(dir, name))) return send(response, 404, "text/plain", `${name} not found`);
      send(response, 200, type, await readFile(path.join(dir, name)));
    };
    const route = async () => {
      if (url.pathname === "/") return send(response, 200, "text/html; charset=utf-8", page);
      if (url.pathname === "/demo.js") return send(response, 200, "text/javascript", script);
      if (url.pathname === "/info.json") return sendJson(response, info);
      if (url.pathname === "/test-images.json") return sendJson(response, testImages(data, url.searchParams));
      if (url.pathname.startsWith("/model/")) return serveFile(modelDir, url.pathname.slice("/model/".length), url.pathname.endsWith(".json") ? "application/json" : "application/octet-stream");
      if (url.pathname.startsWith("/wasm/")) return serveFile(WASM_DIR, url.pathname.slice("/wasm/".length), "application/wasm");
      send(response, 404, "text/plain", "not found");
    };
    route().catch((error: Error) => send(response, 400, "text/plain", error.message));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => reject(error.code === "EADDRINUSE" ? new UsageError(`port ${port} is in use: pass --port N (0 picks a free one)`) : error));
    server.listen(port, "127.0.0.1", resolve);
  });
  const address = server.address() as { port: number };
  process.stderr.write(`demo: ${info.name} (${modelDir})\n`);
  process.stdout.write(`http://127.0.0.1:${address.port}/\n`);
  await new Promise<never>(() => {}); // serves until interrupted
});
