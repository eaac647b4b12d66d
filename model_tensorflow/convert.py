"""Keras <-> the neutral weights (lenet5/network/weights.py): the only place that knows both layouts.

Kept parallel to model_pytorch/convert.py and model_mxnet/convert.py (same functions, same
order). Keras keeps convolution kernels as (h, w, in, out) and dense weights as (in, out); the
neutral layout is (out, in, h, w) and (out, in). The flatten before F6 needs no reordering: C5's
maps are 1x1 (lenet5.network.weights.flat_features).
"""

import keras
import numpy as np

from lenet5.network import weights

from .model import model_of

(SUFFIX,) = weights.NATIVE["tensorflow"]  # the whole model, for keras.saving.load_model(...)


def to_neutral(model):
    """The model's weights as {name: float32 array} in the neutral layout (the model's name is its arch)."""
    params = {}
    for name, kinds in weights.layers(model.name).items():
        for kind, value in zip(kinds, model.get_layer(name).get_weights(), strict=True):
            params[f"{name}.{kind}"] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    return {k: np.ascontiguousarray(v, np.float32) for k, v in params.items()}


def from_neutral(params, meta):
    """A model with the architecture in `meta` and the weights in `params` (validated first)."""
    params = weights.validate(params, meta)
    model = model_of(meta)
    for name, kinds in weights.layers(meta["arch"]).items():
        values = [params[f"{name}.{kind}"] for kind in kinds]
        model.get_layer(name).set_weights([v.transpose(2, 3, 1, 0) if v.ndim == 4 else v.T for v in values])
    return model


def read_native(path):
    """Neutral weights from a trained model's file (model.keras) or a run's checkpoint (checkpoint-*.keras)."""
    return to_neutral(keras.saving.load_model(path, compile=False))


def write_native(params, meta, stem):
    """Write the native file(s) for `stem` (a path without suffix); returns their paths."""
    path = stem.with_name(stem.name + SUFFIX)
    from_neutral(params, meta).save(path)
    return [path]


def native_model(path, meta):
    """A native file opened as a user would, as a function from normalised (N, 1, 28, 28) float32
    images to logits."""
    model = keras.saving.load_model(path, compile=False)  # the whole model: meta is not needed
    return lambda x: model(x.transpose(0, 2, 3, 1), training=False).numpy()  # Keras is channels last


def native_logits(path, meta, images, batch_size=1024):
    """Logits for normalised images (N, 1, 28, 28) from a native file, `batch_size` at a time."""
    return weights.batched(native_model(path, meta), images, batch_size)
