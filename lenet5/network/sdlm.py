"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C): `--optimizer sdlm`.

Each parameter steps by lr / (mu + h) times its gradient, where h is its entry of the Hessian's
diagonal, re-estimated on SAMPLES training images before each pass: a parameter the loss curves
sharply along takes small steps, a flat one large steps, at most lr / mu (`--mu`, Config.mu: the
paper's 0.02; the paper recipes take 0.04, lenet5.config.PAPER). The frameworks' train.py
do the steps; what they share is here, in numpy.

The Hessian diagonal is the paper's (Appendix C), with its three approximations:
- the second derivatives of the connections sharing a weight are summed, without their cross
  terms: h_k = sum over the connections (i, j) of weight k of d2E/da_i^2 x_j^2, x_j the
  connection's input (1 for a bias), a_i the total input of the unit it feeds;
- d2E/da^2 is backpropagated with squared weights and squared slopes, Gauss-Newton (no f''):
  d2E/da_i^2 = f'(a_i)^2 sum_k u_ki^2 d2E/da_k^2, over the units k that unit i feeds;
- it is averaged over SAMPLES images, not the whole training set.
At F6's outputs x it starts from the exact second derivative of the loss (the RBF units and the
MAP criterion), output_curvature below. paper_hessian is the reference; each framework computes
the same with its own ops, as one backward pass through the network with squared weights.
"""

import numpy as np

from . import lecun98, reference

SAMPLES = 500  # the paper's: images the Hessian diagonal is re-estimated on, before each pass
STREAM = 0x5D1  # keeps these draws apart from the batch order's, augmentation's and dropout's


def samples(split, seed, epoch):
    """The SAMPLES training images of pass `epoch`, without replacement, from (seed, epoch) as the
    batch order is, so that a resumed run estimates what an uninterrupted one would."""
    rng = np.random.default_rng([seed, epoch, STREAM])
    return split.x[rng.choice(len(split), min(SAMPLES, len(split)), replace=False)]


def output_curvature(f6):
    """d2E/dx_j^2 of the MAP loss at F6's outputs x (N, 84): the paper's backpropagation starts here.

    With g_i = 2 (x - w_i), y_i's gradient in x, and p_i = exp(-y_i) / (exp(-J) + sum_k exp(-y_k))
    (p_r, the rubbish class's share, is what is left), E = y_D + log(exp(-J) + sum_i exp(-y_i)) has

        d2E/dx_j^2 = 2 p_r + sum_i p_i g_ij^2 - (sum_i p_i g_ij)^2,

    the variance of g_ij under p plus the RBF units' own curvature, 2, times p_r: non-negative, and
    the same for every correct class D."""
    x = np.asarray(f6, np.float64)
    g = 2 * (x[:, None, :] - lecun98.RBF_CENTRES[None])  # (N, 10, 84)
    z = np.concatenate([-(g**2).sum(axis=2) / 4, np.full((len(x), 1), -lecun98.J)], axis=1)  # -y_i, -J
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)  # (N, 11): the ten classes, then the rubbish class
    classes = p[:, :10, None]
    return (2 * p[:, 10:] + (classes * g**2).sum(axis=1) - (classes * g).sum(axis=1) ** 2).astype(np.float32)


def paper_hessian(params, x):
    """The paper's h for every trainable array of lecun98 `params` (neutral layout), on images `x`
    (N, 1, 28, 28, normalised): Appendix C's backpropagation of second derivatives, in float64."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    w = {name: p[f"{name}.weight"] for name in lecun98.LAYERS[:-1]}
    w["c3"] = w["c3"] * lecun98.C3_MASK
    field = reference.paper_field(np.asarray(x, np.float64))
    out = dict(reference.trace_lecun98(p, field))  # each layer's outputs x = f(a)
    gain2 = {name: lecun98.squash_gain(out[name]) ** 2 for name in w}  # f'(a)^2
    h, n = {}, len(field)

    def unit_sums(d):  # a bias's h: its units' d2E/da^2, each with input 1
        return d.sum(axis=(0, 2, 3)) if d.ndim == 4 else d.sum(axis=0)

    d = gain2["f6"] * output_curvature(out["f6"])  # d2E/da^2 of F6's units (N, 84)
    h["f6.weight"], h["f6.bias"] = d.T @ out["c5"].reshape(n, -1) ** 2, unit_sums(d)
    d = gain2["c5"] * (d @ w["f6"] ** 2).reshape(out["c5"].shape)
    h["c5.weight"], h["c5.bias"] = _shared(out["s4"], d), unit_sums(d)
    d = gain2["s4"] * _convolution_input(d, w["c5"] ** 2)
    h["s4.weight"], h["s4.bias"] = _subsampled(out["c3"], d), unit_sums(d)
    d = gain2["c3"] * _upsampled(d * w["s4"][:, None, None] ** 2)
    h["c3.weight"], h["c3.bias"] = _shared(out["s2"], d) * lecun98.C3_MASK, unit_sums(d)
    d = gain2["s2"] * _convolution_input(d, w["c3"] ** 2)
    h["s2.weight"], h["s2.bias"] = _subsampled(out["c1"], d), unit_sums(d)
    d = gain2["c1"] * _upsampled(d * w["s2"][:, None, None] ** 2)
    h["c1.weight"], h["c1.bias"] = _shared(field, d), unit_sums(d)
    return {k: (h[k] / n).astype(np.float32) for k in lecun98.param_shapes() if k in h}


def _windows(x):
    return np.lib.stride_tricks.sliding_window_view(x, (5, 5), axis=(2, 3))


def _shared(inputs, d):
    """A 5x5 convolution's h: sum over the positions of x_j^2 d2E/da_i^2, per weight."""
    return np.einsum("nchwij,nohw->ocij", _windows(inputs**2), d)


def _subsampled(inputs, d):
    """A subsampling coefficient's h: its four connections per unit, x_j^2 d2E/da_i^2 each."""
    return (reference.pool2x2(inputs**2, np.sum) * d).sum(axis=(0, 2, 3))


def _convolution_input(d, w2):
    """sum_k u_ki^2 d_k for the inputs i of a 5x5 convolution: d at its outputs, w2 its squared weights."""
    padded = np.pad(d, ((0, 0), (0, 0), (4, 4), (4, 4)))
    return np.einsum("nohwij,ocij->nchw", _windows(padded), w2[:, :, ::-1, ::-1])


def _upsampled(d):
    """A subsampling unit's d, given to each of the four units it sums."""
    return np.repeat(np.repeat(d, 2, axis=2), 2, axis=3)
