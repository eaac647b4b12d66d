"""PyTorch: the model against the paper and the numpy reference, and train.py end to end on real MNIST."""
import numpy as np
import pytest
import torch

from conftest import ROOT, read_json, read_metrics
from lenet5 import reference
from lenet5.config import ACTIVATIONS, POOLINGS, Config, expected_num_params
from lenet5.run import METRICS
from model_pytorch import LeNet5

CELLS = [(p, a) for p in POOLINGS for a in ACTIVATIONS]


@pytest.mark.parametrize("pooling, activation", CELLS)
def test_model_matches_the_paper_and_the_numpy_reference(pooling, activation):
    torch.manual_seed(0)
    model = LeNet5(pooling=pooling, activation=activation).eval()
    assert sum(p.numel() for p in model.parameters()) == expected_num_params() == 61_706
    x = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    assert logits.shape == (8, 10)
    params = {k: v.numpy() for k, v in model.state_dict().items()}
    np.testing.assert_allclose(logits, reference.forward(params, x, pooling, activation), atol=1e-4)


def test_model_options():
    assert LeNet5(num_classes=26).output.out_features == 26
    with pytest.raises(ValueError, match="unknown pooling 'min'; choose one of: max, avg"):
        LeNet5(pooling="min")
    with pytest.raises(ValueError, match="unknown activation 'elu'; choose one of: relu, leakyrelu"):
        LeNet5(activation="elu")


def test_one_epoch_of_the_default_recipe_reaches_97_percent(train):
    _, run_dir = train("pytorch", "--epochs", "1")
    result = read_json(run_dir / "result.json")
    assert result["test_accuracy"] >= 0.97, result
    assert result["config"]["batch_size"] == 256 and result["epochs"] == 1


def test_smoke_run_writes_every_file(train):
    proc, run_dir = train("pytorch", "--epochs", "2", "--limit-train", "512", "--val-size", "256",
                          "--limit-test", "500")
    assert "test accuracy" in proc.stdout and proc.stdout.count("epoch ") == 2
    config = read_json(run_dir / "config.json")
    assert set(config) == set(Config().to_dict()) and config["framework"] == "pytorch"
    rows = read_metrics(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2] and tuple(rows[0]) == METRICS
    result = read_json(run_dir / "result.json")
    for key in ("framework", "framework_version", "python_version", "config", "test_accuracy",
                "test_loss", "train_seconds", "num_params"):
        assert key in result
    assert result["framework_version"] == torch.__version__ and result["num_params"] == 61_706
    assert 0 <= result["test_accuracy"] <= 1
    # Native checkpoints, opened with PyTorch's own tools and the model class alone.
    model = LeNet5()
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    assert read_json(run_dir / "checkpoint.json")["files"] == ["checkpoint-epoch0002.pt"]
    assert not (run_dir / "checkpoint-epoch0001.pt").exists()
    checkpoint = torch.load(run_dir / "checkpoint-epoch0002.pt", weights_only=True)
    assert "state" in checkpoint["optimizer"]
    assert torch.equal(checkpoint["model"]["c1.weight"], model.c1.weight)


def test_resume_continues_to_the_same_metrics_as_an_uninterrupted_run(train, interrupted_run):
    args = ["--epochs", "3", "--limit-train", "4096", "--val-size", "512", "--limit-test", "500"]
    _, whole = train("pytorch", *args, run_name="whole")
    part = interrupted_run("pytorch", *args)
    proc, _ = train("pytorch", "--resume", str(part), run_name=None)
    assert "epoch   3/3" in proc.stdout and "epoch   1/3" not in proc.stdout
    without_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert without_time(read_metrics(part)) == without_time(read_metrics(whole))
    assert read_json(part / "result.json")["test_accuracy"] == read_json(whole / "result.json")["test_accuracy"]


def test_same_seed_same_metrics_other_seed_other_metrics(train):
    args = ["--epochs", "1", "--limit-train", "1024", "--val-size", "512", "--limit-test", "500"]
    drop_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    runs = [drop_time(read_metrics(train("pytorch", *args, "--seed", s, run_name=f"s{s}-{i}")[1]))
            for i, s in enumerate(["7", "7", "8"])]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_runs_from_its_own_folder_and_refuses_bad_input(train, tmp_path):
    proc, run_dir = train("pytorch", "--epochs", "1", "--limit-train", "256", "--val-size", "0",
                          "--limit-test", "100", cwd=ROOT / "train_pytorch")
    assert (run_dir / "result.json").exists() and "no validation" in proc.stdout
    proc, _ = train("pytorch", "--epochs", "1", "--limit-train", "256", check=False)  # same --run-name again
    assert proc.returncode != 0 and "already exists" in proc.stderr and proc.stderr.count("\n") == 1
    assert read_json(run_dir / "result.json")["config"]["val_size"] == 0  # untouched
    proc, _ = train("pytorch", "--pooling", "median", check=False)
    assert proc.returncode == 2 and "invalid choice: 'median'" in proc.stderr
