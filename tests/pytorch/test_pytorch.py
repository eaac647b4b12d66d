"""PyTorch: the model against the paper and the numpy reference, native checkpoints, and the
shared train.py contract (train_contract.py) on real MNIST."""

import numpy as np
import pytest
import torch
from conftest import read_json
from train_contract import *  # noqa: F401,F403 - the tests every framework passes

from lenet5 import reference
from lenet5.config import ACTIVATIONS, POOLINGS, expected_num_params
from lenet5.data import load_splits
from model_pytorch import LeNet5
from model_pytorch.convert import to_neutral

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
