/**
 * npm run check-reports -- [DIR]: opens every HTML report in headless Chromium and fails
 * when a Plotly figure did not render, and fails a report whose executed notebook (beside it)
 * has an error, a cell that never ran, or a figure cell without figures (CI runs it after
 * `npm start -- --quick`).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { countFigures, renderedDom } from "../lib/tooling/browser";
import { runCommand, textTable } from "../lib/tooling/cli";
import { executedNotebookProblems } from "../lib/tooling/jupyter";
import { PROJECT_ROOT } from "../lib/tooling/paths";

runCommand("Usage: npm run check-reports -- [DIR]", async () => {
  const dir = path.resolve(process.argv[2] ?? path.join(PROJECT_ROOT, "reports"));
  const reports = readdirSync(dir).filter((f) => f.endsWith(".html")).sort();
  if (reports.length === 0) throw new Error(`No HTML reports in ${dir}: run \`npm start\` first.`);
  const rows: (string | number)[][] = [];
  const blank: string[] = [];
  for (const report of reports) {
    const { figures, rendered } = countFigures(await renderedDom(path.join(dir, report)));
    const executed = path.join(dir, report.replace(/\.html$/, ".ipynb"));
    const problems = existsSync(executed) ? executedNotebookProblems(JSON.parse(readFileSync(executed, "utf8"))) : [`no executed notebook ${path.basename(executed)} beside it`];
    rows.push([report, figures, rendered, problems.length === 0 ? "ok" : problems[0]]);
    if (rendered < figures) blank.push(`${report}: ${figures - rendered} of ${figures} figures blank`);
    for (const problem of problems) blank.push(`${report}: ${problem}`);
  }
  process.stdout.write(textTable(["report", "figures", "rendered in Chromium", "notebook"], rows) + "\n");
  if (blank.length > 0) throw new Error(blank.join("; "));
});
