"""What the data-parallel tests of the three frameworks share (tests/<framework>/test_distributed_*.py).

2 processes train on the shares of the same global batches as 1 process; they differ only in the
order of float sums (each share's loss summed apart, the framework's all-reduce), so the metrics
agree to LOSS_RTOL and within ACC_IMAGES images (a logit that ties at 1e-7 could flip a prediction).
"""

import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, read_json, read_metrics

# 4001 images: 15 full batches of 256 and one of 161, shared 80 + 81 (the weighting by the global batch)
SMALL = ["--limit-train", "4001", "--val-size", "500", "--limit-test", "500", "--epochs", "2", "--threads", "1"]
IMAGES = {"train": 4001, "val": 500}
LOSS_RTOL, ACC_IMAGES = 1e-5, 1  # seen: 5e-8 (PyTorch), and the same predictions


def train_py(framework):
    return str(ROOT / f"train_{framework}" / "train.py")


def command(framework, mnist_dir, out, name):
    """train.py's arguments for the run `name` in `out` (after the Python or the launcher)."""
    return [train_py(framework), "--data-dir", str(mnist_dir), "--output-dir", str(out), "--run-name", name] + [
        "--no-progress"
    ]


def one_process(framework, mnist_dir, out, *args):
    """The same run in one process, as the reference: its run folder."""
    proc = subprocess.run(
        [sys.executable, *command(framework, mnist_dir, out, "run"), *SMALL, *args], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return out / "run"


def finished(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out or "", err or ""


def wait_for_checkpoint(proc, run_dir):
    """Until the run's first checkpoint (or the end of `proc`)."""
    while proc.poll() is None and not (run_dir / "checkpoint.json").exists():
        time.sleep(0.01)


def lose_a_peer(survivor, lost, run_dir, how):
    """Once the run has its first checkpoint, `lost` "dies" (SIGKILL) or "hangs" (SIGSTOP): the
    survivor's (exit status, seconds it took after, stderr); `lost` is killed in the end."""
    wait_for_checkpoint(survivor, run_dir)
    lost.send_signal({"dies": signal.SIGKILL, "hangs": signal.SIGSTOP}[how])
    started = time.monotonic()
    try:
        code, _, stderr = finished(survivor, timeout=60)
    finally:
        lost.kill()
    finished(lost)
    return code, time.monotonic() - started, stderr


def one_line(stderr):
    """The one line a failed run prints."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def same_metrics(rows, expected, images=IMAGES):
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        row, want = ({k: float(v) for k, v in r.items()} for r in (row, want))
        for key in ("train_loss", "val_loss"):
            assert row[key] == pytest.approx(want[key], rel=LOSS_RTOL), (key, row, want)
        assert abs(row["train_acc"] - want["train_acc"]) * images["train"] <= ACC_IMAGES
        assert abs(row["val_acc"] - want["val_acc"]) * images["val"] <= ACC_IMAGES


def check_two_against_one(out, stdout):
    """The reference runs, "one" (1 process) and "two" (2) in `out`, `stdout` rank 0's: the same
    metrics, rank 0 alone writes and prints; returns the 2-process run folder."""
    one, two = out / "one" / "run", out / "two" / "run"
    same_metrics(read_metrics(two), read_metrics(one))
    assert [path.name for path in (out / "two").iterdir()] == ["run"]  # one run folder, rank 0's
    assert read_json(two / "result.json")["processes"] == 2
    assert read_json(one / "result.json")["processes"] == 1
    assert stdout.count("test accuracy") == 1 and "2 processes" in stdout  # rank 0 alone prints
    a = read_json(one / "result.json")["test_accuracy"]
    assert read_json(two / "result.json")["test_accuracy"] == pytest.approx(a, abs=ACC_IMAGES / 500)
    return two
