/**
 * npm run kernel: checks the notebook prerequisites and registers the tslab kernel for this
 * project only (.jupyter/), then says how to open the notebooks.
 */
import { runCommand } from "../lib/tooling/cli";
import { installKernel, JUPYTER_PREFIX, missingPrerequisites } from "../lib/tooling/jupyter";

runCommand("Usage: npm run kernel", async () => {
  const problems = missingPrerequisites();
  if (problems.length > 0) throw new Error(`cannot set up notebooks:\n- ${problems.join("\n- ")}`);
  installKernel();
  process.stdout.write(
    `tslab kernel registered in ${JUPYTER_PREFIX}/share/jupyter/kernels (your global Jupyter is untouched).\n` +
      `Open the notebooks with:\n  JUPYTER_PATH=${JUPYTER_PREFIX}/share/jupyter jupyter notebook notebooks/\n`,
  );
});
