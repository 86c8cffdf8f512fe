/** Whether tests on the real datasets can run here. */
import { FASHION_MNIST, locateDataset, type DatasetSpec } from "../../lib/data";

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
