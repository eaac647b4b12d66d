"""The measurements of python -m lenet5.bench: a train.py run, a baseline, data-parallel processes,
onnxruntime's inference, and the FLOP bound."""

import json
import math
import os
import subprocess
import time

import numpy as np
from tqdm import tqdm

from .. import envs
from ..config import ROOT, Config, resolve_threads
from ..data.download import TRAIN_SIZE
from ..data.splits import load_splits
from ..network import reference
from ..network.shapes import param_shapes
from ..training.distributed import launch
from ..training.runfolder import RunFolder

TARGET_ACCURACY = 0.99
QUICK_TEST = 1000
QUICK = ["--epochs", "2", "--limit-train", "2048", "--limit-test", str(QUICK_TEST)]


def flops_per_image():
    """(forward, training) FLOPs of one image: 2 per multiply-add of the convolutions and dense
    layers (each weight times the positions of its layer's output, traced through the numpy
    reference); training adds the weight gradients of every layer and the input gradients of all
    but C1 (the images need none). Pooling, activations and the optimizer are left out (< 1%)."""
    shapes = param_shapes()
    params = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    macs = {
        name: math.prod(shapes[f"{name}.weight"]) * math.prod(out.shape[2:])
        for name, out in reference.trace(params, np.zeros((1, 1, 28, 28), np.float32))
        if f"{name}.weight" in shapes
    }
    forward = sum(macs.values())
    return 2 * forward, 2 * (forward + forward + forward - macs["c1"])


def matmul_gflops(n=2048, seconds=2.0):
    """This machine's single-precision matrix-multiply rate (GFLOP/s), by numpy's BLAS: the best
    of repeated n x n products for about `seconds`."""
    a, b = (np.random.default_rng(i).standard_normal((n, n), dtype=np.float32) for i in range(2))
    a @ b  # warm-up: threads started, pages touched
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def run_measured(cmd, log, env=None):
    """Run a command with its output in `log`; return (exit code, peak RSS in MiB) of the process
    (wait4's maxrss: that child's own peak, not the largest child's so far)."""
    with open(log, "w") as f:
        f.write(f"$ {' '.join(map(str, cmd))}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def summarize(epochs, n_train, n_test, rss_mib):
    """Speed figures from per-epoch rows: {seconds, eval_seconds, test_acc}."""
    warm = epochs[1:] or epochs  # the first epoch pays for start-up (tracing, allocation)
    elapsed, reached = 0.0, None
    for row in epochs:
        elapsed += row["seconds"]
        if reached is None and row["test_acc"] >= TARGET_ACCURACY:
            reached = elapsed
    return {
        "epochs": len(epochs),
        "train_images_per_s": n_train * len(warm) / sum(r["seconds"] for r in warm),
        "eval_images_per_s": n_test * len(warm) / sum(r["eval_seconds"] for r in warm),
        "first_epoch_seconds": epochs[0]["seconds"],
        "epoch_seconds": float(np.median([r["seconds"] for r in warm])),
        "seconds_to_target": reached,
        "test_accuracy": epochs[-1]["test_acc"],
        "peak_rss_mib": rss_mib,
    }


def thread_args(threads):
    return ["--threads", str(threads)] if threads else []  # 0: each framework's own default


def thread_env(threads):
    """The children's environment: OMP_NUM_THREADS too, for what sizes its pool on import (MXNet)."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None


def bench_train_py(framework, args, work, threads=None, train_args=None, name="train.py", env=None):
    """train.py as users run it, its per-epoch test accuracy from --validate-on-test; `env`: more
    environment variables."""
    name = f"{framework}-{name}"
    threads = threads or args.threads
    cmd = [
        envs.env_python(framework),
        "-m",
        f"train_{framework}.train",
        "--validate-on-test",
        "--no-progress",
        "--output-dir",
        work,
        "--run-name",
        name,
        "--data-dir",
        args.data_dir,
        *thread_args(threads),
        *(train_args or args.train_args),
    ]
    env = {**(thread_env(threads) or os.environ), **(env or {})}
    code, rss = run_measured(cmd, work / f"{name}.log", env)
    if code:
        return None
    run = RunFolder(work / name)
    rows = [dict(row, test_acc=row["val_acc"]) for row in run.metrics()]  # --validate-on-test
    cfg = run.config()
    n_train, n_test = train_size(cfg), cfg.limit_test or 10_000
    return summarize(rows, n_train, n_test, rss)


def bench_processes(framework, args, work, n):
    """train.py in `n` data-parallel processes of one thread each: rank 0's training images/s."""
    name = f"{framework}-processes{n}"
    train = [ROOT / f"train_{framework}" / "train.py", "--no-progress", "--output-dir", work, "--run-name", name]
    train += ["--data-dir", args.data_dir, "--threads", "1", *args.scaling_args]
    procs = []
    with open(work / f"{name}.log", "w") as log:
        for cmd, env in launch(framework, envs.env_python(framework), n, train):
            log.write(f"$ {' '.join(f'{k}={v}' for k, v in env.items())} {' '.join(cmd)}\n")
            log.flush()
            env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env))
        codes = [proc.wait() for proc in procs]
    if any(codes):
        return None
    run = RunFolder(work / name)
    rows = [dict(row, test_acc=row["val_acc"]) for row in run.metrics()]
    return summarize(rows, train_size(run.config()), 1, 0)["train_images_per_s"]


def train_size(cfg):
    return min(cfg.limit_train or TRAIN_SIZE, TRAIN_SIZE - cfg.val_size)


def bench_baseline(framework, args, work, options=(), script="baseline", name="baseline"):
    """bench/<script>_<framework>.py, with more `options`, measured as train.py is."""
    out = work / f"{framework}-{name}.json"
    cmd = [
        envs.env_python(framework),
        ROOT / "bench" / f"{script}_{framework}.py",
        "--output",
        out,
        "--data-dir",
        args.data_dir,
        *thread_args(args.threads),
        *args.train_args,
        *options,
    ]
    code, rss = run_measured(cmd, work / f"{framework}-{name}.log", thread_env(args.threads))
    if code:
        return None
    result = json.loads(out.read_text())
    return summarize(result["epochs"], result["n_train"], result["n_test"], rss)


def bench_onnx(framework, args, work):
    """onnxruntime's inference speed on the test set, with train.py's trained weights of
    `framework` exported by python -m lenet5.onnx_export (in this process: it needs no framework)."""
    import onnxruntime

    from ..onnx_export import export, onnx_logits

    try:
        path, _ = export(work / f"{framework}-train.py", work / f"{framework}.onnx")
    except Exception as error:  # reported like a failed run: the table says so
        tqdm.write(f"ONNX export failed: {error}")
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = resolve_threads(args.threads), 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    test = load_splits(limit_test=QUICK_TEST if args.quick else 0, data_dir=args.data_dir, progress=False).test
    batch_size = Config.batch_size  # as train.py evaluates
    onnx_logits(session, test.x[:batch_size], batch_size)  # warm-up
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        logits = onnx_logits(session, test.x, batch_size)
        seconds.append(time.perf_counter() - start)
    return {
        "model": f"{framework} train.py run, exported",
        "eval_images_per_s": len(test) / float(np.median(seconds)),
        "test_accuracy": float((logits.argmax(1) == test.y).mean()),
    }
