"""The scheduler and the servers of a data-parallel MXNet run (train_mxnet/launch.py): the launcher
runs train.py's command in each role, told by DMLC_ROLE, and importing MXNet runs the role (its
kvstore_server module) until the workers stop it."""

import os
import signal
import sys

from lenet5.files import first_line


def serve():
    """Run this process's role; an error (the scheduler's port taken) in one line. Ctrl-C and
    SIGTERM, which a terminal or a batch scheduler sends to every process of the job, are the
    workers' to act on: they agree on a checkpoint through the servers, then stop them (or
    launch.py does)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    role = os.environ["DMLC_ROLE"]
    where = f"{os.environ.get('DMLC_PS_ROOT_URI')}:{os.environ.get('DMLC_PS_ROOT_PORT')}"
    try:
        import mxnet  # noqa: F401  (runs the role, then exits)
    except Exception as error:  # MXNetError, whose module did not finish importing
        line = first_line(error)
        if role == "scheduler" and "bind failed" in line:
            line = "bind failed, is the port in use?"
        print(f"train.py: error: the {role} cannot start at {where}: {line}", file=sys.stderr)
        return 1
    return 0
