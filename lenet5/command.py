"""lenet5: one command with modes; each runs in the environment it needs, built on first use.

    lenet5 train --framework mxnet --epochs 5    # train_mxnet/train.py, in MXNet's environment
    lenet5 predict photo.jpg digits/             # the shipped model; or: lenet5 predict runs/<run> photo.jpg
    lenet5 serve                                 # draw digits at http://127.0.0.1:8000/
    lenet5 MODE --help                           # that mode's own options

Standard library only: it runs in whatever Python started it (`python3 -m lenet5` from a fresh
clone, or the `lenet5` script that `pip install -e .` makes), builds the environment the mode
needs (lenet5.envs) and hands the command line over to that environment's Python, where train.py
or `python -m lenet5.<module>` parses it.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from . import __version__, envs
from .config import FRAMEWORKS, ROOT

# mode: (the module it runs, what it does in one line); train runs train_<framework>/train.py.
MODES = {
    "train": (None, "train LeNet-5 with one framework (--framework, default pytorch) and train.py's options"),
    "predict": ("lenet5.predict", "classify digits in pictures, folders of them and videos"),
    "serve": ("lenet5.serve", "a page to draw digits on and watch LeNet-5 read them, and a JSON API"),
    "plot": ("lenet5.plot", "a run's curves, confusion matrix, mistakes, samples and layers, as PNG files"),
    "convert": ("lenet5.convert", "a run's weights as another framework's files, or as model.npz"),
    "export": ("lenet5.onnx_export", "a run's LeNet-5 as an ONNX file"),
    "sweep": ("lenet5.sweep", "grids and searches over options, seeds and frameworks, on an Optuna study"),
    "report": ("lenet5.report", "a sweep's results table and plot, from its study"),
    "bench": ("lenet5.bench", "each framework's training speed against an idiomatic baseline"),
    "envs": ("lenet5.envs", "build, find and use the three frameworks' environments"),
    "figure": ("lenet5.architecture", "draw LeNet-5's architecture figure from the model itself"),
}


def build_parser():
    width = max(map(len, MODES))
    modes = "\n".join(f"  {mode:<{width}}  {text}" for mode, (_, text) in MODES.items())
    parser = argparse.ArgumentParser(
        prog="lenet5",
        usage="lenet5 [-h] [--version] MODE [MODE'S OPTIONS ...]",
        description=__doc__.split("\n\n")[0],
        epilog=f"modes:\n{modes}\n\nlenet5 MODE --help gives the mode's own options. Docs: {ROOT / 'docs'}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("mode", choices=MODES, metavar="MODE", help="what to do: one of the modes below")
    parser.add_argument("--version", action="version", version=f"lenet5 {__version__}")
    return parser


def tools_framework():
    """Whose environment the modes other than train run in (any has what they need): this one's
    when this Python is one of them, else the first that exists, else PyTorch's, which make builds first."""
    here = Path(sys.prefix).resolve()
    for framework in FRAMEWORKS:
        if not sys.flags.no_site and here == envs.env_dir(framework):
            return framework
    return next((f for f in FRAMEWORKS if envs.env_python(f).exists()), FRAMEWORKS[0])


def command_of(mode, argv):
    """(framework whose environment runs it, the arguments after that environment's python)."""
    if mode == "train":
        pick = argparse.ArgumentParser(prog="lenet5 train", add_help=False, allow_abbrev=False)
        pick.add_argument("--framework", choices=FRAMEWORKS, default="pytorch")
        known, rest = pick.parse_known_args(argv)
        if {"-h", "--help"} & set(rest):  # train.py's help, which knows of one framework: say how to pick
            picks = f"[--framework {{{','.join(FRAMEWORKS)}}}] (default: pytorch)"
            print(f"lenet5 train {picks}, then train_{known.framework}/train.py's:")
        return known.framework, [str(ROOT / f"train_{known.framework}" / "train.py"), *rest]
    return tools_framework(), ["-m", MODES[mode][0], *argv]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in MODES:  # help, --version, or a mistake: argparse says it
        build_parser().parse_args(argv)
    mode, rest = argv[0], argv[1:]
    if mode == "envs":  # standard library too: no environment needed
        return envs.main(rest, prog="lenet5 envs")
    framework, args = command_of(mode, rest)
    try:
        python = envs.ensure(framework)
    except envs.EnvError as error:
        sys.exit(f"lenet5 {mode}: error: {error}")
    command = [str(python), *args]
    if MODES[mode][0]:  # its usage and errors then say `lenet5 MODE` (lenet5.arguments.prog)
        os.environ["LENET5_PROG"] = f"{MODES[mode][0]}:lenet5 {mode}"
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":  # the mode becomes this process: its signals, its exit status
        os.execv(command[0], command)
    return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
