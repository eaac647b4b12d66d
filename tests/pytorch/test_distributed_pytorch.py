"""Data-parallel PyTorch: train.py under torchrun (DistributedDataParallel, gloo on the CPU), and
started by hand with RANK and WORLD_SIZE, for what a process does on its own when a peer fails.
What the three frameworks' tests share, and the tolerances: tests/distributed_contract.py."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import read_json, read_metrics
from distributed_contract import (
    SMALL,
    check_two_against_one,
    command,
    finished,
    lose_a_peer,
    one_line,
    one_process,
    same_metrics,
    wait_for_checkpoint,
)

from lenet5.training.distributed import free_port, launch
from model_pytorch import build

FRAMEWORK = "pytorch"
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def torchrun(mnist_dir, out, name, *args, nproc=2, **popen):
    [(cmd, _)] = launch(FRAMEWORK, sys.executable, nproc, [*command(FRAMEWORK, mnist_dir, out, name), *args])
    return subprocess.Popen(cmd, text=True, **popen)


def by_hand(mnist_dir, out, name, *args, ranks=(0, 1), size=2, port=None):
    """The ranks of a run started without torchrun (as a scheduler would, with the variables set)."""
    env = dict(os.environ, WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port or free_port()))
    return [
        subprocess.Popen(
            [sys.executable, *command(FRAMEWORK, mnist_dir, out, name), *args],
            env=dict(env, RANK=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in ranks
    ]


def rank_pid(parent, rank, timeout=120):
    """The pid of the worker of `rank` that torchrun (`parent`) started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(child)
        time.sleep(0.1)
    raise AssertionError(f"torchrun started no rank {rank}")


@pytest.fixture(scope="module")
def reference_runs(mnist_dir, tmp_path_factory):
    """One process, and two under torchrun, of the same small run: (run folders, output folders)."""
    out = tmp_path_factory.mktemp("distributed")
    one_process(FRAMEWORK, mnist_dir, out / "one")
    two = torchrun(mnist_dir, out / "two", "run", *SMALL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    code, stdout, stderr = finished(two)
    assert code == 0, stderr
    return out, stdout


def test_two_processes_train_to_the_metrics_of_one_and_rank_0_alone_writes(reference_runs):
    two = check_two_against_one(*reference_runs)
    model = build("lenet5", 10)
    model.load_state_dict(torch.load(two / "model.pt", weights_only=True))  # the module's weights, no "module."


@pytest.mark.parametrize("signal_", [signal.SIGTERM, signal.SIGINT], ids=["sigterm-one-rank", "ctrl-c"])
def test_a_signal_stops_every_rank_at_one_checkpoint_and_the_run_resumes_to_the_same_metrics(
    reference_runs, mnist_dir, tmp_path, signal_
):
    """SIGTERM to rank 1 alone (a scheduler's); or Ctrl-C, which the terminal sends to the whole
    process group: torchrun, which then sends SIGTERM on top, and every rank."""
    out, _ = reference_runs
    run_dir = tmp_path / "run"
    proc = torchrun(
        mnist_dir, tmp_path, "run", *SMALL, "--checkpoint-every", "3", stderr=subprocess.PIPE, start_new_session=True
    )
    rank1 = rank_pid(proc, 1)
    wait_for_checkpoint(proc, run_dir)
    if signal_ == signal.SIGTERM:
        os.kill(rank1, signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    code, _, stderr = finished(proc, timeout=120)
    assert code != 0 and not (run_dir / "result.json").exists()
    what = "stopped by SIGTERM" if signal_ == signal.SIGTERM else "interrupted"
    assert f"rank 1 of 2: {what}; rank 0 says what is kept" in stderr
    assert f"rank 0 of 2: {what}; the checkpoint at epoch" in stderr
    checkpoint = read_json(run_dir / "checkpoint.json")
    assert checkpoint["step"] % 3 == 0 or checkpoint["partial"] is None  # both ranks stopped at one step

    resumed = torchrun(mnist_dir, tmp_path, "run", "--resume", str(run_dir), stderr=subprocess.PIPE)
    code, _, stderr = finished(resumed)
    assert code == 0, stderr
    same_metrics(read_metrics(run_dir), read_metrics(out / "two" / "run"))


def test_a_rank_that_dies_ends_the_other_with_one_line(mnist_dir, tmp_path):
    """Without torchrun, which would stop the others itself: the gloo connection closes."""
    rank0, rank1 = by_hand(mnist_dir, tmp_path, "run", *SMALL, "--checkpoint-every", "2", "--peer-timeout", "30")
    code, _, stderr = lose_a_peer(rank0, rank1, tmp_path / "run", "dies")
    assert code == 1
    line = one_line(stderr)
    assert line.startswith("train.py: error: rank 0 of 2: lost the other processes: "), line
    assert "Timed out" not in line, line  # told by gloo at once, not found out after --peer-timeout
    assert "the checkpoint at epoch 1" in line and "--resume" in line


def test_a_rank_that_hangs_ends_the_other_after_the_peer_timeout(mnist_dir, tmp_path):
    rank0, rank1 = by_hand(mnist_dir, tmp_path, "run", *SMALL, "--checkpoint-every", "2", "--peer-timeout", "5")
    code, _, stderr = lose_a_peer(rank0, rank1, tmp_path / "run", "hangs")
    assert code == 1, stderr
    line = one_line(stderr)
    assert "rank 0 of 2: lost the other processes: Timed out" in line, line


def test_bad_launches_get_one_line_each(mnist_dir, tmp_path):
    (alone,) = by_hand(mnist_dir, tmp_path, "never", *SMALL, "--peer-timeout", "3", ranks=(0,))
    code, _, stderr = finished(alone, timeout=60)
    assert code == 1
    line = one_line(stderr)
    assert line.startswith("train.py: error: cannot start the process group at 127.0.0.1:"), line
    assert line.endswith("waiting for clients. 1/2 clients joined"), line

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        (rank0,) = by_hand(mnist_dir, tmp_path, "taken", *SMALL, ranks=(0,), port=taken.getsockname()[1])
        code, _, stderr = finished(rank0, timeout=60)
    assert code == 1
    line = one_line(stderr)
    assert line.startswith("train.py: error: cannot start the process group at 127.0.0.1:") and "in use" in line

    ranks = by_hand(mnist_dir, tmp_path, "odd", *SMALL, "--batch-size", "255")
    for rank in ranks:
        code, _, stderr = finished(rank, timeout=60)
        assert code == 1
        assert "--batch-size 255 is the global batch, shared by 2 processes: it must be a multiple of 2" in stderr
    assert not any(tmp_path.glob("odd*"))


def test_two_machines_train_to_the_metrics_of_one_process(reference_runs, two_hosts, mnist_dir, tmp_path):
    """torchrun on each "machine", with --nnodes 2 and the first one's address. gloo finds its
    interface from the host name, which resolves to 127.0.0.1 here: GLOO_SOCKET_IFNAME names it."""
    out, _ = reference_runs
    master = two_hosts[0][2]
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", host, TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(i)]
            + [
                "--master-addr",
                master,
                "--master-port",
                "29400",
                *command(FRAMEWORK, mnist_dir, tmp_path / host, "run"),
                *SMALL,
            ],
            env=dict(os.environ, GLOO_SOCKET_IFNAME=dev),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, (host, dev, _) in enumerate(two_hosts)
    ]
    for proc in procs:
        code, _, stderr = finished(proc)
        assert code == 0, stderr
    first, second = (tmp_path / host for host, _, _ in two_hosts)
    same_metrics(read_metrics(first / "run"), read_metrics(out / "one" / "run"))
    assert not second.exists()  # the second machine's rank 1 wrote nothing
