"""PyTorch: the model against the paper and the numpy reference, native checkpoints, and the
shared train.py contract (train_contract.py) on real MNIST."""

import numpy as np
import pytest
import torch
from conftest import read_json
from train_contract import *  # noqa: F401,F403 - the tests every framework passes

from lenet5.config import ACTIVATIONS, POOLINGS, Config
from lenet5.data.splits import batches, load_splits
from lenet5.network import lecun98, reference, sdlm
from lenet5.network.shapes import expected_num_params
from model_pytorch import LeCun98, LeNet5, num_params
from model_pytorch.convert import to_neutral
from train_pytorch.data import on_device
from train_pytorch.sdlm import SDLM, estimate_hessian
from train_pytorch.train import loss_of

FRAMEWORK = "pytorch"


@pytest.fixture
def has_gpu():
    return torch.cuda.is_available()


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_model_matches_the_paper_and_the_numpy_reference(pooling, activation):
    torch.manual_seed(0)
    model = LeNet5(pooling=pooling, activation=activation).eval()
    assert sum(p.numel() for p in model.parameters()) == expected_num_params() == 61_706
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    assert logits.shape == (8, 10)
    np.testing.assert_allclose(logits, reference.forward(to_neutral(model), x, pooling, activation), atol=1e-4)


def test_model_options():
    assert LeNet5(num_classes=26).output.out_features == 26
    with pytest.raises(ValueError, match="unknown pooling 'min'; choose one of: max, avg"):
        LeNet5(pooling="min")
    with pytest.raises(ValueError, match="unknown activation 'elu'; choose one of: relu, leakyrelu"):
        LeNet5(activation="elu")


def test_native_checkpoints_open_with_pytorch_alone(train, mnist_dir):
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
    model = LeNet5(pooling="avg", activation="tanh").eval()
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    test = load_splits(0, limit_test=500, data_dir=mnist_dir, progress=False).test
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(test.x)).argmax(1).numpy() == test.y).mean()
    assert accuracy == read_json(run_dir / "result.json")["test_accuracy"]
    (name,) = read_json(run_dir / "checkpoint.json")["files"]
    checkpoint = torch.load(run_dir / name, weights_only=True)
    assert "state" in checkpoint["optimizer"] and torch.equal(checkpoint["model"]["c1.weight"], model.c1.weight)


def test_lecun98_has_the_papers_parameters_and_matches_the_numpy_reference():
    torch.manual_seed(0)
    model = LeCun98().eval()
    per_layer = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in lecun98.LAYERS}
    per_layer["c3"] -= int((model.c3.mask == 0).sum())  # held at zero: not parameters
    assert per_layer == lecun98.layer_params() and num_params(model) == 60_000
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = torch.arange(8) % 10
    out = model(torch.from_numpy(x))
    np.testing.assert_allclose(out.detach().numpy(), reference.forward(to_neutral(model), x, arch="lecun98"), atol=1e-4)
    loss = loss_of(out, y, "lecun98")  # the paper's MAP loss
    assert loss.item() == pytest.approx(lecun98.map_loss(out.detach().numpy(), y.numpy()).mean(), rel=1e-5)
    loss.backward()
    assert (model.c3.weight.grad.numpy()[~lecun98.CONNECTED] == 0).all()  # Table I's gaps learn nothing


def test_sdlm_steps_by_the_papers_hessian_as_numpy_computes_it(mnist_dir):
    split = load_splits(0, limit_train=600, limit_test=1, data_dir=mnist_dir, progress=False).train
    torch.manual_seed(0)
    model = LeCun98(init="sqrt-fan-in")  # every layer's h well above float32's rounding
    optimizer = SDLM(model.parameters(), 1e-2, mu=0.05)
    estimate_hessian(model, optimizer, split, Config(arch="lecun98", optimizer="sdlm"), 1, "cpu")
    h = {name: optimizer.state[p]["hessian"].numpy() for name, p in model.named_parameters()}
    expected = sdlm.paper_hessian(to_neutral(model), sdlm.samples(split, 0, 1))
    assert h.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(h[name], value, rtol=1e-3, atol=1e-3 * np.abs(value).max(), err_msg=name)

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss_of(model(torch.from_numpy(split.x[:4])), torch.from_numpy(split.y[:4]), "lecun98", reduction="sum").backward()
    optimizer.step()  # each parameter by lr / (mu + h) times its gradient
    for name, p in model.named_parameters():
        step = 1e-2 * p.grad.numpy() / (h[name] + 0.05)
        np.testing.assert_allclose((before[name] - p.detach()).numpy(), step, rtol=1e-3, atol=1e-6, err_msg=name)


def test_the_split_kept_on_the_device_gives_the_host_paths_batches(mnist_dir):
    """train.py uploads the training split once and indexes it there: the same batches, in the same
    (seed, epoch) order, as lenet5.data.splits.batches, from any batch of an epoch (a resume), the
    last, smaller one included (1,000 images in batches of 96)."""
    split = load_splits(0, limit_train=1000, limit_test=1, data_dir=mnist_dir, progress=False).train
    kept = on_device(split, torch.device("cpu"))
    for skip in (0, 7):
        host = list(batches(split, 96, seed=(3, 2), skip=skip))
        there = list(kept(96, (3, 2), skip))
        assert len(there) == len(host) == 11 - skip and len(there[-1][1]) == 1000 - 10 * 96
        for (x, y), (x_there, y_there) in zip(host, there):
            assert np.array_equal(x, x_there.numpy()) and np.array_equal(y, y_there.numpy())
