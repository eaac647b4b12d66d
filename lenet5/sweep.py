"""Hyperparameter sweeps from the shell, on an Optuna study that any number of machines share.

    python -m lenet5.sweep --frameworks pytorch tensorflow mxnet --pooling max avg \\
        --activation relu leakyrelu tanh --seeds 0 1 2 --jobs 2 --output-dir runs/table
    python -m lenet5.sweep --sampler tpe --trials 40 --pruner median --lr 1e-4..1e-2:log \\
        --storage postgresql+psycopg://user:password@dbhost/sweeps --study lr-search

Every train.py option takes one or more values (a grid), or, for the random and TPE samplers, a
numeric range. Each trial is a train.py process in its framework's own environment, with its own
run folder (SWEEP/runs/NAME) and log (SWEEP/logs/NAME.log); it reports its validation accuracy
to the study after every epoch, so that a pruner can stop it. The same command started on
several machines against one --storage shares the work: each grid point runs once. Rerunning it
goes on where it stopped, and runs again the points that failed. At the end, SWEEP/results.csv,
.md and .png are built from the study (python -m lenet5.report rebuilds them, from any machine).
"""

import argparse
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path

from optuna.trial import TrialState
from tqdm import tqdm

from . import arguments, envs
from .config import FRAMEWORKS, Config, recipe_options
from .data.download import default_data_dir
from .data.idx import DataError
from .data.splits import load_dataset
from .sweeps import study, tables
from .sweeps.worker import RUNS_PER_GPU, Sweep, Worker, default_jobs, requeue_failed, run_name, visible_gpus
from .training import cli
from .training.stopping import STOP_SIGNALS, Interrupted, stops_cleanly

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
DEFAULT_STUDY = "sweep"  # the study's name in the sweep folder's own database


def build_parser():
    train = cli.build_parser("pytorch")  # the train.py options, to mirror their names and help
    parser = arguments.Parser(
        prog=arguments.prog("lenet5.sweep"),
        description=__doc__.split("\n\n")[0],
        formatter_class=arguments.HelpFormatter,
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
        type=arguments.non_negative_int,
        default=[0],
        metavar="SEED",
        help="one run per seed; the table reports mean and std over them",
    )
    sweep.add_argument(
        "--jobs",
        type=arguments.positive_int,
        metavar="N",
        help="runs at once on this machine; the CPU threads are divided between them, and the GPUs "
        f"(CUDA_VISIBLE_DEVICES, else nvidia-smi's) taken in turn (default: 1; with GPUs and --device not cpu, "
        f"{RUNS_PER_GPU} per GPU, at most one per CPU core)",
    )
    sweep.add_argument(
        "--output-dir",
        type=arguments.folder(),
        default=str(cli.DEFAULT_OUTPUT_DIR / "sweep"),
        metavar="DIR",
        help="this machine's sweep folder: run folders, logs, results (and the study, without --storage)",
    )
    sweep.add_argument(
        "--data-dir",
        type=arguments.folder(writable=False),
        default=str(default_data_dir()),
        metavar="DIR",
        help="dataset cache folder",
    )
    sweep.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"), help="passed to every run")
    search = parser.add_argument_group("study: where it is kept, and how it searches")
    search.add_argument(
        "--storage",
        metavar="URL",
        help="a database URL that SQLAlchemy opens (postgresql+psycopg://user:pass@host/db, "
        "mysql+pymysql://..., sqlite:///file.db) or an Optuna journal file, shared by every "
        f"worker (default: sqlite in the sweep folder, {study.DEFAULT_DB})",
    )
    search.add_argument(
        "--study",
        metavar="NAME",
        help=f"the study's name, the same on every machine (default without --storage: {DEFAULT_STUDY})",
    )
    search.add_argument(
        "--sampler",
        choices=study.SAMPLERS,
        default="grid",
        help="grid: every combination of the values, each once; random or tpe: --trials draws, "
        "numeric options may be ranges LOW..HIGH[:log]",
    )
    search.add_argument(
        "--trials", type=arguments.positive_int, metavar="N", help="trials of the random or TPE sampler"
    )
    search.add_argument(
        "--pruner",
        choices=study.PRUNERS,
        default="none",
        help="stop unpromising runs early, on their validation accuracy after each epoch",
    )
    search.add_argument(
        "--search-seed",
        type=arguments.non_negative_int,
        default=0,
        metavar="SEED",
        help="seeds the random and TPE samplers",
    )
    search.add_argument(
        "--heartbeat",
        type=arguments.positive_int,
        default=10,
        metavar="S",
        help="seconds between a running trial's heartbeats in a database; a trial silent for "
        "three times as long is failed and run again by any worker",
    )
    grid = parser.add_argument_group("search space: every train.py option, each taking one or more values")
    for action in train._actions:
        name = action.dest
        if name in GRID and name != "seed":
            grid.add_argument(
                *action.option_strings,
                nargs="+",
                type=_value_or_range(action.type),
                choices=action.choices,
                default=None,  # the --recipe's value (the default recipe's: train.py's default)
                metavar=action.metavar,
                help=action.help,
            )
    return parser


def _value_or_range(kind):
    """A numeric option's value, or a range LOW..HIGH[:log] of them; other options as they are."""
    if kind is None or kind is cli.dataset:  # a folder's name may hold '..'
        return kind

    def parse(text):
        if ".." not in text:
            return kind(text)
        try:
            return study.parse_range(kind, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = kind.__name__
    return parse


def search_space(args):
    """The sweep's study.Space from its command line; ValueError for a combination that makes none."""
    recipes = args.recipe or [Config.recipe]
    values = {"framework": args.frameworks, "recipe": recipes}
    from_recipe = []  # options not given on which the recipes differ: each point takes its recipe's
    for name in GRID:
        if name in ("seed", "recipe"):
            continue
        values[name] = getattr(args, name) or [recipe_options(recipe)[name] for recipe in recipes]
        if getattr(args, name) is None and len(set(map(str, values[name]))) > 1:
            from_recipe.append(name)
    values["seed"] = args.seeds
    if from_recipe and args.sampler != "grid":
        raise ValueError(
            f"--recipe with several values is for the grid sampler, unless each option they set differently "
            f"is given ({', '.join(map(cli.flag, from_recipe))})"
        )
    space = {}
    for name, given in values.items():
        ranges = [v for v in given if isinstance(v, study.Range)]
        if ranges and (len(given) > 1 or args.sampler == "grid"):
            raise ValueError(
                f"{cli.flag(name)}: a range is one value of the random and TPE samplers' "
                "search, alone (the grid takes lists of values)"
            )
        space[name] = ranges[0] if ranges else list(dict.fromkeys(given))
    if args.sampler == "grid" and args.trials:
        raise ValueError("--trials is for the random and TPE samplers: the grid runs each of its points once")
    if args.sampler != "grid" and not args.trials:
        raise ValueError(f"--sampler {args.sampler} needs --trials N")
    return study.Space(args.sampler, space, tuple(from_recipe))


@stops_cleanly(arguments.prog("lenet5.sweep"))
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        space = search_space(args)
    except ValueError as error:
        parser.error(str(error))
    if args.storage and not args.study:
        parser.error("--storage needs --study NAME: the study every worker joins")
    sweep_dir = Path(args.output_dir).expanduser().resolve()
    args.storage_url = args.storage or f"sqlite:///{sweep_dir / study.DEFAULT_DB}"
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        storage = study.open_storage(args.storage_url, args.heartbeat)
        pruner = study.make_pruner(args.pruner, space.most("epochs"))
        sweep_study = study.open_study(
            storage, args.study or DEFAULT_STUDY, space, pruner, args.search_seed, names=run_name
        )
        artifacts = study.artifact_store(args.storage_url)
    except (study.StudyError, OSError) as error:
        parser.error(str(error))
    try:
        (sweep_dir / "logs").mkdir(exist_ok=True)
        (sweep_dir / "runs").mkdir(exist_ok=True)
        for dataset in space.values["dataset"]:  # once, before any run starts
            load_dataset(dataset, args.data_dir)
        for framework in dict.fromkeys(args.frameworks):
            envs.ensure(framework)
    except (DataError, envs.EnvError, OSError) as error:
        sys.exit(f"lenet5.sweep: error: {error}")

    gpus = visible_gpus() if args.device != "cpu" else []
    args.jobs = args.jobs or default_jobs(gpus)
    sweep = Sweep(sweep_dir, storage, sweep_study, artifacts, space, args)
    if space.sampler == "grid":
        requeue_failed(sweep_study)
    counts = study.counts(sweep_study)
    total = len(space.grid()) if space.sampler == "grid" else args.trials
    done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    where = f" on GPUs {', '.join(gpus)}" if gpus else ""
    print(
        f"{total} runs in study {sweep_study.study_name!r}: {done} already finished, {total - done} to go, "
        f"{args.jobs} at a time here{where}; runs in {sweep_dir / 'runs'}",
        flush=True,
    )
    stop = threading.Event()
    with tqdm(total=total, initial=min(done, total), unit="run", dynamic_ncols=True) as bar:
        workers = [Worker(sweep, args, stop, bar, gpus[i % len(gpus)] if gpus else None) for i in range(args.jobs)]
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(worker.loop) for worker in workers]
            try:
                for future in futures:
                    future.result()
            except Interrupted as stopped:  # each worker stops its run (a checkpoint) and queues it again
                stop.set()
                for signum in STOP_SIGNALS:  # a second signal waits too: the runs stop within a step
                    signal.signal(signum, signal.SIG_IGN)
                for future in futures:
                    future.result()
                print(f"\nstopped by {stopped}: the same command continues the sweep", file=sys.stderr)
                return 128 + stopped.signum
    rows = tables.write(sweep_dir, sweep_study)
    print(f"results: {sweep_dir / 'results.md'}, {sweep_dir / 'results.csv'}, {sweep_dir / 'results.png'}")
    failed = [row["name"] for row in rows if row["status"] == "failed"]
    if failed:
        print(f"{len(failed)} of {len(rows)} runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
