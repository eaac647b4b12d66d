"""python -m lenet5.architecture: the layer table it draws, and the PNG it writes."""

import subprocess

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from lenet5 import architecture, envs
from lenet5.network.shapes import expected_num_params


def test_layer_table_is_the_papers_lenet5():
    rows = architecture.layer_table()
    assert [(r["name"], r["shape"], r["params"]) for r in rows] == [
        ("INPUT", (1, 28, 28), 0),
        ("C1", (6, 28, 28), 156),
        ("S2", (6, 14, 14), 0),
        ("C3", (16, 10, 10), 2416),
        ("S4", (16, 5, 5), 0),
        ("C5", (120, 1, 1), 48120),
        ("F6", (84,), 10164),
        ("OUTPUT", (10,), 850),
    ]
    assert [(r["kernel"], r["padding"]) for r in rows[1:6]] == [
        ((5, 5), 2),
        ((2, 2), 0),
        ((5, 5), 0),
        ((2, 2), 0),
        ((5, 5), 0),
    ]
    assert sum(r["params"] for r in rows) == expected_num_params() == 61_706
    assert architecture.layer_table(num_classes=26)[-1]["shape"] == (26,)


def test_writes_a_png_and_replaces_only_its_own(tmp_path, capsys):
    out = tmp_path / "arch.png"
    assert architecture.main(["-o", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 1000 and image.text["Software"] == architecture.MAKER
    assert architecture.main(["-o", str(out), "--pooling", "avg"]) == 0  # its own figure: replaced
    mine = tmp_path / "mine.png"
    Image.new("RGB", (8, 8)).save(mine)
    before = mine.read_bytes()
    for argv in (
        ["-o", str(mine)],
        ["-o", str(tmp_path / "arch.svg")],
        ["--num-classes", "0"],
        ["--arch", "lecun98", "--num-classes", "26", "-o", str(tmp_path / "lecun98.png")],  # ten bitmaps
    ):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            architecture.main(argv)
        assert exit_.value.code == 2 and capsys.readouterr().err.count("\n") == 1
    assert mine.read_bytes() == before


@pytest.mark.parametrize("arch", ["lenet5", "lecun98"])
def test_the_committed_figure_is_what_this_script_draws_today(arch, tmp_path):
    """The figure in the project, drawn again as `lenet5 figure` draws it, in the PyTorch
    environment (another matplotlib antialiases other pixels): the same pixels. Redraw it with
    python -m lenet5.architecture [--arch lecun98] when the network or the drawing changes."""
    now = tmp_path / "now.png"
    cmd = [str(envs.env_python("pytorch")), "-m", "lenet5.architecture", "--arch", arch, "-o", str(now)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    with Image.open(architecture.DEFAULT_OUTPUT[arch]) as committed, Image.open(now) as drawn:
        assert committed.text["Software"] == architecture.MAKER
        assert committed.size == drawn.size and np.array_equal(np.asarray(committed), np.asarray(drawn))
