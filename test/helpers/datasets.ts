/** Whether tests on the real datasets can run here. */
import { FASHION_MNIST, locateDataset, type Dataset, type DatasetSpec, type Split } from "../../lib/data/datasets";

/**
 * Why the dataset cannot be found without downloading, or undefined when it can. In CI the
 * data is installed, so a missing copy is a failure there, not a skip.
 */
export async function unavailable(spec: DatasetSpec = FASHION_MNIST): Promise<string | undefined> {
  try {
    await locateDataset(spec, { download: false });
    return undefined;
  } catch (error) {
    if (process.env.CI) return undefined;
    return `real ${spec.title} not present here: ${(error as Error).message}`;
  }
}

/** Class k is a bright 28×2 stripe at columns 2k..2k+1, plus a little deterministic noise. */
function stripes(count: number, offset: number): Split {
  const images = new Uint8Array(count * 784);
  const labels = new Uint8Array(count);
  for (let n = 0; n < count; n++) {
    const label = (n + offset) % 10;
    labels[n] = label;
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) images[n * 784 + y * 28 + x] = x >= 2 * label && x < 2 * label + 2 ? 220 : (n * 7 + y * 3 + x) % 30;
    }
  }
  return { images, labels, count, height: 28, width: 28 };
}

/** A small synthetic dataset shaped like Fashion-MNIST (400 training, 100 test images) that a model learns in a few epochs. */
export function stripesDataset(): Dataset {
  return {
    name: "fashion",
    title: "synthetic stripes",
    classNames: FASHION_MNIST.classNames,
    train: stripes(400, 0),
    test: stripes(100, 3),
    source: { dir: "memory", origin: "env", files: { trainImages: "", trainLabels: "", testImages: "", testLabels: "" } },
    sha256: { trainImages: "a", trainLabels: "b", testImages: "c", testLabels: "d" },
    checksumsVerified: false,
  };
}
