"""LeNet-5's forward pass in plain numpy: the yardstick the three framework models are tested against.

Weights use PyTorch's layout, which MXNet shares: convolutions (out, in, 5, 5), dense layers
(out, in); images are channels first (N, 1, 28, 28). Slow, but short enough to check by eye.
"""

import numpy as np

from ..config import LEAKY_SLOPE
from . import lecun98

ACTIVATION = {
    "relu": lambda x: np.maximum(x, 0),
    "leakyrelu": lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
}
# Each activation's slope from its output x = f(a), as a share of its largest: where it is small,
# a unit passes little gradient back (saturated, or a ReLU at 0).
SLOPE = {
    "relu": lambda x: (x > 0).astype(x.dtype),
    "leakyrelu": lambda x: np.where(x > 0, 1, LEAKY_SLOPE),
    "tanh": lambda x: 1 - x**2,
    "sigmoid": lambda x: 4 * x * (1 - x),
    "lecun98": lambda x: lecun98.squash_gain(x) / (lecun98.SQUASH_A * lecun98.SQUASH_S),
}
POOLING = {"max": np.max, "avg": np.mean}
LAYERS = ("c1", "c3", "c5", "f6", "output")  # the layers with weights, in order (lecun98.LAYERS: its own)


def conv2d(x, weight, bias, padding=0):
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(x, weight.shape[2:], axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, weight) + bias[:, None, None]


def pool2x2(x, reduce):
    n, c, h, w = x.shape
    return reduce(x.reshape(n, c, h // 2, 2, w // 2, 2), axis=(3, 5))


def trace(params, x, pooling="max", activation="relu", arch="lenet5"):
    """Yield (layer name, its output) from c1 to output: the forward pass one layer at a time,
    which lenet5.architecture reads the feature-map sizes from. lecun98 has its own subsampling
    and squashing function: `pooling` and `activation` are LeNet-5's."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(x, np.float64)
    if arch == "lecun98":
        yield from trace_lecun98(p, paper_field(x))
        return
    act, pool = ACTIVATION[activation], POOLING[pooling]
    yield "c1", (x := act(conv2d(x, p["c1.weight"], p["c1.bias"], padding=2)))
    yield "s2", (x := pool2x2(x, pool))
    yield "c3", (x := act(conv2d(x, p["c3.weight"], p["c3.bias"])))
    yield "s4", (x := pool2x2(x, pool))
    yield "c5", (x := act(conv2d(x, p["c5.weight"], p["c5.bias"])))
    yield "f6", (x := act(x.reshape(len(x), -1) @ p["f6.weight"].T + p["f6.bias"]))
    yield "output", x @ p["output.weight"].T + p["output.bias"]


def paper_field(x):
    """The paper's input for normalised images x (N, 1, 28, 28): background -0.1, ink 1.175, in 32x32."""
    pad = ((0, 0), (0, 0), (lecun98.PAD,) * 2, (lecun98.PAD,) * 2)
    return np.pad(lecun98.SCALE * x + lecun98.OFFSET, pad, constant_values=lecun98.BACKGROUND)


def trace_lecun98(p, field):
    """The 1998 paper's network (lenet5/network/lecun98.py), one layer at a time, in float64, from
    the paper's input (paper_field)."""
    f = lecun98.squash

    def subsample(x, name):  # the sum of each 2x2 block, times the map's coefficient, plus its bias
        return f(pool2x2(x, np.sum) * p[f"{name}.weight"][:, None, None] + p[f"{name}.bias"][:, None, None])

    x = field
    yield "c1", (x := f(conv2d(x, p["c1.weight"], p["c1.bias"])))
    yield "s2", (x := subsample(x, "s2"))
    yield "c3", (x := f(conv2d(x, p["c3.weight"] * lecun98.C3_MASK, p["c3.bias"])))
    yield "s4", (x := subsample(x, "s4"))
    yield "c5", (x := f(conv2d(x, p["c5.weight"], p["c5.bias"])))
    yield "f6", (x := f(x.reshape(len(x), -1) @ p["f6.weight"].T + p["f6.bias"]))
    # minus each RBF unit's squared distance to its bitmap: the largest output is the paper's class
    yield "output", -(((x[:, None, :] - p["output.weight"][None]) ** 2).sum(axis=2))


def forward(params, x, pooling="max", activation="relu", arch="lenet5"):
    """Logits for images `x` from `params`: {"c1.weight": ..., "c1.bias": ..., ..., "output.bias": ...}."""
    *_, (_, logits) = trace(params, x, pooling, activation, arch)
    return logits


def softmax(logits):
    """Class probabilities of logits (N, classes), shifted by each row's maximum: no overflow."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
