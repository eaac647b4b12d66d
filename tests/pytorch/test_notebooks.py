"""Every notebook in notebooks/ runs from top to bottom on a tiny run (LENET5_NOTEBOOK_QUICK=1),
in a kernel of this very interpreter, started in notebooks/ as Jupyter starts it."""

import json
import sys

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A kernel spec that starts this interpreter: the name "python3" may find a kernel spec of
    another interpreter (in ~/.local/share/jupyter, say) before this environment's."""
    spec = tmp_path / "jupyter" / "kernels" / "lenet5-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "lenet5 tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "lenet5-test"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, kernel, mnist_dir, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    # The kernel inherits this environment (LENET5_MNIST_MIRRORS included): tiny settings, runs
    # into a temporary folder, MNIST from this session's download.
    monkeypatch.setenv("LENET5_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("LENET5_NOTEBOOK_OUTPUT_DIR", str(out))
    monkeypatch.setenv("LENET5_DATA_DIR", str(mnist_dir))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plots are shown
    assert list(out.iterdir()), "the notebook wrote nothing into LENET5_NOTEBOOK_OUTPUT_DIR"
