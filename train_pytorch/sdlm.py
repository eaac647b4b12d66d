"""SDLM in PyTorch: the optimizer and the Hessian diagonal it steps by (lenet5/network/sdlm.py).

Kept parallel to train_tensorflow/sdlm.py and train_mxnet/sdlm.py.
"""

import torch

from lenet5.network import lecun98, sdlm


class SDLM(torch.optim.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt (lenet5/network/sdlm.py): each parameter steps by
    lr / (mu + h) times its gradient, h its Hessian diagonal (in the state, so checkpoints keep it)."""

    def __init__(self, params, lr, mu):
        super().__init__(params, dict(lr=lr))
        self.mu = mu  # not in the groups: a checkpoint's groups replace them, and those saved before --mu have none

    def set_hessian(self, diagonals):
        for p, h in zip(self.param_groups[0]["params"], diagonals, strict=True):
            self.state[p]["hessian"] = h

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.addcdiv_(p.grad, self.state[p].get("hessian", torch.zeros_like(p)) + self.mu, value=-group["lr"])


def estimate_hessian(model, optimizer, split, cfg, epoch, device):
    """SDLM's Hessian diagonal for pass `epoch`: the paper's, on its SAMPLES images (lenet5/network/sdlm.py)."""
    h = paper_hessian(model, torch.from_numpy(sdlm.samples(split, cfg.seed, epoch)).to(device))
    optimizer.set_hessian([h[name] for name, _ in model.named_parameters()])


def paper_hessian(model, x):
    """{name: h} of lecun98 `model` on images x, the paper's backpropagation of second derivatives as
    one backward pass: each layer runs again on its inputs' squares with its weights squared, and
    what flows back through a unit is multiplied by f'(a)^2 (lenet5/network/sdlm.py)."""
    squared = {}  # name: the leaf standing for a weight's square (a bias's value does not matter)
    with torch.no_grad():
        x = model.field(x)
    u = x * x
    for name in lecun98.LAYERS[:-1]:
        layer = getattr(model, name)
        if name == "f6":
            x, u = x.flatten(1), u.flatten(1)
        with torch.no_grad():
            x = model.act(layer(x))
        params = {k: (p.detach() ** 2 if k == "weight" else torch.zeros_like(p)) for k, p in layer.named_parameters()}
        squared.update({f"{name}.{k}": p.requires_grad_() for k, p in params.items()})
        t = torch.func.functional_call(layer, params, (u,))
        scaled = lecun98.squash_gain(x) ** 2 * t
        u = x * x + scaled - scaled.detach()  # the value x^2; backward, f'(a)^2 times what reaches x
    curvature = torch.from_numpy(sdlm.output_curvature(x.cpu().numpy())).to(x.device)
    h = torch.autograd.grad((curvature * u).sum(), list(squared.values()))
    return {name: v / len(x) for name, v in zip(squared, h)}
