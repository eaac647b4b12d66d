"""Create, find and use the per-framework virtual environments.

The three frameworks cannot share one environment (MXNet 1.9.1 needs numpy < 1.24, current
TensorFlow numpy >= 1.26), so each gets its own venv built from requirements/<framework>.txt, with
this project installed into it editable (`pip install --no-deps -e .`): every environment imports
lenet5, model_* and train_* from this checkout. An environment is rebuilt only when its
requirements (or the Python building it) change: the hash of both is stamped into the venv, so a
fresh clone pointed at the same LENET5_VENV_DIR reuses what an earlier clone built, and only
installs itself into it again.

A step that needs another framework than this Python has runs there through `call`, which hands
back its result, or its one-line error, as JSON. Standard library only: this runs before any
environment exists.

    python -m lenet5.envs ensure pytorch          # build if missing or stale, print its python
    python -m lenet5.envs run pytorch -m pytest   # ensure, then run its python with arguments

Each framework takes the Pythons it has wheels for (PYTHONS). The interpreter that builds an
environment is the one running this, when it fits, else the newest fitting `python3.X` on PATH
(MXNet's is often python3.11 beside a newer python3); none at all is one line saying what to install.
"""

import argparse
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from .config import FRAMEWORKS, ROOT

REQUIREMENTS = ROOT / "requirements"
STAMP = "lenet5-requirements.sha256"  # in the venv: what its requirements were built from
INSTALLED = "lenet5-project.txt"  # in the venv: the checkout installed into it, and its pyproject's hash
# The Pythons each environment takes, (oldest, newest): the project's own code needs 3.10
# (zip(strict=)); TensorFlow 2.21 has no wheels past 3.13, MXNet 1.9.1 and numpy 1.23.5 none past 3.11.
PYTHONS = {"pytorch": ((3, 10), (3, 13)), "tensorflow": ((3, 10), (3, 13)), "mxnet": ((3, 10), (3, 11))}
# What an interpreter is asked: its version, and whether it can make a venv (Debian's python3
# cannot until python3-venv is installed: no ensurepip).
PROBE = """import sys
try:
    import ensurepip, venv
except ImportError:
    ensurepip = None
print('%d.%d.%d' % sys.version_info[:3], ensurepip is not None)"""


class EnvError(Exception):
    """An environment cannot be built or used, or a step run in one failed; the message says why in one line."""


def venv_root():
    """Folder holding one venv per framework: $LENET5_VENV_DIR; else the one holding this Python's
    environment when it is one of them (its `lenet5` script was run), so that the others are found
    beside it; else .venvs/ in the project."""
    if os.environ.get("LENET5_VENV_DIR"):
        return Path(os.environ["LENET5_VENV_DIR"]).expanduser().resolve()
    here = Path(sys.prefix)
    return here.parent.resolve() if (here / STAMP).is_file() else (ROOT / ".venvs").resolve()


def env_dir(framework):
    return venv_root() / framework


def own_python_variable(framework):
    return f"LENET5_{framework.upper()}_PYTHON"


def env_python(framework):
    """The python of a framework's environment (which may not exist yet).

    $LENET5_<FRAMEWORK>_PYTHON (e.g. LENET5_PYTORCH_PYTHON) names an interpreter of your own,
    such as a conda environment's with `pip install -e .` done in it, and is then used as it is.
    """
    own = os.environ.get(own_python_variable(framework))
    if own:
        return Path(own)
    bindir = "Scripts" if os.name == "nt" else "bin"
    return env_dir(framework) / bindir / ("python.exe" if os.name == "nt" else "python")


def _requirement_files(path):
    """A requirements file and the files it includes with -r, in order."""
    files = [path]
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("-r", "--requirement"):
            files += _requirement_files(path.parent / parts[1])
    return files


def requirements_hash(framework, version):
    """What an environment built from its requirements files by Python `version` (3-tuple) is stamped
    with: their requirement lines, without comments, so that a comment edited rebuilds nothing."""
    digest = hashlib.sha256(f"{tuple(version)}".encode())
    for file in _requirement_files(REQUIREMENTS / f"{framework}.txt"):
        for line in file.read_text().splitlines():
            requirement = line.split(" #")[0].strip()
            if requirement and not requirement.startswith("#"):
                digest.update(requirement.encode() + b"\n")
    return digest.hexdigest()


def _pip(python, *args, what):
    try:
        subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *args], check=True)
    except subprocess.CalledProcessError:
        raise EnvError(f"pip could not install {what} into {python}; see pip's message above") from None


def probe(python):
    """((major, minor, micro), whether it can make a venv) of the interpreter `python` (a path, or
    a name on PATH), or None when it does not run: no such file, or a pyenv shim of a version that
    is not selected (it exits 127)."""
    try:
        proc = subprocess.run([str(python), "-S", "-c", PROBE], capture_output=True, text=True, timeout=60)
        version, venv = proc.stdout.split()
        return tuple(int(part) for part in version.split(".")), venv == "True"
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None


def _dotted(version):
    return ".".join(map(str, version))


def candidates(framework):
    """The interpreters that may build `framework`'s environment, in order of preference: this one,
    then python3.X on PATH from the newest X the framework takes down to the oldest."""
    (_, low), (_, high) = PYTHONS[framework]
    return [sys.executable] + [f"python3.{minor}" for minor in range(high, low - 1, -1)]


def choose_python(framework):
    """(interpreter, its version) to build `framework`'s environment with; EnvError, in one line,
    says which Pythons it takes and how to get one when none here fits."""
    low, high = PYTHONS[framework]
    found = {python: probe(python) for python in candidates(framework)}
    fitting = {python: info for python, info in found.items() if info and low <= info[0][:2] <= high}
    for python, (version, can_venv) in fitting.items():
        if can_venv:
            return python, version
    wanted, newest = f"Python {_dotted(low)} to {_dotted(high)}", _dotted(high)
    if fitting:  # Debian and Ubuntu ship venv's ensurepip apart
        python, (version, _) = next(iter(fitting.items()))
        raise EnvError(
            f"{python} ({_dotted(version)}) cannot make a venv: install python3-venv (apt install python3-venv)"
        )
    this, others = found[sys.executable], candidates(framework)[1:]
    others = f"neither {' nor '.join(others)} runs" if len(others) > 1 else f"{others[0]} does not run"
    raise EnvError(
        f"the {framework} environment needs {wanted}; this is Python {_dotted(this[0]) if this else '?'}, and "
        f"{others} here: install one (e.g. 'uv python install {newest}' or 'pyenv install {newest}') "
        f"or name it: make PYTHON=/path/to/python{newest}"
    )


def ensure(framework):
    """Build the framework's environment when it is missing, stale or of a Python the framework
    does not take, install this checkout into it when it holds another (or none); return its python."""
    if framework not in FRAMEWORKS:
        raise EnvError(f"unknown framework {framework!r}; choose from {', '.join(FRAMEWORKS)}")
    python = env_python(framework)
    if os.environ.get(own_python_variable(framework)):
        if not python.exists():
            raise EnvError(f"{own_python_variable(framework)}={python} does not exist")
        return python
    target = env_dir(framework)
    low, high = PYTHONS[framework]
    built = probe(python) if (target / STAMP).exists() else None  # (version, can make a venv) or None
    current = built and low <= built[0][:2] <= high
    if not (current and (target / STAMP).read_text().strip() == requirements_hash(framework, built[0])):
        base, version = choose_python(framework)
        print(
            f"Building the {framework} environment in {target} with Python {_dotted(version)} (once: minutes) ...",
            file=sys.stderr,
            flush=True,
        )
        if target.exists():
            shutil.rmtree(target)
        subprocess.run([str(base), "-m", "venv", str(target)], check=True)
        _pip(python, "-r", str(REQUIREMENTS / f"{framework}.txt"), what=f"requirements/{framework}.txt")
        # The stamp is written last, so an interrupted build is simply built again next time.
        (target / STAMP).write_text(requirements_hash(framework, version) + "\n")
    # An environment shared by several clones (CI's) runs the code of the clone that last used it.
    project = f"{ROOT}\n{hashlib.sha256((ROOT / 'pyproject.toml').read_bytes()).hexdigest()}\n"
    if not (target / INSTALLED).exists() or (target / INSTALLED).read_text() != project:
        _pip(python, "--quiet", "--no-deps", "--editable", str(ROOT), what=f"this project ({ROOT})")
        (target / INSTALLED).write_text(project)
    return python


def has_framework(framework):
    """Whether this Python can import the framework's model package (and so the framework)."""
    try:
        importlib.import_module(f"model_{framework}")
    except ImportError:
        return False
    return True


def _function(name):
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def call(framework, function, *args):
    """`function` ("package.module:name") called with `args` in `framework`'s environment: in this
    process when this Python has the framework, else in that environment's Python, the arguments
    and the result passed as JSON (paths become strings; arrays go in files). A failure there raises
    EnvError with its one-line message; here, the function's own exception propagates."""
    if has_framework(framework):
        return _function(function)(*args)
    python = env_python(framework)
    if not python.exists():
        raise EnvError(
            f"this needs {framework}, which this Python lacks, and its environment {python} "
            f"does not exist (make env-{framework} builds it)"
        )
    with tempfile.TemporaryDirectory(prefix="lenet5-call-") as tmp:
        reply = Path(tmp) / "reply.json"
        proc = subprocess.run(
            [str(python), "-m", "lenet5.envs", "call", function, str(reply)],
            input=json.dumps(args, default=str),
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        try:
            answer = json.loads(reply.read_text())
        except (OSError, ValueError):  # it died before answering: its last words
            lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
            raise EnvError(f"{framework} environment ({python}): {lines[-1]}") from None
    if "error" in answer:
        raise EnvError(answer["error"])
    return answer["result"]


def _answer(function, reply):
    """The other end of `call`, in the framework's environment: arguments from stdin, the result or
    the error's first line into `reply` (the traceback of an error on stderr, for whoever looks)."""
    try:
        answer = {"result": _function(function)(*json.load(sys.stdin))}
    except Exception as error:
        traceback.print_exc()
        lines = str(error).strip().splitlines()
        answer = {"error": lines[0] if lines else type(error).__name__, "type": type(error).__name__}
    from .files import write_json  # numpy: there is an environment by now

    write_json(reply, answer)
    return 0


def main(argv=None, prog="python -m lenet5.envs"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("ensure", "build the environment if needed and print its python"),
        ("path", "print the environment's python without building it"),
        ("run", "build if needed, then run its python with the remaining arguments"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("framework", choices=FRAMEWORKS)
        if name == "run":
            cmd.add_argument("args", nargs=argparse.REMAINDER)
    answer = sub.add_parser("call", help="(used by lenet5.envs.call) run a function with JSON arguments from stdin")
    answer.add_argument("function", help="package.module:name")
    answer.add_argument("reply", type=Path, help="JSON file for the result or the error")
    args = parser.parse_args(argv)
    if args.command == "call":
        return _answer(args.function, args.reply)
    if args.command == "path":
        print(env_python(args.framework))
        return 0
    try:
        python = ensure(args.framework)
    except EnvError as error:
        sys.exit(f"{prog}: error: {error}")
    if args.command == "ensure":
        print(python)
        return 0
    # Run from the project root so `-m pytest tests/...` and relative paths mean the same everywhere.
    return subprocess.run([str(python), *args.args], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
