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
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import envs
from .arguments import HelpFormatter, Parser, folder_problem, prog
from .files import describe, staging, write_error
from .network import weights
from .training.runfolder import RunError, RunFolder
from .training.stopping import stops_cleanly

NEUTRAL = weights.FILENAME
# The files written for a stem, per target: a framework's own (weights.NATIVE), or the neutral
# file; the first suffix is the one --output may end in.
FILES = {**weights.NATIVE, "npz": (".npz",)}


class ConvertError(Exception):
    """The conversion cannot be done; the message says why in one line."""


def _in_env(framework, function, *args):
    """One step in the framework's environment (lenet5.envs.call); its failure becomes ConvertError."""
    try:
        return envs.call(framework, function, *args)
    except envs.EnvError as error:
        raise ConvertError(str(error)) from None


def _native(framework):
    return importlib.import_module(f"model_{framework}.convert")


def read_step(framework, path, out):
    """In `framework`'s environment: the weights of its native file or checkpoint `path`, as
    neutral arrays (unvalidated) into the .npz `out`."""
    try:
        params = _native(framework).read_native(Path(path))
    except Exception as error:  # truncated, another framework's, not a weight file at all
        raise ConvertError(f"cannot read {path} with {framework}: {str(error).strip().splitlines()[0]}") from None
    np.savez(out, **params)


def write_step(framework, neutral, stem):
    """In `framework`'s environment: its own files for `stem` (a path without suffix) from the
    neutral file `neutral`."""
    params, meta = weights.load(neutral)
    try:
        _native(framework).write_native(params, meta, Path(stem))
    except Exception as error:  # the framework's own words for a full disk become ENOSPC
        raise write_error(error, Path(stem)) from None


def logits_step(framework, path, meta, images, out, batch_size):
    """In `framework`'s environment: the logits of the normalised images in the .npy `images` from
    its native model file `path`, opened as a user would, into the .npy `out`."""
    try:
        model = _native(framework).native_model(Path(path), meta)
    except Exception as error:  # truncated file, another architecture, not the framework's file at all
        raise ConvertError(f"cannot load {path}: {str(error).strip().splitlines()[0]}") from None
    np.save(out, weights.batched(model, np.load(images), batch_size))


def read_native(framework, path):
    """Neutral weights (unvalidated) from a native weight file or checkpoint of `framework`."""
    with tempfile.TemporaryDirectory() as tmp:
        _in_env(framework, "lenet5.convert:read_step", framework, path, Path(tmp) / NEUTRAL)
        with np.load(Path(tmp) / NEUTRAL) as npz:
            return {k: npz[k] for k in npz.files}


def write_native(framework, params, meta, stem):
    """Write `framework`'s own files for `stem` (a path without suffix); returns their paths."""
    with tempfile.TemporaryDirectory() as tmp:
        weights.save(Path(tmp) / NEUTRAL, params, meta)
        _in_env(framework, "lenet5.convert:write_step", framework, Path(tmp) / NEUTRAL, stem)
    return [stem.with_name(stem.name + suffix) for suffix in FILES[framework]]


def native_logits(framework, path, meta, images, batch_size=1024):
    """Logits of normalised images (N, 1, 28, 28) from a native model file of `framework`."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "images.npy", images)
        _in_env(
            framework,
            "lenet5.convert:logits_step",
            framework,
            path,
            meta,
            Path(tmp) / "images.npy",
            Path(tmp) / "logits.npy",
            batch_size,
        )
        return np.load(Path(tmp) / "logits.npy")


def load_weights(source):
    """(params, meta, what) from an .npz file or a run folder: a finished run's final weights, an
    unfinished one's last checkpoint; `what` says which, for the user."""
    source = Path(source)
    if source.is_file() and source.suffix == ".npz":
        return (*weights.load(source), str(source))
    if not source.is_dir():
        raise ConvertError(f"{source}: no such run folder or .npz file")
    run = RunFolder(source)
    cfg, checkpoint, result = run.config(), run.checkpoint(), run.result()
    # Finished, and not resumed since to train longer: the final weights. Else the last checkpoint.
    if result and (not checkpoint or (checkpoint["epoch"] == result["epochs"] and not checkpoint["partial"])):
        return (*weights.load(run.neutral_model()), f"{run.neutral_model()} (final weights)")
    if not checkpoint:
        raise ConvertError(f"{source}: the run has no checkpoint yet, so no weights to convert")
    path, partial = run.path(checkpoint["files"][0]), checkpoint["partial"]
    what = (
        f"checkpoint inside epoch {partial['epoch']}, step {checkpoint['step']}"
        if partial
        else f"checkpoint after epoch {checkpoint['epoch']}"
    )
    if not path.exists():
        raise ConvertError(f"{path} is missing")
    meta = weights.meta_of(cfg, len(run.classes()))
    return weights.validate(read_native(cfg.framework, path), meta, str(path)), meta, f"{path} ({what})"


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
        raise ConvertError(
            f"--output {output}: that is not a {target} file; name one ending in {FILES[target][0]}, or a folder"
        )
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
    folder = final[0].parent
    problem = folder_problem(folder)
    if problem:
        raise ConvertError(f"--output {output or folder}: {problem}")
    params, meta, what = load_weights(source)
    made_folder = not folder.exists()
    try:
        with staging(folder, replace=False) as tmp:  # all the files or none, none replaced
            stem = tmp / final[0].stem
            if target != "npz":
                write_native(target, params, meta, stem)
            if final[-1].suffix == ".npz":
                weights.save(stem.with_suffix(".npz"), params, meta)
            _refuse_existing(final)  # again: the conversion took a while
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


@stops_cleanly(prog("lenet5.convert"))
def main(argv=None):
    parser = Parser(prog=prog("lenet5.convert"), description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument(
        "source",
        type=Path,
        help="a run folder (its final weights, or its last checkpoint if unfinished) or an .npz file",
    )
    parser.add_argument(
        "--to",
        required=True,
        choices=FILES,
        dest="target",
        help="the framework whose own files to write, or npz for the neutral file",
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        help="a folder, or a file name ending in the target's suffix (.pt, .keras, .params, .npz) "
        "(default: <run>/converted-<target>/ or <name>-<target>/ beside <name>.npz)",
    )
    args = parser.parse_args(argv)
    try:
        written, what = convert(args.source, args.target, args.output)
    except (ConvertError, RunError, weights.WeightsError) as error:
        parser.error(str(error))
    except OSError as error:  # a full disk; or a file of the same name appeared meanwhile
        parser.exit(1, f"{parser.prog}: error: {describe(error)}\n")
    print(f"read {what}")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
