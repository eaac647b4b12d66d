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
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path

from optuna.artifacts import upload_artifact
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState
from tqdm import tqdm

from . import cli, envs, report, study
from .config import FRAMEWORKS, Config, model_name, recipe_options
from .data import load_dataset
from .download import default_data_dir
from .idx import DataError
from .run import STOP_SIGNALS, Interrupted
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
DEFAULT_STUDY = "sweep"  # the study's name in the sweep folder's own database
POLL = 0.25  # seconds between looks at a running trial's metrics.csv: a pruned run stops soon after its epoch
# A run dies with its worker (a killed worker must not leave a run going that another worker will
# take over): util-linux's setpriv asks the kernel for that, where there is one.
DIE_WITH_WORKER = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
LOG_TAIL = 5  # lines of a failed run's log kept with its trial
STOPPED = {128 + signum for signum in STOP_SIGNALS}  # train.py's exit after Ctrl-C or SIGTERM: a checkpoint kept


def build_parser():
    train = cli.build_parser("pytorch")  # the train.py options, to mirror their names and help
    parser = cli.Parser(
        prog=cli.prog("lenet5.sweep"), description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter
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
        help="runs at once on this machine; the CPU threads are divided between them",
    )
    sweep.add_argument(
        "--output-dir",
        type=cli.folder(),
        default=str(cli.DEFAULT_OUTPUT_DIR / "sweep"),
        metavar="DIR",
        help="this machine's sweep folder: run folders, logs, results (and the study, without --storage)",
    )
    sweep.add_argument(
        "--data-dir",
        type=cli.folder(writable=False),
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
    search.add_argument("--trials", type=cli.positive_int, metavar="N", help="trials of the random or TPE sampler")
    search.add_argument(
        "--pruner",
        choices=study.PRUNERS,
        default="none",
        help="stop unpromising runs early, on their validation accuracy after each epoch",
    )
    search.add_argument(
        "--search-seed", type=cli.non_negative_int, default=0, metavar="SEED", help="seeds the random and TPE samplers"
    )
    search.add_argument(
        "--heartbeat",
        type=cli.positive_int,
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


def run_name(point):
    """A run's folder name: the main options, then a digest of all of them. MNIST is the implied
    dataset: it is left out of the digest, as out of train.py's own run names."""
    options = {k: v for k, v in point.items() if k != "framework"}
    named = {k: v for k, v in options.items() if (k, v) != ("dataset", Config.dataset)}
    digest = hashlib.sha256(json.dumps([point["framework"], named], sort_keys=True).encode()).hexdigest()[:8]
    model = model_name(point["arch"], point["pooling"], point["activation"])
    return f"{point['framework']}-{model}-bs{point['batch_size']}-seed{point['seed']}-{digest}"


def command(point, name, sweep_dir, args):
    """The train.py command line of one run, resuming it if an earlier attempt left it unfinished."""
    cmd = [*DIE_WITH_WORKER, str(envs.env_python(point["framework"])), "-m", f"train_{point['framework']}.train"]
    run_dir = sweep_dir / "runs" / name
    if run_dir.exists():  # the same options: a resumed run checks them against its own
        cmd += ["--resume", str(run_dir)]
    else:
        cmd += ["--output-dir", str(run_dir.parent), "--run-name", name]
    cmd += ["--data-dir", args.data_dir, "--device", args.device, "--no-progress"]
    for option, value in point.items():
        if option != "framework":
            cmd += [cli.flag(option), str(value)]
    return cmd


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


class Worker:
    """Takes trials from the study and runs them, one at a time, until none is left (in a thread:
    `--jobs N` starts N)."""

    def __init__(self, sweep, args, stop, bar):
        self.sweep, self.args, self.stop, self.bar = sweep, args, stop, bar

    def loop(self):
        sweep = self.sweep
        while not self.stop.is_set():
            if sweep.heartbeat:  # a dead worker's trial: failed, and queued again
                study.patiently(fail_stale_trials, sweep.study)
            with sweep.asking:  # this process's workers look and take one at a time: no extra trial
                counts = study.counts(sweep.study)
                trial = study.patiently(sweep.study.ask, sweep.space.params) if sweep.more(counts) else None
            if trial is None:
                # A trial still running elsewhere may yet die and come back; without heartbeats it never does.
                if not (sweep.heartbeat and counts[TrialState.RUNNING]):
                    return
                self.stop.wait(min(sweep.heartbeat, 2))
                continue
            if sweep.space.sampler == "grid" and "name" not in trial.user_attrs:
                # Another worker took the last waiting point: hand back the fresh trial ask() made.
                study.patiently(trial.set_user_attr, "spare", True)
                study.patiently(sweep.study.tell, trial, state=TrialState.FAIL)
                continue
            self.run(trial)
            self.bar.update()

    def run(self, trial):
        sweep = self.sweep
        point = {**sweep.space.fixed, **trial.params}
        point = {name: point[name] for name in sweep.space.values}  # the command line's order
        name = trial.user_attrs.get("name") or run_name(point)
        for key, value in (("name", name), ("host", socket.gethostname()), ("point", point)):
            study.patiently(trial.set_user_attr, key, value)
        folder = RunFolder(sweep.dir / "runs" / name)
        code, stopped = 0, None
        if folder.result():  # it finished already (a point drawn again, or only the telling was lost)
            for row in folder.metrics():
                study.patiently(trial.report, row["val_acc"], row["epoch"])
        else:
            code, stopped = self.train(trial, point, name, folder)
        rows = folder.metrics()
        if stopped == "pruned":  # keeps its folder; Optuna takes its last reported value
            study.patiently(sweep.study.tell, trial, state=TrialState.PRUNED)
            return
        if stopped == "interrupted":  # queued again first, so that a rerun finds it waiting
            study.patiently(sweep.study.enqueue_trial, trial.params, user_attrs={"name": name})
            study.patiently(trial.set_user_attr, "interrupted", True)
            study.patiently(sweep.study.tell, trial, state=TrialState.FAIL)
            return
        result = folder.result()
        if code or not result:
            log = sweep.log(name).read_text(errors="replace").strip().splitlines()
            study.patiently(trial.set_user_attr, "log_tail", "\n".join(log[-LOG_TAIL - 1 : -1]))
            study.patiently(sweep.study.tell, trial, state=TrialState.FAIL)
            tqdm.write(f"FAILED {name} (exit {code}); log: {sweep.log(name)}")
            return
        for key in report.RESULTS[1:]:
            study.patiently(trial.set_user_attr, key, result[key])
        study.patiently(
            upload_artifact, artifact_store=sweep.artifacts, file_path=str(folder.neutral_model()), study_or_trial=trial
        )
        study.patiently(sweep.study.tell, trial, study.value_of(rows))

    def train(self, trial, point, name, folder):
        """Run train.py for the trial, reporting each finished epoch's validation accuracy; stop it
        (Ctrl-C: it checkpoints) when the pruner says so or the sweep is interrupted. Returns
        (exit status, None or "pruned" or "interrupted")."""
        sweep = self.sweep
        cmd = command(point, name, sweep.dir, self.args)
        with open(sweep.log(name), "a") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=thread_env(self.args.jobs),
                start_new_session=True,
            )
            reported, stopped = 0, None
            while True:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=POLL)
                sweep.beat(trial)
                rows = folder.metrics()
                for row in rows[reported:]:
                    study.patiently(trial.report, row["val_acc"], row["epoch"])
                pruned = len(rows) > reported and sweep.pruning and study.patiently(trial.should_prune)
                reported = len(rows)
                if proc.returncode is not None:
                    break
                if pruned or self.stop.is_set():
                    stopped = "pruned" if pruned else "interrupted"
                    proc.send_signal(signal.SIGINT)  # train.py checkpoints at the end of its step
                    proc.wait()
                    break
            log.write(f"[exit {proc.returncode}]\n")  # how a reader tells a failed run from one still going
        if proc.returncode in STOPPED and not stopped:  # signalled itself (a scheduler signals every process)
            stopped = "interrupted"
        return proc.returncode, stopped


class Sweep:
    """One machine's part of a sweep: its folder, the study and what the workers share."""

    def __init__(self, sweep_dir, storage, study_, artifacts, space, args):
        self.dir, self.storage, self.study, self.space, self.args = sweep_dir, storage, study_, space, args
        self.artifacts = artifacts
        self.heartbeat = args.heartbeat if study.is_database(args.storage_url) else 0
        self.pruning = args.pruner != "none"
        # One ask() at a time in this process: SQLite, unlike PostgreSQL, lets two threads that ask
        # at once take the same waiting trial, and --trials would be overshot.
        self.asking = threading.Lock()
        self.beaten = {}  # trial number -> when its last heartbeat went

    def log(self, name):
        return self.dir / "logs" / f"{name}.log"

    def beat(self, trial):
        """Tell the database, every --heartbeat seconds, that this trial's worker lives (Optuna does
        it only inside Study.optimize, and each trial here is a train.py process this loop watches)."""
        now = time.monotonic()
        if self.heartbeat and now - self.beaten.get(trial.number, 0) >= self.heartbeat:
            self.beaten[trial.number] = now
            # The database away for a moment: the next beat comes a second later.
            with contextlib.suppress(Exception):
                self.storage.record_heartbeat(trial._trial_id)

    def more(self, counts):
        """Whether a worker should take another trial."""
        if self.space.sampler == "grid":
            return counts[TrialState.WAITING] > 0
        return self.counted() < self.args.trials

    def counted(self):
        """Trials that count towards --trials: all but spares and the interrupted or dead ones that
        were queued again."""
        trials = study.patiently(self.study.get_trials, deepcopy=False)
        return sum(t.state != TrialState.FAIL or "log_tail" in t.user_attrs for t in trials)


def requeue_failed(sweep_study):
    """Queue again the grid points whose last trial failed (a run that failed, or a dead worker's
    past its retries): a rerun of the sweep runs them again."""
    for name, trial in study.latest_runs(sweep_study).items():
        if trial.state == TrialState.FAIL:
            study.patiently(sweep_study.enqueue_trial, study.params_of(trial), user_attrs={"name": name})


@cli.stops_cleanly(cli.prog("lenet5.sweep"))
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

    sweep = Sweep(sweep_dir, storage, sweep_study, artifacts, space, args)
    if space.sampler == "grid":
        requeue_failed(sweep_study)
    counts = study.counts(sweep_study)
    total = len(space.grid()) if space.sampler == "grid" else args.trials
    done = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    print(
        f"{total} runs in study {sweep_study.study_name!r}: {done} already finished, {total - done} to go, "
        f"{args.jobs} at a time here; runs in {sweep_dir / 'runs'}",
        flush=True,
    )
    stop = threading.Event()
    with tqdm(total=total, initial=min(done, total), unit="run", dynamic_ncols=True) as bar:
        workers = [Worker(sweep, args, stop, bar) for _ in range(args.jobs)]
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
    rows = report.write(sweep_dir, sweep_study)
    print(f"results: {sweep_dir / 'results.md'}, {sweep_dir / 'results.csv'}, {sweep_dir / 'results.png'}")
    failed = [row["name"] for row in rows if row["status"] == "failed"]
    if failed:
        print(f"{len(failed)} of {len(rows)} runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
