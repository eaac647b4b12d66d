"""What every framework's train.py must do, end to end on real MNIST, with the same command line.

Each tests/<framework>/test_<framework>.py sets FRAMEWORK and does `from train_contract import *`,
so the three run the very same checks; their own files add the framework-specific ones.
"""

import importlib
import math
import shutil
import signal

import numpy as np
import pytest
from conftest import ROOT, read_json, read_metrics, read_scalars, train_in
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lenet5.config import RECIPES, Config
from lenet5.data.splits import load_splits
from lenet5.training.runfolder import METRIC_COLUMNS, PREDICTIONS

SMALL = ["--limit-train", "4096", "--val-size", "512", "--limit-test", "500"]


@pytest.fixture(scope="module")
def framework(request):
    return request.module.FRAMEWORK


@pytest.fixture(scope="module")
def whole(framework, mnist_dir, tmp_path_factory):
    """The uninterrupted 3-epoch run that the interrupted and resumed ones must end as: trained once."""
    return train_in(tmp_path_factory.mktemp("runs"), mnist_dir, framework, "--epochs", "3", *SMALL, run_name="whole")[1]


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


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_each_recipe_runs_with_its_options_in_config_json(train, framework, recipe):
    # One epoch of a few images, the recipe's other options (augmentation, dropout, ...) as they are.
    proc, run_dir = train(framework, "--recipe", recipe, "--epochs", "1", *SMALL)
    config = read_json(run_dir / "config.json")
    given = {"epochs": 1, "limit_train": 4096, "val_size": 512, "limit_test": 500}  # SMALL overrides the recipe
    assert config == {**config, **RECIPES[recipe], "recipe": recipe, **given}
    # the paper's recipes take small steps, one image each: after one pass, well above chance is enough
    enough = 0.3 if recipe.startswith("paper") else 0.5
    assert read_json(run_dir / "result.json")["test_accuracy"] > enough, proc.stdout


@pytest.mark.slow
def test_augmentation_dropout_smoothing_and_adamw_train_and_resume_to_the_same_metrics(
    train, interrupted_run, framework
):
    args = ["--epochs", "2", *SMALL, "--augment", "affine,elastic", "--dropout", "0.3", "--label-smoothing", "0.1"]
    args += ["--optimizer", "adamw", "--weight-decay", "0.05"]
    _, whole = train(framework, *args, run_name="whole")
    part = interrupted_run(framework, *args)  # killed after its first epoch
    train(framework, "--resume", str(part), run_name=None)
    assert without_time(read_metrics(part)) == without_time(read_metrics(whole))
    _, plain = train(framework, "--epochs", "2", *SMALL, run_name="plain")
    assert read_metrics(whole)[0]["train_loss"] != read_metrics(plain)[0]["train_loss"]  # the options did act


def test_the_papers_learning_rate_trains_one_image_a_step(train, framework):
    """--recipe paper at the paper's first rate, 0.0005, one image a step: its first 200 steps (two
    passes over 100 images) stay finite and the loss falls. With the initialisation as Appendix A
    writes it (--init fan-in), the same steps diverge (docs/lecun98.md)."""
    args = ["--recipe", "paper", "--epochs", "2", "--limit-train", "100", "--limit-test", "500"]
    _, run_dir = train(framework, *args)
    first, second = (float(row["train_loss"]) for row in read_metrics(run_dir))
    result = read_json(run_dir / "result.json")
    assert math.isfinite(result["test_loss"]) and second < first and result["test_loss"] < first
    assert result["test_accuracy"] > 0.3
    _, diverged = train(framework, *args, "--init", "fan-in", run_name="fan-in")
    assert read_json(diverged / "result.json")["test_accuracy"] < 0.2


@pytest.mark.slow
def test_lecun98_with_sdlm_resumed_inside_an_epoch_ends_with_the_metrics_of_an_uninterrupted_run(
    train, interrupted_run, framework
):
    # The paper's network and optimizer: the Hessian diagonal SDLM steps by is in the checkpoint.
    args = ["--recipe", "paper", "--epochs", "2", *SMALL, "--limit-train", "1000"]  # 1,000 steps an epoch
    proc, whole = train(framework, *args, run_name="whole")
    assert "60,000 parameters" in proc.stdout
    part = interrupted_run(framework, *args, "--checkpoint-every", "300")
    assert read_json(part / "checkpoint.json")["partial"] is not None  # killed inside the first epoch
    train(framework, "--resume", str(part), run_name=None)
    assert without_time(read_metrics(part)) == without_time(read_metrics(whole))
    assert read_json(part / "result.json")["test_accuracy"] == read_json(whole / "result.json")["test_accuracy"]


@pytest.mark.parametrize("every", ["0", "5"])  # checkpoints at epoch ends only, or every 5 steps too
def test_resume_after_a_kill_gives_the_metrics_of_an_uninterrupted_run(train, interrupted_run, framework, whole, every):
    args = ["--epochs", "3", *SMALL]
    part = interrupted_run(framework, *args, "--checkpoint-every", every)
    checkpoint = read_json(part / "checkpoint.json")
    assert (checkpoint["partial"] is not None) == (every != "0")  # killed inside an epoch, or after one
    proc, _ = train(framework, "--resume", str(part), run_name=None)
    first = checkpoint["partial"]["epoch"] if checkpoint["partial"] else checkpoint["epoch"] + 1
    assert proc.stdout.count("\nepoch ") == 3 - first + 1  # only the epochs not yet done
    assert without_time(read_metrics(part)) == without_time(read_metrics(whole))
    assert read_json(part / "result.json")["test_accuracy"] == read_json(whole / "result.json")["test_accuracy"]


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("signal_", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_checkpoints_at_once_and_the_run_resumes_to_the_same_metrics(
    train, interrupted_run, framework, whole, signal_
):
    args = ["--epochs", "3", *SMALL]
    part = interrupted_run(framework, *args, signal_=signal_)  # as epoch 1's checkpoint appears
    stderr = (part.parent.parent / "interrupted.stderr").read_text()
    what = "interrupted" if signal_ == signal.SIGINT else "stopped by SIGTERM"
    # Taken at the next step; or none, if the signal came while epoch 1's was being committed.
    checkpoint = read_json(part / "checkpoint.json")
    where = "at epoch 2, step" if checkpoint["partial"] else "at the end of epoch 1"
    assert checkpoint["epoch"] == 1 and (checkpoint["partial"] or {"epoch": 2})["epoch"] == 2
    assert f"{what}; the checkpoint {where}" in stderr and "Traceback" not in stderr, stderr
    assert f"continue with --resume {part}" in stderr
    proc, _ = train(framework, "--resume", str(part), run_name=None)
    assert "epoch   2/3" in proc.stdout and "epoch   1/3" not in proc.stdout
    assert without_time(read_metrics(part)) == without_time(read_metrics(whole))


TINY = ["--epochs", "2", "--limit-train", "1024", "--val-size", "256", "--limit-test", "200", "--batch-size", "64"]
FINAL = ("model", "result.json", PREDICTIONS)  # what a run writes after its last checkpoint (by name prefix)


def pages(*sizes):
    """Bytes the files of these sizes take on a tmpfs: whole 4 KiB pages."""
    return sum(-(-size // 4096) * 4096 for size in sizes)


def failed_cleanly(proc, run_dir, file_name, kept):
    """The run stopped with one line naming the file that did not fit and what is kept, and left
    nothing half-written: no staging folder, no checkpoint file that checkpoint.json does not name."""
    line = proc.stderr.strip()
    assert proc.returncode == 1 and "\n" not in line, proc.stderr
    assert str(run_dir / file_name) in line and "No space left on device" in line and kept in line, line
    named = read_json(run_dir / "checkpoint.json")["files"] if (run_dir / "checkpoint.json").exists() else []
    for path in run_dir.iterdir():
        assert not path.name.startswith("."), f"{path} left behind"
        assert not path.name.startswith("checkpoint-") or path.name in named, f"{path} left behind"


@pytest.mark.slow
def test_a_full_disk_at_any_write_gives_one_line_keeps_the_last_checkpoint_and_the_run_resumes(
    train, small_disk, framework
):
    _, whole = train(framework, *TINY, run_name="whole")
    size = {path.name: path.stat().st_size for path in whole.iterdir()}
    checkpoint = pages(*(size[name] for name in read_json(whole / "checkpoint.json")["files"]))
    native = [name for name in size if name.startswith("model") and name != "model.npz"]
    disk, small = small_disk, pages(1, 1)  # two pages: room for the small files, replaced one at a time

    def attempt(run_dir, free, *args):
        disk.leave(free)
        return train(framework, *TINY, *args, "--resume", str(run_dir), run_name=None, check=False)[0]

    # A new run, on a disk filling up as it goes: at its first file, its first checkpoint, its second.
    run_dir = disk.path / "run"
    disk.leave(0)
    proc, _ = train(framework, *TINY, "--output-dir", str(disk.path), run_name=run_dir.name, check=False)
    assert proc.returncode == 1 and f"{run_dir / 'config.json'}: No space left on device" in proc.stderr, proc.stderr
    proc = attempt(run_dir, checkpoint // 2, "--output-dir", str(disk.path))  # its empty folder: a new run
    failed_cleanly(proc, run_dir, "checkpoint-epoch0001", "no checkpoint had been written")
    proc = attempt(
        run_dir, checkpoint + checkpoint // 2, "--output-dir", str(disk.path)
    )  # the first fits, the second does not (both exist a moment)
    failed_cleanly(proc, run_dir, "checkpoint-epoch0002", "the checkpoint at the end of epoch 1 is kept")
    proc = attempt(run_dir, disk.free() + disk.filler.stat().st_size, "--output-dir", str(disk.path))
    assert proc.returncode == 0, proc.stderr
    assert without_time(read_metrics(run_dir)) == without_time(read_metrics(whole))

    # A run stopped after its last checkpoint: the final files, one after another, do not fit.
    def stopped_after_training():
        copy = disk.path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir()
        for name in size:
            if not name.startswith(FINAL):
                shutil.copy(whole / name, copy / name)
        return copy

    kept, written = "the checkpoint at the end of epoch 2 is kept", small
    first = native[0] if len(native) == 1 else "model.params"  # MXNet's are three: model.params first
    for name, files in ((first, native), ("model.npz", ["model.npz"]), (PREDICTIONS, [PREDICTIONS])):
        copy = stopped_after_training()
        failed_cleanly(attempt(copy, written), copy, name, kept)
        written += pages(*(size[n] for n in files))
    proc = attempt(copy, written + pages(size[PREDICTIONS], size["result.json"]))
    assert proc.returncode == 0, proc.stderr
    assert read_json(copy / "result.json")["test_accuracy"] == read_json(whole / "result.json")["test_accuracy"]


def arguments(*values):
    """A value for an option: one of `values` mostly, else any short text a shell can pass."""
    anything = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=10)
    return st.one_of(st.sampled_from([str(v) for v in values]), anything)


def numbers(low, high):
    return st.one_of(st.integers(low, high).map(str), arguments("", "1e3", "nan", "-0", "0x10", "2.5"))


def reals():
    return st.one_of(st.floats(-1.0, 10.0).map(repr), arguments("inf", "nan", "1e300", "1e-300", "-1", "0"))


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_command_line_ends_in_a_finished_run_or_one_line(framework, mnist_dir, tmp_path_factory, capsys, data):
    main = importlib.import_module(f"train_{framework}.train").main
    scratch = tmp_path_factory.mktemp("cli")
    (scratch / "file").write_text("not a folder")
    paths = [scratch / "runs", scratch / "file", scratch / "file" / "under", scratch / "new" / "deeper", ""]
    options = {
        "--pooling": arguments("max", "avg", "min"),
        "--activation": arguments("relu", "leakyrelu", "tanh", "sigmoid"),
        "--epochs": numbers(-1, 2),
        "--batch-size": numbers(-1, 300),
        "--lr": reals(),
        "--arch": arguments("lenet5", "lecun98", "lenet1"),
        "--optimizer": arguments("adam", "adamw", "sgd", "sdlm", "rmsprop"),
        "--recipe": arguments("default", "best", "fast", "paper", "slow"),
        "--dropout": reals(),
        "--label-smoothing": reals(),
        "--augment": arguments("none", "affine", "elastic", "affine,elastic", "paper", "paper,affine", "rotate", ""),
        "--momentum": reals(),
        "--mu": reals(),
        "--weight-decay": reals(),
        "--scheduler": arguments("cosine", "none", "paper", "step"),
        "--seed": numbers(-1, 2**40),
        "--dataset": arguments("mnist", "kmnist", *paths),
        "--val-size": numbers(-1, 70_000),
        "--data-dir": arguments(mnist_dir, *paths[1:]),
        "--limit-train": numbers(-1, 300),
        "--limit-test": numbers(-1, 300),
        "--output-dir": arguments(*paths),
        "--run-name": arguments("run", "../escape", "a/b", ".", "..", "x" * 300),
        "--resume": arguments(*paths),
        "--device": arguments("auto", "cpu", "gpu", "tpu"),
        "--checkpoint-every": numbers(-1, 5),
        "--threads": numbers(-1, 3),
        "--validate-on-test": st.none(),
        "--tensorboard": st.none(),
    }
    chosen = data.draw(st.lists(st.sampled_from(sorted(options)), max_size=6, unique=True), label="options")
    argv = ["--no-progress", "--epochs", "1", "--limit-train", "200", "--limit-test", "100"]
    argv += ["--data-dir", str(mnist_dir), "--output-dir", str(scratch / "runs")]
    for option in chosen:
        value = data.draw(options[option], label=option)
        argv += [option] if value is None else [f"{option}={value}"]  # "=": a value may start with "-"
    try:
        with pytest.MonkeyPatch.context() as patch:  # where relative names land (contextlib.chdir: 3.11+)
            patch.chdir(scratch)
            status = main(argv)
    except SystemExit as exit:  # argparse
        status = exit.code
    err = capsys.readouterr().err
    event(f"exit status {status}")  # pytest --hypothesis-show-statistics: how many ran to the end
    if status == 0:
        assert list(scratch.rglob("result.json")), "a run that ended well wrote no result.json"
    else:
        assert status in (1, 2) and len(err.strip().splitlines()) == 1, (status, err)
