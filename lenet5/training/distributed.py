"""Data-parallel training: what the three frameworks share when one run trains in several processes.

Each framework's own launcher starts the processes and tells each which one it is: torchrun
(RANK, WORLD_SIZE), TF_CONFIG (MultiWorkerMirroredStrategy), MXNet's tools/launch.py (the
dist_sync kvstore); each framework's own collectives average the gradients. What is the same in
all three is here: the global batch is --batch-size, and each batch of the one-process order is
cut into one contiguous share per process, in rank order, so that the processes together train
on the samples of one process, in its order. Rank 0 alone writes the run folder (lenet5.training.run).
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..config import ROOT
from .runfolder import RunError


@dataclass(frozen=True)
class World:
    """This process's place among the `size` processes of a data-parallel run."""

    rank: int = 0
    size: int = 1

    @property
    def writes(self):
        """Whether this process writes the run folder: rank 0, or the only process."""
        return self.rank == 0

    def describe(self):
        """For a run's first line: how many processes train it (nothing when one does)."""
        return f", {self.size} processes" if self.size > 1 else ""

    def check(self, batch_size):
        """Refuse a global batch that does not share evenly among the processes."""
        if batch_size % self.size:
            raise RunError(
                f"--batch-size {batch_size} is the global batch, shared by {self.size} processes: "
                f"it must be a multiple of {self.size}"
            )

    def share(self, x, y):
        """This process's contiguous rows of one global batch; in an epoch's last, smaller batch,
        shares differ by one image at most: each train.py weights its share's loss by the
        global batch, so that the gradient is still that of the global batch's mean loss."""
        n = len(y)
        start, stop = n * self.rank // self.size, n * (self.rank + 1) // self.size
        return x[start:stop], y[start:stop]


def free_port():
    """A TCP port free on the loopback now, for a launcher's rendezvous (or a test's server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tf_config(hosts, index):
    """TF_CONFIG for worker `index` of a TensorFlow cluster of `hosts` ("address:port" each)."""
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def launch(framework, python, n, train):
    """(command, extra environment) of each process that the framework's own launcher needs to run
    the train.py command line `train` with `python` in `n` data-parallel processes on this machine:
    torchrun, MXNet's launch.py (one command each), or, TensorFlow having no launcher, one worker
    per process with its TF_CONFIG."""
    python = Path(python)
    if framework == "pytorch":
        commands = [([python.with_name("torchrun"), "--nproc-per-node", n, "--master-port", free_port(), *train], {})]
    elif framework == "mxnet":
        commands = [([python, ROOT / "train_mxnet" / "launch.py", "-n", n, "--launcher", "local", python, *train], {})]
    else:
        hosts = [f"127.0.0.1:{free_port()}" for _ in range(n)]  # TensorFlow: each worker told by TF_CONFIG
        commands = [([python, *train], {"TF_CONFIG": tf_config(hosts, i)}) for i in range(n)]
    return [([str(part) for part in cmd], env) for cmd, env in commands]


# Waits on its stdin: closed in time, it ends; else it says why and kills the process that waits.
_WATCHDOG = """
import os, select, signal, sys
if not select.select([sys.stdin], [], [], float(sys.argv[2]))[0]:
    print(sys.argv[3], file=sys.stderr, flush=True)
    os.kill(int(sys.argv[1]), signal.SIGKILL)
"""


@contextmanager
def deadline(seconds, message):
    """Within the block, a framework call that waits for the other processes longer than `seconds`
    ends this process, `message` printed as lenet5.training.cli prints an error. For the waits that have no
    timeout of their own (TensorFlow's for every worker of TF_CONFIG to start): they hold Python's
    lock in C++, so no thread of this process could end it, and the watchdog is a process."""
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), f"train.py: error: {message}"],
        stdin=subprocess.PIPE,
    )
    try:
        yield
    finally:
        watchdog.stdin.close()
        watchdog.wait()


class PeerWatch:
    """Ends the process with one line when the workers have not agreed (all_sum) for
    --peer-timeout seconds, where Python cannot raise (the main thread waits inside the framework).
    MXNet's ps-lite waits for ever for a worker that died or hangs, and for one that never comes.
    TensorFlow's heartbeats tell a frozen worker, not one alive but stuck, and its own timeout
    (CommunicationOptions) once ended the surviving worker by SIGSEGV (docs/distributed.md)."""

    def __init__(self, timeout, what):
        self.timeout, self.what, self.kept = timeout, what, None
        self.deadline = time.monotonic() + timeout
        threading.Thread(target=self._watch, daemon=True).start()

    def lost(self, what, kept=None):
        self.what, self.kept = what, kept
        self.alive()

    def keeps(self, kept):
        """`kept()`: what is kept, said after the line (lenet5.training.run.Run.kept)."""
        self.kept = kept

    def alive(self):
        self.deadline = time.monotonic() + self.timeout

    def close(self):
        """At the end of a run: the kvstore's barrier at exit is not watched (nor the run kept alive)."""
        self.kept, self.deadline = None, None

    def _watch(self):
        while self.deadline and time.monotonic() < self.deadline:
            time.sleep(min(1.0, self.timeout / 10))
        if self.deadline is None:
            return
        kept = f"; {self.kept()}" if self.kept else ""
        print(f"train.py: error: {self.what}no answer within --peer-timeout {self.timeout} s{kept}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)  # what waits for the lost workers would wait for ever, in exit too
