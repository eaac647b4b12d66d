"""SDLM in MXNet: the optimizer and the Hessian diagonal it steps by (lenet5/network/sdlm.py).

Kept parallel to train_pytorch/sdlm.py and train_tensorflow/sdlm.py. A module of its own, not
train.py: Trainer.save_states pickles the optimizer, which must unpickle from any entry point.
"""

import mxnet as mx
from mxnet import autograd

from lenet5.network import sdlm


@mx.optimizer.register
class SDLM(mx.optimizer.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt (lenet5/network/sdlm.py): each parameter steps by
    lr / (mu + h) times its gradient, h its Hessian diagonal (an attribute: Trainer.save_states
    pickles the optimizer, so checkpoints keep it)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hessians = {}

    def set_hessian(self, diagonals):
        """`diagonals`: {Parameter: NDArray}, keyed here by the Trainer's index of each."""
        self.hessians = {i: diagonals[p] for i, p in self.param_dict.items() if p in diagonals}

    def create_state(self, index, weight):
        return None

    def update(self, index, weight, grad, state):
        self._update_count(index)
        h = self.hessians.get(index, 0)
        if isinstance(h, mx.nd.NDArray) and h.context != weight.context:  # the copy on another GPU
            h = h.as_in_context(weight.context)
        weight[:] -= self._get_lr(index) * grad * self.rescale_grad / (h + sdlm.MU)


def estimate_hessian(model, optimizer, split, cfg, epoch, device):
    """SDLM's Hessian diagonal for pass `epoch`: the mean square of single images' gradients, each
    backpropagated from F6 with a vector of the loss's curvature there (lenet5/network/sdlm.py)."""
    x = mx.nd.array(sdlm.samples(split, cfg.seed, epoch), device)
    v = mx.nd.array(sdlm.curvature_vectors(model.features(mx.nd, x).asnumpy(), cfg.seed, epoch), device)
    params = [p for p in model.collect_params().values() if p.grad_req != "null"]
    squares = {p: mx.nd.zeros(p.shape, device) for p in params}
    for i in range(len(x)):
        with autograd.record(train_mode=False):  # no dropout
            f6 = model.features(mx.nd, x[i : i + 1])
        f6.backward(v[i : i + 1])
        for p in params:
            squares[p] += p.grad(device) ** 2
    optimizer.optimizer.set_hessian({p: total / len(x) for p, total in squares.items()})
