"""MXNet Gluon <-> the neutral weights (lenet5/network/weights.py): the only place that knows both layouts.

Kept parallel to model_pytorch/convert.py and model_tensorflow/convert.py (same functions, same
order). MXNet's layout is the neutral one, so nothing is transposed here.
"""

import warnings

import mxnet as mx
import numpy as np

from lenet5.network import weights

from .model import LeCun98, model_of

# The native files: model.params for LeNet5().load_parameters(...), and model-symbol.json +
# model-0000.params for gluon.SymbolBlock.imports(...)
SUFFIX, GRAPH, GRAPH_PARAMS = weights.NATIVE["mxnet"]


def to_neutral(model):
    """The model's weights as {name: float32 array} in the neutral layout."""
    return {
        f"{name}.{kind}": getattr(getattr(model, name), kind).data().asnumpy().astype(np.float32)
        for name, kinds in weights.layers(arch_of(model)).items()
        for kind in kinds
    }


def from_neutral(params, meta):
    """A model with the architecture in `meta` and the weights in `params` (validated first)."""
    params = weights.validate(params, meta)
    model = model_of(meta)
    model.initialize()
    for name, kinds in weights.layers(meta["arch"]).items():
        for kind in kinds:
            getattr(getattr(model, name), kind).set_data(mx.nd.array(params[f"{name}.{kind}"]))
    return model


def read_native(path):
    """Neutral weights from a trained model's file (model.params) or a run's checkpoint (checkpoint-*.params)."""
    loaded = mx.nd.load(str(path))  # lecun98's C3 mask is a constant beside its weights: not one of them
    return {k: v.asnumpy().astype(np.float32) for k, v in loaded.items() if not k.endswith(".mask")}


def arch_of(model):
    return "lecun98" if isinstance(model, LeCun98) else "lenet5"


def write_native(params, meta, stem):
    """Write the native file(s) for `stem` (a path without suffix); returns their paths."""
    model = from_neutral(params, meta)
    model.save_parameters(str(stem.with_name(stem.name + SUFFIX)))
    model.hybridize()
    model(mx.nd.zeros((1, 1, 28, 28)))  # export needs the graph, which the first call builds
    model.export(str(stem))
    return [stem.with_name(stem.name + s) for s in weights.NATIVE["mxnet"]]


def native_model(path, meta):
    """A native file opened as a user would, as a function from normalised (N, 1, 28, 28) float32
    images to logits: the exported graph beside model.params, which needs no project code."""
    stem = str(path)[: -len(SUFFIX)]
    with warnings.catch_warnings():  # "Cannot decide type for ... data": it is float32, as given below
        warnings.simplefilter("ignore", UserWarning)
        model = mx.gluon.SymbolBlock.imports(stem + GRAPH, ["data"], stem + GRAPH_PARAMS)
    return lambda x: model(mx.nd.array(x)).asnumpy()


def native_logits(path, meta, images, batch_size=1024):
    """Logits for normalised images (N, 1, 28, 28) from a native file, `batch_size` at a time."""
    return weights.batched(native_model(path, meta), images, batch_size)
