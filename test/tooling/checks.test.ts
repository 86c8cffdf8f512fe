import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { requireOneOf, requirePositiveInt } from "../../lib/tooling/checks";

describe("requirePositiveInt", () => {
  it("accepts positive integers and names the argument and the value otherwise", () => {
    requirePositiveInt(1, "epochs");
    requirePositiveInt(128, "batchSize");
    for (const bad of [0, -3, 1.5, NaN, Infinity]) assert.throws(() => requirePositiveInt(bad, "epochs"), new RegExp(`^Error: epochs must be a positive integer, got ${bad}\\.$`));
  });
});

describe("requireOneOf", () => {
  const COLOURS = ["red", "green"] as const;
  it("returns an allowed name as it is and names the argument, the choices and the value otherwise", () => {
    const colour: "red" | "green" = requireOneOf("green", COLOURS, "--colour");
    assert.equal(colour, "green");
    for (const bad of ["blue", "", "Red", "red "]) assert.throws(() => requireOneOf(bad, COLOURS, "--colour"), { message: `--colour must be one of red, green, got "${bad}".` });
  });
});
