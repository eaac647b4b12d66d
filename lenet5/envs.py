"""Create, find and run the per-framework virtual environments.

The three frameworks cannot share one environment (MXNet 1.9.1 needs numpy < 1.24, current
TensorFlow numpy >= 1.26), so each gets its own venv built from requirements/<framework>.txt.
An environment is rebuilt only when its requirements (or the Python building it) change: the
hash of both is stamped into the venv, so a fresh clone pointed at the same LENET5_VENV_DIR
reuses what an earlier clone built.

Standard library only: this runs before any environment exists.

    python -m lenet5.envs ensure pytorch          # build if missing or stale, print its python
    python -m lenet5.envs run pytorch -m pytest   # ensure, then run its python with arguments
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
FRAMEWORKS = ("pytorch", "tensorflow", "mxnet")
STAMP = "lenet5-requirements.sha256"
# MXNet 1.9.1 has no wheels past Python 3.11 and TensorFlow 2.21 none before 3.9.
PYTHON_RANGE = ((3, 9), (3, 11))


def venv_root():
    """Folder holding one venv per framework: $LENET5_VENV_DIR, else .venvs/ in the project."""
    return Path(os.environ.get("LENET5_VENV_DIR") or ROOT / ".venvs").expanduser().resolve()


def env_dir(framework):
    return venv_root() / framework


def env_python(framework):
    """The python of a framework's environment (which may not exist yet).

    $LENET5_<FRAMEWORK>_PYTHON (e.g. LENET5_PYTORCH_PYTHON) names an interpreter of your own,
    such as a conda environment's, and is then used as it is.
    """
    own = os.environ.get(f"LENET5_{framework.upper()}_PYTHON")
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


def requirements_hash(framework):
    digest = hashlib.sha256(f"{sys.version_info[:3]}".encode())
    for file in _requirement_files(REQUIREMENTS / f"{framework}.txt"):
        digest.update(file.read_bytes())
    return digest.hexdigest()


def ensure(framework):
    """Build the framework's environment when it is missing or stale; return its python."""
    if framework not in FRAMEWORKS:
        raise SystemExit(f"unknown framework {framework!r}; choose from {', '.join(FRAMEWORKS)}")
    python = env_python(framework)
    if os.environ.get(f"LENET5_{framework.upper()}_PYTHON"):
        if not python.exists():
            raise SystemExit(f"LENET5_{framework.upper()}_PYTHON={python} does not exist")
        return python
    stamp = env_dir(framework) / STAMP
    wanted = requirements_hash(framework)
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    low, high = PYTHON_RANGE
    if not low <= sys.version_info[:2] <= high:
        raise SystemExit(
            f"Python {sys.version.split()[0]} cannot build the {framework} environment: use "
            f"Python {low[0]}.{low[1]} to {high[0]}.{high[1]}, e.g. make PYTHON=python3.11")
    target = env_dir(framework)
    print(f"Building the {framework} environment in {target} (once; a few minutes) ...",
          file=sys.stderr, flush=True)
    if target.exists():
        shutil.rmtree(target)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    # The stamp is written last, so an interrupted build is simply built again next time.
    try:
        subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS / f"{framework}.txt")], check=True)
    except subprocess.CalledProcessError:
        raise SystemExit(f"pip could not install requirements/{framework}.txt into {target}; "
                         "see pip's message above") from None
    stamp.write_text(wanted + "\n")
    return python


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lenet5.envs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("ensure", "build the environment if needed and print its python"),
                       ("path", "print the environment's python without building it"),
                       ("run", "build if needed, then run its python with the remaining arguments")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("framework", choices=FRAMEWORKS)
        if name == "run":
            cmd.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "path":
        print(env_python(args.framework))
        return 0
    python = ensure(args.framework)
    if args.command == "ensure":
        print(python)
        return 0
    # Run from the project root so `-m pytest tests/...` and relative paths mean the same everywhere.
    return subprocess.run([str(python), *args.args], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
