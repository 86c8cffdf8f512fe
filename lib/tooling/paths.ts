/**
 * The project's root folder. Notebooks import lib/ through the notebooks/lib symlink, and
 * tslab then reports __dirname as notebooks/lib/tooling: resolving the link keeps paths right there.
 */
import { realpathSync } from "node:fs";
import path from "node:path";

export const PROJECT_ROOT = path.resolve(realpathSync(__dirname), "..", "..");
