"""The shared command line, options, LR schedule, run folders and environments."""

import importlib
import math
import os
import re
from pathlib import Path

import pytest
from conftest import ROOT, need

from lenet5 import config, envs, files
from lenet5.config import Config
from lenet5.data.idx import DataError
from lenet5.data.splits import load_splits
from lenet5.network import shapes, weights
from lenet5.training import cli
from lenet5.training.run import Run
from lenet5.training.runfolder import RunError
from lenet5.training.stopping import Stopped


def parse_error(argv, capsys, framework="pytorch"):
    """The one-line message and exit code of a command line that must be refused."""
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args(framework, argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, not argparse's usage block
    return exit_.value.code, err


def test_the_defaults_are_the_default_recipe():
    """The recipe chosen on the validation split (docs/results.md), which the README's results were
    trained with: changing one is changing the recipe, and its results."""
    cfg = cli.parse_args("pytorch", [])
    chosen = dict(pooling="max", activation="relu", epochs=15, batch_size=256, lr=5e-3, optimizer="adam")
    chosen |= dict(scheduler="cosine", seed=0, val_size=5000, augment="none", dropout=0.0, weight_decay=0.0)
    assert {name: getattr(cfg, name) for name in chosen} == chosen
    assert cfg.output_dir == str(cli.DEFAULT_OUTPUT_DIR) and cfg.data_dir


def test_help_states_every_default(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args("pytorch", ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in [
        ("--epochs", Config.epochs),
        ("--batch-size", 256),
        ("--lr", Config.lr),
        ("--pooling", "max"),
        ("--activation", "relu"),
        ("--scheduler", Config.scheduler),
        ("--val-size", Config.val_size),
        ("--device", "auto"),
        ("--seed", 0),
    ]:
        assert flag in text and f"(default: {default})" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "--epochs: must be > 0"),
        (["--epochs", "-3"], "--epochs: must be > 0"),
        (["--epochs", "two"], "--epochs: expected an integer"),
        (["--batch-size", "0"], "--batch-size: must be > 0"),
        (["--lr", "-0.1"], "--lr: must be > 0"),
        (["--lr", "nan"], "--lr: must be > 0"),
        (["--lr", "inf"], "--lr: must be > 0"),
        (["--pooling", "median"], "invalid choice: 'median' (choose from max, avg)"),
        (["--activation", "swish"], "invalid choice: 'swish'"),
        (["--val-size", "-1"], "--val-size: must be >= 0"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--dropout", "-0.1"], "--dropout: must be >= 0.0"),
        (["--dropout", "1"], "--dropout: must be < 1"),
        (["--label-smoothing", "1"], "--label-smoothing: must be < 1"),
        (["--label-smoothing", "nan"], "--label-smoothing: must be >= 0.0"),
        (["--augment", "rotate"], "--augment: unknown augmentation 'rotate'"),
        (["--augment", "none,affine"], "--augment: unknown augmentation 'none,affine'"),
        (["--recipe", "slow"], "invalid choice: 'slow' (choose from default, best, fast, paper, paper-distorted)"),
        (
            ["--optimizer", "sdlm"],
            "--optimizer sdlm: its Hessian is derived for lecun98's output and loss; use --arch lecun98",
        ),
        (["--optimizer", "lamb"], "invalid choice: 'lamb'"),
    ],
)
def test_bad_options_get_one_line_and_exit_2(argv, message, capsys):
    code, err = parse_error(argv, capsys)
    assert code == 2
    assert message.replace("'", "") in err.replace("'", "")


@pytest.mark.parametrize("recipe", list(config.RECIPES))
def test_a_recipe_sets_its_options_and_any_option_given_overrides_it(recipe):
    cfg = cli.parse_args("pytorch", ["--recipe", recipe])
    assert cfg.to_dict() == {**cli.parse_args("pytorch", []).to_dict(), **config.RECIPES[recipe], "recipe": recipe}
    assert cli.parse_args("pytorch", ["--epochs", "1", "--recipe", recipe, "--augment", "elastic"]).to_dict() == {
        **cfg.to_dict(),
        "epochs": 1,
        "augment": "elastic",
    }


def test_help_shows_what_each_recipe_sets(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args("pytorch", ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, options in config.RECIPES.items():
        assert f"{name}: " + (" ".join(f"{cli.flag(k)} {v}" for k, v in options.items()) or "the defaults") in text
    assert "--recipe {default,best,fast,paper,paper-distorted}" in text and "(default: default)" in text


def test_val_size_is_checked_by_load_splits_alone(tiny_mnist):
    """The command line takes any --val-size >= 0: only load_splits knows the dataset's size, and it
    refuses one too large in one line (train.py: `train.py: error: ...`, exit status 1)."""
    _, cache, _ = tiny_mnist  # 12 training images
    assert cli.parse_args("pytorch", ["--val-size", "60000"]).val_size == 60000
    with pytest.raises(DataError) as error:
        load_splits(val_size=12, data_dir=cache, progress=False)
    assert str(error.value) == "--val-size must be between 0 and 11 (the mnist training images), got 12"


def test_check_choice_lists_valid_names():
    assert config.check_choice("pooling", "avg", config.POOLINGS) == "avg"
    with pytest.raises(ValueError, match="unknown activation 'gelu'; choose one of: relu, leakyrelu, tanh, sigmoid"):
        config.check_choice("activation", "gelu", config.ACTIVATIONS)


def test_parameter_count_from_the_paper():
    assert shapes.expected_num_params() == 61_706
    assert shapes.expected_num_params(num_classes=26) == 61_706 + 16 * 85


def test_cosine_schedule():
    cfg = Config(lr=0.01, scheduler="cosine")
    assert config.lr_at(cfg, 0, 100) == 0.01
    assert math.isclose(config.lr_at(cfg, 50, 100), 0.005)
    assert config.lr_at(cfg, 99, 100) < 1e-5
    assert config.lr_at(Config(lr=0.01, scheduler="none"), 99, 100) == 0.01


def test_run_folder_is_never_overwritten(tmp_path):
    cfg = Config(output_dir=str(tmp_path), run_name="mine")
    run = Run(cfg)
    (run.dir / "notes.txt").write_text("keep me")
    with pytest.raises(RunError, match="already exists; choose another --run-name"):
        Run(cfg)
    assert (run.dir / "notes.txt").read_text() == "keep me"
    # Without a name, runs started in the same second get folders of their own.
    auto = Config(output_dir=str(tmp_path))
    assert Run(auto).dir != Run(auto).dir


def test_divergence_and_ctrl_c_end_with_one_line_naming_what_is_kept(tmp_path):
    run = Run(Config(output_dir=str(tmp_path), run_name="r"))
    run.agreement.check_finite(1e30, 1, 5)
    with pytest.raises(RunError) as error, run.stopping():
        run.agreement.check_finite(float("nan"), 2, 7)
    assert "the training loss became nan in epoch 2, steps 6-7" in str(error.value)
    assert "no checkpoint had been written" in str(error.value) and "\n" not in str(error.value)
    run.log_epoch(1, 0.5, 0.9, 0.4, 0.91, 1e-3, 1.0)
    run.save_checkpoint(1, 10, lambda stem: [])
    run.log_epoch(2, 0.5, 0.9, 0.4, 0.91, 1e-3, 1.0)  # Ctrl-C before epoch 2's checkpoint
    with pytest.raises(Stopped) as stop, run.stopping():
        raise KeyboardInterrupt
    assert (
        str(stop.value)
        == f"interrupted; the checkpoint at the end of epoch 1 is kept: continue with --resume {run.dir}"
    )


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RunError, match="choose another --output-dir"):
        Run(Config(output_dir=str(blocker / "sub")))


def test_resume_keeps_the_runs_options(tmp_path, capsys):
    run = Run(Config(output_dir=str(tmp_path), run_name="r", epochs=2, lr=0.005, pooling="avg"))
    run.start()
    cfg = cli.parse_args("pytorch", ["--resume", str(run.dir), "--epochs", "4", "--no-progress"])
    assert (cfg.epochs, cfg.lr, cfg.pooling, cfg.no_progress, cfg.resume) == (4, 0.005, "avg", True, str(run.dir))
    (run.dir / "checkpoint.json").write_text("{}")
    assert cli.parse_args("pytorch", ["--resume", str(run.dir / "checkpoint.json")]).resume == str(run.dir)
    _, err = parse_error(["--resume", str(run.dir), "--pooling", "max"], capsys)
    assert "--pooling max differs from the resumed run's avg" in err
    _, err = parse_error(["--resume", str(run.dir)], capsys, framework="mxnet")
    assert "trained with pytorch, not mxnet" in err
    _, err = parse_error(["--resume", str(tmp_path)], capsys)
    assert "not a run folder" in err


def test_envs_hash_follows_included_requirements(tmp_path, monkeypatch):
    (tmp_path / "common.txt").write_text("tqdm\n")
    (tmp_path / "pytorch.txt").write_text("-r common.txt\ntorch\n")
    monkeypatch.setattr(envs, "REQUIREMENTS", tmp_path)
    before = envs.requirements_hash("pytorch", (3, 11, 7))
    (tmp_path / "common.txt").write_text("# the progress bars\ntqdm  # any version\n")
    assert envs.requirements_hash("pytorch", (3, 11, 7)) == before  # a comment rebuilds nothing
    (tmp_path / "common.txt").write_text("tqdm>=4\n")
    assert envs.requirements_hash("pytorch", (3, 11, 7)) != before


def test_envs_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("LENET5_VENV_DIR", str(tmp_path))
    monkeypatch.delenv("LENET5_MXNET_PYTHON", raising=False)
    assert envs.env_python("mxnet").parent.parent == tmp_path / "mxnet"
    monkeypatch.setenv("LENET5_MXNET_PYTHON", "/opt/conda/envs/mx/bin/python")
    assert str(envs.env_python("mxnet")) == "/opt/conda/envs/mx/bin/python"


def test_envs_call_runs_a_function_in_another_environment_and_hands_back_its_result_or_its_one_line():
    here = [f for f in config.FRAMEWORKS if envs.has_framework(f)]
    for framework in here:  # in this process: the result, and the function's own exception
        assert envs.call(framework, "os.path:join", "a", "b") == "a/b"
        with pytest.raises(weights.WeightsError, match="no such file"):
            envs.call(framework, "lenet5.network.weights:load", "/no/such/model.npz")
    others = [f for f in config.FRAMEWORKS if f not in here and envs.env_python(f).exists()]
    need(others, "no other framework's environment to call")
    other = others[0]  # a framework this Python lacks: the call goes to that environment's Python
    assert envs.call(other, "lenet5.envs:has_framework", other) is True  # it ran there
    assert envs.call(other, "os.path:join", "a", Path("b")) == "a/b"  # JSON both ways, paths as strings
    with pytest.raises(envs.EnvError) as error:
        envs.call(other, "lenet5.network.weights:load", "/no/such/model.npz")
    assert str(error.value) == "/no/such/model.npz: no such file"  # the function's own one line
    with pytest.raises(envs.EnvError, match="exit status 3"):
        envs.call(other, "os:_exit", 3)  # died before answering


def test_threads_reach_mxnet_before_its_import_as_omp_num_threads(monkeypatch):
    from lenet5.config import MAX_AUTO_THREADS, ONE_THREAD_BELOW, resolve_threads
    from lenet5.training.cli import threads_before_import

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for argv in (["--epochs", "2"], ["--threads", "0"], ["--threads", "x"]):  # absent, auto, bad: untouched
        threads_before_import(argv)
        assert "OMP_NUM_THREADS" not in os.environ
    threads_before_import(["--pooling", "avg", "--threads", "3"])
    assert os.environ["OMP_NUM_THREADS"] == "3" and resolve_threads(0) == 3 and resolve_threads(5) == 5
    assert resolve_threads(0, batch_size=1) == 3  # the environment's choice stands
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= resolve_threads(0) <= MAX_AUTO_THREADS
    assert resolve_threads(0, batch_size=1) == 1 and resolve_threads(2, batch_size=1) == 2  # one image a step
    assert resolve_threads(0, batch_size=ONE_THREAD_BELOW) == resolve_threads(0)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--data-dir", "{file}", "not a folder"),
        ("--data-dir", "{file}/mnist", "is a file, not a folder"),
        ("--output-dir", "{file}", "not a folder"),
        ("--output-dir", "{file}/runs", "is a file, not a folder"),
        ("--output-dir", "", "an empty name"),
        ("--run-name", "../../escape", "a run name is one folder's name"),
        ("--run-name", "a/b", "a run name is one folder's name"),
        ("--run-name", "..", "a run name is one folder's name"),
    ],
)
def test_path_options_are_checked_before_any_work(tmp_path, capsys, option, value, message):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(SystemExit) as stop:
        cli.parse_args("pytorch", [option, value.format(file=tmp_path / "file")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and err.count("\n") == 1, err
    assert sorted(tmp_path.iterdir()) == [tmp_path / "file"]  # nothing made


def test_an_empty_run_folder_left_by_a_run_stopped_as_it_began_resumes_as_that_run(tmp_path, capsys):
    folder = tmp_path / "run"
    (folder / ".lenet5-tmp-abc").mkdir(parents=True)  # a staging folder, as a kill leaves it
    cfg = cli.parse_args("pytorch", ["--resume", str(folder), "--epochs", "3", "--seed", "5"])
    assert (cfg.resume, cfg.epochs, cfg.seed) == (str(folder), 3, 5)
    (folder / "notes.txt").write_text("not a run")
    code, err = parse_error(["--resume", str(folder)], capsys)
    assert code == 2 and err.endswith(f"{folder}: not a run folder (no config.json there) (see --help)\n"), err


def test_first_line_keeps_what_each_librarys_error_says():
    """files.first_line on the shapes of message the libraries here raise."""
    gloo = RuntimeError(
        "[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:29500. "
        "Check the other ranks. 🙁 See the docs."
    )
    assert files.first_line(gloo, sentences=2) == "Connection closed by peer [127.0.0.1]:29500. Check the other ranks"
    mxnet = RuntimeError(
        'Traceback (most recent call last):\n  File "../src/ndarray/ndarray.cc", line 250\n'
        "MXNetError: Check failed: shape_.Size() >= shape.Size() (6 vs. 20)"
    )
    assert files.first_line(mxnet) == "shape_.Size() >= shape.Size() (6 vs. 20)"
    tensorflow = RuntimeError(
        "Graph execution error:\n\nDetected at node x\n  File a.py\nCollective ops is aborted by: x"
    )
    assert files.first_line(tensorflow) == "Collective ops is aborted by: x"
    heartbeats = RuntimeError(
        "Graph execution error:\n\nCollective ops is aborted by: Error reported from /job:worker/task:1: The "
        "following tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have "
        "crashed. Check the task logs for an earlier error."
    )
    assert files.first_line(heartbeats).endswith("(stopped sending heartbeats): /job:worker/replica:0/task:1")
    assert files.first_line(OSError(28, "No space left on device", "/x")) == "[Errno 28] No space left on device: '/x'"
    assert files.first_line(ValueError("  \n")) == "ValueError"


def test_every_function_the_code_calls_in_another_environment_is_there():
    """The "module:function" strings the project hands to envs.call name functions that import: a
    module moved or renamed would otherwise fail only in the other environment, at run time."""
    named = set()
    for folder in ("lenet5", "train_pytorch", "train_tensorflow", "train_mxnet", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            named |= set(re.findall(r"[\"'](lenet5(?:\.\w+)+):(\w+)[\"']", path.read_text()))
    assert ("lenet5.convert", "read_step") in named  # the scan finds them
    for module, function in sorted(named):
        assert callable(getattr(importlib.import_module(module), function)), f"{module}:{function}"


def test_a_signal_while_the_options_are_read_stops_with_one_line(monkeypatch, capsys):
    """SIGTERM can come before training starts, while argparse reads the options (the soak test's
    random kills once did): the run stops with its one line and 143, no traceback."""
    import signal

    from lenet5.training import cli
    from lenet5.training.stopping import Interrupted

    def interrupted(*args):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(cli, "parse_args", interrupted)
    assert cli.run_command("pytorch", lambda cfg: None, []) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "stopped before training began" in err and "Traceback" not in err
