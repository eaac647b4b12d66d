"""The lenet5 command as a newcomer meets it: from a Python with nothing installed (python -S),
the interpreter each environment is built with, every mode reaching its command, and the shipped
model, which predict and serve use when given no run."""

import hashlib
import json
import os
import subprocess
import sys
import urllib.request

import pytest
from conftest import ROOT
from digit_pictures import write_pictures
from doc_tables import table_rows

from lenet5 import command, envs, models, pretrained
from lenet5.data.download import load_mnist
from lenet5.data.splits import normalize
from lenet5.network import weights

BARE = [sys.executable, "-S"]  # no site-packages: a Python with nothing installed


def bare(*args, **kwargs):
    """`python -S -m lenet5 ARGS` from the project folder, as from a fresh clone."""
    return subprocess.run([*BARE, "-m", "lenet5", *map(str, args)], cwd=ROOT, capture_output=True, text=True, **kwargs)


def test_the_set_up_path_imports_the_standard_library_alone():
    assert subprocess.run([*BARE, "-c", "import numpy"], capture_output=True).returncode != 0  # bare indeed
    code = "import sys, lenet5.command; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = subprocess.run([*BARE, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert "lenet5" in loaded
    assert [m for m in loaded if m not in sys.stdlib_module_names and m not in ("lenet5", "__main__")] == []


def test_the_bare_python_reaches_the_environments():
    framework = command.tools_framework()
    proc = subprocess.run([*BARE, "-m", "lenet5.envs", "ensure", framework], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(envs.env_python(framework))


def test_an_environments_lenet5_script_finds_the_others_beside_it():
    script = envs.env_python(command.tools_framework()).with_name("lenet5")  # made by pip install -e .
    environ = {k: v for k, v in os.environ.items() if k != "LENET5_VENV_DIR"}
    for framework in envs.FRAMEWORKS:
        proc = subprocess.run([script, "envs", "path", framework], capture_output=True, text=True, env=environ)
        assert proc.stdout.strip() == str(envs.env_python(framework)), proc.stderr


def test_lenet5_help_lists_every_mode_in_one_line_each():
    proc = bare("--help")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.split("modes:\n")[1].split("\n\n")[0].splitlines()]
    assert listed == list(command.MODES)
    proc = bare("trian")
    assert proc.returncode == 2 and "invalid choice: 'trian'" in proc.stderr.splitlines()[-1]


@pytest.mark.parametrize("mode", [m for m in command.MODES if m != "train"] + ["train-pytorch", "train-mxnet"])
def test_every_mode_gives_its_own_commands_help(mode):
    mode, _, framework = mode.partition("-")
    proc = bare(mode, *(["--framework", framework] if framework else []), "--help")
    assert proc.returncode == 0, proc.stderr
    if mode == "train":  # first how to pick the framework, then that framework's train.py
        first, proc.stdout = proc.stdout.split("\n", 1)
        picks = "[--framework {pytorch,tensorflow,mxnet}] (default: pytorch)"
        assert first == f"lenet5 train {picks}, then train_{framework}/train.py's:"
    usage = f"usage: {f'train_{framework}/train.py' if mode == 'train' else f'lenet5 {mode}'} "
    assert proc.stdout.startswith(usage), proc.stdout[:200]


# Fake interpreters: each answers envs.PROBE with a version, and whether it can make a venv.
def fake_python(folder, name, answer):
    path = folder / name
    path.write_text(f"#!/bin/sh\n{answer}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def pythons(tmp_path, monkeypatch):
    """A PATH holding only the fake interpreters given, and this Python one of them."""

    def make(this, **others):
        monkeypatch.setenv("PATH", str(tmp_path))
        monkeypatch.setattr(sys, "executable", str(fake_python(tmp_path, "python3", f"echo {this}")))
        for name, answer in others.items():
            fake_python(tmp_path, name.replace("_", "."), answer)

    return make


def test_each_environment_is_built_with_a_python_its_framework_takes(pythons):
    pythons("3.13.5 True", python3_11="echo 3.11.9 True", python3_12="echo 3.12.3 True")
    assert envs.choose_python("pytorch") == (sys.executable, (3, 13, 5))
    assert envs.choose_python("tensorflow") == (sys.executable, (3, 13, 5))
    assert envs.choose_python("mxnet") == ("python3.11", (3, 11, 9))


def test_a_pyenv_shim_of_a_version_not_selected_is_passed_over(pythons):
    shim = "echo 'pyenv: python3.11: command not found' >&2; exit 127"
    pythons("3.13.5 True", python3_11=shim, python3_10="echo 3.10.14 True")
    assert envs.choose_python("mxnet") == ("python3.10", (3, 10, 14))


def test_no_python_for_mxnet_is_one_line_saying_what_to_install(pythons, tmp_path, monkeypatch):
    pythons("3.13.5 True")
    monkeypatch.setenv("LENET5_VENV_DIR", str(tmp_path / "venvs"))
    with pytest.raises(SystemExit) as stop:
        command.main(["train", "--framework", "mxnet"])
    assert stop.value.code == (
        "lenet5 train: error: the mxnet environment needs Python 3.10 to 3.11; this is Python 3.13.5, and neither "
        "python3.11 nor python3.10 runs here: install one (e.g. 'uv python install 3.11' or 'pyenv install 3.11') "
        "or name it: make PYTHON=/path/to/python3.11"
    )
    assert not (tmp_path / "venvs").exists()  # nothing half-built


def test_a_python_without_venv_is_named_with_the_package_it_lacks(pythons):
    pythons("3.13.5 False")
    with pytest.raises(envs.EnvError, match=r"^\S+/python3 \(3.13.5\) cannot make a venv: install python3-venv"):
        envs.choose_python("pytorch")


def test_a_real_python_answers_the_probe():
    assert envs.probe(sys.executable) == (tuple(sys.version_info[:3]), True)
    assert envs.probe("/no/such/python") is None


def test_the_environments_stamp_follows_the_python_that_built_it():
    assert envs.requirements_hash("pytorch", (3, 11, 7)) != envs.requirements_hash("pytorch", (3, 13, 5))


# The shipped model.


def test_the_shipped_model_is_what_its_record_says(mnist_dir):
    record = pretrained.record_of()
    path = pretrained.model_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    assert path.stat().st_size < 400_000
    assert (weights.load(path)[1]["arch"], record["arch"]) == ("lenet5", "lenet5")
    mnist = load_mnist(mnist_dir, progress=False)
    logits = models.open_model(path).logits(
        normalize(mnist["test_images"]), 1000
    )  # as lenet5 predict: the numpy reference
    # float64 here, float32 in training: a borderline image or two may fall the other way
    assert abs((logits.argmax(1) == mnist["test_labels"]).sum() - round(record["test_accuracy"] * 10_000)) <= 2


@pytest.fixture(scope="module")
def digits(mnist_dir, tmp_path_factory):
    """Ten test digits as pictures, dark ink on white as people write, named by their labels."""
    mnist = load_mnist(mnist_dir, progress=False)
    return write_pictures(mnist["test_images"][:10], mnist["test_labels"][:10], tmp_path_factory.mktemp("digits"))


def labels_of(pictures):
    return [p.stem.rsplit("-", 1)[-1] for p in pictures]


def test_predict_with_no_run_uses_the_shipped_model_and_says_so(digits):
    proc = bare("predict", *digits, "--format", "json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"lenet5 predict: no run given: {pretrained.describe()}"]
    assert [r["predictions"][0]["class"] for r in json.loads(proc.stdout)] == labels_of(digits)


def test_serve_with_no_run_serves_the_shipped_model(digits):
    server = subprocess.Popen(
        [*BARE, "-m", "lenet5", "serve", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        line = server.stdout.readline()
        assert line.startswith(f"serving {pretrained.describe()} at http://127.0.0.1:"), line
        url = line.split(" at ")[-1].split()[0]
        with urllib.request.urlopen(url + "api/model", timeout=30) as reply:
            assert json.load(reply)["what"] == pretrained.describe()
        request = urllib.request.Request(url + "api/predict", data=digits[0].read_bytes(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert json.load(reply)["prediction"] == labels_of(digits)[0]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_train_then_predict_through_the_command(mnist_dir, digits, tmp_path):
    args = ["--epochs", "1", "--limit-train", "4096", "--val-size", "0", "--limit-test", "500", "--no-progress"]
    args += ["--data-dir", mnist_dir, "--output-dir", tmp_path, "--run-name", "first"]
    proc = bare("train", "--framework", "pytorch", *args)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "first" / "result.json").read_text())
    assert result["framework"] == "pytorch" and result["test_accuracy"] > 0.5  # chance is 0.1
    proc = bare("predict", tmp_path / "first", *digits, "--format", "csv", "--no-progress")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert len(proc.stdout.splitlines()) == 1 + len(digits)
    assert os.path.getsize(tmp_path / "first" / "model.pt") > 0


def doc_table(header):
    """{first cell: second cell} of docs/command.md's table headed `header` (code font taken off)."""
    rows = table_rows(ROOT / "docs" / "command.md", [cell.strip() for cell in header.strip("|").split("|")])
    return {cells[0].strip("`"): cells[1].strip("`") for cells in rows}


def test_the_docs_modes_table_is_the_command():
    table = doc_table("| mode | runs | what it does |")
    assert list(table) == list(command.MODES)
    for mode, (module, _) in command.MODES.items():
        assert table[mode] == (f"python -m {module}" if module else "train_<framework>/train.py")


def test_the_docs_pythons_table_is_the_code():
    table = doc_table("| environment | Pythons | why |")
    dotted = {f: f"{low[0]}.{low[1]} to {high[0]}.{high[1]}" for f, (low, high) in envs.PYTHONS.items()}
    assert table == dotted
