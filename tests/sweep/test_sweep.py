"""The sweep on a tiny grid of real smoke runs in two frameworks: results, skipping, failures."""

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import ROOT

from lenet5 import report
from lenet5.sweeps import tables, worker

GRID = [
    "--frameworks",
    "pytorch",
    "mxnet",
    "--pooling",
    "max",
    "avg",
    "--epochs",
    "1",
    "--limit-train",
    "512",
    "--val-size",
    "0",
    "--limit-test",
    "200",
    "--seeds",
    "0",
    "1",
    "--jobs",
    "2",
]


def sweep(sweep_dir, mnist_dir, *args, env=None):
    cmd = [
        sys.executable,
        "-m",
        "lenet5.sweep",
        *GRID,
        "--output-dir",
        str(sweep_dir),
        "--data-dir",
        str(mnist_dir),
        *args,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})


def results(sweep_dir):
    with open(sweep_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def test_sweep_reports_failures_skips_finished_runs_and_rebuilds_its_report(tmp_path, mnist_dir):
    broken = tmp_path / "broken-python"  # an MXNet environment that fails every run
    broken.write_text("#!/bin/sh\necho 'boom: this environment is broken' >&2\nexit 3\n")
    broken.chmod(0o755)
    sweep_dir = tmp_path / "sweep"

    proc = sweep(sweep_dir, mnist_dir, env={"LENET5_MXNET_PYTHON": str(broken)})
    assert proc.returncode == 1, proc.stderr
    rows = results(sweep_dir)
    assert len(rows) == 8  # 2 frameworks x 2 poolings x 2 seeds
    assert {(r["framework"], r["status"]) for r in rows} == {("pytorch", "ok"), ("mxnet", "failed")}
    assert all(0 < float(r["test_accuracy"]) <= 1 for r in rows if r["status"] == "ok")
    assert "4 of 8 runs failed" in proc.stderr
    md = (sweep_dir / "results.md").read_text()
    assert "### PyTorch" in md and "| Pooling | Activation | Batch-size |" in md and "± " in md
    assert "Failed runs (4)" in md and "boom: this environment is broken" in md and "[exit 3]" not in md
    assert (sweep_dir / "results.png").stat().st_size > 10_000
    finished = {p: p.stat().st_mtime_ns for p in (sweep_dir / "runs").glob("pytorch-*/result.json")}
    assert len(finished) == 4

    proc = sweep(sweep_dir, mnist_dir)  # the same command, MXNet mended: only its runs go
    assert proc.returncode == 0, proc.stderr
    assert "4 already finished, 4 to go" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    rows = results(sweep_dir)
    assert [r["status"] for r in rows] == ["ok"] * 8
    md = (sweep_dir / "results.md").read_text()
    assert "### MXNet" in md and "Failed runs" not in md
    assert "| max | relu | 256 |" in md and "99.07%" in md  # beside the original project's number

    assert "8 already finished, 0 to go" in sweep(sweep_dir, mnist_dir).stdout

    (sweep_dir / "results.md").unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "lenet5.report", str(sweep_dir)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert (sweep_dir / "results.md").read_text() == md and "### MXNet" in proc.stdout


def test_the_tables_give_the_papers_network_no_pooling_or_activation():
    """lecun98 has the paper's subsampling and squashing: the max and relu its config holds are not its."""

    def row(arch, seed, accuracy):  # as tables.collect gives a finished run
        options = {"arch": arch, "pooling": "max", "activation": "relu", "batch_size": 1, "seed": seed}
        run = {"name": arch, "framework": "pytorch", "status": "ok", "host": "", "val_acc_per_epoch": ""}
        results = {"val_accuracy": float("nan"), "test_accuracy": accuracy, "test_loss": 0.1}
        return {**run, **options, **results, "train_seconds": 60.0, "seconds_per_epoch": 3.0}

    paper = [row("lecun98", seed, 0.98) for seed in (0, 1)]
    md = tables.markdown(paper)
    assert "| Batch-size | Accuracy |" in md and "| 1 | 98.00 ± 0.00% |" in md
    assert "Pooling" not in md and "relu" not in md and "Original" not in md
    md = tables.markdown(paper + [row("lenet5", seed, 0.99) for seed in (0, 1)])
    assert "| arch | Pooling | Activation | Batch-size | Accuracy |" in md
    assert "| lecun98 | - | - | 1 | 98.00 ± 0.00% |" in md and "| lenet5 | max | relu | 1 | 99.00 ± 0.00% |" in md


def test_bad_grid_values_are_refused_before_anything_runs(tmp_path, mnist_dir):
    proc = sweep(tmp_path / "s", mnist_dir, "--activation", "relu", "swish")
    assert proc.returncode == 2 and "invalid choice: 'swish'" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "s").exists()


@pytest.mark.parametrize("argv", [["--epochs", "1", "0"], ["--lr", "nan"], ["--frameworks", "jax"]])
def test_bad_values_get_one_line(tmp_path, mnist_dir, argv):
    proc = sweep(tmp_path / "s", mnist_dir, *argv)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr


def test_each_recipe_point_takes_its_recipes_values_unless_an_option_is_given():
    from lenet5 import sweep as sweep_module
    from lenet5.config import recipe_options

    parser = sweep_module.build_parser()
    space = sweep_module.search_space(parser.parse_args(["--recipe", "default", "best", "fast", "--seeds", "0", "1"]))
    points = space.grid()
    assert len(points) == 6  # 3 recipes x 2 seeds: no mixed points
    for point in points:
        recipe = recipe_options(point["recipe"])
        assert all(point[name] == recipe[name] for name in point if name not in ("framework", "recipe", "seed"))
    given = sweep_module.search_space(parser.parse_args(["--recipe", "default", "fast", "--epochs", "1"])).grid()
    assert [p["epochs"] for p in given] == [1, 1] and [p["batch_size"] for p in given] == [
        recipe_options("default")["batch_size"],
        recipe_options("fast")["batch_size"],
    ]
    with pytest.raises(ValueError, match="--recipe with several values is for the grid sampler"):
        argv = ["--recipe", "default", "best", "--sampler", "tpe", "--trials", "2"]
        sweep_module.search_space(parser.parse_args(argv))


def test_report_refuses_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        report.main([str(tmp_path)])
    assert stop.value.code == 2
    assert capsys.readouterr().err == (
        f"python -m lenet5.report: error: {tmp_path} is not a sweep folder (no study.db); give --storage and --study"
        " (see --help)\n"
    )


def train_processes(sweep_dir):
    """The pids of the train.py processes running in a sweep folder."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            if b"train_pytorch.train" in args and any(str(sweep_dir).encode() in arg for arg in args):
                pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.parametrize(
    "target, signal_",
    [("sweep", signal.SIGINT), ("run", signal.SIGTERM)],
    ids=["ctrl-c-to-the-sweep", "sigterm-to-its-run"],
)
def test_an_interrupted_sweep_or_run_continues_where_it_stopped(tmp_path, mnist_dir, target, signal_):
    """Ctrl-C or SIGTERM to the sweep stops its runs at a checkpoint and gives their trials back, for
    the same command to continue; a SIGTERM to a run alone (a scheduler signals every process)
    gives its trial back, and the sweep runs it again from its checkpoint."""
    args = [
        "--pooling",
        "max",
        "avg",
        "--seeds",
        "0",
        "1",
        "--epochs",
        "3",
        "--limit-train",
        "8192",
        "--limit-test",
        "100",
        "--val-size",
        "100",
        "--output-dir",
        str(tmp_path / "s"),
        "--data-dir",
        str(mnist_dir),
    ]
    cmd = [sys.executable, "-m", "lenet5.sweep", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "s").glob("runs/*/checkpoint.json")):
        time.sleep(0.1)
    if target == "sweep":
        proc.send_signal(signal_)  # the running run checkpoints, and its trial is queued again
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal_ and "the same command continues the sweep" in err, err
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    else:
        for pid in train_processes(tmp_path / "s"):
            os.kill(pid, signal_)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    trials = optuna.load_study(study_name="sweep", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}").trials
    done = [t.user_attrs["name"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == len(set(done)) == 4
    logs = "".join(p.read_text() for p in (tmp_path / "s" / "logs").iterdir())
    assert f"[exit {128 + signal_}]" in logs and "--resume" in logs  # it went on from its checkpoint


def test_a_journal_file_holds_the_study_and_its_weights(tmp_path, mnist_dir):
    from lenet5.network import weights

    journal = ["--storage", str(tmp_path / "shared" / "sweep.log"), "--study", "j"]
    tiny = [
        "--pooling",
        "max",
        "avg",
        "--epochs",
        "1",
        "--limit-train",
        "256",
        "--limit-test",
        "100",
        "--val-size",
        "100",
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lenet5.sweep",
            *journal,
            *tiny,
            "--output-dir",
            str(tmp_path / "s"),
            "--data-dir",
            str(mnist_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert [row["status"] for row in results(tmp_path / "s")] == ["ok", "ok"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lenet5.report",
            str(tmp_path / "r"),
            *journal,
            "--fetch-best",
            str(tmp_path / "best.npz"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "wrote" in proc.stdout, proc.stderr
    assert weights.load(tmp_path / "best.npz")[1]["framework"] == "pytorch"


def test_any_sweep_command_line_ends_in_results_or_one_line(tmp_path_factory, mnist_dir, capsys):
    """Hypothesis draws the sweep's options (values, lists, ranges, samplers, storages): the sweep
    runs its tiny grid or draws and writes its results, or says in one line what is wrong."""
    from hypothesis import HealthCheck, event, given, settings
    from hypothesis import strategies as st

    from lenet5 import sweep as sweep_module

    anything = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8)

    def arguments(*values):
        return st.one_of(st.sampled_from([str(v) for v in values]), st.sampled_from([str(v) for v in values]), anything)

    def lists(*values):
        return st.lists(arguments(*values), min_size=1, max_size=2)

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def check(data):
        scratch = tmp_path_factory.mktemp("sweep")
        (scratch / "file").write_text("not a folder")
        options = {
            "--pooling": lists("max", "avg", "min"),
            "--lr": lists("0.002", "0.001..0.01", "0.001..0.01:log", "1..0", "nan", "0"),
            "--seeds": lists(0, 1, -1),
            "--jobs": arguments(1, 2, 0),
            "--sampler": arguments("grid", "random", "tpe", "cmaes"),
            "--trials": arguments(1, 2, 0),
            "--pruner": arguments("none", "median", "hyperband", "asha"),
            "--storage": arguments(
                scratch / "journal.log", f"sqlite:///{scratch / 'x.db'}", "bogus://", scratch / "file"
            ),
            "--study": arguments("a", "b"),
            "--output-dir": arguments(scratch / "s", scratch / "file", scratch / "file" / "s"),
            "--search-seed": arguments(0, -1),
        }
        argv = ["--frameworks", "pytorch", "--epochs", "1", "--limit-train", "64", "--limit-test", "32"]
        argv += ["--val-size", "32", "--output-dir", str(scratch / "s"), "--data-dir", str(mnist_dir)]
        for option in data.draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)):
            value = data.draw(options[option], label=option)
            argv += [option, *value] if isinstance(value, list) else [f"{option}={value}"]
        try:
            with pytest.MonkeyPatch.context() as patch:  # where relative names land (contextlib.chdir: 3.11+)
                patch.chdir(scratch)
                status = sweep_module.main(argv)
        except SystemExit as exit_:
            status = 1 if isinstance(exit_.code, str) else exit_.code
        err = capsys.readouterr().err
        event(f"exit status {status}")
        assert "Traceback" not in err, err
        if status == 0:
            assert list(scratch.rglob("results.md")), err
        elif status == 2:
            assert len(err.strip().splitlines()) == 1, err

    check()


def test_runs_take_the_visible_gpus_in_turn_and_fill_them_by_default(mnist_dir, tmp_path, monkeypatch):
    """CUDA_VISIBLE_DEVICES names two GPUs (this machine has none: the runs train on the CPU):
    without --jobs the sweep runs 8 per GPU, at most one per core, each worker's runs on its GPU."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert worker.visible_gpus() == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f6c,-1,2")  # CUDA stops at the first invalid one
    assert worker.visible_gpus() == ["GPU-8f6c"]
    assert worker.default_jobs([]) == 1 and worker.default_jobs(["0"]) == min(8, os.cpu_count())
    grid = GRID[GRID.index("--pooling") : GRID.index("--jobs")]  # PyTorch alone, four runs, no --jobs
    cmd = [sys.executable, "-m", "lenet5.sweep", *grid, "--output-dir", str(tmp_path)]
    cmd += ["--data-dir", str(mnist_dir)]
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": "3,5"}
    )
    assert proc.returncode == 0, proc.stderr
    jobs = min(16, os.cpu_count())
    assert f"{jobs} at a time here on GPUs 3, 5;" in proc.stdout
    firsts = [log.read_text().splitlines()[0] for log in (tmp_path / "logs").iterdir()]
    assert len(firsts) == 4 and all(line.startswith("$ CUDA_VISIBLE_DEVICES=") for line in firsts)
    assert {line.split()[1] for line in firsts} == {f"CUDA_VISIBLE_DEVICES={gpu}" for gpu in ["3", "5"][:jobs]}
