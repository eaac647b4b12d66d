"""python -m lenet5.bench: the command (lenet5/bench/__init__.py says what it measures)."""

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from .. import arguments, envs
from ..config import FRAMEWORKS, ROOT, Config
from ..data.download import default_data_dir, load_mnist
from ..data.idx import DataError
from ..files import write_json, write_text
from ..training import cli
from . import __doc__ as DOC
from . import gpu
from .runner import QUICK, bench_baseline, bench_onnx, bench_processes, bench_train_py, flops_per_image, matmul_gflops
from .tables import processes_table, ratios, scaling_table, table

GPU_OUTPUT_DIR = ROOT / "results" / "bench-gpu"  # kept with the results: its numbers are quoted in docs/speed.md


def main(argv=None):
    parser = arguments.Parser(
        prog=arguments.prog("lenet5.bench"),
        description=DOC.split("\n\n")[0],
        formatter_class=arguments.HelpFormatter,
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
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="cpu: every framework against its baseline; gpu: PyTorch on the GPU, its captured step against "
        "its eager one, the DataLoader baseline and a hand-captured loop, and 1, 4, 8 runs sharing it "
        "(default output dir results/bench-gpu)",
    )
    parser.add_argument(
        "--epochs",
        type=arguments.positive_int,
        default=Config.epochs,
        help="epochs of the default recipe for train.py and the baselines",
    )
    parser.add_argument(
        "--threads",
        type=arguments.non_negative_int,
        default=0,
        help="CPU threads for every run (0: each framework's default, as train.py's)",
    )
    parser.add_argument(
        "--scaling",
        nargs="*",
        type=arguments.positive_int,
        metavar="N",
        help="also time short train.py runs with each of these thread counts (default: 1, 2, 4, ... "
        "up to the usable cores)",
    )
    parser.add_argument(
        "--processes",
        nargs="*",
        type=arguments.positive_int,
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
        default=None,
        metavar="DIR",
        help="where bench.json and bench.md (replaced by each run) and runs/ (the runs and their "
        f"logs, a new folder each time) go (default: {cli.DEFAULT_OUTPUT_DIR / 'bench'}; with --device gpu, "
        f"{GPU_OUTPUT_DIR})",
    )
    parser.add_argument("--data-dir", default=str(default_data_dir()), metavar="DIR", help="MNIST cache folder")
    args = parser.parse_args(argv)
    if args.device == "gpu":
        args.frameworks = ["pytorch"]
    default_dir = GPU_OUTPUT_DIR if args.device == "gpu" else cli.DEFAULT_OUTPUT_DIR / "bench"
    args.output_dir = args.output_dir or str(default_dir)
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
        gpu_name = gpu.gpu_name() if args.device == "gpu" else None
    except (DataError, envs.EnvError, OSError, RuntimeError) as error:
        sys.exit(f"lenet5.bench: error: {error}")

    (out / "runs").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=out / "runs"))  # never reused
    command = ["python -m lenet5.bench", *(argv if argv is not None else sys.argv[1:])]
    if args.device == "gpu":
        return gpu.main(args, command, out, work, gpu_name)
    gflops = matmul_gflops(seconds=0.5 if args.quick else 3.0)
    forward_flops, train_flops = flops_per_image()
    results = {}
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
        "command": command,
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


if __name__ == "__main__":
    sys.exit(main())
