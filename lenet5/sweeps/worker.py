"""A sweep's workers on one machine: each takes trials from the study and runs each as a train.py
process in its framework's environment, with its own run folder and log, reporting every epoch's
validation accuracy to the study (a pruner may stop it) and beating its heartbeat."""

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

from optuna.artifacts import upload_artifact
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState
from tqdm import tqdm

from .. import envs
from ..config import Config, model_name
from ..training.cli import flag
from ..training.runfolder import RunFolder
from ..training.stopping import STOP_SIGNALS
from . import study, tables

RUNS_PER_GPU = 8  # --jobs by default on a machine with GPUs: runs sharing each GPU
POLL = 0.25  # seconds between looks at a running trial's metrics.csv: a pruned run stops soon after its epoch
# A run dies with its worker (a killed worker must not leave a run going that another worker will
# take over): util-linux's setpriv asks the kernel for that, where there is one.
DIE_WITH_WORKER = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
LOG_TAIL = 5  # lines of a failed run's log kept with its trial
STOPPED = {128 + signum for signum in STOP_SIGNALS}  # train.py's exit after Ctrl-C or SIGTERM: a checkpoint kept


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
            cmd += [flag(option), str(value)]
    return cmd


def visible_gpus():
    """The GPUs the runs may use, as CUDA_VISIBLE_DEVICES names them: its own list where it is set,
    else each GPU that NVIDIA's nvidia-smi lists (none without NVIDIA's driver)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        names = [name.strip() for name in os.environ["CUDA_VISIBLE_DEVICES"].split(",")]
        return list(itertools.takewhile(lambda name: name and name != "-1", names))  # CUDA stops at one invalid
    if not shutil.which("nvidia-smi"):
        return []
    try:
        query = ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=60, check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):  # a driver that does not answer: no GPU to share
        return []


def default_jobs(gpus):
    """--jobs when not given: one run at a time on the CPU; on GPUs, RUNS_PER_GPU runs on each (a
    LeNet-5 run leaves most of a GPU idle), at most one per CPU core (each run's Python feeds its GPU)."""
    return min(RUNS_PER_GPU * len(gpus), os.cpu_count() or 1) if gpus else 1


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
    `--jobs N` starts N), on `gpu` (CUDA_VISIBLE_DEVICES's name for it) if given."""

    def __init__(self, sweep, args, stop, bar, gpu=None):
        self.sweep, self.args, self.stop, self.bar, self.gpu = sweep, args, stop, bar, gpu

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
        for key in tables.RESULTS[1:]:
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
        env, on_gpu = thread_env(self.args.jobs), {}
        if self.gpu is not None:  # the run sees this one GPU, as its device 0
            on_gpu = {"CUDA_VISIBLE_DEVICES": self.gpu}
        with open(sweep.log(name), "a") as log:
            log.write(f"$ {''.join(f'{k}={v} ' for k, v in on_gpu.items())}{' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**env, **on_gpu},
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
