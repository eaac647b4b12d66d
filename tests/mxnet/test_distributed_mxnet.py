"""Data-parallel MXNet: train.py under the wheel's launcher (train_mxnet/launch.py: a scheduler, a
server per worker, the dist_sync kvstore), and its roles started by hand with the DMLC_ variables,
for what a worker does on its own when a peer fails. What the three frameworks' tests share, and
the tolerances (which MXNet keeps: seen 6e-8 in a loss, the same predictions):
tests/distributed_contract.py. Every process is killed at the end of its test, whatever happened."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from conftest import ROOT, read_json, read_metrics
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
from lenet5.training.runfolder import RunFolder
from model_mxnet.convert import native_model

FRAMEWORK = "mxnet"
LAUNCH = str(ROOT / "train_mxnet" / "launch.py")
PIPES = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@contextmanager
def launched(mnist_dir, out, name, *args, workers=2, **popen):
    """launch.py -n `workers` --launcher local, in a session of its own: all its processes are
    killed on the way out (scheduler and servers too)."""
    [(cmd, _)] = launch(FRAMEWORK, sys.executable, workers, [*command(FRAMEWORK, mnist_dir, out, name), *args])
    proc = subprocess.Popen(cmd, text=True, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        kill_session(proc)


def kill_session(proc):
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextmanager
def by_hand(mnist_dir, out, name, *args, workers=2, started=2, port=None):
    """A scheduler, one server and `started` of the `workers` workers, started as a cluster's
    scheduler would, with the variables set: (scheduler, server, [workers]); all killed at the end."""
    env = dict(
        os.environ,
        DMLC_PS_ROOT_URI="127.0.0.1",
        DMLC_PS_ROOT_PORT=str(port or free_port()),
        DMLC_INTERFACE="lo",
        DMLC_NUM_WORKER=str(workers),
        DMLC_NUM_SERVER="1",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, *command(FRAMEWORK, mnist_dir, out, name), *args],
            env=dict(env, DMLC_ROLE=role),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for role in ["scheduler", "server"] + ["worker"] * started
    ]
    try:
        yield procs[0], procs[1], procs[2:]
    finally:
        for proc in procs:
            kill_session(proc)
            for stream in (proc.stdout, proc.stderr):
                stream.close()


def worker_pids(launcher, timeout=120):
    """The pids of the workers that launch.py (`launcher`) started (its threads' children)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = []
        for task in Path(f"/proc/{launcher.pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                try:
                    environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
                except FileNotFoundError:
                    continue
                if b"DMLC_ROLE=worker" in environ:
                    pids.append(int(child))
        if len(pids) == 2:
            return pids
        time.sleep(0.1)
    raise AssertionError("launch.py started no 2 workers")


@pytest.fixture(scope="module")
def reference_runs(mnist_dir, tmp_path_factory):
    """One process, and two workers under launch.py, of the same small run: (output folder, stdout)."""
    out = tmp_path_factory.mktemp("distributed")
    one_process(FRAMEWORK, mnist_dir, out / "one")
    with launched(mnist_dir, out / "two", "run", *SMALL, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as two:
        code, stdout, stderr = finished(two, timeout=120)
    assert code == 0, stderr
    return out, stdout


def test_two_workers_train_to_the_metrics_of_one_process_and_rank_0_alone_writes(reference_runs):
    two = RunFolder(check_two_against_one(*reference_runs))
    native_model(two.final_model(FRAMEWORK), None)  # the exported graph, by MXNet's own SymbolBlock.imports


# train.py with every "GPU" a CPU device of MXNet's (cpu(0), cpu(1)): the code of several GPUs in one
# process, which this machine has not, on the device kvstore (dist_sync_device under launch.py)
TWO_DEVICES = (
    "import sys; from lenet5.training.cli import threads_before_import; threads_before_import(sys.argv[1:]); "
    "import mxnet as mx; from train_mxnet import train; train.devices_of = lambda device: [mx.cpu(0), mx.cpu(1)]; "
    "sys.exit(train.main(sys.argv[1:]))"
)


def test_two_devices_in_one_process_train_to_the_metrics_of_one(reference_runs, mnist_dir, tmp_path):
    out, _ = reference_runs
    args = command(FRAMEWORK, mnist_dir, tmp_path, "run")[1:]
    proc = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES, *args, *SMALL], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "on cpu(0), cpu(1) (" in proc.stdout
    same_metrics(read_metrics(tmp_path / "run"), read_metrics(out / "one" / "run"))


def test_two_workers_of_two_devices_train_lecun98_to_the_metrics_of_one_process(mnist_dir, tmp_path):
    """dist_sync_device; and train.py's --arch, which dmlc_tracker's parser took for its --archives."""
    lecun98 = ("--arch", "lecun98")
    one = one_process(FRAMEWORK, mnist_dir, tmp_path / "one", *lecun98)
    cmd = [sys.executable, LAUNCH, "-n", "2", "--launcher", "local", sys.executable, "-c", TWO_DEVICES]
    args = command(FRAMEWORK, mnist_dir, tmp_path / "two", "run")[1:]
    proc = subprocess.Popen([*cmd, *args, *SMALL, *lecun98], cwd=ROOT, text=True, start_new_session=True, **PIPES)
    try:
        code, stdout, stderr = finished(proc, timeout=120)
    finally:
        kill_session(proc)
    assert code == 0, stderr
    assert "on cpu(0), cpu(1) (" in stdout and "2 processes" in stdout
    same_metrics(read_metrics(tmp_path / "two" / "run"), read_metrics(one))
    assert read_json(tmp_path / "two" / "run" / "config.json")["arch"] == "lecun98"


@pytest.mark.parametrize("signal_", [signal.SIGTERM, signal.SIGINT], ids=["sigterm-one-worker", "ctrl-c"])
def test_a_signal_stops_both_workers_at_one_checkpoint_and_the_run_resumes_to_the_same_metrics(
    reference_runs, mnist_dir, tmp_path, signal_
):
    """SIGTERM to one worker alone (a scheduler's): the other learns of it at the next agreement;
    or Ctrl-C, which the terminal sends to the whole process group: launch.py, the scheduler and
    the servers (which leave it to the workers), and every worker."""
    out, _ = reference_runs
    run_dir = tmp_path / "run"
    with launched(mnist_dir, tmp_path, "run", *SMALL, "--checkpoint-every", "3", stderr=subprocess.PIPE) as proc:
        worker = worker_pids(proc)[1]
        wait_for_checkpoint(proc, run_dir)
        if signal_ == signal.SIGTERM:
            os.kill(worker, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        code, _, stderr = finished(proc, timeout=120)
    assert code == 128 + signal_ and not (run_dir / "result.json").exists(), stderr
    what = "stopped by SIGTERM" if signal_ == signal.SIGTERM else "interrupted"
    assert f"rank 1 of 2: {what}; rank 0 says what is kept" in stderr, stderr
    assert f"rank 0 of 2: {what}; the checkpoint at epoch" in stderr, stderr
    checkpoint = read_json(run_dir / "checkpoint.json")
    assert checkpoint["step"] % 3 == 0 or checkpoint["partial"] is None  # both stopped at one step

    with launched(mnist_dir, tmp_path, "run", "--resume", str(run_dir), stderr=subprocess.PIPE) as resumed:
        code, _, stderr = finished(resumed, timeout=120)
    assert code == 0, stderr
    same_metrics(read_metrics(run_dir), read_metrics(out / "two" / "run"))


@pytest.mark.parametrize("how", ["dies", "hangs"])
def test_a_worker_that_dies_or_hangs_ends_the_other_with_one_line_after_the_peer_timeout(mnist_dir, tmp_path, how):
    """ps-lite never says that a worker died, nor that one hangs (SIGSTOP): the other waits at the
    next agreement until its PeerWatch ends it, --peer-timeout after the last. Which worker is
    rank 0 is the scheduler's choice: either may be the one left."""
    args = (*SMALL, "--checkpoint-every", "2", "--peer-timeout", "5")
    with by_hand(mnist_dir, tmp_path, "run", *args) as (_, _, (survivor, victim)):
        code, _, stderr = lose_a_peer(survivor, victim, tmp_path / "run", how)
    assert code == 1, (code, stderr)
    line = one_line(stderr)
    lost = r"train.py: error: rank [01] of 2: lost the other processes: no answer within --peer-timeout 5 s; "
    assert re.match(lost, line), line
    kept = "the checkpoint at epoch 1" if line.startswith("train.py: error: rank 0") else "rank 0 says what is kept"
    assert kept in line, line


def test_bad_launches_get_one_line_each(mnist_dir, tmp_path):
    with launched(mnist_dir, tmp_path, "odd", *SMALL, "--batch-size", "255", stderr=subprocess.PIPE) as proc:
        code, _, stderr = finished(proc, timeout=60)
    assert code == 1
    odd = "train.py: error: --batch-size 255 is the global batch, shared by 2 processes: it must be a multiple of 2"
    assert stderr.count(odd) == 2, stderr  # each worker's line, on the launcher's stderr
    assert not any(tmp_path.glob("odd*"))

    # a worker that never comes: the one started waits for it, in the kvstore's start
    with by_hand(mnist_dir, tmp_path, "never", *SMALL, "--peer-timeout", "3", started=1) as (_, _, (alone,)):
        code, _, stderr = finished(alone, timeout=60)
    assert code == 1
    line = one_line(stderr)
    assert re.fullmatch(
        r"train.py: error: cannot start the kvstore at 127.0.0.1:\d+: no answer within --peer-timeout 3 s", line
    ), line

    with socket.socket() as taken:  # the scheduler's port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with by_hand(mnist_dir, tmp_path, "taken", *SMALL, "--peer-timeout", "3", port=port) as (scheduler, _, _):
            code, _, stderr = finished(scheduler, timeout=60)
    assert code == 1
    assert (
        one_line(stderr)
        == f"train.py: error: the scheduler cannot start at 127.0.0.1:{port}: bind failed, is the port in use?"
    )
    assert not any(tmp_path.glob("taken*"))
