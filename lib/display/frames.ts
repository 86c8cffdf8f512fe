/**
 * danfojs data frames for notebooks and reports. Import danfojs through this module: tslab
 * compiles with TypeScript 5.0's node10 module resolution, which misses danfojs's types
 * (declared only under package.json "exports"); the project's own tsc sees them.
 */
// @ts-ignore -- see above: resolves at run time in tslab and is fully typed under tsc.
import * as danfo from "danfojs";

type DataFrame = InstanceType<typeof danfo.DataFrame>;

const READ_MEMBERS = ["values", "columns", "index"];

/** A DataFrame from rows and column names, with a clear error on ragged rows. */
export function frame(rows: (string | number)[][], columns: string[]): DataFrame {
  // danfojs exposes each column as a property: a column named like a member the readers of
  // a frame use (lib/display/notebook.ts reads values, columns and index) hides that member.
  const clash = columns.find((name) => READ_MEMBERS.includes(name));
  if (clash) throw new Error(`frame: a column named "${clash}" would hide the DataFrame's own "${clash}"; rename it.`);
  rows.forEach((row, i) => {
    if (row.length !== columns.length) throw new Error(`frame: row ${i} has ${row.length} values for ${columns.length} columns.`);
  });
  return new danfo.DataFrame(rows, { columns });
}
