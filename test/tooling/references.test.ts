/**
 * Every project path that the committed text names (README, docs, comments, notebooks' prose,
 * scripts) exists: a moved or renamed file leaves no stale pointer behind (lib/'s layout change
 * left seven, found by hand).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT } from "../../lib/tooling/paths";

const TOP_FOLDERS = ["lib", "test", "scripts", "docs", "notebooks", "experiments", "spaces", "web"];

/**
 * Project-relative paths in a text. Not a path of this project: one inside a longer path (/usr/lib/…) or a string
 * literal ("notebooks/01.ipynb" as a test's example), a glob (kernels-*.wasm) or a placeholder (experiments/NAME.json).
 */
export function namedPaths(text: string): string[] {
  const pattern = new RegExp(String.raw`(?<![\w./"'-])(?:${TOP_FOLDERS.join("|")})/[\w./-]*\w(?![\w/*-])`, "g");
  return [...text.matchAll(pattern)].map((match) => match[0]).filter((named) => !/\/[A-Z]{2,}\b/.test(named));
}

/** Whether a named path exists: as written, or as a module named without its .ts. */
function exists(named: string): boolean {
  const full = path.join(PROJECT_ROOT, named);
  return existsSync(full) || existsSync(`${full}.ts`);
}

/** The committed text files: the top folders' sources and documents and the root's, with notebooks as their cells' text. */
function committedTexts(): Map<string, string> {
  const texts = new Map<string, string>();
  const read = (relative: string): string => {
    const text = readFileSync(path.join(PROJECT_ROOT, relative), "utf8");
    if (!relative.endsWith(".ipynb")) return text;
    const notebook = JSON.parse(text) as { cells: { source: string[] | string }[] };
    return notebook.cells.map((cell) => (Array.isArray(cell.source) ? cell.source.join("") : cell.source)).join("\n");
  };
  const walk = (dir: string) => {
    for (const entry of readdirSync(path.join(PROJECT_ROOT, dir), { withFileTypes: true })) {
      const relative = `${dir}/${entry.name}`;
      if (entry.isSymbolicLink()) continue; // notebooks/lib -> ../lib
      if (entry.isDirectory()) walk(relative);
      else if (/\.(ts|md|ipynb|json|sh|c|cc|h|html|py)$/.test(entry.name)) texts.set(relative, read(relative));
    }
  };
  for (const dir of TOP_FOLDERS) if (existsSync(path.join(PROJECT_ROOT, dir))) walk(dir);
  for (const file of ["README.md", ".ci/run", ".gitignore", "package.json", "data/README.md"]) texts.set(file, read(file));
  return texts;
}

describe("paths named in the project's text", () => {
  it("finds project paths and leaves other strings alone", () => {
    assert.deepEqual(namedPaths("see `lib/data/augment.ts` and lib/accelerator/wasm/simd/kernels.c."), ["lib/data/augment.ts", "lib/accelerator/wasm/simd/kernels.c"]);
    assert.deepEqual(namedPaths("in test/helpers/tensors (imports) and docs/backend.md, section 2"), ["test/helpers/tensors", "docs/backend.md"]);
    assert.deepEqual(namedPaths('/usr/lib/postgresql, "notebooks/01.ipynb", kernels at lib/accelerator/wasm/simd/kernels-*.wasm'), []);
    assert.deepEqual(namedPaths("written to experiments/NAME.json and reports/NN-name.html"), []);
  });

  it("all exist", () => {
    const stale: string[] = [];
    for (const [file, text] of committedTexts()) {
      for (const named of new Set(namedPaths(text))) if (!exists(named)) stale.push(`${file}: ${named}`);
    }
    assert.deepEqual(stale, [], `paths that do not exist:\n${stale.join("\n")}`);
  });
});
