"""The neutral weight file, model.npz: one LeNet-5's weights that every framework (and ONNX) reads.

Layout: PyTorch's, which MXNet shares and lenet5/network/reference.py uses; convolutions (out, in, 5, 5),
dense layers (out, in), float32; images normalised as lenet5.data.splits.normalize does, (N, 1, 28, 28).
Keras keeps kernels as (5, 5, in, out) and dense weights as (in, out): model_tensorflow/convert.py
transposes, nowhere else. Beside the weights, a `meta` entry (a JSON string) holds what the
weights alone cannot say (pooling, activation, num_classes, the framework that trained them), so
the file alone rebuilds the model. numpy only: every environment reads it.

The flatten before F6 needs no reordering: C5 leaves 120 maps of 1x1, so channels-first and
channels-last flatten to the same 120 numbers in the same order (`flat_features` checks it).
"""

import json
import zipfile

import numpy as np
from tqdm import tqdm

from ..config import ACTIVATIONS, ARCH_NAMES, ARCHS, POOLINGS
from ..files import write_npz
from . import lecun98
from .shapes import param_shapes

MODEL_STEM = "model"  # a finished run's model files: model.npz, and its framework's own below
FILENAME = MODEL_STEM + ".npz"
# Each framework's own files of one model, as suffixes of a stem (a path without suffix), as
# model_<framework>/convert.py and train.py write them; the first is the file a user opens
# (MXNet's SymbolBlock graph and weights go beside it).
NATIVE = {"pytorch": (".pt",), "tensorflow": (".keras",), "mxnet": (".params", "-symbol.json", "-0000.params")}
FORMAT, VERSION = "lenet5-weights", 2  # 2: the architecture (arch) in meta
META = "meta"


class WeightsError(ValueError):
    """A weight file that is not LeNet-5's, or not the one asked for; the message says why in one line."""


def flat_features():
    """Inputs of F6: C5's output size, from the input (28x28), C1's padding, the 5x5 convolutions
    and the 2x2 pooling. LeNet-5's C5 leaves 1x1 maps, which makes the flatten order trivial."""
    size = 28 + 2 * 2 - 4  # C1
    size = (size // 2 - 4) // 2 - 4  # S2, C3, S4, C5
    assert size == 1, "C5 must leave 1x1 maps, or the flatten order would differ across layouts"
    return 120 * size * size


def shapes(num_classes=10, arch="lenet5"):
    """{name: shape} of every array in the neutral layout: the paper's (lenet5.network.shapes.param_shapes),
    F6's input size checked against the one derived here."""
    expected = param_shapes(num_classes, arch)
    assert expected["f6.weight"][1] == flat_features()
    return expected


def layers(arch="lenet5"):
    """{layer: its arrays' kinds ("weight", "bias")}, input to output: what model_<framework>/convert.py
    copies, layer by layer."""
    out = {}
    for key in shapes(arch=arch):
        name, kind = key.split(".")
        out.setdefault(name, []).append(kind)
    return out


def make_meta(pooling, activation, num_classes=10, framework="", arch="lenet5"):
    return {
        "format": FORMAT,
        "version": VERSION,
        "framework": framework,
        "arch": arch,
        "pooling": pooling,
        "activation": activation,
        "num_classes": int(num_classes),
    }


def meta_of(cfg, num_classes):
    """The meta of a run's model, from its options."""
    return make_meta(cfg.pooling, cfg.activation, num_classes, cfg.framework, cfg.arch)


def validate(params, meta, source="weights"):
    """Check `params` and `meta` against LeNet-5; return the params as float32 arrays. A mismatch
    raises WeightsError naming the layer and both shapes."""
    for key, valid in (("arch", ARCHS), ("pooling", POOLINGS), ("activation", ACTIVATIONS)):
        if meta.get(key) not in valid:
            raise WeightsError(f"{source}: {key} {meta.get(key)!r} is not one of: {', '.join(valid)}")
    num_classes = meta.get("num_classes")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise WeightsError(f"{source}: num_classes {num_classes!r} is not a positive integer")
    if meta["arch"] == "lecun98" and num_classes != lecun98.NUM_CLASSES:
        raise WeightsError(f"{source}: lecun98 has {lecun98.NUM_CLASSES} classes (its RBF bitmaps), not {num_classes}")
    expected = shapes(num_classes, meta["arch"])
    missing = [k for k in expected if k not in params]
    extra = sorted(k for k in params if k not in expected)
    if missing or extra:
        raise WeightsError(
            f"{source}: not LeNet-5's weights: "
            + "; ".join(
                f"{what} {', '.join(keys)}" for what, keys in (("missing", missing), ("unexpected", extra)) if keys
            )
        )
    out = {}
    for key, shape in expected.items():
        value = np.asarray(params[key])
        if value.shape != shape:
            classes = f" with num_classes {num_classes}" if key.startswith("output.") else ""
            raise WeightsError(
                f"{source}: {key} has shape {value.shape}, expected {shape} for {ARCH_NAMES[meta['arch']]}{classes}"
            )
        if not np.issubdtype(value.dtype, np.floating):
            raise WeightsError(f"{source}: {key} holds {value.dtype}, not floating-point numbers")
        out[key] = value.astype(np.float32)
    if meta["arch"] == "lecun98":
        try:
            lecun98.check_table(out["c3.weight"], source)
        except ValueError as error:
            raise WeightsError(str(error)) from None
    return out


def save(path, params, meta):
    """Write the neutral file atomically (a crash leaves the old file or the new one); the params are
    validated first, so a file that save() wrote always loads."""
    params = validate(params, meta, str(path))
    write_npz(path, **params, **{META: np.array(json.dumps(meta))})
    return path


def load(path, num_classes=None):
    """(params, meta) from a neutral file, validated; `num_classes`, if given, must match the file's."""
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):  # a lone .npy array
            raise ValueError("a single array")
        with npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise WeightsError(f"{path}: not an .npz weight file ({str(error).splitlines()[0]})") from None
    if META not in arrays:
        raise WeightsError(
            f"{path}: no '{META}' entry, so not a lenet5 weight file (python -m lenet5.convert writes one from any run)"
        )
    try:
        meta = json.loads(str(arrays.pop(META)))
        assert isinstance(meta, dict) and meta.get("format") == FORMAT
    except (ValueError, AssertionError):
        raise WeightsError(f"{path}: its '{META}' entry is not a {FORMAT} header") from None
    if meta.get("version", 0) > VERSION:
        raise WeightsError(f"{path}: format version {meta['version']} is newer than this code reads ({VERSION})")
    params = validate(arrays, meta, str(path))
    if num_classes is not None and meta["num_classes"] != num_classes:
        raise WeightsError(f"{path}: has {meta['num_classes']} classes, expected {num_classes}")
    return params, meta


def batched(logits_of, images, batch_size=1024, desc=None):
    """`logits_of` applied to `images` `batch_size` at a time, concatenated: memory stays bounded
    for any number of images (for the converters' and ONNX's checks of whole test sets). With
    `desc`, a progress bar of that name, on a terminal only."""
    starts = tqdm(range(0, max(len(images), 1), batch_size), desc, disable=desc is None or None, leave=False)
    return np.concatenate([logits_of(np.ascontiguousarray(images[i : i + batch_size])) for i in starts])
