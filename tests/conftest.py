"""Fixtures shared by the neutral tests and every framework's tests.

Real-data tests fetch MNIST through the project's own download code, into a fresh folder, from
the mirrors in LENET5_MNIST_MIRRORS (CI points it at a local copy) or the public ones.
"""

import csv
import functools
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from lenet5.config import ROOT
from lenet5.data import download
from lenet5.network import lecun98, weights

# .ci/run sets it: there, a test whose needs are missing (root, chromium, another environment)
# fails instead of skipping, so that CI cannot pass on tests that did not run.
NO_SKIPS = os.environ.get("LENET5_NO_SKIPS") == "1"


def need(condition, reason):
    """Go on when `condition` holds; else skip the test (a module, at its top), or fail it under LENET5_NO_SKIPS."""
    if not condition:
        if NO_SKIPS:
            pytest.fail(f"{reason} (LENET5_NO_SKIPS=1: nothing may be skipped)")
        pytest.skip(reason, allow_module_level=True)


def random_params(num_classes=10, seed=0, arch="lenet5"):
    """Weights of the right shapes drawn at random; lecun98's C3 as Table I wires it, its RBF
    centres the bitmaps."""
    rng = np.random.default_rng(seed)
    params = {k: rng.uniform(-0.3, 0.3, s).astype(np.float32) for k, s in weights.shapes(num_classes, arch).items()}
    if arch == "lecun98":
        params.update({"c3.weight": params["c3.weight"] * lecun98.C3_MASK, "output.weight": lecun98.RBF_CENTRES})
    return params


def write_idx(path, array):
    """Write a uint8 array as an IDX file (gzip-compressed if the name ends in .gz)."""
    array = np.ascontiguousarray(array, np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes() + array.tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return raw


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    """A file:// mirror of four tiny IDX files (with their checksums patched in), and a cache dir.

    Returns (mirror folder, empty data folder, {name: decompressed bytes})."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 12),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 4),
    }
    raw = {name: write_idx(mirror / f"{name}.gz", a) for name, a in arrays.items()}
    monkeypatch.setattr(download, "FILES", {name: download._sha256(r) for name, r in raw.items()})
    monkeypatch.setenv("LENET5_MNIST_MIRRORS", mirror.as_uri() + "/")
    return mirror, tmp_path / "cache", raw


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """A folder holding the real MNIST, downloaded once per test session by the real code."""
    folder = tmp_path_factory.mktemp("mnist")
    download.load_mnist(folder, progress=False)
    return folder


def train_command(framework, mnist_dir, out, *args):
    """train.py's command line for a run of `framework` into the folder `out`, as the tests start it."""
    script = ROOT / f"train_{framework}" / "train.py"
    return [sys.executable, str(script), "--data-dir", str(mnist_dir), "--output-dir", str(out), "--no-progress", *args]


def train_in(out, mnist_dir, framework, *args, cwd=ROOT, check=True, run_name="run"):
    """Run a framework's train.py in a subprocess, as a user would, its runs in `out`; returns
    (process, run folder).

    A subprocess, not main() in-process: each run gets a fresh framework (seeds, threads,
    graph caches), exactly as from the shell."""
    cmd = train_command(framework, mnist_dir, out, *args)
    if run_name and "--resume" not in args:
        cmd += ["--run-name", run_name]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc, out / run_name if run_name else out


@pytest.fixture
def train(mnist_dir, tmp_path):
    """train_in for one test: its runs in its own folder."""
    return functools.partial(train_in, tmp_path / "runs", mnist_dir)


class SmallDisk:
    """A file system of its own (a tmpfs of `size` bytes), that leave(n) fills up to its last n bytes."""

    def __init__(self, path):
        self.path, self.filler = path, path / "filler"

    def free(self):
        stat = os.statvfs(self.path)
        return stat.f_bfree * stat.f_frsize

    def leave(self, n):
        """Resize the filler file so that `n` bytes (rounded up to whole pages) stay free."""
        self.filler.unlink(missing_ok=True)
        take = self.free() - n
        if take > 0:
            fd = os.open(self.filler, os.O_CREAT | os.O_WRONLY)
            try:
                os.posix_fallocate(fd, 0, take)
            finally:
                os.close(fd)


@pytest.fixture
def small_disk(tmp_path):
    """A 32 MB tmpfs mounted for the test (mount needs root, as CI has)."""
    path = tmp_path / "disk"
    path.mkdir()
    need(os.geteuid() == 0, "mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(path)], check=True)
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


@pytest.fixture
def interrupted_run(mnist_dir, tmp_path):
    """Start train.py and send it `signal_` (SIGKILL: a crash; SIGINT: Ctrl-C; SIGTERM: a batch
    scheduler) as soon as its first checkpoint exists; returns the run folder (its stderr goes to
    interrupted.stderr beside runs/)."""

    def run(framework, *args, signal_=signal.SIGKILL):
        run_dir = tmp_path / "runs" / "interrupted"
        cmd = train_command(framework, mnist_dir, run_dir.parent, "--run-name", run_dir.name, *args)
        with (
            open(run_dir.parent.parent / "interrupted.stderr", "w") as err,
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err) as proc,
        ):
            while proc.poll() is None and not (run_dir / "checkpoint.json").exists():
                time.sleep(0.005)
            proc.send_signal(signal_)
        expected = -signal.SIGKILL if signal_ == signal.SIGKILL else 128 + signal_
        assert proc.returncode == expected, f"train.py ended with {proc.returncode}, not {expected}"
        assert not (run_dir / "result.json").exists()
        return run_dir

    return run


# Runs `python -c CODE` or `python -m MODULE ARGS...` and writes its peak memory (VmHWM: this
# program's own; ru_maxrss would count the forking parent too) to a file as it exits.
PEAK_WRAPPER = """
import atexit, runpy, sys
report, kind, target, *rest = sys.argv[1:]
def write_peak():
    with open(report, "w") as f:
        f.write(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])
atexit.register(write_peak)
if kind == "-c":
    sys.argv = ["-c"]
    exec(compile(target, "<string>", "exec"), {"__name__": "__main__"})
else:
    sys.argv = [target, *rest]
    runpy.run_module(target, run_name="__main__", alter_sys=True)
"""


def peak_memory(kind, target, *args):
    """Peak resident memory (bytes) and output (stdout and stderr) of `python -c CODE` or
    `python -m MODULE ARGS`, run as a child."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "peak"
        cmd = [sys.executable, "-c", PEAK_WRAPPER, str(report), kind, target, *map(str, args)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return int(report.read_text()) * 1024, proc.stdout


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def read_json(path):
    return json.loads(Path(path).read_text())


def read_events(path):
    """The Events of a TensorBoard event file, read with tensorboardX's own protobuf classes:
    each record is its length (8 bytes), the length's CRC (4), the Event, the Event's CRC (4)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    raw, pos, events = Path(path).read_bytes(), 0, []
    while pos < len(raw):
        (length,) = struct.unpack("<Q", raw[pos : pos + 8])
        events.append(Event.FromString(raw[pos + 12 : pos + 12 + length]))
        pos += 12 + length + 4
    return events


def read_scalars(folder):
    """(step, tag, value) of every scalar in a TensorBoard folder's event files."""
    return [
        (event.step, value.tag, value.simple_value)
        for path in sorted(Path(folder).glob("events.out.tfevents.*"))
        for event in read_events(path)
        for value in event.summary.value
    ]


@pytest.fixture
def two_hosts():
    """Two network namespaces joined by a veth pair: two "machines", 10.77.<n>.1 and .2, each
    seeing the other through its own interface only (root, as in CI)."""
    need(os.geteuid() == 0, "network namespaces need root")
    tag = f"l5{os.getpid() % 10000}"
    hosts = [f"{tag}a", f"{tag}b"]
    net = f"10.77.{os.getpid() % 250}"

    def ip(*args):
        subprocess.run(["ip", *args], check=True)

    try:
        for host in hosts:
            ip("netns", "add", host)
        ip("link", "add", f"{tag}x", "type", "veth", "peer", "name", f"{tag}y")
        for i, (host, dev) in enumerate(zip(hosts, (f"{tag}x", f"{tag}y")), 1):
            ip("link", "set", dev, "netns", host)
            ip("-n", host, "addr", "add", f"{net}.{i}/24", "dev", dev)
            ip("-n", host, "link", "set", dev, "up")
            ip("-n", host, "link", "set", "lo", "up")
        yield [(host, dev, f"{net}.{i}") for i, (host, dev) in enumerate(zip(hosts, (f"{tag}x", f"{tag}y")), 1)]
    finally:
        for host in hosts:
            subprocess.run(["ip", "netns", "del", host], capture_output=True)
