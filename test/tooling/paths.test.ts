import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { MNIST, PROJECT_DATA_DIR } from "../../lib/data/datasets";
import { PROJECT_ROOT } from "../../lib/tooling/paths";

describe("project paths", () => {
  it("the project root holds this package, data/ lives under it, nothing is looked for outside the project", () => {
    assert.equal(JSON.parse(readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8")).name, "fashion-mnist-ts");
    assert.equal(PROJECT_DATA_DIR, path.join(PROJECT_ROOT, "data"));
    // MNIST: $MNIST_DIR, data/mnist/, a download; no folder beside the project.
    assert.deepEqual(MNIST.systemDirs, []);
  });

  it("stays the project root when lib/ is loaded through the notebooks/lib symlink without resolving it", () => {
    // tslab loads lib/ as notebooks/lib/...; --preserve-symlinks makes Node do the same.
    const script = `process.stdout.write(require("./notebooks/lib/tooling/paths.ts").PROJECT_ROOT)`;
    const printed = execFileSync(process.execPath, ["--preserve-symlinks", "--import", "tsx", "-e", script], { cwd: PROJECT_ROOT, encoding: "utf8" });
    assert.equal(printed, PROJECT_ROOT);
  });
});
