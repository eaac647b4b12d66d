"""MXNet Gluon <-> the neutral weights (lenet5/weights.py): the only place that knows both layouts.

Kept parallel to model_pytorch/convert.py and model_tensorflow/convert.py (same functions, same
order). MXNet's layout is the neutral one, so nothing is transposed here.
"""

import warnings

import mxnet as mx
import numpy as np

from lenet5 import weights

from .model import LeNet5

# The native files: model.params for LeNet5().load_parameters(...), and model-symbol.json +
# model-0000.params for gluon.SymbolBlock.imports(...)
SUFFIX, GRAPH, GRAPH_PARAMS = weights.NATIVE["mxnet"]


def to_neutral(model):
    """The model's weights as {name: float32 array} in the neutral layout."""
    return {
        f"{name}.{kind}": getattr(getattr(model, name), kind).data().asnumpy().astype(np.float32)
        for name in weights.LAYERS
        for kind in ("weight", "bias")
    }


def from_neutral(params, meta):
    """A LeNet5 with the architecture in `meta` and the weights in `params` (validated first)."""
    params = weights.validate(params, meta)
    model = LeNet5(meta["num_classes"], meta["pooling"], meta["activation"])
    model.initialize()
    for name in weights.LAYERS:
        for kind in ("weight", "bias"):
            getattr(getattr(model, name), kind).set_data(mx.nd.array(params[f"{name}.{kind}"]))
    return model


def read_native(path):
    """Neutral weights from a trained model's file (model.params) or a run's checkpoint (checkpoint-*.params)."""
    return {k: v.asnumpy().astype(np.float32) for k, v in mx.nd.load(str(path)).items()}


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
