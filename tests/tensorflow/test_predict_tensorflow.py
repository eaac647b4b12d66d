"""predict with a TensorFlow (Keras 3) run: here, from another framework's environment, and
through train_tensorflow/predict.py; its answers against the Keras model's own."""
import csv
import io
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ROOT
from digit_pictures import write_pictures
from lenet5 import predict
from lenet5.data import load_mnist, normalize
from lenet5.envs import env_python
from lenet5.images import load_image, to_mnist

FRAMEWORK, OTHER = "tensorflow", "pytorch"


def test_predict_opens_a_tensorflow_run_here_elsewhere_and_by_its_own_script(train, mnist_dir, tmp_path, capsys):
    _, run_dir = train(FRAMEWORK, "--epochs", "1", "--limit-train", "8192", "--val-size", "0", "--limit-test", "100")
    mnist = load_mnist(mnist_dir, progress=False)
    pictures = write_pictures(mnist["test_images"][:50], mnist["test_labels"][:50], tmp_path / "pictures")
    argv = [str(run_dir), str(tmp_path / "pictures"), "--format", "csv", "--top-k", "1", "--no-progress"]
    assert predict.main(argv) == 0
    here = capsys.readouterr().out
    top1 = [row["class_1"] for row in csv.DictReader(io.StringIO(here))]
    assert np.mean([c == str(y) for c, y in zip(top1, mnist["test_labels"][:50])]) >= 0.8
    # The Keras model itself, channels last, on the same preprocessed digits.
    x = normalize(np.stack([to_mnist(load_image(p)) for p in pictures]), channels_last=True)
    own = keras.saving.load_model(run_dir / "model.keras").predict(x, verbose=0).argmax(1)
    assert top1 == [str(c) for c in own]

    script = subprocess.run([sys.executable, str(ROOT / f"train_{FRAMEWORK}" / "predict.py"), *argv],
                            cwd=tmp_path, capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout == here, script.stderr
    if not env_python(OTHER).exists():
        pytest.skip(f"no {OTHER} environment to start predict from")
    elsewhere = subprocess.run([str(env_python(OTHER)), "-m", "lenet5.predict", *argv], cwd=ROOT,
                               capture_output=True, text=True)  # re-runs itself in this environment
    assert elsewhere.returncode == 0 and elsewhere.stdout == here, elsewhere.stderr
