"""Soak: one tiny PyTorch run killed 50 times at random moments (SIGKILL: a crash; SIGTERM: a batch
scheduler's notice), resumed each time, ends exactly as the same run left alone."""

import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import ROOT, read_json, read_metrics
from train_contract import without_time

ARGS = ["--epochs", "3", "--limit-train", "3072", "--val-size", "256", "--limit-test", "200", "--batch-size", "64"]
ARGS += ["--checkpoint-every", "2"]
CYCLES = 50


@pytest.mark.slow
def test_50_random_kills_and_resumes_end_as_an_uninterrupted_run(train, mnist_dir, tmp_path):
    _, whole = train("pytorch", *ARGS, run_name="whole")
    # Kills come at random within a window after training starts, sized so that the cycles, each
    # a little further on, span the run: its training, checkpoints, evaluations and final files.
    window = 2.5 * sum(float(row["seconds"]) + float(row["eval_seconds"]) for row in read_metrics(whole)) / CYCLES
    run_dir = tmp_path / "runs" / "soak"
    base = [sys.executable, "-u", str(ROOT / "train_pytorch" / "train.py"), "--data-dir", str(mnist_dir)]
    base += ["--no-progress", *ARGS]
    rng = random.Random(15)
    outcomes = []
    for _ in range(CYCLES):
        start = ["--resume", str(run_dir)] if run_dir.exists() else ["--output-dir", str(run_dir.parent)]
        start += [] if run_dir.exists() else ["--run-name", run_dir.name]
        with subprocess.Popen([*base, *start], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            if rng.random() < 0.2:  # while Python, PyTorch and the data load
                time.sleep(rng.uniform(0, 1.5))
            else:  # from its first line on, printed as training starts
                proc.stdout.readline()
                time.sleep(rng.uniform(0, window))
            kill = rng.choice([signal.SIGKILL, signal.SIGTERM])
            proc.send_signal(kill)
            stderr = proc.communicate()[1]
        assert "Traceback" not in stderr, stderr
        if kill == signal.SIGTERM and proc.returncode == 128 + signal.SIGTERM:  # handled: one line
            assert stderr.strip().count("\n") == 0 and "SIGTERM" in stderr, stderr
        else:  # killed, finished before the signal, or signalled before Python could handle it
            assert proc.returncode in (-kill, 0), (proc.returncode, stderr)
        outcomes.append(proc.returncode)

    proc = subprocess.run([*base, "--resume", str(run_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert without_time(read_metrics(run_dir)) == without_time(read_metrics(whole))
    assert read_json(run_dir / "result.json")["test_accuracy"] == read_json(whole / "result.json")["test_accuracy"]
    named = set(read_json(run_dir / "checkpoint.json")["files"])
    assert {p.name for p in run_dir.iterdir() if p.name.startswith(("checkpoint-", "."))} == named
    print("exit statuses of the killed runs:", dict(Counter(outcomes)))  # for the record, with -s
    # The kills landed while it trained, both kinds.
    assert {-signal.SIGKILL, 128 + signal.SIGTERM} <= set(outcomes), outcomes
