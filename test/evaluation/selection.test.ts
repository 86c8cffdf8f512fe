import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { bestByValidation, compareByValidation, improvesOn, rankByValidation } from "../../lib/evaluation/selection";

describe("the selection rule", () => {
  it("prefers the higher validation accuracy, then the lower validation loss, then the earlier", () => {
    const candidates = [
      { name: "a", valAccuracy: 0.91, valLoss: 0.30 },
      { name: "b", valAccuracy: 0.93, valLoss: 0.40 },
      { name: "c", valAccuracy: 0.93, valLoss: 0.35 },
      { name: "d", valAccuracy: 0.93, valLoss: 0.35 },
      { name: "e", valAccuracy: 0.92 },
    ];
    assert.equal(bestByValidation(candidates, (c) => c)?.name, "c");
    assert.deepEqual(rankByValidation(candidates, (c) => c).map((c) => c.name), ["c", "d", "b", "e", "a"]);
    assert.equal(bestByValidation([], (c: { valAccuracy: number }) => c), undefined);
  });

  it("breaks a tie by loss only where both candidates have one", () => {
    assert.equal(compareByValidation({ valAccuracy: 0.9 }, { valAccuracy: 0.9, valLoss: 0.1 }), 0);
    assert.ok(compareByValidation({ valAccuracy: 0.9, valLoss: 0.2 }, { valAccuracy: 0.9, valLoss: 0.1 }) > 0);
    assert.ok(compareByValidation({ valAccuracy: 0.91, valLoss: 9 }, { valAccuracy: 0.9, valLoss: 0.1 }) < 0);
  });

  it("counts an improvement for early stopping: anything better by the rule, or an accuracy gain above minDelta", () => {
    const incumbent = { valAccuracy: 0.9, valLoss: 0.3 };
    assert.ok(improvesOn(incumbent, undefined));
    assert.ok(improvesOn({ valAccuracy: 0.9, valLoss: 0.29 }, incumbent));
    assert.ok(!improvesOn({ valAccuracy: 0.9, valLoss: 0.3 }, incumbent), "an equal epoch is no improvement");
    assert.ok(!improvesOn({ valAccuracy: 0.905, valLoss: 0.1 }, incumbent, 0.01));
    assert.ok(improvesOn({ valAccuracy: 0.915, valLoss: 0.5 }, incumbent, 0.01));
  });
});
