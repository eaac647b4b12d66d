"""Training speed, side by side: each framework's train.py against an idiomatic baseline of it.

    python -m lenet5.bench                      # all three frameworks, the default recipe (~10 min)
    python -m lenet5.bench --quick              # a tiny run that only shows it works (CI)
    python -m lenet5.bench --processes 2        # and data-parallel train.py in 2 processes

For each framework, in its own environment, one after the other on this machine:
  * train.py with the default recipe and --validate-on-test, so that metrics.csv holds the test
    accuracy after every epoch: training images/s over the epochs after the first (warm-up),
    evaluation images/s, time to 99.0% test accuracy, peak memory (RSS) of the process;
  * the idiomatic baseline, bench/baseline_<framework>.py (PyTorch DataLoader loop, Keras
    model.fit, Gluon DataLoader loop) with the same model, data and recipe, measured the same way;
with --processes N, short train.py runs in N data-parallel processes of one thread each, each
framework's own launcher starting them (docs/distributed.md), beside one process of 1 and of N
threads (the --scaling runs); and, once, the FLOP bound: LeNet-5's FLOPs per training image and
this machine's single-precision matrix-multiply rate (numpy), so that each framework's share of
the peak shows.
It prints a table and writes bench.json and bench.md into --output-dir.
"""

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import cli, envs, reference
from .config import FRAMEWORK_NAMES as NAMES
from .config import FRAMEWORKS, ROOT, Config, param_shapes, resolve_threads
from .data import load_splits
from .distributed import free_port, tf_config
from .download import TRAIN_SIZE, default_data_dir, load_mnist
from .files import write_json, write_text
from .idx import DataError
from .runfolder import RunFolder

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


def bench_train_py(framework, args, work, threads=None, train_args=None, name="train.py"):
    """train.py as users run it, its per-epoch test accuracy from --validate-on-test."""
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
    code, rss = run_measured(cmd, work / f"{name}.log", thread_env(threads))
    if code:
        return None
    run = RunFolder(work / name)
    rows = [dict(row, test_acc=row["val_acc"]) for row in run.metrics()]  # --validate-on-test
    cfg = run.config()
    n_train, n_test = train_size(cfg), cfg.limit_test or 10_000
    return summarize(rows, n_train, n_test, rss)


def launch(framework, n, train):
    """(command, extra environment) of each process a framework's launcher needs to run the
    train.py command line `train` in `n` data-parallel processes on this machine."""
    python = envs.env_python(framework)
    if framework == "pytorch":
        return [([python.with_name("torchrun"), "--nproc-per-node", n, "--master-port", free_port(), *train], {})]
    if framework == "mxnet":
        return [([python, ROOT / "train_mxnet" / "launch.py", "-n", n, "--launcher", "local", python, *train], {})]
    hosts = [f"127.0.0.1:{free_port()}" for _ in range(n)]  # TensorFlow: each worker told by TF_CONFIG
    return [([python, *train], {"TF_CONFIG": tf_config(hosts, i)}) for i in range(n)]


def bench_processes(framework, args, work, n):
    """train.py in `n` data-parallel processes of one thread each: rank 0's training images/s."""
    name = f"{framework}-processes{n}"
    train = [ROOT / f"train_{framework}" / "train.py", "--no-progress", "--output-dir", work, "--run-name", name]
    train += ["--data-dir", args.data_dir, "--threads", "1", *args.scaling_args]
    procs = []
    with open(work / f"{name}.log", "w") as log:
        for cmd, env in launch(framework, n, train):
            log.write(f"$ {' '.join(f'{k}={v}' for k, v in env.items())} {' '.join(map(str, cmd))}\n")
            log.flush()
            cmd = list(map(str, cmd))
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


def bench_baseline(framework, args, work):
    out = work / f"{framework}-baseline.json"
    cmd = [
        envs.env_python(framework),
        ROOT / "bench" / f"baseline_{framework}.py",
        "--output",
        out,
        "--data-dir",
        args.data_dir,
        *thread_args(args.threads),
        *args.train_args,
    ]
    code, rss = run_measured(cmd, work / f"{framework}-baseline.log", thread_env(args.threads))
    if code:
        return None
    result = json.loads(out.read_text())
    return summarize(result["epochs"], result["n_train"], result["n_test"], rss)


def bench_onnx(framework, args, work):
    """onnxruntime's inference speed on the test set, with train.py's trained weights of
    `framework` exported by python -m lenet5.onnx_export (in this process: it needs no framework)."""
    import onnxruntime

    from .onnx_export import export, onnx_logits

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


# ---- what a baseline script shares (they import this module: numpy and the standard library only)


def baseline_args(framework, argv=None):
    """The options of bench/baseline_<framework>.py: the train.py options the recipe needs."""
    parser = cli.Parser(
        prog=f"bench/baseline_{framework}.py",
        formatter_class=cli.HelpFormatter,
        description=f"Idiomatic {framework} training loop for python -m lenet5.bench.",
    )
    defaults = Config()
    parser.add_argument(
        "--epochs", type=cli.positive_int, default=defaults.epochs, help="passes over the training split"
    )
    parser.add_argument("--batch-size", type=cli.positive_int, default=defaults.batch_size, help="images per step")
    parser.add_argument("--lr", type=cli.positive_float, default=defaults.lr, help="peak learning rate (Adam, cosine)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=defaults.seed, help="random seed")
    parser.add_argument("--limit-train", type=cli.non_negative_int, default=0, help="first N training images (0: all)")
    parser.add_argument("--limit-test", type=cli.non_negative_int, default=0, help="first N test images (0: all)")
    parser.add_argument("--data-dir", default=str(default_data_dir()), help="MNIST cache folder")
    parser.add_argument("--threads", type=cli.non_negative_int, default=0, help="CPU threads (0: auto)")
    parser.add_argument("--output", required=True, help="JSON file for the measurements")
    args = parser.parse_args(argv)
    args.threads = resolve_threads(args.threads)
    return args


class EpochTimer:
    """Per-epoch seconds of training and of evaluation, and the test accuracy after each epoch."""

    def __init__(self):
        self.epochs = []

    def add(self, seconds, eval_seconds, test_acc):
        self.epochs.append({"seconds": seconds, "eval_seconds": eval_seconds, "test_acc": float(test_acc)})
        print(
            f"epoch {len(self.epochs)}: {seconds:.2f} s, test accuracy {test_acc:.2%} "
            f"(evaluated in {eval_seconds:.2f} s)",
            flush=True,
        )

    def write(self, path, n_train, n_test):
        write_json(Path(path), {"epochs": self.epochs, "n_train": n_train, "n_test": n_test})


# ---- the table


def table(results, gflops, flops, onnx=None):
    lines = [
        "| framework | code | train img/s | epoch s (first) | eval img/s | to 99.0% test | test acc "
        "| peak RSS MiB | % of matmul peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fw, row in results.items():
        for kind, label in (("train.py", "train.py"), ("baseline", "baseline")):
            r = row.get(kind)
            if r is None:
                lines.append(f"| {NAMES[fw]} | {label} | failed: see its log | | | | | | |")
                continue
            to = f"{r['seconds_to_target']:.1f} s" if r["seconds_to_target"] is not None else "not reached"
            share = r["train_images_per_s"] * flops / (gflops * 1e9)
            lines.append(
                f"| {NAMES[fw]} | {label} | {r['train_images_per_s']:,.0f} | {r['epoch_seconds']:.2f} "
                f"({r['first_epoch_seconds']:.2f}) | {r['eval_images_per_s']:,.0f} | {to} | "
                f"{r['test_accuracy']:.2%} | {r['peak_rss_mib']:,.0f} | {share:.1%} |"
            )
    if onnx:
        lines.append(
            f"| onnxruntime | {onnx['model']} | | | {onnx['eval_images_per_s']:,.0f} | | "
            f"{onnx['test_accuracy']:.2%} | | |"
        )
    return "\n".join(lines)


def scaling_table(scaling, train_args):
    """train.py's training images/s per thread count (epochs after the first of a short run)."""
    if not scaling:
        return ""
    counts = sorted({int(n) for row in scaling.values() for n in row})
    lines = [
        f"\ntrain.py images/s by --threads (`{' '.join(train_args)}`):\n",
        "| framework | " + " | ".join(f"{n} thread{'s' * (n > 1)}" for n in counts) + " |",
        "|---|" + "---:|" * len(counts),
    ]
    for fw, row in scaling.items():
        cells = [row.get(str(n)) for n in counts]
        lines.append(f"| {NAMES[fw]} | " + " | ".join(f"{c:,.0f}" if c else "failed" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def processes_table(processes, scaling, train_args):
    """train.py's training images/s in N processes of 1 thread, against 1 process of 1 and of N threads."""
    if not processes:
        return ""
    lines = [
        f"\ntrain.py images/s, data-parallel (`{' '.join(train_args)}`):\n",
        "| framework | processes x threads | images/s | vs 1 x 1 | vs 1 x N |",
        "|---|---|---:|---:|---:|",
    ]
    for fw, row in processes.items():
        for n, speed in row.items():
            one, wide = scaling.get(fw, {}).get("1"), scaling.get(fw, {}).get(n)
            cells = [f"{speed / base:.2f}x" if speed and base else "" for base in (one, wide)]
            lines.append(
                f"| {NAMES[fw]} | {n} x 1 | {f'{speed:,.0f}' if speed else 'failed'} | {cells[0]} | {cells[1]} |"
            )
    return "\n".join(lines) + "\n"


def ratios(results):
    """train.py's speed-up over its baseline per framework, and slowest vs fastest train.py."""
    out = {}
    speeds = {}
    for fw, row in results.items():
        if row.get("train.py") and row.get("baseline"):
            out[f"{fw}_speedup_over_baseline"] = (
                row["train.py"]["train_images_per_s"] / row["baseline"]["train_images_per_s"]
            )
        if row.get("train.py"):
            speeds[fw] = row["train.py"]["train_images_per_s"]
    if len(speeds) > 1:
        out["slowest_vs_fastest"] = max(speeds.values()) / min(speeds.values())
    return out


def main(argv=None):
    parser = cli.Parser(
        prog=cli.prog("lenet5.bench"), description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter
    )
    parser.add_argument(
        "--frameworks",
        nargs="+",
        choices=FRAMEWORKS,
        default=list(FRAMEWORKS),
        metavar="FW",
        help=f"frameworks to measure ({', '.join(FRAMEWORKS)})",
    )
    parser.add_argument(
        "--epochs",
        type=cli.positive_int,
        default=Config.epochs,
        help="epochs of the default recipe for train.py and the baselines",
    )
    parser.add_argument(
        "--threads",
        type=cli.non_negative_int,
        default=0,
        help="CPU threads for every run (0: each framework's default, as train.py's)",
    )
    parser.add_argument(
        "--scaling",
        nargs="*",
        type=cli.positive_int,
        metavar="N",
        help="also time short train.py runs with each of these thread counts (default: 1, 2, 4, ... "
        "up to the usable cores)",
    )
    parser.add_argument(
        "--processes",
        nargs="*",
        type=cli.positive_int,
        default=[],
        metavar="N",
        help="also time short train.py runs in N data-parallel processes of one thread each, with each "
        "framework's launcher (default: none; give --scaling 1 N too, to compare)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"tiny runs ({' '.join(QUICK)}) that show the benchmark works; their numbers mean nothing",
    )
    parser.add_argument(
        "--output-dir",
        default=str(cli.DEFAULT_OUTPUT_DIR / "bench"),
        metavar="DIR",
        help="where bench.json and bench.md (replaced by each run) and runs/ (the runs and their "
        "logs, a new folder each time) go",
    )
    parser.add_argument("--data-dir", default=str(default_data_dir()), metavar="DIR", help="MNIST cache folder")
    args = parser.parse_args(argv)
    args.train_args = QUICK if args.quick else ["--epochs", str(args.epochs)]
    args.scaling_args = QUICK if args.quick else ["--epochs", "3"]
    cores = len(os.sched_getaffinity(0))
    if args.scaling is None:
        args.scaling = [2**i for i in range(cores.bit_length()) if 2**i <= cores]
    out = Path(args.output_dir).expanduser().resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
        load_mnist(args.data_dir)
        for framework in args.frameworks:
            envs.ensure(framework)
    except (DataError, envs.EnvError, OSError) as error:
        sys.exit(f"lenet5.bench: error: {error}")

    gflops = matmul_gflops(seconds=0.5 if args.quick else 3.0)
    forward_flops, train_flops = flops_per_image()
    results = {}
    (out / "runs").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=out / "runs"))  # never reused
    jobs = [(fw, kind, None) for fw in args.frameworks for kind in ("train.py", "baseline")]
    jobs += [(fw, f"threads{n}", n) for fw in args.frameworks for n in args.scaling]  # short train.py runs
    jobs += [(fw, f"processes{n}", n) for fw in args.frameworks for n in args.processes]
    scaling, processes = {}, {}
    for fw, kind, threads in tqdm(jobs, unit="run", dynamic_ncols=True):
        if kind.startswith("processes"):
            result = processes.setdefault(fw, {})[str(threads)] = bench_processes(fw, args, work, threads)
        elif threads:
            result = bench_train_py(fw, args, work, threads, args.scaling_args, kind)
            scaling.setdefault(fw, {})[str(threads)] = result and result["train_images_per_s"]
        else:
            measure = bench_train_py if kind == "train.py" else bench_baseline
            result = results.setdefault(fw, {})[kind] = measure(fw, args, work)
        if result is None:
            tqdm.write(f"FAILED: {fw} {kind}; log: {work / f'{fw}-{kind}.log'}")
    done = [fw for fw in args.frameworks if results[fw]["train.py"]]
    onnx = bench_onnx(done[0], args, work) if done else None
    text = table(results, gflops, train_flops, onnx)
    summary = {
        "command": ["python -m lenet5.bench", *(argv if argv is not None else sys.argv[1:])],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "usable_cores": len(os.sched_getaffinity(0)),
            "threads": args.threads,
        },
        "matmul_gflops": gflops,
        "forward_flops_per_image": forward_flops,
        "train_flops_per_image": train_flops,
        "results": results,
        "onnxruntime": onnx,
        "ratios": ratios(results),
        "thread_scaling_images_per_s": scaling,
        "processes_images_per_s": processes,
        "logs": str(work),
    }
    write_json(out / "bench.json", summary)
    notes = [f"{k.replace('_', ' ')}: {v:.2f}x" for k, v in summary["ratios"].items()]
    threads = args.threads or "each framework's default"
    md = (
        f"`{' '.join(summary['command'])}` on {summary['date']}, {summary['machine']['usable_cores']} cores, "
        f"threads per run: {threads}.\n\n{text}\n\n"
        f"FLOPs per image: {forward_flops / 1e6:.2f} M forward, {train_flops / 1e6:.2f} M training step; "
        f"numpy float32 matmul: {gflops:.0f} GFLOP/s.\n\n"
        + "; ".join(notes)
        + "\n"
        + scaling_table(scaling, args.scaling_args)
        + processes_table(processes, scaling, args.scaling_args)
    )
    write_text(out / "bench.md", md)
    print(md)
    print(f"written: {out / 'bench.json'}, {out / 'bench.md'}; logs in {work}")
    measured = [r for row in (*results.values(), *processes.values()) for r in row.values()]
    return 1 if any(r is None for r in measured) else 0


if __name__ == "__main__":
    sys.exit(main())
