"""examples/lab03.ipynb: the committed file is what examples/make_lab03.py writes, without outputs, and
it runs from the first cell to the last in a fresh kernel (with this checkout's initlab)."""
import importlib.util
import os
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "lab03.ipynb"


def _maker():
    spec = importlib.util.spec_from_file_location("make_lab03", ROOT / "examples" / "make_lab03.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notebook_is_generated_and_stripped():
    assert NOTEBOOK.read_text() == _maker().text(), "run: python examples/make_lab03.py"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.e2e
@pytest.mark.slow
def test_the_notebook_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)                     # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Why do all-zero weights stop learning?" in text
    results = [o for o in outputs if o.output_type == "execute_result"]
    assert any("<table>" in o.data.get("text/html", "") and "sparse" in o.data["text/html"] for o in results)
    assert sum("image/png" in o.get("data", {}) for o in results) == 4     # the four figures, once each
    assert any(o.data.get("text/plain") == "True" for o in results)        # save -> load: equal tables
