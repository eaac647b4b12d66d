"""Sweeps on a shared Optuna study in a real PostgreSQL server: Debian's postgresql package (which
.ci/run installs where it is missing), started in a temporary folder on a loopback port, with a
password, and stopped afterwards (its server programs refuse to run as root: as root, they run as
the `postgres` user). Several workers are several `python -m lenet5.sweep` processes, each with its
own folder unless a test says otherwise; the runs are tiny real ones."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, need
from optuna.trial import TrialState

from lenet5.sweeps import study as studies
from lenet5.training.distributed import free_port

USER, PASSWORD = "lenet5", "sweep-secret"


def server_bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Postgres:
    """A PostgreSQL server of its own in `folder`, on `port`, listening on `listen`; its programs run
    behind `prefix` (ip netns exec NAME: in another network namespace)."""

    bindir: Path
    folder: Path
    port: int
    listen: str = "127.0.0.1"
    prefix: tuple = ()

    def url(self, database="sweeps", password=PASSWORD, port=None):
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{port or self.port}/{database}"

    def run(self, program, *args):
        cmd = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(
            [*self.prefix, *cmd],
            check=True,
            capture_output=True,
            text=True,
            cwd=self.folder,
            env={**os.environ, "PGPASSWORD": PASSWORD},
        )

    def init(self):
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        (self.folder / "password").write_text(PASSWORD + "\n")
        self.run(
            "initdb",
            "-D",
            str(self.folder / "data"),
            "-U",
            USER,
            "--auth=scram-sha-256",
            f"--pwfile={self.folder / 'password'}",
        )

    def start(self):
        self.run(
            "pg_ctl",
            "-D",
            str(self.folder / "data"),
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses={self.listen}",
            "start",
        )

    def stop(self):
        self.run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")

    def create_database(self, name, host="127.0.0.1"):
        self.run("createdb", "-h", host, "-p", str(self.port), "-U", USER, name)
        return self.url(name)


@pytest.fixture(scope="session")
def postgres():
    bindir = server_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL's server programs are missing: apt-get install postgresql (.ci/run does)")
    folder = Path(tempfile.mkdtemp(prefix="lenet5-postgres-"))  # not under pytest's 0700 folders
    server = Postgres(bindir, folder, free_port())
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database(postgres, request):
    """A fresh database on the server, for one test."""
    return postgres.create_database("t" + str(abs(hash(request.node.nodeid)))[:12])


TINY = ["--epochs", "1", "--limit-train", "256", "--limit-test", "100", "--val-size", "100"]
GRID12 = ["--pooling", "max", "avg", "--activation", "relu", "tanh", "sigmoid", "--seeds", "0", "1"]


def sweep(folder, mnist_dir, *args):
    """A worker: python -m lenet5.sweep as a process of its own, with its own folder."""
    cmd = [sys.executable, "-m", "lenet5.sweep", "--output-dir", str(folder), "--data-dir", str(mnist_dir), *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def trials(url, name):
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def test_three_workers_share_a_12_point_grid_and_run_each_point_exactly_once(database, mnist_dir, tmp_path):
    args = ["--storage", database, "--study", "grid12", *GRID12, *TINY]
    workers = [sweep(tmp_path / f"machine{i}", mnist_dir, *args) for i in range(3)]
    ended = [finish(proc) for proc in workers]
    # Every worker's output and the study's trials, kept in the message of whichever check fails.
    trials_ = trials(database, "grid12")
    story = "\n".join(
        [f"worker {i}: exit {code}\n{err}" for i, (code, _, err) in enumerate(ended)]
        + [f"trial {t.number} {t.state.name} {t.params} {t.user_attrs}" for t in trials_]
    )
    assert all(code == 0 for code, _, _ in ended), story
    names = [t.user_attrs["name"] for t in trials_ if t.state == TrialState.COMPLETE]
    assert len(names) == 12 and len(set(names)) == 12, story
    ran = [p.name for i in range(3) for p in (tmp_path / f"machine{i}" / "runs").iterdir()]
    assert sorted(ran) == sorted(names), story  # each point's run folder on exactly one machine
    assert all(t.state != TrialState.FAIL or t.user_attrs.get("spare") for t in trials_), story
    rows = (tmp_path / "machine0" / "results.csv").read_text().splitlines()
    assert len(rows) == 13 and all(",ok," in row for row in rows[1:]), story  # every machine's trials


def test_a_killed_workers_point_is_finished_by_another_from_its_checkpoint(database, mnist_dir, tmp_path):
    shared = tmp_path / "shared"  # both workers' run folders on one file system
    args = [
        "--storage",
        database,
        "--study",
        "kill",
        "--heartbeat",
        "1",
        "--pooling",
        "max",
        "avg",
        "--epochs",
        "3",
        "--limit-train",
        "4096",
        "--limit-test",
        "100",
        "--val-size",
        "100",
    ]
    victim = sweep(shared, mnist_dir, *args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until its run has checkpointed an epoch
        if list(shared.glob("runs/*/checkpoint.json")):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no checkpoint: {finish(victim)}")
    survivor = sweep(shared, mnist_dir, *args)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    code, out, err = finish(survivor)
    assert code == 0, err
    states = [(t.user_attrs["name"], t.state) for t in trials(database, "kill") if "name" in t.user_attrs]
    names = {name for name, _ in states}
    assert len(names) == 2 and all(any(s == TrialState.COMPLETE for n, s in states if n == name) for name in names)
    assert any(s == TrialState.FAIL for _, s in states)  # the killed worker's trial, failed by its heartbeat
    logs = "".join(p.read_text() for p in (shared / "logs").iterdir())
    assert "--resume" in logs  # taken over where its checkpoint left it


def test_a_database_restart_mid_sweep_loses_nothing(postgres, database, mnist_dir, tmp_path):
    worker = sweep(
        tmp_path / "w",
        mnist_dir,
        "--storage",
        database,
        "--study",
        "restart",
        "--pooling",
        "max",
        "avg",
        "--seeds",
        "0",
        "1",
        *TINY,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "w").glob("runs/*/result.json")):
        time.sleep(0.2)
    postgres.stop()
    time.sleep(3)
    postgres.start()
    code, out, err = finish(worker)
    assert code == 0, err
    done = [t for t in trials(database, "restart") if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["name"] for t in done) == sorted(p.name for p in (tmp_path / "w" / "runs").iterdir())
    assert len(done) == 4


def test_tpe_with_the_median_pruner_stops_a_hopeless_learning_rate_early(database, mnist_dir, tmp_path):
    code, out, err = finish(
        sweep(
            tmp_path / "tpe",
            mnist_dir,
            "--storage",
            database,
            "--study",
            "tpe",
            "--sampler",
            "tpe",
            "--trials",
            "8",
            "--pruner",
            "median",
            "--lr",
            "1e-6..1e-2:log",
            "--epochs",
            "4",
            "--limit-train",
            "16384",
            "--limit-test",
            "100",
            "--val-size",
            "500",
        )
    )
    assert code == 0, err
    everything = trials(database, "tpe")
    pruned = [t for t in everything if t.state == TrialState.PRUNED]
    assert len(everything) == 8 and pruned, [(t.number, t.state, t.params, t.intermediate_values) for t in everything]
    assert all(len(t.intermediate_values) < 4 for t in pruned)  # stopped before their last epoch
    # Hopeless learning rates (about 50% after an epoch, against 80-97% for the others) are all
    # stopped, once the pruner has the median of three finished trials to compare with.
    hopeless = [t for t in everything[3:] if t.params["lr"] < 1e-4]
    assert hopeless and all(t.state == TrialState.PRUNED for t in hopeless)
    assert "pruned: stopped early" in (tmp_path / "tpe" / "results.md").read_text()
    # The best trial's weights, from the database, as any machine fetches them.
    fetched = tmp_path / "best.npz"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lenet5.report",
            str(tmp_path / "elsewhere"),
            "--storage",
            database,
            "--study",
            "tpe",
            "--fetch-best",
            str(fetched),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    from lenet5.network import weights

    params, meta = weights.load(fetched)
    assert meta["framework"] == "pytorch" and set(params) == set(weights.shapes())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--storage", "postgresql+psycopg://lenet5:x@127.0.0.1:{closed}/sweeps", "--study", "s"], "cannot open"),
        (["--storage", "{wrong_password}", "--study", "s"], "password authentication failed"),
        (["--storage", "{database}", "--study", "taken", "--pooling", "avg"], "another search space"),
        (["--trials", "4"], "--trials is for the random and TPE samplers"),
        (["--sampler", "tpe", "--trials", "4", "--lr", "0.1..0.01"], "low end is above its high end"),
        (["--sampler", "tpe"], "needs --trials N"),
        (["--lr", "1e-4..1e-2"], "a range is one value"),
        (["--storage", "{database}"], "needs --study"),
        (["--momentum-typo", "1"], "unrecognized arguments"),
    ],
)
def test_bad_input_gets_one_line_and_leaves_the_study_unchanged(postgres, database, mnist_dir, tmp_path, args, message):
    optuna.create_study(study_name="taken", storage=database).set_user_attr(studies.SPACE, {"sampler": "grid"})
    before = [(s.study_name, s.n_trials, s.user_attrs) for s in optuna.get_all_study_summaries(database)]
    filled = [
        a.format(
            closed=free_port(),
            database=database,
            wrong_password=postgres.url(database.rsplit("/", 1)[1], password="wrong"),
        )
        for a in args
    ]
    code, out, err = finish(sweep(tmp_path / "s", mnist_dir, *filled, *TINY))
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert [(s.study_name, s.n_trials, s.user_attrs) for s in optuna.get_all_study_summaries(database)] == before


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def network(postgres):
    """Three network namespaces, a database host and two workers, each worker joined to the database
    host by its own veth pair (10.77.1.0/24, 10.77.2.0/24): separate hosts as far as the network
    goes. Removed afterwards, with their links."""
    need(os.geteuid() == 0 and shutil.which("ip"), "network namespaces need root and iproute2")
    tag = str(os.getpid())[-5:]
    names = {role: f"lenet5-{role}-{tag}" for role in ("db", "w1", "w2")}
    try:
        for name in names.values():
            ip("netns", "add", name)
            ip("-n", name, "link", "set", "lo", "up")
        for i, worker in ((1, "w1"), (2, "w2")):
            db_end, worker_end = f"l5d{i}{tag}", f"l5w{i}{tag}"
            ip("link", "add", db_end, "netns", names["db"], "type", "veth", "peer", worker_end, "netns", names[worker])
            ip("-n", names["db"], "addr", "add", f"10.77.{i}.1/24", "dev", db_end)
            ip("-n", names[worker], "addr", "add", f"10.77.{i}.2/24", "dev", worker_end)
            ip("-n", names["db"], "link", "set", db_end, "up")
            ip("-n", names[worker], "link", "set", worker_end, "up")
    except subprocess.CalledProcessError as error:
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        need(False, f"cannot make network namespaces here: {error.stderr.decode().strip()}")
    yield names
    for name in names.values():
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_workers_on_other_hosts_share_the_study_over_the_network_and_no_folder(postgres, network, mnist_dir, tmp_path):
    # A second server, in the database host's namespace, open to the two worker networks.
    server = Postgres(
        postgres.bindir,
        Path(tempfile.mkdtemp(prefix="lenet5-postgres-net-")),
        5432,
        listen="10.77.1.1,10.77.2.1",
        prefix=("ip", "netns", "exec", network["db"]),
    )
    server.init()
    with open(server.folder / "data" / "pg_hba.conf", "a") as hba:
        hba.write("host all all 10.77.0.0/16 scram-sha-256\n")
    server.start()
    try:
        server.create_database("sweeps", host="10.77.1.1")
        workers = []
        for i, worker in ((1, "w1"), (2, "w2")):
            host = tmp_path / worker  # its own folders: sweep, and a copy of MNIST
            shutil.copytree(mnist_dir, host / "mnist")
            url = f"postgresql+psycopg://{USER}:{PASSWORD}@10.77.{i}.1:5432/sweeps"
            cmd = [
                "ip",
                "netns",
                "exec",
                network[worker],
                sys.executable,
                "-m",
                "lenet5.sweep",
                "--storage",
                url,
                "--study",
                "net",
                "--output-dir",
                str(host / "sweep"),
                "--data-dir",
                str(host / "mnist"),
                "--pooling",
                "max",
                "avg",
                "--seeds",
                "0",
                "1",
                *TINY,
            ]
            workers.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for proc in workers:
            code, out, err = finish(proc)
            assert code == 0, err
        ran = {w: sorted(p.name for p in (tmp_path / w / "sweep" / "runs").iterdir()) for w in ("w1", "w2")}
        assert len(ran["w1"]) + len(ran["w2"]) == 4 and not set(ran["w1"]) & set(ran["w2"])
        for w in ("w1", "w2"):  # each host's report covers both hosts' trials, from the database
            assert (tmp_path / w / "sweep" / "results.csv").read_text().count(",ok,") == 4
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)
