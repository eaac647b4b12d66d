"""Convert any run's weights into another framework's own files, through the neutral model.npz.

    python -m lenet5.convert runs/pytorch-max-relu-seed0-... --to tensorflow   # -> .../converted-tensorflow/model.keras
    python -m lenet5.convert runs/mxnet-avg-tanh-seed0-... --to pytorch --output lenet.pt
    python -m lenet5.convert model.npz --to mxnet --output exported/            # an .npz works too

A finished run gives its final weights; an unfinished or interrupted one, its last checkpoint.
Reading a native file needs the framework that wrote it, writing one needs the target's; each
step runs here when this interpreter has that framework, else in the framework's own environment
(lenet5.envs), so any environment converts in every direction. Nothing existing is overwritten.
"""
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import weights
from .cli import HelpFormatter, Parser
from .config import FRAMEWORKS, Config
from .envs import ROOT, env_python

NEUTRAL = weights.FILENAME
# The files written for a stem, per target (as model_<framework>/convert.py writes them); the
# first suffix is the one --output may end in.
FILES = {"pytorch": (".pt",), "tensorflow": (".keras",), "mxnet": (".params", "-symbol.json", "-0000.params"),
         "npz": (".npz",)}
FINAL = {framework: "model" + FILES[framework][0] for framework in FRAMEWORKS}  # a run's, as train.py names it


class ConvertError(Exception):
    """The conversion cannot be done; the message says why in one line."""


def _framework_module(framework):
    """model_<framework>.convert if this interpreter can import the framework, else None."""
    try:
        return importlib.import_module(f"model_{framework}.convert")
    except ImportError:
        return None


def _in_env(framework, command, source, target):
    """Run one step of _worker in the framework's own environment; a failure becomes ConvertError."""
    python = env_python(framework)
    if not python.exists():
        raise ConvertError(f"converting needs {framework}, which this Python lacks and whose environment "
                           f"{python} does not exist (make env-{framework} builds it)")
    proc = subprocess.run(
        [str(python), "-c", "import sys; from lenet5.convert import _worker; sys.exit(_worker(sys.argv[1:]))",
         framework, command, str(Path(source).resolve()), str(Path(target).resolve())],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
        raise ConvertError(next((line[len("lenet5.convert: "):] for line in reversed(lines)
                                 if line.startswith("lenet5.convert: ")), lines[-1]))


def _worker(argv):
    """The framework half of a conversion, in that framework's environment:
    `FRAMEWORK read NATIVE OUT.npz` or `FRAMEWORK write IN.npz STEM`."""
    framework, command, source, target = argv
    try:
        if command == "read":
            np.savez(target, **read_native(framework, source))
        else:
            write_native(framework, *weights.load(source), Path(target))
    except (ConvertError, weights.WeightsError) as error:
        print(f"lenet5.convert: {error}", file=sys.stderr)
        return 1
    return 0


def read_native(framework, path):
    """Neutral weights (unvalidated) from a native weight file or checkpoint of `framework`."""
    module = _framework_module(framework)
    if module is None:
        with tempfile.TemporaryDirectory() as tmp:
            _in_env(framework, "read", path, Path(tmp) / NEUTRAL)
            with np.load(Path(tmp) / NEUTRAL) as npz:
                return {k: npz[k] for k in npz.files}
    try:
        return module.read_native(path)
    except Exception as error:  # truncated, another framework's, not a weight file at all
        raise ConvertError(f"cannot read {path} with {framework}: {str(error).strip().splitlines()[0]}") from None


def write_native(framework, params, meta, stem):
    """Write `framework`'s own files for `stem` (a path without suffix); returns their paths."""
    module = _framework_module(framework)
    if module is not None:
        return module.write_native(params, meta, stem)
    with tempfile.TemporaryDirectory() as tmp:
        weights.save(Path(tmp) / NEUTRAL, params, meta)
        _in_env(framework, "write", Path(tmp) / NEUTRAL, stem)
    return [stem.with_name(stem.name + suffix) for suffix in FILES[framework]]


def load_weights(source):
    """(params, meta, what) from an .npz file or a run folder: a finished run's final weights, an
    unfinished one's last checkpoint; `what` says which, for the user."""
    source = Path(source)
    if source.is_file() and source.suffix == ".npz":
        return (*weights.load(source), str(source))
    if not source.is_dir():
        raise ConvertError(f"{source}: no such run folder or .npz file")
    try:
        cfg = Config.load(source / "config.json")
    except FileNotFoundError:
        raise ConvertError(f"{source}: not a run folder (no config.json) nor an .npz file") from None
    except (ValueError, TypeError) as error:
        raise ConvertError(f"{source}/config.json is unreadable ({error})") from None
    meta = weights.make_meta(cfg.pooling, cfg.activation, framework=cfg.framework)
    checkpoint = _read_json(source / "checkpoint.json")
    result = _read_json(source / "result.json")
    # Finished, and not resumed since to train longer: the final weights. Else the last checkpoint.
    if result and (not checkpoint or (checkpoint["epoch"] == result["epochs"] and not checkpoint.get("partial"))):
        if (source / NEUTRAL).exists():
            return (*weights.load(source / NEUTRAL), f"{source / NEUTRAL} (final weights)")
        path, what = source / FINAL[cfg.framework], "final weights"
    elif checkpoint:
        path = source / checkpoint["files"][0]
        partial = checkpoint.get("partial")
        what = (f"checkpoint inside epoch {partial['epoch']}, step {checkpoint['step']}" if partial
                else f"checkpoint after epoch {checkpoint['epoch']}")
    else:
        raise ConvertError(f"{source}: the run has no checkpoint yet, so no weights to convert")
    if not path.exists():
        raise ConvertError(f"{path} is missing")
    return weights.validate(read_native(cfg.framework, path), meta, str(path)), meta, f"{path} ({what})"


def _read_json(path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise ConvertError(f"{path} is damaged ({error})") from None


def output_files(source, target, output=None):
    """The paths to write: --output ending in the target's suffix names the file (MXNet's graph
    files go beside it); any other --output is a folder, which also gets model.npz, the
    architecture that a bare state_dict lacks. By default that folder is <run>/converted-<target>/,
    or <name>-<target>/ beside <name>.npz."""
    source = Path(source)
    if output is None:
        output = source / f"converted-{target}" if source.is_dir() else source.with_name(f"{source.stem}-{target}")
    output = Path(output)
    if output.suffix == FILES[target][0]:
        stem, suffixes = output.with_suffix(""), FILES[target]
    elif output.suffix in {files[0] for files in FILES.values()} | {".onnx"}:
        raise ConvertError(f"--output {output}: that is not a {target} file; "
                           f"name one ending in {FILES[target][0]}, or a folder")
    else:
        stem, suffixes = output / "model", tuple(dict.fromkeys(FILES[target] + FILES["npz"]))
    return [stem.with_name(stem.name + suffix) for suffix in suffixes]


def convert(source, target, output=None):
    """Write `source`'s weights (run folder or .npz) as `target`'s native files (or an .npz);
    returns (written paths, what was read). Existing files are never overwritten: the files are
    made in a temporary folder beside the destination and linked into place only if none exists."""
    if target not in FILES:
        raise ConvertError(f"unknown target {target!r}; choose one of: {', '.join(FILES)}")
    final = output_files(source, target, output)
    _refuse_existing(final)
    params, meta, what = load_weights(source)
    folder = final[0].parent
    made_folder = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".convert-", dir=folder) as tmp:
            stem = Path(tmp) / final[0].stem
            made = write_native(target, params, meta, stem) if target != "npz" else []
            if final[-1].suffix == ".npz":
                made.append(weights.save(stem.with_suffix(".npz"), params, meta))
            _refuse_existing(final)  # again: the conversion took a while
            for path, dest in zip(made, final):
                os.link(path, dest)  # fails rather than replaces
    except BaseException:
        if made_folder and not any(folder.iterdir()):
            folder.rmdir()
        raise
    return final, what


def _refuse_existing(paths):
    existing = [str(path) for path in paths if path.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more of its files)" if len(existing) > 1 else ""
        raise ConvertError(f"{existing[0]}{more} already exists; nothing was written (choose another --output)")


def main(argv=None):
    parser = Parser(prog="python -m lenet5.convert", description=__doc__.split("\n\n")[0],
                    formatter_class=HelpFormatter)
    parser.add_argument("source", type=Path,
                        help="a run folder (its final weights, or its last checkpoint if unfinished) or an .npz file")
    parser.add_argument("--to", required=True, choices=FILES, dest="target",
                        help="the framework whose own files to write, or npz for the neutral file")
    parser.add_argument("--output", "-o", type=Path,
                        help="a folder, or a file name ending in the target's suffix (.pt, .keras, .params, .npz) "
                             "(default: <run>/converted-<target>/ or <name>-<target>/ beside <name>.npz)")
    args = parser.parse_args(argv)
    try:
        written, what = convert(args.source, args.target, args.output)
    except (ConvertError, weights.WeightsError, FileExistsError) as error:
        parser.error(str(error))
    except OSError as error:
        parser.error(f"cannot write {error.filename}: {error.strerror}")
    print(f"read {what}")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
