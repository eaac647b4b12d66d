"""Hyperparameter sweeps from the shell: every train.py option may take several values.

    python -m lenet5.sweep --frameworks pytorch tensorflow mxnet --pooling max avg \\
        --activation relu leakyrelu tanh --seeds 0 1 2 --jobs 2 --output-dir runs/table

runs the full grid, each run in its framework's own environment as a separate process with its
own run folder (SWEEP/runs/NAME) and log (SWEEP/logs/NAME.log), then writes SWEEP/results.csv,
SWEEP/results.md and SWEEP/results.png (python -m lenet5.report SWEEP rebuilds them).
Rerunning the same command skips finished runs and resumes interrupted ones; a failed run is
reported with the tail of its log, the others go on, and the sweep exits 1 at the end.
"""

import hashlib
import itertools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import fields
from pathlib import Path

from tqdm import tqdm

from . import cli, envs, report
from .config import FRAMEWORKS, Config
from .data import load_dataset
from .download import default_data_dir
from .files import write_json
from .idx import DataError
from .runfolder import RunFolder

# Options that say where and how a run is shown, not what it trains: not part of its identity.
# (--threads comes from the sweep's --jobs; --validate-on-test is the benchmark's, not a sweep's.)
PLACE = (
    "framework",
    "data_dir",
    "output_dir",
    "run_name",
    "resume",
    "no_progress",
    "device",
    "checkpoint_every",
    "threads",
    "validate_on_test",
    "tensorboard",
)
GRID = [f.name for f in fields(Config) if f.name not in PLACE]


def build_parser():
    train = cli.build_parser("pytorch")  # the train.py options, to mirror their names and help
    parser = cli.Parser(
        prog="python -m lenet5.sweep", description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter
    )
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument(
        "--frameworks",
        nargs="+",
        choices=FRAMEWORKS,
        default=["pytorch"],
        metavar="FW",
        help=f"frameworks to train with ({', '.join(FRAMEWORKS)})",
    )
    sweep.add_argument(
        "--seeds",
        nargs="+",
        type=cli.non_negative_int,
        default=[0],
        metavar="SEED",
        help="one run per seed; the table reports mean and std over them",
    )
    sweep.add_argument(
        "--jobs",
        type=cli.positive_int,
        default=1,
        metavar="N",
        help="runs at once; the CPU threads are divided between them",
    )
    sweep.add_argument(
        "--output-dir",
        default=str(cli.DEFAULT_OUTPUT_DIR / "sweep"),
        metavar="DIR",
        help="the sweep folder: rerun with the same one to skip finished runs",
    )
    sweep.add_argument("--data-dir", default=str(default_data_dir()), metavar="DIR", help="dataset cache folder")
    sweep.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"), help="passed to every run")
    grid = parser.add_argument_group("grid: every train.py option, each taking one or more values")
    for action in train._actions:
        name = action.dest
        if name in GRID and name != "seed":
            grid.add_argument(
                *action.option_strings,
                nargs="+",
                type=action.type,
                choices=action.choices,
                default=[getattr(Config, name)],
                metavar=action.metavar,
                help=action.help,
            )
    return parser


def plan(args):
    """The grid as a list of runs: {name, framework, options}, in a stable order."""
    values = {name: getattr(args, name) for name in GRID if name != "seed"}
    values["seed"] = args.seeds
    runs = []
    for framework in dict.fromkeys(args.frameworks):
        for combo in itertools.product(*(dict.fromkeys(v) for v in values.values())):
            options = dict(zip(values, combo))
            digest = hashlib.sha256(json.dumps([framework, options], sort_keys=True).encode()).hexdigest()[:8]
            name = (
                f"{framework}-{options['pooling']}-{options['activation']}-bs{options['batch_size']}-"
                f"seed{options['seed']}-{digest}"
            )
            runs.append({"name": name, "framework": framework, "options": options})
    return runs


def command(run, sweep_dir, args):
    """The train.py command line of one run, resuming it if an earlier sweep left it unfinished."""
    train = [str(envs.env_python(run["framework"])), "-m", f"train_{run['framework']}.train"]
    run_dir = sweep_dir / "runs" / run["name"]
    if RunFolder(run_dir).is_run():
        return [*train, "--resume", str(run_dir), "--no-progress", "--data-dir", args.data_dir]
    cmd = [
        *train,
        "--output-dir",
        str(run_dir.parent),
        "--run-name",
        run["name"],
        "--data-dir",
        args.data_dir,
        "--device",
        args.device,
        "--no-progress",
    ]
    for name, value in run["options"].items():
        cmd += [cli.flag(name), str(value)]
    return cmd


def finished(run, sweep_dir):
    """Whether the run already finished with exactly this configuration."""
    result = RunFolder(sweep_dir / "runs" / run["name"]).result()
    if not result:
        return False
    config = result["config"]
    return config["framework"] == run["framework"] and all(config[k] == v for k, v in run["options"].items())


def thread_env(jobs):
    """Environment for one of `jobs` parallel runs: the CPU threads divided between them (one
    run at a time keeps each framework's own default)."""
    if jobs == 1:
        return dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TF_NUM_INTRAOP_THREADS": threads,
        "TF_NUM_INTEROP_THREADS": "1",
        "MXNET_CPU_WORKER_NTHREADS": "1",
    }


def execute(run, sweep_dir, args, env):
    cmd = command(run, sweep_dir, args)
    with open(sweep_dir / "logs" / f"{run['name']}.log", "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env).returncode
        f.write(f"[exit {code}]\n")  # how the report tells a failed run from one still going
    return run, code


def main(argv=None):
    args = build_parser().parse_args(argv)
    sweep_dir = Path(args.output_dir).expanduser().resolve()
    runs = plan(args)
    try:
        (sweep_dir / "logs").mkdir(parents=True, exist_ok=True)
        (sweep_dir / "runs").mkdir(exist_ok=True)
        for dataset in dict.fromkeys(args.dataset):  # once, before any run starts
            load_dataset(dataset, args.data_dir)
        for framework in dict.fromkeys(args.frameworks):
            envs.ensure(framework)
    except (DataError, envs.EnvError, OSError) as error:
        sys.exit(f"lenet5.sweep: error: {error}")

    known = json.loads((sweep_dir / "sweep.json").read_text())["runs"] if (sweep_dir / "sweep.json").exists() else []
    names = {run["name"] for run in runs}
    write_json(
        sweep_dir / "sweep.json",
        {
            "command": [sys.argv[0], *(argv or sys.argv[1:])],
            "runs": [r for r in known if r["name"] not in names] + runs,
        },
    )
    todo = [run for run in runs if not finished(run, sweep_dir)]
    print(
        f"{len(runs)} runs in {sweep_dir}: {len(runs) - len(todo)} already finished, {len(todo)} to go, "
        f"{args.jobs} at a time",
        flush=True,
    )
    failed = []
    with ThreadPoolExecutor(args.jobs) as pool, tqdm(total=len(todo), unit="run", dynamic_ncols=True) as bar:
        futures = [pool.submit(execute, run, sweep_dir, args, thread_env(args.jobs)) for run in todo]
        for future in as_completed(futures):
            run, code = future.result()
            if code != 0:
                failed.append(run["name"])
                tqdm.write(f"FAILED {run['name']} (exit {code}); log: {sweep_dir / 'logs' / (run['name'] + '.log')}")
            bar.update()
    report.write(sweep_dir)
    print(f"results: {sweep_dir / 'results.md'}, {sweep_dir / 'results.csv'}, {sweep_dir / 'results.png'}")
    if failed:
        print(f"{len(failed)} of {len(runs)} runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
