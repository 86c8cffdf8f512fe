import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { requirePositiveInt } from "../../lib/tooling/checks";

describe("requirePositiveInt", () => {
  it("accepts positive integers and names the argument and the value otherwise", () => {
    requirePositiveInt(1, "epochs");
    requirePositiveInt(128, "batchSize");
    for (const bad of [0, -3, 1.5, NaN, Infinity]) assert.throws(() => requirePositiveInt(bad, "epochs"), new RegExp(`^Error: epochs must be a positive integer, got ${bad}\\.$`));
  });
});
