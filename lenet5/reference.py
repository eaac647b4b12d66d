"""LeNet-5's forward pass in plain numpy: the yardstick the three framework models are tested against.

Weights use PyTorch's layout, which MXNet shares: convolutions (out, in, 5, 5), dense layers
(out, in); images are channels first (N, 1, 28, 28). Slow, but short enough to check by eye.
"""

import numpy as np

from .config import LEAKY_SLOPE

ACTIVATION = {
    "relu": lambda x: np.maximum(x, 0),
    "leakyrelu": lambda x: np.where(x > 0, x, LEAKY_SLOPE * x),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
}
POOLING = {"max": np.max, "avg": np.mean}
LAYERS = ("c1", "c3", "c5", "f6", "output")  # the layers with weights, in order


def conv2d(x, weight, bias, padding=0):
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(x, weight.shape[2:], axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, weight) + bias[:, None, None]


def pool2x2(x, reduce):
    n, c, h, w = x.shape
    return reduce(x.reshape(n, c, h // 2, 2, w // 2, 2), axis=(3, 5))


def trace(params, x, pooling="max", activation="relu"):
    """Yield (layer name, its output) from c1 to output: the forward pass one layer at a time,
    which lenet5.architecture reads the feature-map sizes from."""
    act, pool = ACTIVATION[activation], POOLING[pooling]
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(x, np.float64)
    yield "c1", (x := act(conv2d(x, p["c1.weight"], p["c1.bias"], padding=2)))
    yield "s2", (x := pool2x2(x, pool))
    yield "c3", (x := act(conv2d(x, p["c3.weight"], p["c3.bias"])))
    yield "s4", (x := pool2x2(x, pool))
    yield "c5", (x := act(conv2d(x, p["c5.weight"], p["c5.bias"])))
    yield "f6", (x := act(x.reshape(len(x), -1) @ p["f6.weight"].T + p["f6.bias"]))
    yield "output", x @ p["output.weight"].T + p["output.bias"]


def forward(params, x, pooling="max", activation="relu"):
    """Logits for images `x` from `params`: {"c1.weight": ..., "c1.bias": ..., ..., "output.bias": ...}."""
    *_, (_, logits) = trace(params, x, pooling, activation)
    return logits


def softmax(logits):
    """Class probabilities of logits (N, classes), shifted by each row's maximum: no overflow."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
