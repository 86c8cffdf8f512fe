"""Executes one notebook headless with nbclient and writes the executed notebook (signed,
so that it opens trusted) and its HTML report, also when a cell fails (then up to that
cell). Prints one JSON line: status, seconds, and for a failure the cell and its error.

tslab sends no ename/evalue with an error: the message is in the cell's stderr output,
which is what gets reported. Called by scripts/reports.ts (npm start); not meant to be
run by hand, but it can be:

  python3 scripts/run_notebook.py NOTEBOOK OUT_DIR --timeout 600 --kernel tslab
"""
import argparse
import json
import os
import sys
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter
from nbformat.sign import NotebookNotary


def failing_cell(nb):
    """The cell that stopped the run: the last code cell that started executing (later ones
    never ran), with its error output and stderr."""
    started = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("execution_count") is not None]
    if not started:
        return None
    index = started[-1]
    cell = nb.cells[index]
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            parts += [output.get("ename", ""), output.get("evalue", ""), "\n".join(output.get("traceback", []))]
        elif output.get("output_type") == "stream" and output.get("name") == "stderr":
            parts.append(output.get("text", ""))
    return index, cell.source, "\n".join(p for p in parts if p).strip()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    parser.add_argument("out_dir")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--kernel", default="tslab")
    args = parser.parse_args()

    name = os.path.splitext(os.path.basename(args.notebook))[0]
    nb = nbformat.read(args.notebook, as_version=4)
    client = NotebookClient(
        nb,
        timeout=args.timeout,
        kernel_name=args.kernel,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(args.notebook))}},
    )
    started = time.monotonic()
    result = {"notebook": name, "status": "ok"}
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
        result["status"] = "failed"
        found = failing_cell(nb)
        if found:
            result["cellIndex"], result["cellSource"], result["error"] = found
        else:
            result["error"] = str(error)
        if isinstance(error, CellTimeoutError):
            result["error"] = f"cell timed out after {args.timeout} s\n{result.get('error', '')}".strip()
    result["seconds"] = round(time.monotonic() - started, 2)

    os.makedirs(args.out_dir, exist_ok=True)
    executed = os.path.join(args.out_dir, f"{name}.ipynb")
    NotebookNotary().sign(nb)
    nbformat.write(nb, executed)
    html, _ = HTMLExporter(template_name="classic").from_notebook_node(nb)
    with open(os.path.join(args.out_dir, f"{name}.html"), "w", encoding="utf-8") as out:
        out.write(html)
    result["executed"] = executed
    result["html"] = os.path.join(args.out_dir, f"{name}.html")
    print(json.dumps(result))
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
