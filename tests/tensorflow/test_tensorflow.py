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

from lenet5.config import ACTIVATIONS, POOLINGS, Config
from lenet5.data.splits import load_splits
from lenet5.network import lecun98, reference, sdlm
from lenet5.network.shapes import expected_num_params
from model_tensorflow import LeCun98, LeNet5, num_params
from model_tensorflow.convert import to_neutral
from train_tensorflow.sdlm import SDLM, estimate_hessian
from train_tensorflow.train import loss_of

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


def test_lecun98_has_the_papers_parameters_and_matches_the_numpy_reference():
    keras.utils.set_random_seed(0)
    model = LeCun98()
    per_layer = {
        name: sum(int(np.prod(w.shape)) for w in model.get_layer(name).trainable_weights) for name in lecun98.LAYERS
    }
    per_layer["c3"] -= int((lecun98.C3_MASK == 0).sum())  # held at zero: not parameters
    assert per_layer == lecun98.layer_params() and num_params(model) == 60_000
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = np.arange(8) % 10
    with tf.GradientTape() as tape:
        out = model(x.transpose(0, 2, 3, 1), training=False)
        loss = loss_of(out, tf.constant(y), "lecun98")  # the paper's MAP loss, summed
    np.testing.assert_allclose(out.numpy(), reference.forward(to_neutral(model), x, arch="lecun98"), atol=1e-4)
    assert float(loss) == pytest.approx(lecun98.map_loss(out.numpy(), y).sum(), rel=1e-5)
    grad = tape.gradient(loss, model.get_layer("c3").kernel).numpy().transpose(3, 2, 0, 1)
    assert (grad[~lecun98.CONNECTED] == 0).all()  # Table I's gaps learn nothing


def test_sdlm_steps_by_the_papers_hessian_as_numpy_computes_it(mnist_dir):
    split = load_splits(0, limit_train=600, limit_test=1, channels_last=True, data_dir=mnist_dir, progress=False).train
    keras.utils.set_random_seed(0)
    model = LeCun98(init="sqrt-fan-in")  # every layer's h well above float32's rounding
    optimizer = SDLM(learning_rate=1e-2, mu=0.05)
    estimate_hessian(model, optimizer, split, Config(arch="lecun98", optimizer="sdlm"), 1)
    diagonals = {id(v): h.numpy() for v, h in zip(model.trainable_variables, optimizer.hessians, strict=True)}
    x = sdlm.samples(split, 0, 1).transpose(0, 3, 1, 2)  # channels first, as the neutral layout
    expected = sdlm.paper_hessian(to_neutral(model), x)
    assert len(diagonals) == len(expected)
    for name, value in expected.items():
        layer, kind = name.split(".")
        got = diagonals[id(getattr(model.get_layer(layer), "kernel" if kind == "weight" else "bias"))]
        got = got.transpose(3, 2, 0, 1) if got.ndim == 4 else got.T
        np.testing.assert_allclose(got, value, rtol=1e-3, atol=1e-3 * np.abs(value).max(), err_msg=name)

    before = [v.numpy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        loss = loss_of(model(split.x[:4]), tf.constant(split.y[:4]), "lecun98")
    gradients = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))  # each by lr / (mu + h) times its gradient
    for v, old, g, h in zip(model.trainable_variables, before, gradients, optimizer.hessians, strict=True):
        step = 1e-2 * g.numpy() / (h.numpy() + 0.05)
        np.testing.assert_allclose(old - v.numpy(), step, rtol=1e-3, atol=1e-6, err_msg=v.path)


def test_a_checkpointed_sdlm_keeps_its_mu_and_one_saved_before_mu_opens_with_the_papers():
    """load_checkpoint opens the .keras file, whose optimizer Keras rebuilds from its get_config."""
    config = SDLM(learning_rate=1e-3, mu=0.04).get_config()
    assert SDLM.from_config(config).mu == 0.04
    del config["mu"]  # as a checkpoint saved before --mu
    assert SDLM.from_config(config).mu == Config.mu == 0.02
