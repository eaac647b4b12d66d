"""MXNet (Gluon): the model against the paper and the numpy reference, native checkpoints, the
import-failure message, and the shared train.py contract (train_contract.py) on real MNIST."""

import pickle
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from conftest import ROOT, read_json
from mxnet import autograd
from predict_contract import *  # noqa: F401,F403 - predict with this framework's runs
from train_contract import *  # noqa: F401,F403 - the tests every framework passes

from lenet5.config import ACTIVATIONS, POOLINGS, Config
from lenet5.data.splits import load_splits
from lenet5.network import lecun98, reference, sdlm
from lenet5.network.shapes import expected_num_params
from model_mxnet import LeCun98, LeNet5, num_params
from model_mxnet.convert import to_neutral
from train_mxnet.sdlm import SDLM, estimate_hessian
from train_mxnet.train import loss_of, make_optimizer

FRAMEWORK = "mxnet"


@pytest.fixture
def has_gpu():
    return mx.context.num_gpus() > 0


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("hybridize", [False, True])
def test_model_matches_the_paper_and_the_numpy_reference(pooling, activation, hybridize):
    mx.random.seed(0)
    model = LeNet5(pooling=pooling, activation=activation)
    model.initialize()
    if hybridize:
        model.hybridize(static_alloc=True, static_shape=True)
    assert sum(p.data().size for p in model.collect_params().values()) == expected_num_params() == 61_706
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    logits = model(mx.nd.array(x)).asnumpy()
    assert logits.shape == (8, 10)
    np.testing.assert_allclose(logits, reference.forward(to_neutral(model), x, pooling, activation), atol=1e-4)


def test_model_options():
    model = LeNet5(num_classes=26)
    model.initialize()
    assert model(mx.nd.zeros((1, 1, 28, 28))).shape == (1, 26)
    with pytest.raises(ValueError, match="unknown pooling 'min'; choose one of: max, avg"):
        LeNet5(pooling="min")
    with pytest.raises(ValueError, match="unknown activation 'elu'; choose one of: relu, leakyrelu"):
        LeNet5(activation="elu")


def test_native_checkpoints_open_with_mxnet_alone(train, mnist_dir, tmp_path):
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
    test = load_splits(0, limit_test=500, data_dir=mnist_dir, progress=False).test
    np.save(tmp_path / "x.npy", test.x)
    np.save(tmp_path / "y.npy", test.y)
    # A user's script that imports nothing of this project: the exported symbol and parameters.
    script = (
        "import sys, mxnet as mx, numpy as np\n"
        "net = mx.gluon.SymbolBlock.imports(sys.argv[1] + '-symbol.json', ['data'], sys.argv[1] + '-0000.params')\n"
        "x, y = np.load(sys.argv[2]), np.load(sys.argv[3])\n"
        "print((net(mx.nd.array(x)).asnumpy().argmax(1) == y).mean())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(run_dir / "model"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert float(out) == read_json(run_dir / "result.json")["test_accuracy"]
    model = LeNet5(pooling="avg", activation="tanh")
    model.load_parameters(str(run_dir / "model.params"))
    accuracy = (model(mx.nd.array(test.x)).asnumpy().argmax(1) == test.y).mean()
    assert accuracy == read_json(run_dir / "result.json")["test_accuracy"]
    # The checkpoint, by MXNet's own loaders: the parameters (those of the end of the one epoch) and
    # the Trainer's Adam state, a first and second moment per parameter.
    params, states = read_json(run_dir / "checkpoint.json")["files"]
    saved = mx.nd.load(str(run_dir / params))
    assert np.array_equal(saved["c1.weight"].asnumpy(), model.c1.weight.data().asnumpy())
    trainer = mx.gluon.Trainer(model.collect_params(), "adam")
    trainer.load_states(str(run_dir / states))
    moments = trainer._updaters[0].states
    assert len(moments) == len(saved) and all(len(moment) == 2 for moment in moments.values())


def test_import_failure_names_the_fix(tmp_path):
    # numpy 1.24 removed np.bool, which MXNet 1.9.1 uses on import: take it away here too.
    script = (
        "import numpy, runpy, sys\n"
        "numpy.__deprecated_attrs__.pop('bool', None)\n"
        "sys.argv = ['train.py']\n"
        f"runpy.run_path({str(ROOT / 'train_mxnet' / 'train.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot import MXNet" in proc.stderr and "numpy==1.23.5" in proc.stderr


def test_lecun98_has_the_papers_parameters_and_matches_the_numpy_reference():
    mx.random.seed(0)
    model = LeCun98()
    model.initialize()
    model.hybridize(static_alloc=True, static_shape=True)
    per_layer = {
        name: sum(p.data().size for p in getattr(model, name).collect_params().values() if p.grad_req != "null")
        for name in lecun98.LAYERS
    }
    per_layer["c3"] -= int((lecun98.C3_MASK == 0).sum())  # held at zero: not parameters
    assert per_layer == lecun98.layer_params() and num_params(model) == 60_000
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = np.arange(8) % 10
    with autograd.record():
        out = model(mx.nd.array(x))
        loss = loss_of(out, mx.nd.array(y), "lecun98")  # the paper's MAP loss, per image
    np.testing.assert_allclose(out.asnumpy(), reference.forward(to_neutral(model), x, arch="lecun98"), atol=1e-4)
    np.testing.assert_allclose(loss.asnumpy(), lecun98.map_loss(out.asnumpy(), y), rtol=1e-5)
    loss.backward()
    assert (model.c3.weight.grad().asnumpy()[~lecun98.CONNECTED] == 0).all()  # Table I's gaps learn nothing


def test_sdlm_steps_by_the_papers_hessian_as_numpy_computes_it(mnist_dir):
    split = load_splits(0, limit_train=600, limit_test=1, data_dir=mnist_dir, progress=False).train
    mx.random.seed(0)
    model = LeCun98(init="sqrt-fan-in")  # every layer's h well above float32's rounding
    model.initialize()
    cfg = Config(arch="lecun98", optimizer="sdlm", lr=1e-2, mu=0.05)
    trainer = make_optimizer(cfg, model)
    estimate_hessian(model, trainer, split, cfg, 1, mx.cpu())
    hessians = trainer.optimizer.hessians
    h = {p: hessians[i].asnumpy() for i, p in trainer.optimizer.param_dict.items() if i in hessians}
    expected = sdlm.paper_hessian(to_neutral(model), sdlm.samples(split, 0, 1))
    assert len(h) == len(expected)
    for name, value in expected.items():
        layer, kind = name.split(".")
        got = h[getattr(getattr(model, layer), kind)]
        np.testing.assert_allclose(got, value, rtol=1e-3, atol=1e-3 * np.abs(value).max(), err_msg=name)

    before = {p: p.data().asnumpy() for p in h}
    with autograd.record():
        loss = loss_of(model(mx.nd.array(split.x[:4])), mx.nd.array(split.y[:4]), "lecun98").sum()
    loss.backward()
    trainer.step(1)  # each parameter by lr / (mu + h) times its gradient
    for p, old in before.items():
        step = 1e-2 * p.grad().asnumpy() / (h[p] + 0.05)
        np.testing.assert_allclose(old - p.data().asnumpy(), step, rtol=1e-3, atol=1e-6, err_msg=p.name)


def test_a_checkpointed_sdlm_keeps_its_mu_and_one_pickled_before_mu_steps_by_the_papers():
    """Trainer.save_states pickles the optimizer, and load_states puts the unpickled one in place."""
    assert pickle.loads(pickle.dumps(SDLM(mu=0.04))).mu == 0.04
    old = SDLM(mu=0.04)
    del old.mu  # as an optimizer pickled before --mu: no mu of its own
    assert pickle.loads(pickle.dumps(old)).mu == Config.mu == 0.02
