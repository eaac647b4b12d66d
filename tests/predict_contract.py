"""predict with a run of another framework than PyTorch (whose own tests/pytorch/test_predict.py
goes further): in this environment, and from PyTorch's (which runs the model in this one through
lenet5.envs.call); its answers against the framework's own saved model, opened as a user would
(model_<framework>.convert.native_logits).

tests/tensorflow/ and tests/mxnet/ do `from predict_contract import *` beside train_contract."""

import csv
import importlib
import io
import subprocess

import numpy as np
from conftest import need
from digit_pictures import write_pictures

from lenet5 import predict
from lenet5.data.download import load_mnist
from lenet5.data.images import load_image, to_mnist
from lenet5.data.splits import normalize
from lenet5.envs import env_python
from lenet5.network import weights
from lenet5.training.runfolder import RunFolder

OTHER = "pytorch"  # the environment predict is started from, to re-run itself in this one
__all__ = ["test_predict_opens_a_run_here_and_from_another_environment"]


def test_predict_opens_a_run_here_and_from_another_environment(train, framework, mnist_dir, tmp_path, capsys):
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
    own = native_logits(RunFolder(run_dir).final_model(framework), weights.load(run_dir / weights.FILENAME)[1], x)
    assert top1 == [str(c) for c in own.argmax(1)]

    need(env_python(OTHER).exists(), f"no {OTHER} environment to start predict from")
    elsewhere = subprocess.run(
        [str(env_python(OTHER)), "-m", "lenet5.predict", *argv], cwd=tmp_path, capture_output=True, text=True
    )  # runs the model in this environment, in a fresh process
    assert elsewhere.returncode == 0, elsewhere.stderr
    # The same classes, and the probabilities as printed (6 decimals) but for the last digit: a
    # process whose thread pools differ (this one trained first) may run other convolution kernels,
    # which sum in another order (in CI, MXNet's output once differed; a rounding is the likely cause).
    rows, expected = (list(csv.DictReader(io.StringIO(text))) for text in (elsewhere.stdout, here))
    assert [r["class_1"] for r in rows] == top1 and [r["input"] for r in rows] == [r["input"] for r in expected]
    probabilities = [[float(r["probability_1"]) for r in table] for table in (rows, expected)]
    assert np.allclose(*probabilities, rtol=0, atol=2e-6)
