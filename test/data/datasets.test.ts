import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { gzipSync } from "node:zlib";
import {
  imagePixels,
  classCounts,
  datasetSpec,
  FASHION_MNIST,
  FILE_NAMES,
  loadDataset,
  locateDataset,
  pixelStats,
  type LoadOptions,
} from "../../lib/data/datasets";
import { idxImages, idxLabels, syntheticLabel, syntheticPixel, tempDir, writeSyntheticDataset } from "../helpers/idx";

/** Options that isolate a test from the machine: no env, empty data/, no system dirs, no download. */
function isolated(extra: LoadOptions = {}): LoadOptions {
  return { env: {}, projectDataDir: tempDir(), systemDirs: [], download: false, progress: false, ...extra };
}

function envFor(dir: string): NodeJS.ProcessEnv {
  return { FASHION_MNIST_DIR: dir };
}

describe("loadDataset on synthetic IDX files", () => {
  it("loads gzip'd files into typed arrays with the right shapes and values", async () => {
    const { dir, spec } = writeSyntheticDataset(tempDir());
    const data = await loadDataset(spec, isolated({ env: envFor(dir) }));
    assert.equal(data.source.origin, "env");
    assert.equal(data.train.count, 20);
    assert.equal(data.test.count, 10);
    assert.equal(data.train.height, 28);
    assert.equal(data.train.width, 28);
    assert.ok(data.train.images instanceof Uint8Array);
    assert.ok(data.train.labels instanceof Uint8Array);
    assert.equal(data.train.images.length, 20 * 784);
    assert.equal(data.train.images[5 * 784 + 100], syntheticPixel(5, 100));
    assert.deepEqual([...data.train.labels], Array.from({ length: 20 }, (_, n) => syntheticLabel(n)));
    assert.equal(data.sha256.trainImages, spec.sha256.trainImages);
    assert.equal(data.checksumsVerified, true);
    assert.equal(data.classNames[9], "Ankle boot");
  });

  it("accepts uncompressed IDX files too", async () => {
    const { dir, spec } = writeSyntheticDataset(tempDir(), { gzip: false });
    const data = await loadDataset(spec, isolated({ env: envFor(dir) }));
    assert.equal(data.test.images[3 * 784 + 7], syntheticPixel(3, 7));
  });

  it("keeps one copy of the pixels: the images are a view on the decompressed file", async () => {
    const { dir, spec } = writeSyntheticDataset(tempDir());
    const data = await loadDataset(spec, isolated({ env: envFor(dir) }));
    // A view on the decompressed file: the IDX header sits just before the pixels.
    const { buffer, byteOffset } = data.train.images;
    assert.ok(byteOffset >= 16);
    assert.equal(new DataView(buffer, byteOffset - 16, 16).getUint32(0), 2051);
    assert.equal(new DataView(buffer, byteOffset - 16, 16).getUint32(4), 20);
  });
});

describe("locating the files", () => {
  it("uses only the directory in FASHION_MNIST_DIR, even when data/ has a good copy", async () => {
    const good = writeSyntheticDataset(tempDir());
    const projectDataDir = tempDir();
    writeSyntheticDataset(path.join(projectDataDir, "fashion-mnist"));
    const broken = writeSyntheticDataset(tempDir(), { override: { testLabels: idxLabels([1, 2, 3, 4, 5, 6, 7, 8, 9, 11]) } });
    await assert.rejects(
      loadDataset(good.spec, isolated({ env: envFor(broken.dir), projectDataDir, verifyChecksums: false })),
      /t10k-labels-idx1-ubyte\.gz: label 11 at index 9 is outside 0–9/,
    );
  });

  it("says which files the FASHION_MNIST_DIR directory lacks", async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, "train-images-idx3-ubyte.gz"), gzipSync(idxImages(1, 28, 28, () => 0)));
    await assert.rejects(
      locateDataset(FASHION_MNIST, isolated({ env: envFor(dir) })),
      (error: Error) => {
        assert.match(error.message, new RegExp(`FASHION_MNIST_DIR=${dir} names the Fashion-MNIST directory`));
        assert.match(error.message, /lacks train-labels-idx1-ubyte\[\.gz\], t10k-images-idx3-ubyte\[\.gz\], t10k-labels-idx1-ubyte\[\.gz\]/);
        assert.doesNotMatch(error.message, /lacks train-images/);
        return true;
      },
    );
  });

  it("says when the FASHION_MNIST_DIR directory does not exist", async () => {
    await assert.rejects(
      locateDataset(FASHION_MNIST, isolated({ env: envFor("/nonexistent/fmnist") })),
      /FASHION_MNIST_DIR=\/nonexistent\/fmnist names the Fashion-MNIST directory, but it does not exist/,
    );
  });

  it("prefers data/ over the system directory, and uses the system one when data/ is empty", async () => {
    const projectDataDir = tempDir();
    const system = writeSyntheticDataset(tempDir());
    const fromSystem = await locateDataset(FASHION_MNIST, isolated({ projectDataDir, systemDirs: [system.dir] }));
    assert.equal(fromSystem.origin, "system");
    assert.equal(fromSystem.dir, system.dir);
    writeSyntheticDataset(path.join(projectDataDir, "fashion-mnist"));
    const fromProject = await locateDataset(FASHION_MNIST, isolated({ projectDataDir, systemDirs: [system.dir] }));
    assert.equal(fromProject.origin, "project");
    assert.equal(fromProject.files.trainImages, path.join(projectDataDir, "fashion-mnist", "train-images-idx3-ubyte.gz"));
  });

  it("says where it looked and how to get the files when none are found", async () => {
    const projectDataDir = tempDir();
    await assert.rejects(
      locateDataset(FASHION_MNIST, isolated({ projectDataDir, systemDirs: ["/nonexistent/system"] })),
      (error: Error) => {
        assert.match(error.message, /Fashion-MNIST files not found\. Looked in: /);
        assert.match(error.message, new RegExp(`${projectDataDir}/fashion-mnist \\(no files\\)`));
        assert.match(error.message, /\/nonexistent\/system \(not present\)/);
        assert.match(error.message, /apt-get install dataset-fashion-mnist/);
        assert.match(error.message, /set FASHION_MNIST_DIR/);
        return true;
      },
    );
  });
});

describe("bad input is a clear error naming the file", () => {
  const cases: { name: string; build: () => ReturnType<typeof writeSyntheticDataset>; message: RegExp }[] = [
    {
      name: "truncated gzip",
      build: () => {
        const dataset = writeSyntheticDataset(tempDir());
        const file = path.join(dataset.dir, "train-images-idx3-ubyte.gz");
        const bytes = readFileSync(file);
        writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
        return dataset;
      },
      message: /train-images-idx3-ubyte\.gz: the gzip data is truncated \(unexpected end of file\)/,
    },
    {
      name: "wrong magic number (labels where images belong)",
      build: () => writeSyntheticDataset(tempDir(), { override: { testImages: idxLabels([1, 2, 3, 4, 5, 6, 7, 8, 9, 0]) } }),
      message: /t10k-images-idx3-ubyte\.gz: magic number 2049 \(a labels file\), expected 2051 for IDX images/,
    },
    {
      name: "wrong magic number (not IDX at all)",
      build: () => writeSyntheticDataset(tempDir(), { override: { trainLabels: Buffer.from("<html>not found</html>") } }),
      message: /train-labels-idx1-ubyte\.gz: magic number 1013478509, expected 2049 for IDX labels/,
    },
    {
      name: "wrong image dimensions",
      build: () => writeSyntheticDataset(tempDir(), { override: { trainImages: idxImages(20, 32, 32, syntheticPixel) } }),
      message: /train-images-idx3-ubyte\.gz: images are 32×32, expected 28×28 for Fashion-MNIST/,
    },
    {
      name: "fewer pixel bytes than the header promises",
      build: () =>
        writeSyntheticDataset(tempDir(), { override: { testImages: idxImages(10, 28, 28, syntheticPixel).subarray(0, 16 + 9 * 784 + 5) } }),
      message: /t10k-images-idx3-ubyte\.gz: the header promises 10 images \(7840 bytes\) but the file holds 7061 bytes: truncated/,
    },
    {
      name: "more bytes than the header promises",
      build: () =>
        writeSyntheticDataset(tempDir(), { override: { testLabels: Buffer.concat([idxLabels([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), Buffer.from([1, 2])]) } }),
      message: /t10k-labels-idx1-ubyte\.gz: the header promises 10 labels \(10 bytes\) but the file holds 12 bytes: 2 bytes too long/,
    },
    {
      name: "image and label counts differ",
      build: () => writeSyntheticDataset(tempDir(), { override: { trainLabels: idxLabels(Array.from({ length: 19 }, (_, n) => n % 10)) } }),
      message: /train split: .*train-images-idx3-ubyte\.gz has 20 images but .*train-labels-idx1-ubyte\.gz has 19 labels/,
    },
    {
      name: "label out of range",
      build: () => writeSyntheticDataset(tempDir(), { override: { trainLabels: idxLabels(Array.from({ length: 20 }, (_, n) => (n === 13 ? 12 : 0))) } }),
      message: /train-labels-idx1-ubyte\.gz: label 12 at index 13 is outside 0–9/,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const { dir } = c.build();
      // Checksums off: each case must be caught by its own check, not by the hash.
      await assert.rejects(loadDataset(FASHION_MNIST, isolated({ env: envFor(dir), verifyChecksums: false })), c.message);
    });
  }

  it("checksum mismatch names the file and both hashes, and says how to opt out", async () => {
    const { dir, spec } = writeSyntheticDataset(tempDir());
    // Only the train images disagree with the expected hashes.
    const expecting = { ...spec, sha256: { ...spec.sha256, trainImages: FASHION_MNIST.sha256.trainImages } };
    await assert.rejects(loadDataset(expecting, isolated({ env: envFor(dir) })), (error: Error) => {
      assert.match(error.message, /train-images-idx3-ubyte\.gz: SHA-256 of the decompressed content is [0-9a-f]{64}, expected c59f468a/);
      assert.ok(error.message.includes(spec.sha256.trainImages));
      assert.match(error.message, /--skip-checksum/);
      return true;
    });
    const data = await loadDataset(expecting, isolated({ env: envFor(dir), verifyChecksums: false }));
    assert.equal(data.checksumsVerified, false);
    assert.equal(data.train.count, 20);
  });

  it("rejects an unknown dataset name", () => {
    assert.throws(() => datasetSpec("cifar"), /Unknown dataset "cifar"; use one of fashion, mnist/);
  });
});

describe("download from a mirror", () => {
  async function serve(files: Record<string, Buffer>): Promise<{ server: Server; base: string }> {
    const server = createServer((request, response) => {
      const body = files[path.basename(request.url ?? "")];
      if (!body) {
        response.writeHead(404).end("not found");
        return;
      }
      response.writeHead(200, { "content-length": body.length }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` };
  }

  function mirrorFiles(dataset: ReturnType<typeof writeSyntheticDataset>): Record<string, Buffer> {
    return Object.fromEntries(
      Object.values(FILE_NAMES).map((name) => [`${name}.gz`, readFileSync(path.join(dataset.dir, `${name}.gz`))]),
    );
  }

  it("downloads the missing files into data/, verifies them and loads them", async () => {
    const source = writeSyntheticDataset(tempDir());
    const { server, base } = await serve(mirrorFiles(source));
    try {
      const projectDataDir = tempDir();
      const data = await loadDataset(source.spec, { ...isolated({ projectDataDir }), download: true, mirrors: [base] });
      assert.equal(data.source.origin, "download");
      assert.equal(data.source.dir, path.join(projectDataDir, "fashion-mnist"));
      assert.equal(data.train.count, 20);
      assert.deepEqual(readdirSync(data.source.dir).sort(), Object.values(FILE_NAMES).map((n) => `${n}.gz`).sort());
    } finally {
      server.close();
    }
  });

  it("never leaves a file that fails verification under its final name", async () => {
    const source = writeSyntheticDataset(tempDir());
    const files = mirrorFiles(source);
    files["t10k-labels-idx1-ubyte.gz"] = gzipSync(idxLabels([9, 9, 9, 9, 9, 9, 9, 9, 9, 9]));
    const { server, base } = await serve(files);
    try {
      const projectDataDir = tempDir();
      await assert.rejects(
        loadDataset(source.spec, { ...isolated({ projectDataDir }), download: true, mirrors: [base] }),
        (error: Error) => {
          assert.match(error.message, /Fashion-MNIST files not found and the download failed/);
          assert.match(error.message, new RegExp(`${base}t10k-labels-idx1-ubyte\\.gz: .*SHA-256`));
          return true;
        },
      );
      const dir = path.join(projectDataDir, "fashion-mnist");
      assert.ok(!existsSync(path.join(dir, "t10k-labels-idx1-ubyte.gz")));
      assert.ok(!existsSync(path.join(dir, "t10k-labels-idx1-ubyte.gz.part")));
      // The three good files stay: the next run downloads only what is missing.
      assert.ok(existsSync(path.join(dir, "t10k-images-idx3-ubyte.gz")));
    } finally {
      server.close();
    }
  });

  it("reports an HTTP error with the address", async () => {
    const { server, base } = await serve({});
    try {
      await assert.rejects(
        locateDataset(FASHION_MNIST, { ...isolated(), download: true, mirrors: [base] }),
        new RegExp(`${base}train-images-idx3-ubyte\\.gz: HTTP 404`),
      );
    } finally {
      server.close();
    }
  });
});

describe("summaries", () => {
  it("counts classes", () => {
    assert.deepEqual(classCounts(new Uint8Array([0, 2, 2, 9]), 10), [1, 0, 2, 0, 0, 0, 0, 0, 0, 1]);
  });

  it("computes the pixel mean and population standard deviation", () => {
    const { mean, std } = pixelStats(new Uint8Array([0, 0, 255, 255]));
    assert.equal(mean, 127.5);
    assert.equal(std, 127.5);
    const single = pixelStats(new Uint8Array([7, 7, 7]));
    assert.deepEqual(single, { mean: 7, std: 0 });
    assert.throws(() => pixelStats(new Uint8Array()), /no pixels/);
  });
});

describe("imagePixels", () => {
  it("is a view of one image's height × width pixels, and refuses an index outside the split", () => {
    const split = { images: Uint8Array.from({ length: 3 * 2 * 2 }, (_, i) => i), labels: new Uint8Array(3), count: 3, height: 2, width: 2 };
    assert.deepEqual(Array.from(imagePixels(split, 1)), [4, 5, 6, 7]);
    assert.equal(imagePixels(split, 2).buffer, split.images.buffer, "a view, not a copy");
    assert.throws(() => imagePixels(split, 3), /image 3 is not in a split of 3 images/);
    assert.throws(() => imagePixels(split, -1), /image -1 is not in a split of 3 images/);
  });
});
