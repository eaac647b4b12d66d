"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C): `--optimizer sdlm`.

Each parameter steps by lr / (MU + h) times its gradient, where h is its entry of the Hessian's
diagonal, re-estimated on SAMPLES training images before each pass: a parameter the loss curves
sharply along takes small steps, a flat one large steps, at most lr / MU. The frameworks' train.py
do the steps; what they share is here, in numpy.

The Hessian diagonal. The paper backpropagates second derivatives through its own layers, with
the Gauss-Newton approximation (no second derivatives of the squashing functions), and keeps only
each unit's own term. No framework here backpropagates second derivatives, so h is the same
Gauss-Newton diagonal estimated with first derivatives alone. Below F6 the network is linearised
(Gauss-Newton); from F6's outputs x on, the loss (the RBF units and the MAP criterion) is taken
whole: its Hessian in x is known in closed form and positive semi-definite,

    H = 2 p_r I + sum_i p_i g_i g_i^T - gbar gbar^T,   g_i = 2 (x - w_i),   gbar = sum_i p_i g_i,

with p_i = exp(-y_i) / (exp(-J) + sum_k exp(-y_k)) and p_r the "rubbish" class's share. A vector
v with covariance H is v = sqrt(2 p_r) e + g_c - gbar, for e ~ N(0, I) and a class c drawn from
p (g_r = 0); backpropagating v from F6 gives a gradient whose square is, in expectation, the
Gauss-Newton diagonal: exact, where the paper's keeps each unit's own terms only. Each of
SAMPLES images gets one such v (a batch of one), and h is the mean of the squares.

Batches. The paper steps after every image. With --batch-size B, one step takes the summed
gradient of B images (their B per-image steps at once), so the paper's learning rates hold at any B.
"""

import numpy as np

from . import lecun98

MU = 0.02  # the paper's: bounds each step to lr / MU times the gradient
SAMPLES = 500  # the paper's: images the Hessian diagonal is re-estimated on, before each pass
STREAM = 0x5D1  # keeps these draws apart from the batch order's, augmentation's and dropout's


def samples(split, seed, epoch):
    """The SAMPLES training images of pass `epoch`, without replacement, from (seed, epoch) as the
    batch order is, so that a resumed run estimates what an uninterrupted one would."""
    rng = np.random.default_rng([seed, epoch, STREAM])
    return split.x[rng.choice(len(split), min(SAMPLES, len(split)), replace=False)]


def curvature_vectors(f6, seed, epoch):
    """For F6's outputs (N, 84) of lecun98, one vector per image with covariance H above: what
    each framework backpropagates from F6, image by image, to estimate the Hessian diagonal."""
    x = np.asarray(f6, np.float64)
    g = 2 * (x[:, None, :] - lecun98.RBF_CENTRES[None])  # (N, 10, 84): each y_i's gradient in x
    z = np.concatenate([-(g**2).sum(axis=2) / 4, np.full((len(x), 1), -lecun98.J)], axis=1)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)  # (N, 11): the ten classes, then the rubbish class
    rng = np.random.default_rng([seed, epoch, STREAM, 1])
    drawn = np.minimum((p.cumsum(axis=1) < rng.random((len(x), 1))).sum(axis=1), 10)
    g_drawn = np.concatenate([g, np.zeros_like(g[:, :1])], axis=1)[np.arange(len(x)), drawn]
    gbar = (p[:, :10, None] * g).sum(axis=1)
    e = rng.standard_normal(x.shape)
    return (np.sqrt(2 * p[:, 10:]) * e + g_drawn - gbar).astype(np.float32)
