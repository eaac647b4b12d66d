"""predict with a run of another framework than PyTorch (whose own tests/pytorch/test_predict.py
goes further): in this environment, from PyTorch's (predict re-runs itself here), and through
train_<framework>/predict.py; its answers against the framework's own saved model, opened as a
user would (model_<framework>.convert.native_logits).

tests/tensorflow/ and tests/mxnet/ do `from predict_contract import *` beside train_contract."""
import csv
import importlib
import io
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from digit_pictures import write_pictures
from lenet5 import predict, weights
from lenet5.convert import FINAL
from lenet5.data import load_mnist, normalize
from lenet5.envs import env_python
from lenet5.images import load_image, to_mnist

OTHER = "pytorch"  # the environment predict is started from, to re-run itself in this one
__all__ = ["test_predict_opens_a_run_here_elsewhere_and_by_its_own_script"]


def test_predict_opens_a_run_here_elsewhere_and_by_its_own_script(train, framework, mnist_dir, tmp_path, capsys):
    _, run_dir = train(framework, "--epochs", "1", "--limit-train", "8192", "--val-size", "0", "--limit-test", "100")
    mnist = load_mnist(mnist_dir, progress=False)
    pictures = write_pictures(mnist["test_images"][:50], mnist["test_labels"][:50], tmp_path / "pictures")
    argv = [str(run_dir), str(tmp_path / "pictures"), "--format", "csv", "--top-k", "1", "--no-progress"]
    assert predict.main(argv) == 0
    here = capsys.readouterr().out
    top1 = [row["class_1"] for row in csv.DictReader(io.StringIO(here))]
    assert np.mean([c == str(y) for c, y in zip(top1, mnist["test_labels"][:50])]) >= 0.8
    # The framework's own saved model, without this project's model code, on the same digits.
    x = normalize(np.stack([to_mnist(load_image(p)) for p in pictures]))
    native_logits = importlib.import_module(f"model_{framework}.convert").native_logits
    own = native_logits(run_dir / FINAL[framework], weights.load(run_dir / weights.FILENAME)[1], x).argmax(1)
    assert top1 == [str(c) for c in own]

    script = subprocess.run([sys.executable, str(ROOT / f"train_{framework}" / "predict.py"), *argv],
                            cwd=tmp_path, capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout == here, script.stderr
    if not env_python(OTHER).exists():
        pytest.skip(f"no {OTHER} environment to start predict from")
    elsewhere = subprocess.run([str(env_python(OTHER)), "-m", "lenet5.predict", *argv], cwd=ROOT,
                               capture_output=True, text=True)  # re-runs itself in this environment
    assert elsewhere.returncode == 0 and elsewhere.stdout == here, elsewhere.stderr
