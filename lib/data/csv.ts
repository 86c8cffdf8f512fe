/**
 * Reading predictions made elsewhere: a CSV with a header naming `true` and `pred` columns
 * (any order, other columns ignored), values as class indices or class names.
 */

export interface LabelPairs {
  yTrue: Int32Array;
  yPred: Int32Array;
}

function parseLabel(value: string, classNames: readonly string[], where: string): number {
  const text = value.trim();
  const byName = classNames.indexOf(text);
  if (/^\d+$/.test(text)) {
    const index = Number(text);
    if (index < classNames.length) return index;
  } else if (byName >= 0) {
    return byName;
  }
  throw new Error(`${where}: "${text}" is not a class (0–${classNames.length - 1} or one of ${classNames.join(", ")}).`);
}

/** Parses `true,pred` rows; every malformed line is an error naming its line number. */
export function parseLabelCsv(text: string, classNames: readonly string[], source = "CSV"): LabelPairs {
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1].trim() === "") lines.pop();
  if (lines.length === 0) throw new Error(`${source} is empty: expected a header line with "true" and "pred" columns.`);
  if (lines.some((line) => line.includes('"'))) throw new Error(`${source}: quoted fields are not supported; write plain values.`);
  const header = lines[0].split(",").map((name) => name.trim().toLowerCase());
  const trueColumn = header.indexOf("true");
  const predColumn = header.indexOf("pred");
  if (trueColumn < 0 || predColumn < 0) {
    throw new Error(`${source}: the header must name "true" and "pred" columns, found: ${lines[0]}.`);
  }
  const rows = lines.slice(1);
  if (rows.length === 0) throw new Error(`${source} has a header but no rows.`);
  const yTrue = new Int32Array(rows.length);
  const yPred = new Int32Array(rows.length);
  rows.forEach((line, i) => {
    const where = `${source} line ${i + 2}`;
    const fields = line.split(",");
    if (fields.length !== header.length) throw new Error(`${where} has ${fields.length} fields; the header has ${header.length}.`);
    yTrue[i] = parseLabel(fields[trueColumn], classNames, where);
    yPred[i] = parseLabel(fields[predColumn], classNames, where);
  });
  return { yTrue, yPred };
}
