"""Data-parallel training: what the three frameworks share when one run trains in several processes.

Each framework's own launcher starts the processes and tells each which one it is: torchrun
(RANK, WORLD_SIZE), TF_CONFIG (MultiWorkerMirroredStrategy), MXNet's tools/launch.py (the
dist_sync kvstore); each framework's own collectives average the gradients. What is the same in
all three is here: the global batch is --batch-size, and each batch of the one-process order is
cut into one contiguous share per process, in rank order, so that the processes together train
on the samples of one process, in its order. Rank 0 alone writes the run folder (lenet5.run).
"""

import json
import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass

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
    ends this process, `message` printed as lenet5.cli prints an error. For the waits that have no
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
