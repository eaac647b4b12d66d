"""TensorFlow (Keras 3): the model against the paper and the numpy reference, native checkpoints,
and the shared train.py contract (train_contract.py) on real MNIST."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import read_json
from predict_contract import *  # noqa: F401,F403 - predict with this framework's runs
from train_contract import *  # noqa: F401,F403 - the tests every framework passes

from lenet5 import reference
from lenet5.config import ACTIVATIONS, POOLINGS, expected_num_params
from lenet5.data import load_splits
from model_tensorflow import LeNet5
from model_tensorflow.convert import to_neutral

FRAMEWORK = "tensorflow"


@pytest.fixture
def has_gpu():
    return bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_model_matches_the_paper_and_the_numpy_reference(pooling, activation):
    keras.utils.set_random_seed(0)
    model = LeNet5(pooling=pooling, activation=activation)
    assert model.count_params() == expected_num_params() == 61_706
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    logits = model(x.transpose(0, 2, 3, 1), training=False).numpy()
    assert logits.shape == (8, 10)
    np.testing.assert_allclose(logits, reference.forward(to_neutral(model), x, pooling, activation), atol=1e-4)


def test_model_options():
    assert LeNet5(num_classes=26).get_layer("output").units == 26
    with pytest.raises(ValueError, match="unknown pooling 'min'; choose one of: max, avg"):
        LeNet5(pooling="min")
    with pytest.raises(ValueError, match="unknown activation 'elu'; choose one of: relu, leakyrelu"):
        LeNet5(activation="elu")


def test_native_checkpoints_open_with_keras_alone(train, mnist_dir, tmp_path):
    _, run_dir = train(
        FRAMEWORK,
        "--epochs",
        "1",
        "--limit-train",
        "2048",
        "--limit-test",
        "500",
        "--pooling",
        "avg",
        "--activation",
        "tanh",
    )
    test = load_splits(0, limit_test=500, channels_last=True, data_dir=mnist_dir, progress=False).test
    np.save(tmp_path / "x.npy", test.x)
    np.save(tmp_path / "y.npy", test.y)
    # A user's script that imports nothing of this project: keras.saving.load_model is enough.
    script = (
        "import sys, keras, numpy as np\n"
        "model = keras.saving.load_model(sys.argv[1])\n"
        "x, y = np.load(sys.argv[2]), np.load(sys.argv[3])\n"
        "print(model.count_params(), (model.predict(x, verbose=0).argmax(1) == y).mean())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(run_dir / "model.keras"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    count, accuracy = out.split()
    assert int(count) == 61_706 and float(accuracy) == read_json(run_dir / "result.json")["test_accuracy"]
    (name,) = read_json(run_dir / "checkpoint.json")["files"]
    checkpoint = keras.saving.load_model(run_dir / name)
    assert int(checkpoint.optimizer.iterations) == 8  # 2048 images / 256: the optimizer state came along
