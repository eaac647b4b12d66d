"""SDLM in MXNet: the optimizer and the Hessian diagonal it steps by (lenet5/network/sdlm.py).

Kept parallel to train_pytorch/sdlm.py and train_tensorflow/sdlm.py. A module of its own, not
train.py: Trainer.save_states pickles the optimizer, which must unpickle from any entry point.
"""

import mxnet as mx
from mxnet import autograd

from lenet5.config import Config
from lenet5.network import lecun98, sdlm


@mx.optimizer.register
class SDLM(mx.optimizer.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt (lenet5/network/sdlm.py): each parameter steps by
    lr / (mu + h) times its gradient, h its Hessian diagonal (an attribute: Trainer.save_states
    pickles the optimizer, so checkpoints keep it)."""

    mu = Config.mu  # what an optimizer pickled in a checkpoint before --mu steps by

    def __init__(self, mu, **kwargs):
        super().__init__(**kwargs)
        self.mu = mu
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
        weight[:] -= self._get_lr(index) * grad * self.rescale_grad / (h + self.mu)


def estimate_hessian(model, optimizer, split, cfg, epoch, device):
    """SDLM's Hessian diagonal for pass `epoch`: the paper's, on its SAMPLES images (lenet5/network/sdlm.py)."""
    h = paper_hessian(model, mx.nd.array(sdlm.samples(split, cfg.seed, epoch), device))
    optimizer.optimizer.set_hessian({p: h[name] for name, p in model.collect_params().items() if name in h})


def paper_hessian(model, x):
    """{parameter name: h} of lecun98 `model` on images x, the paper's backpropagation of second
    derivatives as one backward pass: each layer runs again on its inputs' squares with its weights
    squared (its hybrid_forward, given those), and what flows back through a unit is multiplied by
    f'(a)^2 (lenet5/network/sdlm.py)."""
    squared = {}  # name: the array standing for a weight's square (a bias's value does not matter)
    x = model.field(mx.nd, x)
    u = x * x
    with autograd.record(train_mode=False):
        for name in lecun98.LAYERS[:-1]:
            layer = getattr(model, name)
            if name == "f6":
                x, u = x.flatten(), u.flatten()
            with autograd.pause():
                x = model.act(layer(x))
                values = {}
                for kind, p in layer._reg_params.items():  # by the names hybrid_forward takes
                    if p.grad_req == "null":  # C3's mask
                        values[kind] = p.data()
                        continue
                    values[kind] = p.data() ** 2 if kind == "weight" else mx.nd.zeros_like(p.data())
                    values[kind].attach_grad()
                    squared[p.name] = values[kind]
            t = layer.hybrid_forward(mx.nd, u, **values)
            scaled = lecun98.squash_gain(x) ** 2 * t
            u = x * x + scaled - scaled.detach()  # the value x^2; backward, f'(a)^2 times what reaches x
        total = (mx.nd.array(sdlm.output_curvature(x.asnumpy()), x.context) * u).sum()
    total.backward()
    return {name: v.grad / len(x) for name, v in squared.items()}
