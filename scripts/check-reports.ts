/**
 * npm run check-reports -- [DIR]: opens every HTML report in headless Chromium and fails
 * when a Plotly figure did not render (CI runs it after `npm start -- --quick`).
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { countFigures, renderedDom } from "../lib/browser";
import { runCommand, textTable } from "../lib/cli";
import { PROJECT_ROOT } from "../lib/paths";

runCommand("Usage: npm run check-reports -- [DIR]", async () => {
  const dir = path.resolve(process.argv[2] ?? path.join(PROJECT_ROOT, "reports"));
  const reports = readdirSync(dir).filter((f) => f.endsWith(".html")).sort();
  if (reports.length === 0) throw new Error(`No HTML reports in ${dir}: run \`npm start\` first.`);
  const rows: (string | number)[][] = [];
  const blank: string[] = [];
  for (const report of reports) {
    const { figures, rendered } = countFigures(await renderedDom(path.join(dir, report)));
    rows.push([report, figures, rendered]);
    if (rendered < figures) blank.push(`${report}: ${figures - rendered} of ${figures} figures blank`);
  }
  process.stdout.write(textTable(["report", "figures", "rendered in Chromium"], rows) + "\n");
  if (blank.length > 0) throw new Error(blank.join("; "));
});
