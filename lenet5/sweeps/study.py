"""A sweep's Optuna study: where it is stored, its search space, its queue and its artifacts.

Workers on any number of machines share a study through its storage: a database URL that
SQLAlchemy opens (postgresql+psycopg://..., mysql+pymysql://..., sqlite:///...), or an Optuna
journal file. Without one, the sweep keeps an SQLite database in its own folder (one machine, no
server). Database storages beat a heartbeat for every running trial, so that a trial whose worker
died is failed and queued again (Optuna's RetryHeartbeatStaleTrialCallback); a journal file has
no heartbeat. A grid is enqueued whole when the study is created, and workers take the waiting
trials: Optuna's GridSampler, which repeats points when several workers share a study
(optuna#2039), is not used. Each trial's model.npz is kept as an Optuna artifact, in a table of
the same database (or in a folder beside a journal file), so that any machine can fetch it.
"""

import io
import itertools
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import sqlalchemy
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.exceptions import StorageInternalError
from optuna.trial import TrialState

from ..config import recipe_options

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Heartbeats and retries are marked experimental, and recorded here outside Study.optimize (each
# trial is a train.py process that this module watches): say so once, in the docs, not per trial.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

DEFAULT_DB = "study.db"  # in the sweep folder, when no --storage is given
SPACE = "lenet5_space"  # the study's user attribute holding its search space
FILLED = "lenet5_filled"  # set once a grid's points are all enqueued
SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "hyperband")
RETRIES = 3  # times a trial whose worker died is queued again
DB_PATIENCE = 120  # seconds a worker waits for its database to come back


class StudyError(Exception):
    """The study cannot be opened or used as asked; the message says why in one line."""


@dataclass(frozen=True)
class Range:
    """A numeric option's range for the random and TPE samplers: `low..high`, `low..high:log`."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def distribution(self):
        if self.integer:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)


def parse_range(kind, text):
    """A Range from `low..high[:log]`, each bound checked by `kind` (an argparse type)."""
    bounds, _, scale = text.partition(":")
    if scale not in ("", "log"):
        raise ValueError(f"{text}: a range is LOW..HIGH or LOW..HIGH:log")
    low, high = (kind(bound) for bound in bounds.split("..", 1))
    if low > high:
        raise ValueError(f"{text}: the range's low end is above its high end")
    if scale and low <= 0:
        raise ValueError(f"{text}: a log range must start above 0")
    return Range(low, high, bool(scale), isinstance(low, int) and isinstance(high, int))


@dataclass
class Space:
    """What a sweep explores: `values` maps each option (framework and seed included) to its list
    of values or to a Range; options with one value are fixed, the others are the study's params."""

    sampler: str
    values: dict
    from_recipe: tuple = ()  # options that take the value of each point's --recipe (grid only)
    params: dict = field(init=False)  # name -> optuna distribution
    fixed: dict = field(init=False)

    def __post_init__(self):
        self.params, self.fixed = {}, {}
        for name, value in self.values.items():
            if isinstance(value, Range):
                self.params[name] = value.distribution()
            elif len(value) == 1:
                self.fixed[name] = value[0]
            else:
                self.params[name] = optuna.distributions.CategoricalDistribution(list(value))

    def most(self, name):
        """The largest value an option takes."""
        value = self.values[name]
        return type(value.low)(value.high) if isinstance(value, Range) else max(value)

    def grid(self):
        """Every combination of the values, in order, as {option: value} (grid sampler only)."""
        names, points = list(self.values), {}
        for combo in itertools.product(*self.values.values()):
            point = dict(zip(names, combo))
            if self.from_recipe:
                recipe = recipe_options(point["recipe"])
                point.update({name: recipe[name] for name in self.from_recipe})
            points[json.dumps(point)] = point  # each once, in order
        return list(points.values())

    def describe(self):
        """The space as JSON-able data, stored with the study to recognise it."""
        return {
            "sampler": self.sampler,
            "order": list(self.values),
            "from_recipe": list(self.from_recipe),
            "fixed": self.fixed,
            "params": {k: optuna.distributions.distribution_to_json(v) for k, v in self.params.items()},
        }


def redacted(url):
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def is_database(url):
    return "://" in url


def open_storage(url, heartbeat=10):
    """Optuna storage for `url`: a database (heartbeat every `heartbeat` seconds; a trial silent for
    three times that is failed and queued again) or a journal file. StudyError if it cannot be used."""
    try:
        if not is_database(url):
            path = Path(url).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        return creating_tables(
            optuna.storages.RDBStorage,
            url,
            # A connection the server dropped (a restart) is noticed and replaced, not used.
            engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=heartbeat,
            grace_period=3 * heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=RETRIES),
        )
    except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError, ImportError, OSError, ValueError) as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()
        raise StudyError(
            f"cannot open the storage {redacted(url)}: {cause[0] if cause else type(error).__name__}"
        ) from None


def creating_tables(call, *args, **kwargs):
    """`call(*args, **kwargs)`, which may create tables in a database: workers started at once on
    an empty database race to create them, and the losers, refused, find them made a moment later."""
    for attempt in range(10):
        try:
            return call(*args, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 9:
                raise
            time.sleep(0.5)


def patiently(call, *args, **kwargs):
    """`call(*args, **kwargs)`, retried while the database is unreachable (a restart, a network
    blip) for up to DB_PATIENCE seconds."""
    deadline = time.monotonic() + DB_PATIENCE
    while True:
        try:
            return call(*args, **kwargs)
        except (StorageInternalError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def make_sampler(name, seed):
    # The grid's points are enqueued: the sampler only fills in what an enqueued trial lacks (nothing).
    return optuna.samplers.TPESampler(seed=seed) if name == "tpe" else optuna.samplers.RandomSampler(seed=seed)


def make_pruner(name, epochs):
    """The pruner `name` for trials of at most `epochs` epochs (each epoch is a step)."""
    if name == "median":  # after 3 finished trials, stop one below their median at the same epoch
        return optuna.pruners.MedianPruner(n_startup_trials=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(storage, name, space, pruner, seed=0, names=None):
    """The study `name` in `storage`: created with `space` (a grid enqueued whole, each point with
    its run name from `names(point)`), or loaded and checked against `space`, changing nothing when
    it differs."""
    sampler = make_sampler(space.sampler, seed)
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, direction="maximize", sampler=sampler, pruner=pruner
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        stored = _waiting_for(study, SPACE)  # its creator, started a moment before, may be filling it
        if stored != json.loads(json.dumps(space.describe())):
            raise StudyError(
                f"study {name!r} was made with another search space or sampler "
                f"({json.dumps(stored)}); choose another --study"
            ) from None
        if not _waiting_for(study, FILLED):
            raise StudyError(f"study {name!r} was never filled (its creator stopped); choose another --study") from None
        return study
    study.set_user_attr(SPACE, space.describe())
    # Only the worker that created the study fills its queue, so no point is enqueued twice; the
    # others wait until it is full, so that none of them finds the queue empty too early.
    if space.sampler == "grid":
        for point in space.grid():
            study.enqueue_trial({k: point[k] for k in space.params}, user_attrs={"name": names(point)})
    study.set_user_attr(FILLED, True)
    return study


def _waiting_for(study, attr, seconds=30):
    """A study user attribute, waited for a while: another worker may be about to set it."""
    deadline = time.monotonic() + seconds
    while attr not in study.user_attrs and time.monotonic() < deadline:
        time.sleep(0.5)
    return study.user_attrs.get(attr)


def latest_runs(study):
    """{run name: its latest trial}, in the order the runs were first planned (a run tried again
    has several trials; the spare trials a grid worker handed back have no run)."""
    latest = {}
    for trial in patiently(study.get_trials, deepcopy=False):
        if "name" in trial.user_attrs and not trial.user_attrs.get("spare"):
            latest[trial.user_attrs["name"]] = trial
    return latest


def params_of(trial):
    """A trial's params, or, for one still waiting in the queue, the params it was enqueued with."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def counts(study):
    """{TrialState: number of trials} of the study."""
    trials = patiently(study.get_trials, deepcopy=False)
    return {state: sum(t.state == state for t in trials) for state in TrialState}


class DatabaseArtifactStore:
    """Optuna artifacts (model.npz files) in a table of the study's own database, so that every
    machine that reaches the database reaches them too (Optuna's ArtifactStore protocol)."""

    def __init__(self, url):
        self.engine = sqlalchemy.create_engine(url, pool_pre_ping=True)
        self.table = sqlalchemy.Table(
            "lenet5_artifacts",
            sqlalchemy.MetaData(),
            sqlalchemy.Column("artifact_id", sqlalchemy.String(128), primary_key=True),
            sqlalchemy.Column("content", sqlalchemy.LargeBinary, nullable=False),
        )
        creating_tables(self.table.metadata.create_all, self.engine)

    def open_reader(self, artifact_id):
        with self.engine.connect() as connection:
            row = connection.execute(
                sqlalchemy.select(self.table.c.content).where(self.table.c.artifact_id == artifact_id)
            ).first()
        if row is None:
            raise ArtifactNotFound(f"no artifact {artifact_id}")
        return io.BytesIO(row.content)

    def write(self, artifact_id, content_body):
        with self.engine.begin() as connection:
            connection.execute(self.table.insert().values(artifact_id=artifact_id, content=content_body.read()))

    def remove(self, artifact_id):
        with self.engine.begin() as connection:
            connection.execute(self.table.delete().where(self.table.c.artifact_id == artifact_id))


def artifact_store(url):
    if is_database(url):
        return DatabaseArtifactStore(url)
    folder = Path(url).expanduser().with_suffix(".artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


def value_of(metrics):
    """A trial's value: its last epoch's validation accuracy (-inf without a validation split:
    nothing to rank by, and Optuna takes no NaN)."""
    value = metrics[-1]["val_acc"] if metrics else math.nan
    return value if math.isfinite(value) else -math.inf
