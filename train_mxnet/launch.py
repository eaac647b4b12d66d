"""MXNet's own launcher (the wheel's mxnet/tools/launch.py), made to run here: data-parallel
training with the dist_sync kvstore (docs/distributed.md).

    python train_mxnet/launch.py -n 2 --launcher local python train_mxnet/train.py ...

-n is the number of workers (train.py's processes), -s that of the servers (as many as workers if
not given); one scheduler more. Each of them runs the command, told its role by DMLC_ROLE:
train.py trains in the workers, and MXNet's import runs the scheduler and the servers.

What this adds to the wheel's launcher, each for a reason, and nothing else:
- threading.Thread.isAlive, which its dmlc_tracker calls and Python 3.9 removed (is_alive);
- DMLC_PS_ROOT_URI=127.0.0.1 and DMLC_INTERFACE=lo unless set: the tracker gives the scheduler the
  address of the machine's first outward interface, where ps-lite's nodes, which bind to another,
  never met (the run hung); on one machine, the loopback;
- the command as given: the tracker parses it again, where train.py's --arch was its --archives,
  and runs it in bash joined with spaces (an argument with a space was two);
- an end: the local launcher waits for the scheduler alone, which waits for ever for a worker that
  died; here, once every worker has ended, the scheduler and servers are stopped and the exit status
  is the first failed worker's (its own line said why), and Ctrl-C or SIGTERM (which every worker
  receives too: they stop at one checkpoint) waits for the workers rather than leaving them behind.
"""

import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

threading.Thread.isAlive = threading.Thread.is_alive  # the tracker's, removed in Python 3.9


def wheel_launcher():
    """The wheel's tools/launch.py as a module, found without importing MXNet."""
    (package,) = importlib.util.find_spec("mxnet").submodule_search_locations
    spec = importlib.util.spec_from_file_location("mxnet_launch", Path(package) / "tools" / "launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    os.environ.setdefault("DMLC_PS_ROOT_URI", "127.0.0.1")
    os.environ.setdefault("DMLC_INTERFACE", "lo")
    from dmlc_tracker import tracker

    tracker.get_host_ip = lambda host_ip=None: os.environ["DMLC_PS_ROOT_URI"]  # the scheduler's address

    procs, workers, lock = [], [], threading.Lock()
    expected = []  # the number of workers, from their environment
    popen = subprocess.Popen

    def started(*args, **kwargs):  # the tracker's and local.exec_cmd's processes, kept to end them
        proc = popen(*args, **kwargs)
        env = kwargs.get("env") or {}
        with lock:
            procs.append(proc)
            if env.get("DMLC_ROLE") == "worker":
                workers.append(proc)
                expected[:] = [int(env["DMLC_NUM_WORKER"])]
        return proc

    def call(*args, **kwargs):  # a worker that fails is not started again, nor raises a traceback
        started(*args, **kwargs).wait()
        return 0

    subprocess.Popen, subprocess.call = started, call

    def on_signal(signum, frame):  # a terminal's Ctrl-C reaches every worker itself; SIGTERM is passed on
        with lock:
            for proc in workers:
                if proc.poll() is None and signum == signal.SIGTERM:
                    proc.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    launcher, usage = wheel_launcher(), []
    dmlc_opts = launcher.dmlc_opts

    def command_kept(opts):  # the command, past dmlc_tracker's parser, which read train.py's --arch as --archives
        command, opts.command = opts.command, ["command"]
        args = dmlc_opts(opts)
        args.command = [shlex.quote(word) for word in command]  # joined with spaces, run by bash
        return args

    launcher.dmlc_opts = command_kept

    def launch():
        try:
            launcher.main()
        except SystemExit as error:  # its options were wrong: argparse said why
            usage.append(error.code)

    thread = threading.Thread(target=launch, daemon=True)
    thread.start()
    while thread.is_alive():
        with lock:
            if expected and len(workers) == expected[0] and all(proc.poll() is not None for proc in workers):
                break
        thread.join(0.2)
    codes = [proc.wait() for proc in list(workers)]  # each ends by itself: its run, or its PeerWatch
    with lock:
        for proc in procs:  # the scheduler and servers, left waiting by a worker that failed
            if proc.poll() is None:
                proc.kill()
    if not codes:
        return usage[0] if usage else 1
    failed = [code if code > 0 else 128 - code for code in codes if code]  # killed by a signal: as a shell says
    return failed[0] if failed else 0


if __name__ == "__main__":
    sys.exit(main())
