import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { initBackend } from "../../lib/accelerator";
import {
  ensureExperiment,
  loadDeclarations,
  notebookProfile,
  parseDeclaration,
  planOf,
  runDir,
  runRequestOf,
  studyDir,
  type RunDeclaration,
} from "../../lib/training/declarations";
import { readCurrentEnsemble, readEnsemble, meanProbabilities } from "../../lib/training/ensembles";
import { runIdentity, runProbabilities, runSplit } from "../../lib/training/run";
import { accuracy, argmaxRows } from "../../lib/evaluation/metrics";
import { stratifiedSplit, subset, toImageTensor } from "../../lib/data/preprocess";
import { PROJECT_ROOT } from "../../lib/tooling/paths";
import { makePlan, meanCosts, measureItemCosts, planItems, PlanClock, scheduleSeconds, type CostMeasurer, type ItemRunner } from "../../lib/training/plan";
import { budgetCells, budgetRows, PYTORCH_ANCHORS, resultRows } from "../../lib/evaluation/results";
import { readRecord } from "../../lib/training/records";
import { PRESET_MODELS } from "../../lib/models/builder";
import { stripesDataset } from "../helpers/datasets";
import { tempDir } from "../helpers/idx";

const runJson = (name: string, overrides: Record<string, unknown> = {}) => ({
  kind: "run",
  name,
  title: `test run ${name}`,
  profiles: ["standard"],
  dataset: "fashion",
  model: { preset: "ann" },
  recipe: { epochs: 2, batchSize: 64, learningRate: 0.003, schedule: "one-cycle", augment: null, seed: 5, validationFraction: 0.2 },
  ...overrides,
});

/** Writes declarations into a fresh folder and returns it. */
function declarationsDir(declarations: Record<string, unknown>[]): string {
  const dir = tempDir();
  for (const d of declarations) writeFileSync(path.join(dir, `${(d as { name: string }).name}.json`), JSON.stringify(d));
  return dir;
}

describe("experiment declarations", () => {
  it("the project's declarations load, and every standard run has a recipe and a model", () => {
    const declarations = loadDeclarations();
    const standard = planOf("standard", declarations);
    assert.ok(standard.length >= 8);
    for (const name of ["ann", "cnn1", "cnn2", "cnn3", "cnn3-augmented", "mnist-ann", "mnist-cnn3"]) {
      assert.ok(standard.some((d) => d.name === name), `${name} is in the standard profile`);
    }
    // Studies come before the runs that train their choice.
    const position = (name: string) => standard.findIndex((d) => d.name === name);
    for (const d of standard) if (d.kind === "run" && "study" in d.model) assert.ok(position(d.model.study) < position(d.name));
    assert.deepEqual(planOf("quick", declarations).map((d) => d.name), standard.map((d) => d.name), "quick makes every standard declaration");
    assert.ok(planOf("extended", declarations).length > standard.length, "extended adds the long runs");
  });

  it("errors name the file and the field", () => {
    const file = "/x/experiments/a.json";
    const cases: [Record<string, unknown>, RegExp][] = [
      [runJson("a", { recipe: { ...runJson("a").recipe as object, learningRate: -0.1 } }), /a\.json: recipe\.learningRate: must be a rate/],
      [runJson("a", { model: { preset: "vgg99" } }), /a\.json: model\.preset: unknown preset "vgg99"/],
      [runJson("b"), /a\.json: name: "b" must equal the file's name/],
      [runJson("a", { profiles: ["daily"] }), /a\.json: profiles: "daily" is not standard or extended/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, epochs: 0 } }), /a\.json: epochs: must be a positive integer/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, learningRate: { timesTuned: 2 } } }), /a\.json: recipe\.learningRate: \{ timesTuned \} needs a model taken from a study/],
      [runJson("a", { dataset: "cifar" }), /a\.json: dataset: must be fashion \| mnist/],
      [runJson("a", { kind: "sweep" }), /a\.json: kind: must be "run", "study" or "ensemble", got "sweep"/],
      [runJson("a", { model: { architecture: "double", params: { filters9: 3 } } }), /a\.json: model\.params\.filters9: unknown parameter/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, optimizer: "rmsprop" } }), /a\.json: recipe\.optimizer: must be adam or sgd-nesterov, got "rmsprop"/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, labelSmoothing: 0.7 } }), /a\.json: recipe\.labelSmoothing: must be a number in \[0, 0\.5\], got 0\.7/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, schedule: "cosine" } }), /a\.json: schedule: must be constant \| step \| one-cycle \| warmup-linear \| warmup-cosine/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, augment: { flip: { probability: 0.5 } } } }), /a\.json: recipe\.augment: Unknown transform "flip"/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, augment: "light" } }), /a\.json: recipe\.augment: must be "standard", a transform config/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, testTimeAugmentation: "yes" } }), /a\.json: recipe\.testTimeAugmentation: must be true or false, got "yes"/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, ema: { decay: 1.5 } } }), /a\.json: recipe\.ema: decay: the EMA decay must be a number in \(0, 1\), got 1\.5/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, ema: 0.99 } }), /a\.json: recipe\.ema: must be \{ "decay": d \}, got 0\.99/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, precision: "fp16" } }), /a\.json: recipe\.precision: must be fp32 or bf16, got "fp16"/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, splitSeed: 1.5 } }), /a\.json: recipe\.splitSeed: must be an integer, got 1\.5/],
      [runJson("a", { budgetMinutes: "15" }), /a\.json: budgetMinutes: must be a positive number of minutes, got "15"/],
      [runJson("a", { budgetMinutes: 0 }), /a\.json: budgetMinutes: must be a positive number of minutes, got 0/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, validationFraction: 0.6 } }), /a\.json: validationFraction: must be 0 \(every training image, no validation\) or a fraction in \(0, 0\.5\)/],
      [runJson("a", { recipe: { ...runJson("a").recipe as object, validationFraction: -0.1 } }), /a\.json: validationFraction: must be 0 \(every training image/],
    ];
    for (const [json, message] of cases) assert.throws(() => parseDeclaration(file, json), message);
  });

  it("a run taken from a study needs that study declared, in its profiles", () => {
    const dir = declarationsDir([runJson("t", { model: { study: "nowhere" }, recipe: { ...runJson("t").recipe as object, learningRate: { timesTuned: 2 } } })]);
    assert.throws(() => loadDeclarations(dir), /t\.json: model\.study: no study declaration named "nowhere"/);
    const bad = path.join(declarationsDir([]), "broken.json");
    writeFileSync(bad, "{ \"kind\": ");
    assert.throws(() => loadDeclarations(path.dirname(bad)), /broken\.json: not JSON/);
  });

  it("notebook profiles: NOTEBOOK_MODE quick/standard/extended, full meaning standard", () => {
    assert.equal(notebookProfile(undefined), "standard");
    assert.equal(notebookProfile("full"), "standard");
    assert.equal(notebookProfile("quick"), "quick");
    assert.throws(() => notebookProfile("fast"), /NOTEBOOK_MODE must be one of quick, standard, extended/);
  });

  it("a run's identity is its network, settings and dataset, not the prose describing it", async () => {
    const d = parseDeclaration("/x/cnn.json", runJson("cnn", { model: { preset: "cnn3" } })) as RunDeclaration;
    const { config, settings } = await runRequestOf(d, { profile: "standard" });
    const reworded = { ...config, name: "renamed", description: "said differently" };
    assert.equal(runIdentity(reworded, settings, "fashion"), runIdentity(config, settings, "fashion"));
    assert.notEqual(runIdentity(config, { ...settings, epochs: 3 }, "fashion"), runIdentity(config, settings, "fashion"));
    assert.notEqual(runIdentity({ ...config, layers: config.layers.slice(1) }, settings, "fashion"), runIdentity(config, settings, "fashion"));
    // Adam and no smoothing, spelled out or left out (records older than the choice), are the same run.
    assert.equal(runIdentity(config, { ...settings, optimizer: "adam", labelSmoothing: 0 }, "fashion"), runIdentity(config, settings, "fashion"));
    assert.notEqual(runIdentity(config, { ...settings, optimizer: "sgd-nesterov" }, "fashion"), runIdentity(config, settings, "fashion"));
    assert.notEqual(runIdentity(config, { ...settings, labelSmoothing: 0.1 }, "fashion"), runIdentity(config, settings, "fashion"));
    const sgd = parseDeclaration("/x/sgd.json", runJson("sgd", { recipe: { ...runJson("sgd").recipe as object, optimizer: "sgd-nesterov", labelSmoothing: 0.1, schedule: "warmup-linear" } })) as RunDeclaration;
    const request = await runRequestOf(sgd, { profile: "standard" });
    assert.deepEqual([request.settings.optimizer, request.settings.labelSmoothing, request.settings.schedule], ["sgd-nesterov", 0.1, { kind: "warmupLinear", rate: 0.003, warmup: 0.15 }]);
    // A transform config written in the recipe, and test-time augmentation (part of the identity when on).
    const flipShift = { flipHorizontal: { probability: 0.5 }, shift: { maxPixels: 2 } };
    const tta = parseDeclaration("/x/tta.json", runJson("tta", { recipe: { ...runJson("tta").recipe as object, augment: flipShift, testTimeAugmentation: true } })) as RunDeclaration;
    const ttaRequest = await runRequestOf(tta, { profile: "standard" });
    assert.deepEqual([ttaRequest.settings.augment, ttaRequest.settings.testTimeAugmentation], [flipShift, true]);
    assert.notEqual(runIdentity(config, { ...settings, testTimeAugmentation: true }, "fashion"), runIdentity(config, settings, "fashion"));
    assert.equal(runIdentity(config, { ...settings, testTimeAugmentation: false }, "fashion"), runIdentity(config, settings, "fashion"));
    // An EMA of the weights: carried to the run's settings, and part of its identity.
    const ema = parseDeclaration("/x/ema.json", runJson("ema", { recipe: { ...runJson("ema").recipe as object, ema: { decay: 0.998 } } })) as RunDeclaration;
    assert.deepEqual((await runRequestOf(ema, { profile: "standard" })).settings.ema, { decay: 0.998 });
    assert.notEqual(runIdentity(config, { ...settings, ema: { decay: 0.998 } }, "fashion"), runIdentity(config, settings, "fashion"));
    // bf16 asked for: carried and part of the identity; fp32 spelled out is the default.
    const half = parseDeclaration("/x/half.json", runJson("half", { recipe: { ...runJson("half").recipe as object, precision: "bf16" } })) as RunDeclaration;
    assert.equal((await runRequestOf(half, { profile: "standard" })).settings.precision, "bf16");
    assert.notEqual(runIdentity(config, { ...settings, precision: "bf16" }, "fashion"), runIdentity(config, settings, "fashion"));
    // A split seed: carried; the seed's own split spelled out is the same run, another split another run.
    const replicate = parseDeclaration("/x/rep.json", runJson("rep", { recipe: { ...runJson("rep").recipe as object, seed: 6, splitSeed: 5 } })) as RunDeclaration;
    const replicateSettings = (await runRequestOf(replicate, { profile: "standard" })).settings;
    assert.deepEqual([replicateSettings.seed, replicateSettings.splitSeed], [6, 5]);
    assert.equal(runIdentity(config, { ...settings, splitSeed: settings.seed }, "fashion"), runIdentity(config, settings, "fashion"));
    assert.notEqual(runIdentity(config, { ...settings, splitSeed: settings.seed + 1 }, "fashion"), runIdentity(config, settings, "fashion"));
    assert.equal(runIdentity(config, { ...settings, precision: "fp32" }, "fashion"), runIdentity(config, settings, "fashion"));
  });
});

describe("plan consistency: what the README, docs and notebooks name is declared", () => {
  const declarations = loadDeclarations();
  const sources: string[] = [path.join(PROJECT_ROOT, "README.md")];
  const docs = path.join(PROJECT_ROOT, "docs");
  if (existsSync(docs)) sources.push(...readdirSync(docs).filter((f) => f.endsWith(".md")).map((f) => path.join(docs, f)));
  const notebooks = path.join(PROJECT_ROOT, "notebooks");
  sources.push(...readdirSync(notebooks).filter((f) => f.endsWith(".ipynb")).map((f) => path.join(notebooks, f)));

  it("every runs/NAME, studies/NAME, experiments/NAME.json and --experiment NAME is a declaration", () => {
    const undeclared: string[] = [];
    for (const file of sources) {
      const text = readFileSync(file, "utf8");
      const patterns = [/\bruns\/(?!quick\b)([a-z0-9][a-z0-9-]*)/g, /\bstudies\/(?!quick\b)([a-z0-9][a-z0-9-]*)/g, /\bexperiments\/([a-z0-9][a-z0-9-]*)\.json/g, /--experiment\s+([a-z0-9][a-z0-9-]*)/g];
      for (const pattern of patterns) {
        for (const match of text.matchAll(pattern)) {
          if (!declarations.has(match[1]) && match[1] !== "name") undeclared.push(`${path.relative(PROJECT_ROOT, file)}: ${match[0]}`);
        }
      }
    }
    assert.deepEqual(undeclared, []);
  });

  it("every row of the README's results table is a declared run or ensemble", () => {
    const readme = readFileSync(path.join(PROJECT_ROOT, "README.md"), "utf8");
    // The rows under the header and its separator, up to the blank line that ends the table.
    const table = readme.slice(readme.indexOf("| run | dataset |")).split("\n\n")[0].split("\n").slice(2);
    const names = table.map((row) => /^\| ([a-z0-9-]+) \|/.exec(row)?.[1]);
    assert.ok(names.length >= 8, "the README shows the results table");
    for (const name of names) assert.ok(["run", "ensemble"].includes(declarations.get(name ?? "")?.kind ?? ""), `${name} is a declared run or ensemble`);
  });

  it("every preset model is trained by a declaration (benchmark layouts are kept apart)", () => {
    const declared = new Set([...declarations.values()].flatMap((d) => (d.kind === "run" && "preset" in d.model ? [d.model.preset] : [])));
    for (const name of Object.keys(PRESET_MODELS)) assert.ok(declared.has(name), `preset ${name} is trained by no experiment: declare one or move it to BENCHMARK_MODELS`);
  });

  it("the notebooks name their runs only through the declarations (no run folders or hand-typed recipes)", () => {
    for (const file of sources.filter((f) => f.endsWith(".ipynb"))) {
      const cells = (JSON.parse(readFileSync(file, "utf8")) as { cells: { cell_type: string; source: string[] }[] }).cells;
      const code = cells.filter((c) => c.cell_type === "code").map((c) => c.source.join("")).join("\n");
      assert.doesNotMatch(code, /ensureRun\(|trainRun\(|learningRate:\s*[\d.]|epochs:\s*\d/, `${path.basename(file)} trains only declared experiments`);
    }
  });
});

describe("makePlan on a tiny profile", () => {
  before(async () => {
    await initBackend({ force: "wasm" });
  });

  it("makes runs and a study, then the study's choice; killed part-way and started again, it retrains nothing finished", async () => {
    const root = tempDir();
    const space = path.join(root, "space.json");
    writeFileSync(space, JSON.stringify({ dropout: { kind: "choice", values: [0.1, 0.3] }, learningRate: { kind: "choice", values: [0.003] } }));
    const study = { kind: "study", name: "s", title: "tiny study", profiles: ["standard"], space, architecture: "capstone", strategy: "halving", trials: 2, minEpochs: 1, epochs: 2, eta: 2, seed: 3, validationFraction: 0.2 };
    const tuned = runJson("t", { model: { study: "s" }, recipe: { ...runJson("t").recipe as object, epochs: 3, learningRate: { timesTuned: 1 } } });
    const dir = declarationsDir([runJson("a"), study, tuned]);
    const declarations = loadDeclarations(dir);
    const data = stripesDataset();
    const context = { declarations, root, data: { fashion: data } };
    const lines: string[] = [];

    // The first attempt dies after the second epoch of t (a crash inside the epoch hook, after the epoch was saved).
    await assert.rejects(
      makePlan({
        profile: "standard", secondsPerImage: 1e-4, context,
        log: (line) => {
          lines.push(line);
          if (line.startsWith("[3/3] t: epoch 2/3")) throw new Error("killed");
        },
      }),
      /killed/,
    );
    assert.equal((await readRecord(runDir("t", "standard", root)))?.history.length, 2);
    const aBefore = await readRecord(runDir("a", "standard", root));
    assert.equal(aBefore?.status, "finished");
    const items = await planItems("standard", declarations, root);
    assert.deepEqual(items.map((i) => [i.declaration.name, i.epochsLeft]), [["a", 0], ["s", 0], ["t", 1]]);

    const again: string[] = [];
    const outcome = await makePlan({ profile: "standard", secondsPerImage: 1e-4, context, log: (line) => again.push(line) });
    assert.deepEqual(outcome.trained, ["t"], "only the interrupted run trains again");
    assert.ok(again.includes("[1/3] a: finished, read back"));
    assert.ok(again.some((line) => /^\[3\/3\] t: epoch 3\/3/.test(line)));
    assert.ok(!again.some((line) => /^\[3\/3\] t: epoch [12]\/3/.test(line)), "t resumes after its second epoch");
    const t = await readRecord(runDir("t", "standard", root));
    assert.equal(t?.status, "finished");
    assert.equal(t?.resumes.length, 1);
    assert.equal((await readRecord(runDir("a", "standard", root)))?.updatedAt, aBefore?.updatedAt, "a was not touched");
    assert.ok(existsSync(path.join(studyDir("s", "standard", root), "trials.jsonl")));

    // A third start only reads; the declared run reads back without training (train: false).
    const third = await makePlan({ profile: "standard", secondsPerImage: 1e-4, context, log: () => {} });
    assert.deepEqual(third.trained, []);
    const readBack = await ensureExperiment("t", { ...context, profile: "standard", train: false });
    assert.equal(readBack.test?.accuracy, t?.test?.accuracy);
    await assert.rejects(ensureExperiment("a", { ...context, profile: "quick", train: false }), /Run "a" \(quick profile\) is not finished: make it with `npm run train -- --experiment a --profile quick`/);

    // The results table reads the same records.
    const rows = await resultRows("standard", declarations, root);
    assert.deepEqual(rows.map((r) => [r.run, r.status]), [["a", "finished"], ["t", "finished"]]);
    assert.equal(rows[1].testAccuracy, t?.test?.accuracy);
    assert.match(rows[1].recipe, /^3 ep, one-cycle lr 0\.00300 \(1× tuned\), batch 64, seed 5$/);

    // Declarations changed since (a: 3 epochs; t: twice the tuned rate): their folders hold other versions' runs. The
    // plan refuses before training anything, naming both, a read-only ensure refuses, and the table shows no scores.
    const changed = loadDeclarations(declarationsDir([
      runJson("a", { recipe: { ...runJson("a").recipe as object, epochs: 3 } }), study,
      { ...tuned, recipe: { ...tuned.recipe, learningRate: { timesTuned: 2 } } },
    ]));
    const staleMessage = (name: string) => new RegExp(`${runDir(name, "standard", root)} was trained by another version of experiments/${name}\\.json`);
    for (const name of ["a", "t"]) await assert.rejects(planItems("standard", changed, root), staleMessage(name));
    await assert.rejects(makePlan({ profile: "standard", secondsPerImage: 1e-4, context: { ...context, declarations: changed }, log: () => {} }), staleMessage("a"));
    await assert.rejects(ensureExperiment("a", { ...context, declarations: changed, profile: "standard", train: false }), staleMessage("a"));
    const staleRows = await resultRows("standard", changed, root);
    assert.deepEqual(staleRows.map((r) => [r.run, r.status, r.testAccuracy, r.trainSeconds]), [["a", "stale", null, null], ["t", "stale", null, null]]);
    assert.equal((await readRecord(runDir("a", "standard", root)))?.updatedAt, aBefore?.updatedAt, "nothing was written");
  });

  it("an ensemble is made after its members, from the mean of their probabilities, read back, and made again when a member is retrained", async () => {
    const root = tempDir();
    const bJson = runJson("b", { recipe: { ...runJson("b").recipe as object, epochs: 1, testTimeAugmentation: true } });
    // A budget no training fits: the budget table must say so.
    const ensemble = { kind: "ensemble", name: "e", title: "a and b", profiles: ["standard"], dataset: "fashion", members: ["a", "b"], budgetMinutes: 1e-9 };
    const declarations = loadDeclarations(declarationsDir([runJson("a", { budgetMinutes: 60 }), bJson, ensemble]));
    const data = stripesDataset();
    const context = { declarations, root, data: { fashion: data } };
    const lines: string[] = [];
    await makePlan({ profile: "standard", secondsPerImage: 1e-4, context, log: (line) => lines.push(line) });
    const record = (await readEnsemble(runDir("e", "standard", root)))!;
    assert.match(lines.at(-1)!, /^e: ensemble of a, b: val acc 0\.\d{4}, test acc 0\.\d{4}$/);

    // The record's scores are the mean of what each member predicts as its record says (b: TTA views).
    const mean = async (images: typeof data.test) => {
      const x = toImageTensor(images);
      const p = meanProbabilities([await runProbabilities(runDir("a", "standard", root), x), await runProbabilities(runDir("b", "standard", root), x)]);
      x.dispose();
      return accuracy(images.labels, argmaxRows(p, 10), 10);
    };
    const split = stratifiedSplit(data.train.labels, 0.2, 5);
    assert.equal(record.test.accuracy, await mean(data.test));
    assert.equal(record.validation?.accuracy, await mean(subset(data.train, split.validation)));
    assert.deepEqual(record.members.map((m) => m.name), ["a", "b"]);

    // Read back while its members are unchanged; made again once one is retrained.
    await makePlan({ profile: "standard", secondsPerImage: 1e-4, context, log: () => {} });
    assert.equal((await readEnsemble(runDir("e", "standard", root)))!.createdAt, record.createdAt);
    const e = declarations.get("e");
    assert.ok(e?.kind === "ensemble");
    assert.equal((await readCurrentEnsemble(e, "standard", root))?.createdAt, record.createdAt);
    assert.equal(await readCurrentEnsemble({ ...e, members: ["b", "a"] }, "standard", root), null, "a record of other members is not the declaration's");
    rmSync(runDir("a", "standard", root), { recursive: true });
    // Until it is made again, its stale record reaches neither the results table nor the plan.
    assert.equal(await readCurrentEnsemble(e, "standard", root), null);
    assert.equal((await resultRows("standard", declarations, root)).find((r) => r.run === "e")?.status, "missing");
    const again = await makePlan({ profile: "standard", secondsPerImage: 1e-4, context, log: () => {} });
    assert.deepEqual(again.trained, ["a"]);
    const remade = (await readEnsemble(runDir("e", "standard", root)))!;
    assert.notEqual(remade.createdAt, record.createdAt);
    assert.equal(remade.members[0].startedAt, (await readRecord(runDir("a", "standard", root)))!.startedAt);

    const rows = await resultRows("standard", declarations, root);
    assert.deepEqual(rows.map((r) => [r.run, r.status]), [["a", "finished"], ["b", "finished"], ["e", "finished"]]);
    assert.equal(rows[2].testAccuracy, remade.test.accuracy);
    assert.equal(rows[2].model, "mean of a, b");
    // A member of another version (a's recipe changed since): the ensemble shows no scores either.
    const changed = loadDeclarations(declarationsDir([runJson("a", { budgetMinutes: 60, recipe: { ...runJson("a").recipe as object, epochs: 3 } }), bJson, ensemble]));
    assert.deepEqual((await resultRows("standard", changed, root)).map((r) => [r.run, r.status, r.testAccuracy]), [["a", "stale", null], ["b", "finished", rows[1].testAccuracy], ["e", "stale", null]]);

    // The budget table: the declarations with budgetMinutes only, shortest budget first, minutes from the records.
    const budgets = await budgetRows("standard", declarations, root);
    assert.deepEqual(budgets.map((r) => [r.run, r.budgetMinutes, r.withinBudget]), [["e", 1e-9, false], ["a", 60, true]]);
    const a = (await readRecord(runDir("a", "standard", root)))!;
    const b = (await readRecord(runDir("b", "standard", root)))!;
    assert.equal(budgets[1].minutes, a.trainSeconds / 60);
    assert.equal(budgets[0].minutes, (a.trainSeconds + b.trainSeconds) / 60, "an ensemble's minutes are its members' summed");
    assert.equal(budgets[1].testAccuracy, a.test?.accuracy);
    assert.equal(budgets[0].anchor, null, "no PyTorch anchor trained within a billionth of a minute");
    assert.ok(budgets[1].anchor && budgets[1].anchor.minutes <= 60 && PYTORCH_ANCHORS.every((x) => x.minutes > 60 || x.testAccuracy <= budgets[1].anchor!.testAccuracy));
    assert.match(budgetCells(budgets[0]).join(" | "), /^1e-9 min \| e \| 0\.\d min \(over budget\) \| – \| /);
  });

  it("an ensemble of runs trained on every training image has no validation score, its test score from the mean", async () => {
    const root = tempDir();
    const full = (name: string, seed: number) => runJson(name, { recipe: { ...runJson(name).recipe as object, epochs: 1, seed, validationFraction: 0 } });
    const declarations = loadDeclarations(declarationsDir([
      full("a", 5), full("b", 6),
      { kind: "ensemble", name: "e", title: "a and b", profiles: ["standard"], dataset: "fashion", members: ["a", "b"] },
    ]));
    const data = stripesDataset();
    const lines: string[] = [];
    await makePlan({ profile: "standard", secondsPerImage: 1e-4, context: { declarations, root, data: { fashion: data } }, log: (line) => lines.push(line) });
    const progress = lines.join("\n");
    assert.match(progress, /^\[1\/2\] a: epoch 1\/1 no validation \(/m);
    assert.match(progress, /^\[1\/2\] a: done, no validation, test acc [01]\.\d{4}$/m);
    assert.match(lines.at(-1)!, /^e: ensemble of a, b: no validation, test acc 0\.\d{4}$/);
    const record = (await readEnsemble(runDir("e", "standard", root)))!;
    assert.equal(record.validation, null);
    const x = toImageTensor(data.test);
    const p = meanProbabilities([await runProbabilities(runDir("a", "standard", root), x), await runProbabilities(runDir("b", "standard", root), x)]);
    x.dispose();
    assert.equal(record.test.accuracy, accuracy(data.test.labels, argmaxRows(p, 10), 10));
    const rows = await resultRows("standard", declarations, root);
    assert.deepEqual(rows.map((r) => [r.run, r.status, r.valAccuracy]), [["a", "finished", null], ["b", "finished", null], ["e", "finished", null]]);
  });

  it("an ensemble's members are runs of its dataset on one validation split, in its profiles", () => {
    const ensemble = (members: string[], extra: Record<string, unknown> = {}) => ({ kind: "ensemble", name: "e", title: "e", profiles: ["standard"], dataset: "fashion", members, ...extra });
    const cases: [Record<string, unknown>[], RegExp][] = [
      [[runJson("a"), ensemble(["a"])], /e\.json: members: must be a list of two or more different run names/],
      [[runJson("a"), ensemble(["a", "a"])], /e\.json: members: must be a list of two or more different run names/],
      [[runJson("a"), ensemble(["a", "z"])], /e\.json: members: "z" is not a run declaration/],
      [[runJson("a"), runJson("b", { dataset: "mnist" }), ensemble(["a", "b"])], /e\.json: members: "b" trains on mnist, not fashion/],
      [[runJson("a"), runJson("b", { recipe: { ...runJson("b").recipe as object, seed: 6 } }), ensemble(["a", "b"])], /e\.json: members: "b" validates on another split \(seed 6, validation fraction 0\.2\) than "a" \(seed 5, validation fraction 0\.2\)/],
      [[runJson("a"), runJson("b", { profiles: ["extended"] }), ensemble(["a", "b"])], /e\.json: profiles: "standard" needs run "b" in that profile too/],
    ];
    for (const [files, message] of cases) assert.throws(() => loadDeclarations(declarationsDir(files)), message);
    const full = (name: string, seed: number) => runJson(name, { recipe: { ...runJson(name).recipe as object, seed, validationFraction: 0 } });
    assert.throws(() => loadDeclarations(declarationsDir([runJson("a"), full("b", 5), ensemble(["a", "b"])])), /"b" validates on another split \(no validation split\) than "a" \(seed 5, validation fraction 0\.2\)/);
    assert.equal(loadDeclarations(declarationsDir([full("a", 5), full("b", 6), ensemble(["a", "b"])])).get("e")?.kind, "ensemble", "runs without validation, whatever their seeds");
    // Another seed on the same split (splitSeed) is a member like any other.
    const replicate = runJson("b", { recipe: { ...runJson("b").recipe as object, seed: 6, splitSeed: 5 } });
    assert.equal(loadDeclarations(declarationsDir([runJson("a"), replicate, ensemble(["a", "b"])])).get("e")?.kind, "ensemble");
  });

  it("a run's split is its split seed's, its seed's when it declares none", () => {
    const labels = Array.from({ length: 200 }, (_, i) => i % 10);
    assert.deepEqual(runSplit(labels, { validationFraction: 0.2, seed: 6, splitSeed: 5 }), stratifiedSplit(labels, 0.2, 5));
    assert.deepEqual(runSplit(labels, { validationFraction: 0.2, seed: 6 }), stratifiedSplit(labels, 0.2, 6));
    assert.notDeepEqual(stratifiedSplit(labels, 0.2, 5), stratifiedSplit(labels, 0.2, 6), "the two seeds split differently");
    assert.deepEqual(runSplit(labels, { validationFraction: 0, seed: 6 }), { train: labels.map((_, i) => i), validation: [] }, "fraction 0: every image trains");
  });

  it("with two jobs: the study its choice waits for starts first, the choice only after it, never more than two at once; a failure names its item", async () => {
    const root = tempDir();
    const space = path.join(root, "space.json");
    writeFileSync(space, JSON.stringify({ dropout: { kind: "choice", values: [0.1, 0.3] } }));
    const declarations = loadDeclarations(declarationsDir([
      runJson("a"),
      runJson("b"),
      { kind: "study", name: "s", title: "tiny study", profiles: ["standard"], space, architecture: "capstone", strategy: "halving", trials: 2, minEpochs: 1, epochs: 2, eta: 2, seed: 3, validationFraction: 0.2 },
      runJson("t", { model: { study: "s" }, recipe: { ...runJson("t").recipe as object, learningRate: { timesTuned: 1 } } }),
    ]));
    const events: string[] = [];
    let running = 0;
    let most = 0;
    const runner: ItemRunner = async (item, threads, onEvent) => {
      const name = item.declaration.name;
      most = Math.max(most, ++running);
      events.push(`start ${name} on ${threads}`);
      await new Promise((resolve) => setTimeout(resolve, name === "s" ? 60 : 20));
      onEvent({ kind: "epoch", epoch: 0, epochs: 1, validation: "val acc 0.5000", seconds: 1 });
      running--;
      events.push(`end ${name}`);
      return "made";
    };
    const lines: string[] = [];
    const base = { profile: "standard" as const, secondsPerImage: 1e-4, context: { declarations, root }, jobs: 2, cores: 2 };
    // The networks are timed on a job's share of the cores, each distinct one once.
    const timed: { names: string[]; threads: number }[] = [];
    const measurer: CostMeasurer = async (items, threads) => {
      timed.push({ names: items.map((item) => item.declaration.name), threads });
      return { networks: await measureItemCosts(items), itemStartSeconds: 0 };
    };
    const outcome = await makePlan({ ...base, secondsPerImage: undefined, measurer, runner, log: (line) => lines.push(line) });
    assert.deepEqual(timed, [{ names: ["a", "b", "s", "t"], threads: 1 }]);
    const none = { declarations: loadDeclarations(declarationsDir([])), root };
    assert.deepEqual((await makePlan({ ...base, context: none, secondsPerImage: undefined, measurer, runner, log: () => {} })).trained, []);
    assert.equal(timed.length, 1, "with nothing to make, nothing is timed");
    assert.match(lines[1], /^plan \(standard\): 4 declarations, 0 finished, 4 to make \(\d+ epochs\); estimated .+ on 2 jobs of 1 thread$/);
    assert.equal(events[0], "start s on 1", "the study that t waits for goes first, on half the cores");
    assert.ok(events.indexOf("start t on 1") > events.indexOf("end s"), "t starts after s is made");
    assert.equal(most, 2);
    assert.deepEqual([...outcome.trained].sort(), ["a", "b", "s", "t"]);
    assert.ok(lines.some((line) => /^\[4\/4\] t: epoch 1\/1 val acc 0\.5000 \(1\.0 s\) · plan ETA/.test(line)), lines.join("\n"));

    const started: string[] = [];
    const failing: ItemRunner = async (item) => {
      started.push(item.declaration.name);
      if (item.declaration.name === "s") throw new Error("out of memory");
      return "made";
    };
    await assert.rejects(makePlan({ ...base, runner: failing, log: () => {} }), /^Error: s: out of memory$/);
    assert.ok(!started.includes("t"), "nothing waiting for the failed study starts");
    await assert.rejects(makePlan({ ...base, runner: undefined, log: () => {} }), /more than one job needs a runner/);
    await assert.rejects(makePlan({ ...base, secondsPerImage: undefined, runner, log: () => {} }), /more than one job needs a measurer/);
  });

  it("the estimate counts each item's start and, once the items are made, the ensembles' predictions", async () => {
    const root = tempDir();
    const b = runJson("b", { recipe: { ...runJson("b").recipe as object, epochs: 1, testTimeAugmentation: true } });
    const ensemble = { kind: "ensemble", name: "e", title: "a and b", profiles: ["standard"], dataset: "fashion", members: ["a", "b"] };
    const declarations = loadDeclarations(declarationsDir([runJson("a"), b, ensemble]));
    // Training free, predicting 1e-4 s per image, 100 s to start an item. Validation fraction 0.2: 12,000 images.
    // a: 100 + 2 epochs × 1.2 + the test split 1.0 = 103.4 s; b: 100 + 1.2 + 4 views × 1.0 = 105.2 s; one after the
    // other, then the ensemble: a's 22,000 images once (2.2 s), b's in 4 views (8.8 s). 219.6 s: "4 min" (the items
    // alone would be 208.6 s, "3 min"; without their starts 8.6 s).
    const measurer: CostMeasurer = async (items) => ({ networks: items.map(() => ({ train: 0, predict: 1e-4 })), itemStartSeconds: 100 });
    const stop: ItemRunner = async () => {
      throw new Error("stop");
    };
    const lines: string[] = [];
    await assert.rejects(makePlan({ profile: "standard", context: { declarations, root }, measurer, runner: stop, log: (line) => lines.push(line) }), /a: stop/);
    assert.match(lines[0], /^plan \(standard\): timing 2 declarations' networks on 1 job of \d+ threads? \.\.\.$/);
    assert.match(lines[1], /; estimated 4 min on 1 job/);
    assert.match(lines[2], /^\[1\/2\] a: test run a \(2 of 2 epochs to train, ~2 min\)$/);
  });

  it("averages the jobs' measurements of the same items, network by network", () => {
    const one = { networks: [{ train: 1, predict: 0.5 }, { train: 4, predict: 2 }], itemStartSeconds: 1 };
    const other = { networks: [{ train: 3, predict: 1.5 }, { train: 2, predict: 0 }], itemStartSeconds: 2 };
    assert.deepEqual(meanCosts([one, other]), { networks: [{ train: 2, predict: 1 }, { train: 3, predict: 1 }], itemStartSeconds: 1.5 });
    assert.deepEqual(meanCosts([one]), one);
    assert.throws(() => meanCosts([]), /same items/);
    assert.throws(() => meanCosts([one, { ...other, networks: other.networks.slice(1) }]), /same items/);
  });

  it("the clock scales what is left of each item by its pace between epochs, as the plan schedules it", () => {
    const oneJob = new PlanClock([100, 300], { order: [0, 1], jobs: 1, dependsOn: [[], []] });
    assert.equal(oneJob.remaining(), 400);
    oneJob.started(0, 0);
    oneJob.epochEnded(0, 25, 40); // the first epoch after a start sets no pace
    assert.equal(oneJob.remaining(), 375);
    oneJob.epochEnded(0, 25, 90); // twice as slow as estimated
    assert.equal(oneJob.remaining(), 2 * 50 + 300, "the item not started goes as estimated");

    const twoJobs = new PlanClock([100, 300, 60], { order: [1, 0, 2], jobs: 2, dependsOn: [[], [], []] });
    assert.equal(twoJobs.remaining(), 300, "side by side, the longer item is the plan (0 then 2 on the other job: 160)");
    twoJobs.started(1, 0);
    twoJobs.started(0, 0);
    twoJobs.epochEnded(1, 50, 50);
    twoJobs.epochEnded(1, 50, 125); // 1.5 times as slow
    assert.equal(twoJobs.remaining(), 300, "1's 200 s left at its pace, 300; 0 then 2 as estimated, 100 + 60");
    twoJobs.epochEnded(0, 50, 70);
    twoJobs.epochEnded(0, 50, 270); // four times as slow
    twoJobs.finish(0);
    twoJobs.started(2, 270);
    assert.equal(twoJobs.remaining(), 300, "a finished item counts nothing; 2 as estimated, 60, 1 alone sets the end");
    twoJobs.epochEnded(1, 200, 225); // 1 catches up (175 s for 250 estimated) and has nothing left
    assert.equal(twoJobs.remaining(), 60, "2 is now the end");

    const failing = new PlanClock([100, 300, 60], { order: [1, 0, 2], jobs: 2, dependsOn: [[], [], []] });
    failing.started(1, 0);
    failing.started(0, 0);
    failing.failed(0);
    assert.equal(failing.remaining(), 300, "after a failure the plan starts nothing: 1 alone is left");
    failing.finish(1);
    assert.equal(failing.remaining(), 0, "2 never starts");
  });

  it("schedules items on jobs as the plan starts them: the next ready one in order as a job frees", () => {
    // s 20 s, b 30 s, t 15 s waits for s, a 10 s. Two jobs, in priority order s, b, t, a:
    // s 0-20 and b 0-30; t starts at 20 (s made) and ends at 35; a starts at 30 and ends at 40.
    const seconds = [10, 30, 20, 15];
    const dependsOn = [[], [], [], [2]];
    assert.equal(scheduleSeconds(seconds, [2, 1, 3, 0], 2, dependsOn), 40);
    // In the order a, b, s, t, t waits for s (a 0-10, b 0-30, s 10-30, t 30-45).
    assert.equal(scheduleSeconds(seconds, [0, 1, 2, 3], 2, dependsOn), 45);
    assert.equal(scheduleSeconds(seconds, [0, 1, 2, 3], 1, dependsOn), 75, "one job: the sum");
    assert.equal(scheduleSeconds(seconds, [3, 0], 2, dependsOn), 15, "items outside the lists count as made");
    // b already runs with 5 s left; s and t follow on the other job: s 0-20, t 20-35.
    assert.equal(scheduleSeconds([0, 5, 20, 15], [2, 3], 2, dependsOn, [1]), 35);
    assert.equal(scheduleSeconds([], [], 2, []), 0);
  });
});

