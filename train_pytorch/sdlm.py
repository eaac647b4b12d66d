"""SDLM in PyTorch: the optimizer and the Hessian diagonal it steps by (lenet5/network/sdlm.py).

Kept parallel to train_tensorflow/sdlm.py and train_mxnet/sdlm.py.
"""

import torch

from lenet5.network import sdlm


class SDLM(torch.optim.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt (lenet5/network/sdlm.py): each parameter steps by
    lr / (mu + h) times its gradient, h its Hessian diagonal (in the state, so checkpoints keep it)."""

    def __init__(self, params, lr):
        super().__init__(params, dict(lr=lr))

    def set_hessian(self, diagonals):
        for p, h in zip(self.param_groups[0]["params"], diagonals, strict=True):
            self.state[p]["hessian"] = h

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.addcdiv_(p.grad, self.state[p].get("hessian", torch.zeros_like(p)) + sdlm.MU, value=-group["lr"])


def estimate_hessian(model, optimizer, split, cfg, epoch, device):
    """SDLM's Hessian diagonal for pass `epoch`: the mean square of single images' gradients, each
    backpropagated from F6 with a vector of the loss's curvature there (lenet5/network/sdlm.py)."""
    model.eval()  # no dropout
    x = torch.from_numpy(sdlm.samples(split, cfg.seed, epoch)).to(device)
    with torch.no_grad():
        v = torch.from_numpy(sdlm.curvature_vectors(model.features(x).cpu().numpy(), cfg.seed, epoch)).to(device)
    params = list(model.parameters())
    squares = [torch.zeros_like(p) for p in params]
    for i in range(len(x)):
        for total, g in zip(squares, torch.autograd.grad(model.features(x[i : i + 1]), params, v[i : i + 1])):
            total += g * g
    optimizer.set_hessian([total / len(x) for total in squares])
    model.train()
