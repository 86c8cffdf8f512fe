/**
 * The accelerator's boundary (docs/architecture.md): code outside lib/accelerator/ imports it
 * through its entry point (lib/accelerator.ts) only, and nothing in lib/accelerator/ imports
 * the rest of the project (the entry point included). The accelerator's own tests (test/accelerator/) may reach
 * below the entry point.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT } from "../../lib/tooling/paths";

const ACCELERATOR = "lib/accelerator";
const ENTRY_POINT = "lib/accelerator"; // lib/accelerator.ts, beside the folder
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\(\s*)["'](\.{1,2}\/[^"']*)["']/g;

/** Relative import targets of a source text, as project-relative paths without extension. */
export function importTargets(file: string, source: string): string[] {
  // Notebooks import the library through their lib -> ../lib link.
  const base = file.startsWith("notebooks/") ? "notebooks" : path.posix.dirname(file);
  return [...source.matchAll(SPECIFIER)].map((match) => {
    const target = path.posix.normalize(path.posix.join(base, match[1])).replace(/\.ts$/, "");
    return target.startsWith("notebooks/lib/") || target === "notebooks/lib" ? target.slice("notebooks/".length) : target;
  });
}

/** Every import (file → target) that crosses the accelerator's boundary the wrong way. */
export function boundaryViolations(files: Map<string, string>): string[] {
  const violations: string[] = [];
  for (const [file, source] of files) {
    for (const target of importTargets(file, source)) {
      const below = target.startsWith(`${ACCELERATOR}/`);
      if (file.startsWith(`${ACCELERATOR}/`)) {
        if (!below) violations.push(`${file} imports ${target}: the accelerator imports nothing from the project`);
      } else if (below && !file.startsWith("test/accelerator/") && file !== `${ENTRY_POINT}.ts`) {
        violations.push(`${file} imports ${target}: import from ${ENTRY_POINT} (lib/accelerator.ts) instead`);
      }
    }
  }
  return violations;
}

function sources(): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(path.join(PROJECT_ROOT, dir), { withFileTypes: true })) {
      const relative = `${dir}/${entry.name}`;
      if (entry.isDirectory() && !entry.isSymbolicLink()) walk(relative);
      else if (entry.name.endsWith(".ts")) files.set(relative, readFileSync(path.join(PROJECT_ROOT, relative), "utf8"));
      else if (entry.name.endsWith(".ipynb")) {
        const notebook = JSON.parse(readFileSync(path.join(PROJECT_ROOT, relative), "utf8")) as { cells: { cell_type: string; source: string[] | string }[] };
        const code = notebook.cells.filter((c) => c.cell_type === "code").map((c) => (Array.isArray(c.source) ? c.source.join("") : c.source));
        files.set(relative, code.join("\n"));
      }
    }
  };
  for (const dir of ["lib", "scripts", "test", "notebooks"]) walk(dir);
  files.delete("test/tooling/boundary.test.ts"); // its examples cross the boundary on purpose
  return files;
}

describe("the accelerator's boundary", () => {
  it("finds imports that cross it either way, and allows the entry point and the accelerator's tests", () => {
    const files = new Map([
      ["lib/training/loop.ts", `import { tf } from "../accelerator";\nimport { FastAdam } from "../accelerator/optimizer";`],
      ["lib/accelerator/layers.ts", `import { tf } from "./backend";\nimport { seededRandom } from "../tooling/random";`],
      ["scripts/bench.ts", `import { profileStep } from "../lib/accelerator";`],
      ["lib/accelerator.ts", `export { tf } from "./accelerator/backend";`],
      ["notebooks/01.ipynb", `const { tf } = require("./lib/accelerator/backend");`],
      ["test/accelerator/kernels.test.ts", `import { maxPoolGrad } from "../../lib/accelerator/wasm/pooling";`],
    ]);
    assert.deepEqual(boundaryViolations(files), [
      "lib/training/loop.ts imports lib/accelerator/optimizer: import from lib/accelerator (lib/accelerator.ts) instead",
      "lib/accelerator/layers.ts imports lib/tooling/random: the accelerator imports nothing from the project",
      "notebooks/01.ipynb imports lib/accelerator/backend: import from lib/accelerator (lib/accelerator.ts) instead",
    ]);
  });

  it("holds in lib/, scripts/, test/ and the notebooks", () => {
    const files = sources();
    assert.ok(files.size > 50, `only ${files.size} source files found`);
    assert.ok([...files.keys()].some((f) => f.startsWith("notebooks/")), "no notebook read");
    assert.deepEqual(boundaryViolations(files), []);
  });
});
