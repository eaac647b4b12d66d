"""python -m lenet5.bench --device gpu: PyTorch on one GPU (docs/speed.md).

* train_pytorch/train.py, the default recipe with --validate-on-test: the captured step, then the
  eager one (LENET5_EAGER=1), and --recipe fast;
* the DataLoader baseline (bench/baseline_pytorch.py --device gpu) and the hand-captured reference
  loop (bench/captured_pytorch.py), and that loop under torch.compile(mode="reduce-overhead");
* runs sharing the GPU, as a sweep's workers do: 1, 4 and 8 train.py processes at once, each its
  own default-recipe run; their model-epochs per second, summed.
"""

import subprocess
import time

from tqdm import tqdm

from .. import envs
from ..files import write_json, write_text
from ..training.runfolder import RunFolder
from .runner import QUICK, bench_baseline, bench_train_py

SHARING = (1, 4, 8)  # train.py processes at once on the GPU
SHARING_EPOCHS = 30  # long enough that the processes' start-ups (a few seconds) overlap little of it


def gpu_name():
    """The GPU's name, as PyTorch in its environment sees it; RuntimeError if it sees none."""
    code = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    name = subprocess.run([envs.env_python("pytorch"), "-c", code], capture_output=True, text=True).stdout.strip()
    if not name:
        raise RuntimeError("--device gpu: PyTorch sees no CUDA GPU here")
    return name


def measurements(args, device):
    """(name, function of the work folder) of each measurement, in the order of the table."""
    on = ["--device", device]
    default, fast = [*args.train_args, *on], ["--recipe", "fast", *(QUICK if args.quick else []), *on]
    return [
        ("train.py", lambda work: bench_train_py("pytorch", args, work, train_args=default)),
        (
            "train.py, eager steps",
            lambda work: bench_train_py("pytorch", args, work, None, default, "eager", {"LENET5_EAGER": "1"}),
        ),
        ("train.py --recipe fast", lambda work: bench_train_py("pytorch", args, work, None, fast, "fast")),
        ("DataLoader baseline", lambda work: bench_baseline("pytorch", args, work, on)),
        ("hand-captured loop", lambda work: bench_baseline("pytorch", args, work, on, "captured")),
        (
            "hand-captured loop, torch.compile",
            lambda work: bench_baseline("pytorch", args, work, [*on, "--compile"], "captured", "compiled"),
        ),
    ]


def bench_sharing(args, work, n, device):
    """`n` train.py processes at once on the GPU, each its own run: their model-epochs per second
    summed (each over its epochs after the first), and the wall-clock seconds of them all."""
    epochs = args.train_args if args.quick else ["--epochs", str(SHARING_EPOCHS)]
    names = [f"sharing{n}-{i}" for i in range(n)]
    start = time.perf_counter()
    with open(work / f"pytorch-sharing{n}.log", "w") as log:
        procs = [
            subprocess.Popen(
                [envs.env_python("pytorch"), "-m", "train_pytorch.train", "--no-progress", "--device", device]
                + ["--output-dir", work, "--run-name", name, "--data-dir", args.data_dir, "--threads", "1", *epochs],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            for name in names
        ]
        codes = [proc.wait() for proc in procs]
    wall = time.perf_counter() - start
    if any(codes):
        return None
    rates = []
    for name in names:
        rows = RunFolder(work / name).metrics()
        warm = rows[1:] or rows  # the first epoch pays for start-up, as summarize() leaves it out
        rates.append(len(warm) / sum(float(row["seconds"]) for row in warm))
    return {"runs": n, "model_epochs_per_s": sum(rates), "wall_seconds": wall}


def run_all(args, work, device):
    """Every measurement: ({name: result or None}, {runs: sharing result or None})."""
    results, sharing = {}, {}
    jobs = [*measurements(args, device), *((f"sharing{n}", n) for n in SHARING)]
    for name, measure in tqdm(jobs, unit="run", dynamic_ncols=True):
        if isinstance(measure, int):
            result = sharing[str(measure)] = bench_sharing(args, work, measure, device)
        else:
            result = results[name] = measure(work)
        if result is None:
            tqdm.write(f"FAILED: {name}; logs in {work}")
    return results, sharing


def table(results, sharing):
    """bench.md's tables: the loops, then the runs sharing the GPU."""
    lines = [
        "| loop | s per warm epoch (first) | train img/s | to 99.0% test | test acc | x DataLoader |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = results.get("DataLoader baseline")
    for name, r in results.items():
        if r is None:
            lines.append(f"| {name} | failed: see its log | | | | |")
            continue
        to = f"{r['seconds_to_target']:.2f} s" if r["seconds_to_target"] is not None else "not reached"
        speedup = f"{base['epoch_seconds'] / r['epoch_seconds']:.1f}x" if base else ""
        lines.append(
            f"| {name} | {r['epoch_seconds']:.3f} ({r['first_epoch_seconds']:.2f}) | "
            f"{r['train_images_per_s']:,.0f} | {to} | {r['test_accuracy']:.2%} | {speedup} |"
        )
    lines += ["", "| train.py runs at once | model-epochs/s, summed | wall s |", "|---:|---:|---:|"]
    for n, r in sharing.items():
        cells = f"{r['model_epochs_per_s']:.1f} | {r['wall_seconds']:.1f}" if r else "failed: see its log |"
        lines.append(f"| {n} | {cells} |")
    return "\n".join(lines)


def main(args, command, out, work, name, device="gpu"):
    """Measure, print and write bench.json and bench.md into `out` (the runs in `work`), on the GPU
    `name` (the tests: on the CPU); the exit code."""
    results, sharing = run_all(args, work, device)
    summary = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "gpu": name,
        "results": results,
        "sharing": sharing,
        "logs": str(work),
    }
    md = f"`{' '.join(command)}` on {summary['date']}, {name}.\n\n{table(results, sharing)}\n"
    write_json(out / "bench.json", summary)
    write_text(out / "bench.md", md)
    print(md)
    print(f"written: {out / 'bench.json'}, {out / 'bench.md'}; logs in {work}")
    return 1 if any(r is None for r in (*results.values(), *sharing.values())) else 0
