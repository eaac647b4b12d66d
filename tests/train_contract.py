"""What every framework's train.py must do, end to end on real MNIST, with the same command line.

Each tests/<framework>/test_<framework>.py sets FRAMEWORK and does `from train_contract import *`,
so the three run the very same checks; their own files add the framework-specific ones.
"""

import math
import signal

import numpy as np
import pytest
from conftest import ROOT, read_json, read_metrics, read_scalars

from lenet5.config import Config
from lenet5.data import load_splits
from lenet5.runfolder import METRIC_COLUMNS, PREDICTIONS

SMALL = ["--limit-train", "4096", "--val-size", "512", "--limit-test", "500"]


@pytest.fixture
def framework(request):
    return request.module.FRAMEWORK


def without_time(rows):
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows]


def test_one_epoch_of_the_default_recipe_reaches_97_percent(train, framework):
    proc, run_dir = train(framework, "--epochs", "1")
    result = read_json(run_dir / "result.json")
    assert result["test_accuracy"] >= 0.97, proc.stdout
    assert result["config"]["batch_size"] == 256 and result["epochs"] == 1
    assert f"test accuracy {result['test_accuracy']:.2%}" in proc.stdout


def test_smoke_run_writes_every_file(train, framework, mnist_dir):
    proc, run_dir = train(framework, "--epochs", "2", *SMALL, "--tensorboard", "--threads", "1")
    assert proc.stdout.count("\nepoch ") == 2 and "test accuracy" in proc.stdout
    assert "(1 threads)" in proc.stdout.splitlines()[0]  # MXNet: through OMP_NUM_THREADS, before its import
    config = read_json(run_dir / "config.json")
    assert set(config) == set(Config().to_dict()) and config["framework"] == framework
    rows = read_metrics(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2] and tuple(rows[0]) == METRIC_COLUMNS
    result = read_json(run_dir / "result.json")
    for key in (
        "framework",
        "framework_version",
        "python_version",
        "config",
        "test_accuracy",
        "test_loss",
        "train_seconds",
        "num_params",
    ):
        assert key in result
    assert result["framework"] == framework and result["num_params"] == 61_706
    assert read_json(run_dir / "classes.json") == [str(digit) for digit in range(10)]  # for predict
    assert 0 < result["test_accuracy"] <= 1 and result["config"] == config
    checkpoint = read_json(run_dir / "checkpoint.json")
    assert checkpoint["epoch"] == 2 and checkpoint["files"]
    for name in checkpoint["files"]:
        assert name.startswith("checkpoint-epoch0002") and (run_dir / name).stat().st_size > 0
    assert not list(run_dir.glob("checkpoint-epoch0001*"))  # the previous epoch's are gone
    with np.load(run_dir / PREDICTIONS) as predictions:  # every test image, in order
        test = load_splits(0, limit_test=500, data_dir=mnist_dir, progress=False).test
        assert predictions["label"].tolist() == test.y.tolist() and predictions["probability"].shape == (500, 10)
        assert (predictions["prediction"] == test.y).mean() == result["test_accuracy"]
        assert (predictions["logits"].argmax(axis=1) == predictions["prediction"]).all()
    scalars = read_scalars(run_dir / "tensorboard")
    assert [step for step, tag, _ in scalars if tag == "accuracy/val"] == [1, 2]
    assert (2, "test/accuracy", pytest.approx(result["test_accuracy"])) in scalars


@pytest.mark.parametrize("every", ["0", "5"])  # checkpoints at epoch ends only, or every 5 steps too
def test_resume_after_a_kill_gives_the_metrics_of_an_uninterrupted_run(train, interrupted_run, framework, every):
    args = ["--epochs", "3", *SMALL]
    _, whole = train(framework, *args, run_name="whole")
    part = interrupted_run(framework, *args, "--checkpoint-every", every)
    checkpoint = read_json(part / "checkpoint.json")
    assert (checkpoint["partial"] is not None) == (every != "0")  # killed inside an epoch, or after one
    proc, _ = train(framework, "--resume", str(part), run_name=None)
    first = checkpoint["partial"]["epoch"] if checkpoint["partial"] else checkpoint["epoch"] + 1
    assert proc.stdout.count("\nepoch ") == 3 - first + 1  # only the epochs not yet done
    assert without_time(read_metrics(part)) == without_time(read_metrics(whole))
    assert read_json(part / "result.json")["test_accuracy"] == read_json(whole / "result.json")["test_accuracy"]


def test_same_seed_same_metrics_other_seed_other_metrics(train, framework):
    runs = [
        without_time(
            read_metrics(train(framework, "--epochs", "1", *SMALL, "--seed", seed, run_name=f"seed{seed}-{i}")[1])
        )
        for i, seed in enumerate(["7", "7", "8"])
    ]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_runs_from_its_own_folder_and_refuses_bad_input(train, framework):
    proc, run_dir = train(
        framework,
        "--epochs",
        "1",
        "--limit-train",
        "256",
        "--val-size",
        "0",
        "--limit-test",
        "100",
        cwd=ROOT / f"train_{framework}",
    )
    assert (run_dir / "result.json").exists() and "no validation" in proc.stdout
    before = (run_dir / "result.json").read_bytes()
    proc, _ = train(framework, "--epochs", "1", "--limit-train", "256", check=False)  # same --run-name
    assert proc.returncode != 0 and "already exists" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr  # one line
    assert (run_dir / "result.json").read_bytes() == before
    proc, _ = train(framework, "--pooling", "median", check=False)
    assert proc.returncode == 2 and "invalid choice: 'median'" in proc.stderr


def test_device_gpu_says_clearly_when_there_is_none(train, framework, has_gpu):
    if has_gpu:
        pytest.skip("a GPU is visible: --device gpu is valid here")
    proc, _ = train(framework, "--device", "gpu", "--epochs", "1", *SMALL, check=False)
    assert proc.returncode != 0 and "--device gpu:" in proc.stderr and "sees no" in proc.stderr


def test_a_diverging_loss_stops_the_run_naming_epoch_and_step(train, framework):
    proc, run_dir = train(framework, "--epochs", "2", "--optimizer", "sgd", "--lr", "1e4", *SMALL, check=False)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "the training loss became" in proc.stderr and "in epoch 1, step" in proc.stderr
    assert not (run_dir / "checkpoint.json").exists() and not (run_dir / "result.json").exists()
    # Checkpoints every 3 steps: none may be written once the loss has gone bad.
    proc, run_dir = train(
        framework,
        "--epochs",
        "1",
        "--optimizer",
        "sgd",
        "--lr",
        "1e4",
        "--checkpoint-every",
        "3",
        *SMALL,
        check=False,
        run_name="every3",
    )
    assert proc.returncode == 1 and "the training loss became" in proc.stderr
    if (run_dir / "checkpoint.json").exists():  # one from before the loss went bad
        assert math.isfinite(read_json(run_dir / "checkpoint.json")["partial"]["loss_sum"])


def test_a_damaged_checkpoint_is_refused_and_nothing_is_overwritten(train, framework):
    _, run_dir = train(framework, "--epochs", "1", *SMALL)
    for name in read_json(run_dir / "checkpoint.json")["files"]:
        path = run_dir / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    proc, _ = train(framework, "--resume", str(run_dir), "--epochs", "2", run_name=None, check=False)
    assert proc.returncode == 1 and "--resume: cannot load" in proc.stderr, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_ctrl_c_checkpoints_at_once_and_the_run_resumes_to_the_same_metrics(train, interrupted_run, framework):
    args = ["--epochs", "3", *SMALL]
    _, whole = train(framework, *args, run_name="whole")
    part = interrupted_run(framework, *args, signal_=signal.SIGINT)  # after epoch 1's checkpoint
    stderr = (part.parent.parent / "interrupted.stderr").read_text()
    assert "interrupted; the checkpoint at epoch 2, step" in stderr and "Traceback" not in stderr, stderr
    assert read_json(part / "checkpoint.json")["partial"]["epoch"] == 2  # taken at the next step
    proc, _ = train(framework, "--resume", str(part), run_name=None)
    assert "epoch   2/3" in proc.stdout and "epoch   1/3" not in proc.stdout
    assert without_time(read_metrics(part)) == without_time(read_metrics(whole))
