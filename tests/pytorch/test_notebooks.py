"""Every notebook in notebooks/ runs from top to bottom on a tiny run (LENET5_NOTEBOOK_QUICK=1),
in a kernel of this very interpreter, started in notebooks/ as Jupyter starts it."""

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient

from lenet5.training.runfolder import RunFolder


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


def run_notebook(path, kernel, mnist_dir, out, monkeypatch):
    """Run the notebook in `kernel`, its runs and files into `out`; returns the text it printed."""
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
    return "".join(o.get("text", "") for o in outputs if o.output_type == "stream")


def test_the_training_notebook_trains_a_run_and_plots_it(kernel, mnist_dir, tmp_path, monkeypatch):
    text = run_notebook(ROOT / "notebooks" / "train.ipynb", kernel, mnist_dir, tmp_path, monkeypatch)
    assert "total: 61,706 parameters" in text  # the layer table
    (run,) = [path.parent for path in tmp_path.glob("*/result.json")]
    result = RunFolder(run).result()
    assert result["epochs"] == 1 and result["test_accuracy"] > 0.3  # 8 steps: past chance (10%), far from done
    assert f"test accuracy {result['test_accuracy']:.2%}" in text  # train.py's own line, in the notebook
    assert (tmp_path / "LeNet_architecture.png").is_file() and list(run.glob("plots/*.png"))


def test_the_inference_notebook_reads_most_pictures_right_and_agrees_with_predict(
    kernel, mnist_dir, tmp_path, monkeypatch
):
    text = run_notebook(ROOT / "notebooks" / "inference.ipynb", kernel, mnist_dir, tmp_path, monkeypatch)
    # Its own lines ("0-7.png 7 99.1%  ..."), then predict's table of the same pictures.
    # Its own lines ("0-7.png 7 100.0%  3 0.0%  9 0.0%"), then predict's table of the same pictures.
    ours = re.findall(r"^(\d+-(\d)\.png) (.+)$", text, re.M)
    assert len(ours) == 6  # four handwritten digits and two typed ones
    assert sum(label == top.split()[0] for _, label, top in ours) >= 5
    rows = [line.split() for line in text.splitlines() if line.startswith("/") and ".png " in line]
    table = {Path(row[0]).name: row[1:] for row in rows}
    assert {name: top.split() for name, _, top in ours} == table  # the same top 3, the same probabilities
