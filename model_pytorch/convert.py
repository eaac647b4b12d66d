"""PyTorch <-> the neutral weights (lenet5/network/weights.py): the only place that knows both layouts.

Kept parallel to model_tensorflow/convert.py and model_mxnet/convert.py (same functions, same
order). PyTorch's layout is the neutral one, so nothing is transposed here.
"""

import numpy as np
import torch

from lenet5.network import weights

from .model import model_of

(SUFFIX,) = weights.NATIVE["pytorch"]  # a state_dict, for LeNet5().load_state_dict(torch.load(...))


def to_neutral(model):
    """The model's weights as {name: float32 array} in the neutral layout."""
    return _numpy(model.state_dict())


def from_neutral(params, meta):
    """A LeNet5 with the architecture in `meta` and the weights in `params` (validated first)."""
    params = weights.validate(params, meta)
    model = model_of(meta)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    return model.eval()


def read_native(path):
    """Neutral weights from a trained model's file (model.pt) or a run's checkpoint (checkpoint-*.pt)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return _numpy(state.get("model", state))  # a checkpoint holds the state_dict under "model"


def write_native(params, meta, stem):
    """Write the native file(s) for `stem` (a path without suffix); returns their paths."""
    path = stem.with_name(stem.name + SUFFIX)
    torch.save(from_neutral(params, meta).state_dict(), path)
    return [path]


def native_model(path, meta):
    """A native file opened as a user would, as a function from normalised (N, 1, 28, 28) float32
    images to logits."""
    model = model_of(meta).eval()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return torch.no_grad()(lambda x: model(torch.from_numpy(x)).numpy())


def native_logits(path, meta, images, batch_size=1024):
    """Logits for normalised images (N, 1, 28, 28) from a native file, `batch_size` at a time."""
    return weights.batched(native_model(path, meta), images, batch_size)


def _numpy(state_dict):
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in state_dict.items()}
