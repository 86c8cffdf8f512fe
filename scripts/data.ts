/**
 * npm run data -- [--dataset fashion|mnist] [--json] [--skip-checksum] [--no-download]
 *
 * Locates and verifies a dataset and prints per-split and per-class counts, pixel mean/std
 * and the content hashes.
 */
import { performance } from "node:perf_hooks";
import { formatCount, parseCommandLine, runCommand, textTable, usageCheck } from "../lib/tooling/cli";
import { classCounts, datasetSpec, FILE_KEYS, FILE_NAMES, loadDataset, pixelStats, type Dataset } from "../lib/data/datasets";

const USAGE = `Usage: npm run data -- [--dataset fashion|mnist] [--json] [--skip-checksum] [--no-download]

  --dataset NAME    fashion (default) or mnist
  --json            print JSON for machines instead of tables
  --skip-checksum   do not compare with the official SHA-256 (for your own IDX files)
  --no-download     fail instead of downloading when no local copy is found

Files are found in $FASHION_MNIST_DIR / $MNIST_DIR (only there, when set), else data/<name>/,
else /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist), else downloaded.`;

const ORIGINS = {
  env: "directory from the environment variable",
  project: "project data/ folder",
  system: "system-wide copy",
  download: "downloaded from the official mirror",
} as const;

function summarise(data: Dataset, loadSeconds: number) {
  const split = (s: Dataset["train"]) => {
    const { mean, std } = pixelStats(s.images);
    const counts = classCounts(s.labels, data.classNames.length);
    return {
      images: s.count,
      height: s.height,
      width: s.width,
      pixelMean: mean,
      pixelStd: std,
      classCounts: Object.fromEntries(data.classNames.map((name, i) => [name, counts[i]])),
    };
  };
  return {
    dataset: data.name,
    title: data.title,
    source: { dir: data.source.dir, origin: data.source.origin },
    classNames: data.classNames,
    splits: { train: split(data.train), test: split(data.test) },
    sha256: Object.fromEntries(FILE_KEYS.map((k) => [FILE_NAMES[k], data.sha256[k]])),
    checksumsVerified: data.checksumsVerified,
    loadSeconds,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

function printForPeople(summary: ReturnType<typeof summarise>): void {
  const { train, test } = summary.splits;
  const lines = [
    `${summary.title}: ${summary.source.dir} (${ORIGINS[summary.source.origin]})`,
    "",
    textTable(
      ["split", "images", "size", "pixel mean", "pixel std"],
      (["train", "test"] as const).map((name) => {
        const s = summary.splits[name];
        return [name, formatCount(s.images), `${s.height}×${s.width}`, s.pixelMean.toFixed(2), s.pixelStd.toFixed(2)];
      }),
    ),
    "",
    textTable(
      ["class", "train", "test"],
      summary.classNames.map((name, i) => [`${i} ${name}`, formatCount(train.classCounts[name]), formatCount(test.classCounts[name])]),
    ),
    "",
    `Content SHA-256 (${summary.checksumsVerified ? "verified against the official checksums" : "NOT verified: --skip-checksum"}):`,
    ...Object.entries(summary.sha256).map(([file, hash]) => `  ${file.padEnd(24)} ${hash}`),
    "",
    `Loaded and verified in ${summary.loadSeconds.toFixed(2)} s; peak memory (RSS) ${summary.peakRssMiB.toFixed(0)} MiB.`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

runCommand(USAGE, async () => {
  const { values } = parseCommandLine(
    {
      dataset: { type: "string", default: "fashion" },
      json: { type: "boolean", default: false },
      "skip-checksum": { type: "boolean", default: false },
      "no-download": { type: "boolean", default: false },
    },
    process.argv.slice(2),
  );
  const spec = usageCheck(() => datasetSpec(values.dataset));
  const started = performance.now();
  const data = await loadDataset(spec, {
    verifyChecksums: !values["skip-checksum"],
    download: !values["no-download"],
  });
  const summary = summarise(data, (performance.now() - started) / 1000);
  if (values.json) process.stdout.write(JSON.stringify(summary, null, 2) + "\n");
  else printForPeople(summary);
});
