"""Data-parallel TensorFlow: train.py as the workers of a TF_CONFIG cluster
(MultiWorkerMirroredStrategy, inside the project's own training step), each started as a
scheduler would start it, with its own TF_CONFIG. TensorFlow has no launcher of its own: a worker
that fails is left to the others, which must end on their own. What the three frameworks' tests
share, and the tolerances: tests/distributed_contract.py."""

import os
import signal
import socket
import subprocess
import sys

import keras
import pytest
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

from lenet5.training.distributed import free_port, tf_config

FRAMEWORK = "tensorflow"


def workers(mnist_dir, out, name, *args, ranks=(0, 1), hosts=None, prefix=(), python=(), env=None, **popen):
    """The workers of a run, each with its TF_CONFIG (by default two on 127.0.0.1, free ports);
    `ranks` those started. `prefix` goes before the Python (ip netns exec ...), `python` after it."""
    hosts = hosts or [f"127.0.0.1:{free_port()}" for _ in range(2)]
    popen = dict(dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), **popen)
    return [
        subprocess.Popen(
            [*prefix, sys.executable, *python, *command(FRAMEWORK, mnist_dir, out, name), *args],
            env=dict(os.environ, **(env or {}), TF_CONFIG=tf_config(hosts, rank)),
            **popen,
        )
        for rank in ranks
    ]


def all_finished(procs, timeout=300):
    try:
        return [finished(proc, timeout) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()


@pytest.fixture(scope="module")
def reference_runs(mnist_dir, tmp_path_factory):
    """One process, and two workers, of the same small run: the output folder, rank 0's stdout."""
    out = tmp_path_factory.mktemp("distributed")
    one_process(FRAMEWORK, mnist_dir, out / "one")
    (code, stdout, stderr), (code1, _, stderr1) = all_finished(workers(mnist_dir, out / "two", "run", *SMALL))
    assert code == 0 and code1 == 0, stderr + stderr1
    return out, stdout


def test_two_workers_train_to_the_metrics_of_one_process_and_rank_0_alone_writes(reference_runs):
    two = check_two_against_one(*reference_runs)
    keras.saving.load_model(two / "model.keras")  # Keras' own loader, outside any strategy


@pytest.mark.parametrize("signal_", [signal.SIGTERM, signal.SIGINT], ids=["sigterm-one-worker", "ctrl-c"])
def test_a_signal_stops_every_worker_at_one_checkpoint_and_the_run_resumes_to_the_same_metrics(
    reference_runs, mnist_dir, tmp_path, signal_
):
    """SIGTERM to worker 1 alone (a scheduler's); or Ctrl-C, which the terminal sends to the
    whole process group: every worker."""
    out, _ = reference_runs
    run_dir = tmp_path / "run"
    procs = workers(mnist_dir, tmp_path, "run", *SMALL, "--checkpoint-every", "3", start_new_session=True)
    wait_for_checkpoint(procs[0], run_dir)
    if signal_ == signal.SIGTERM:
        procs[1].send_signal(signal.SIGTERM)
    else:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGINT)
    (code0, _, stderr0), (code1, _, stderr1) = all_finished(procs, timeout=120)
    assert code0 == code1 == 128 + signal_ and not (run_dir / "result.json").exists(), stderr0 + stderr1
    what = "stopped by SIGTERM" if signal_ == signal.SIGTERM else "interrupted"
    assert f"rank 1 of 2: {what}; rank 0 says what is kept" in stderr1
    assert f"rank 0 of 2: {what}; the checkpoint at epoch" in stderr0
    checkpoint = read_json(run_dir / "checkpoint.json")
    assert checkpoint["step"] % 3 == 0 or checkpoint["partial"] is None  # both stopped at one step

    for code, _, stderr in all_finished(workers(mnist_dir, tmp_path, "run", "--resume", str(run_dir))):
        assert code == 0, stderr
    same_metrics(read_metrics(run_dir), read_metrics(out / "two" / "run"))


def test_a_worker_that_dies_ends_the_other_with_one_line(mnist_dir, tmp_path):
    rank0, rank1 = workers(mnist_dir, tmp_path, "run", *SMALL, "--checkpoint-every", "2", "--peer-timeout", "30")
    code, _, stderr = lose_a_peer(rank0, rank1, tmp_path / "run", "dies")
    assert code == 1
    line = one_line(stderr)
    assert line.startswith("train.py: error: rank 0 of 2: lost the other processes: "), line
    assert "timed out" not in line, line  # told at once (the connection reset), not after --peer-timeout
    assert "the checkpoint at epoch 1" in line and "--resume" in line


def test_a_worker_that_hangs_is_told_by_tensorflows_heartbeats(mnist_dir, tmp_path):
    """A worker stopped whole (SIGSTOP) stops TensorFlow's heartbeats too: its coordination service
    tells the others (in 5-10 s here), before --peer-timeout."""
    rank0, rank1 = workers(mnist_dir, tmp_path, "run", *SMALL, "--checkpoint-every", "2", "--peer-timeout", "30")
    code, _, stderr = lose_a_peer(rank0, rank1, tmp_path / "run", "hangs")
    assert code == 1, stderr[-2000:]  # not SIGSEGV, as TensorFlow's own timeout once ended it (PeerWatch)
    line = one_line(stderr)
    assert line.startswith("train.py: error: rank 0 of 2: lost the other processes: "), line
    assert "(stopped sending heartbeats): /job:worker/replica:0/task:1" in line, line  # a hang, told from a death
    assert "the checkpoint at epoch 1" in line and "--resume" in line


# A worker alive, its heartbeats going on, but stuck after its first checkpoint (as on a file
# system that hangs): train.py run with Run.save_checkpoint made to wait for an hour after it, and
# its own watch off (it would end it, and the other would see a death).
STUCK = """import runpy, sys, time
from lenet5.training.distributed import PeerWatch
from lenet5.training.run import Run
PeerWatch._watch = lambda self: None
save_checkpoint = Run.save_checkpoint
def stuck(*args, **kwargs):
    save_checkpoint(*args, **kwargs)
    time.sleep(3600)
Run.save_checkpoint = stuck
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_worker_stuck_ends_the_other_after_the_peer_timeout(mnist_dir, tmp_path):
    """10 s: the first agreement comes after TensorFlow has traced the step (3.3 s seen, 5 runs on 2 cores)."""
    hosts = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    args = (*SMALL, "--checkpoint-every", "2", "--peer-timeout", "10")
    (rank0,) = workers(mnist_dir, tmp_path, "run", *args, ranks=(0,), hosts=hosts)
    (rank1,) = workers(mnist_dir, tmp_path, "run", *args, ranks=(1,), hosts=hosts, python=("-c", STUCK))
    try:
        ((code, _, stderr),) = all_finished([rank0], timeout=60)
    finally:
        rank1.kill()
        finished(rank1)
    assert code == 1, stderr[-2000:]
    line = one_line(stderr)
    lost = "train.py: error: rank 0 of 2: lost the other processes: no answer within --peer-timeout 10 s; "
    assert line.startswith(lost), line
    assert "the checkpoint at epoch 1, step 2 is kept" in line and "--resume" in line


def test_bad_launches_get_one_line_each(mnist_dir, tmp_path):
    (alone,) = workers(mnist_dir, tmp_path, "never", *SMALL, "--peer-timeout", "3", ranks=(0,))
    ((code, _, stderr),) = all_finished([alone], timeout=60)
    assert code == -signal.SIGKILL  # killed by its watchdog
    line = one_line(stderr)
    assert line.startswith("train.py: error: cannot start the cluster 127.0.0.1:") and "not every worker" in line

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        hosts = [f"127.0.0.1:{taken.getsockname()[1]}", f"127.0.0.1:{free_port()}"]
        ((code, _, stderr),) = all_finished(workers(mnist_dir, tmp_path, "taken", *SMALL, ranks=(0,), hosts=hosts))
    assert code == 1
    line = one_line(stderr)
    assert line.startswith("train.py: error: cannot start the cluster 127.0.0.1:"), line

    for code, _, stderr in all_finished(workers(mnist_dir, tmp_path, "odd", *SMALL, "--batch-size", "255")):
        assert code == 1
        assert "--batch-size 255 is the global batch, shared by 2 processes: it must be a multiple of 2" in stderr
    assert not any(tmp_path.glob("odd*"))


def test_two_machines_train_to_the_metrics_of_one_process(reference_runs, two_hosts, mnist_dir, tmp_path):
    """A worker on each "machine", the cluster's addresses in TF_CONFIG."""
    out, _ = reference_runs
    hosts = [f"{address}:29500" for _, _, address in two_hosts]
    procs = [
        workers(
            mnist_dir, tmp_path / host, "run", *SMALL, ranks=(i,), hosts=hosts, prefix=("ip", "netns", "exec", host)
        )[0]
        for i, (host, _, _) in enumerate(two_hosts)
    ]
    for code, _, stderr in all_finished(procs):
        assert code == 0, stderr
    first, second = (tmp_path / host for host, _, _ in two_hosts)
    same_metrics(read_metrics(first / "run"), read_metrics(out / "one" / "run"))
    assert not second.exists()  # the second machine's worker wrote nothing
