"""Data augmentation of training batches, in numpy alone, so that every framework trains on the
same distorted images: random affine maps (shift, rotation, scale, shear), the 1998 paper's
distortions (shift, scale, squeeze, horizontal shear, 1 image in 10 left as it is) and Simard's
elastic distortion (Simard, Steinkraus and Platt 2003), composed into one displacement of each
image's sampling grid and read off by bilinear interpolation.

The random numbers of a batch come from (seed, epoch, batch), as the batch order does, so a
resumed run sees the images an uninterrupted one would. The three environments hold different
numpy builds (MXNet's is 1.23), whose BLAS and vector maths may differ in the last bit: the
sampling coordinates are therefore rounded to 1/GRID of a pixel, after which every operation is
an exactly rounded float32 one, and the batches are identical bit for bit everywhere (unless a
last-bit difference lands exactly on a rounding boundary: tests/core/test_augment.py compares a
batch's hash in the three environments).
"""

import functools
import math

import numpy as np
from threadpoolctl import ThreadpoolController

KINDS = ("affine", "paper", "elastic")  # --augment: none, or one or more of these joined by ','
AFFINE = ("affine", "paper")  # each draws the image's one affine map: one of them at most
NONE = "none"
SHOWN = "affine,elastic"  # what `lenet5 plot` shows of a run trained without augmentation
STREAM = 0xA06  # keeps augmentation's random numbers apart from the batch order's
GRID = 64  # sampling coordinates are multiples of 1/GRID pixel (exact in float32)
SHIFT_BITS = GRID.bit_length() - 1
PAD = 4  # pixels of background around each image: sampling further out reads the border

# Affine: each image's own draw, uniform in these ranges (MNIST digits vary about this much).
SHIFT = 2.0  # pixels, in x and in y
ROTATE = math.radians(12)
SCALE = 0.1  # 1 - SCALE .. 1 + SCALE, the same in x and y
SHEAR = 0.2  # a horizontal shear of up to 0.2 pixel per pixel, either way
# The paper's (LeCun et al. 1998, Section III-B): "horizontal and vertical translations, scaling,
# squeezing (simultaneous horizontal compression and vertical elongation, or the reverse), and
# horizontal shearing", no rotation; its training set, 60,000 images and 540,000 distortions. It
# gives no ranges: SHIFT, SCALE and SHEAR as above, and a squeeze of width by 1 - SQUEEZE .. 1 +
# SQUEEZE, height by its reverse (docs/lecun98.md).
SQUEEZE = 0.1
KEPT = 0.1  # the images left undistorted: the paper's 60,000 in 600,000
# Elastic: a field of uniform(-1, 1) displacements, smoothed by a Gaussian of ELASTIC_SIGMA
# pixels and scaled by ELASTIC_ALPHA pixels, Simard's values for MNIST.
ELASTIC_ALPHA, ELASTIC_SIGMA = 34.0, 4.0
# The noise is drawn as bytes: level (0..255) - NOISE_MID, times NOISE_SCALE, is uniform(-1, 1) x
# alpha, in 1/GRID pixel.
NOISE_MID, NOISE_SCALE = 127.5, GRID * ELASTIC_ALPHA / 127.5


def parse(text):
    """The kinds named by an --augment value ("none", "affine", "affine,elastic"), in KINDS'
    order; ValueError for an unknown one."""
    names = [name.strip() for name in str(text).split(",")]
    unknown = [name for name in names if name not in (*KINDS, NONE)]
    if unknown or not names or (NONE in names and len(names) > 1):
        raise ValueError(
            f"unknown augmentation {text!r}; choose {NONE}, or one or more of {', '.join(KINDS)} joined by ','"
        )
    if set(AFFINE) <= set(names):
        raise ValueError(f"augmentation {text!r}: {' and '.join(AFFINE)} are two kinds of affine map; choose one")
    return tuple(kind for kind in KINDS if kind in names)


def _gaussian_matrix(size, sigma):
    """(size, size) matrix whose product with a vector smooths it by a Gaussian of `sigma`
    (zero beyond the edges), its weights from math.exp so that they are the same everywhere."""
    radius = int(math.ceil(4 * sigma))
    kernel = [math.exp(-0.5 * (d / sigma) ** 2) for d in range(-radius, radius + 1)]
    total = sum(kernel)
    matrix = np.zeros((size, size))
    for i in range(size):
        for d in range(-radius, radius + 1):
            if 0 <= i + d < size:
                matrix[i, i + d] = kernel[d + radius] / total
    return matrix


@functools.cache
def _numpy_blas_on_one_thread():
    """Elastic smoothing multiplies small matrices in numpy's own BLAS, beside a framework that keeps
    every core busy: its threads would fight the framework's. No framework uses numpy's copy."""
    for lib in ThreadpoolController().lib_controllers:
        if "numpy" in lib.filepath:
            lib.set_num_threads(1)


class Augmenter:
    """Distorts batches of normalised images (N, 28, 28), (N, 1, 28, 28) or (N, 28, 28, 1)."""

    def __init__(self, kinds, low, high):
        """`low` and `high`: the normalised values of black (the background) and white."""
        self.kinds, self.low, self.high = tuple(kinds), np.float32(low), np.float32(high)
        self.size = None

    def _prepare(self, size):
        self.size, self.width = size, size + 2 * PAD + 1  # the padded image, and a spare row and column
        axis = (np.arange(size) - (size - 1) / 2) * GRID  # output pixels from the centre, in 1/GRID pixel
        self.ys, self.xs = (grid.astype(np.float32) for grid in np.meshgrid(axis, axis, indexing="ij"))
        self.centre = np.float32((PAD + (size - 1) / 2) * GRID)  # the centre, in the padded image
        self.smooth = _gaussian_matrix(size, ELASTIC_SIGMA).astype(np.float32)
        if "elastic" in self.kinds:
            _numpy_blas_on_one_thread()

    def __call__(self, x, key):
        """`x` distorted: a new array of the same shape and dtype, the same for the same `key`
        ((seed, epoch, batch): a tuple of integers) in every environment."""
        shape = x.shape
        size = shape[-2] if shape[-1] == 1 else shape[-1]
        images = x.reshape(-1, size, size)
        affine, noise = self.draw(len(images), size, key)
        return self._sample(images, *self._coordinates(affine, noise)).reshape(shape)

    def draw(self, n, size, key):
        """The random part of the distortions of a batch of `n` images of `size` pixels, from `key`:
        each image's inverse affine map (a, b, c, d, dy, dx), an (n, 6) float32 array mapping output
        pixels (from the centre, in 1/GRID pixel) to input ones (from the padded image's corner), and
        the elastic noise, (2n, size, size) uint8 levels; either None when not asked for.
        train_pytorch/augment.py computes the rest on PyTorch's device from these."""
        if size != self.size:
            self._prepare(size)
        rng = np.random.default_rng([*key, STREAM])
        affine = noise = None
        if "affine" in self.kinds:
            u = rng.random((n, 5)) * 2 - 1  # uniform(-1, 1): shift y, shift x, rotation, scale, shear
            cos = np.array([math.cos(ROTATE * a) for a in u[:, 2]])  # libm: the same in every numpy
            sin = np.array([math.sin(ROTATE * a) for a in u[:, 2]])
            scale = 1 / (1 + SCALE * u[:, 3])  # the inverse map: output pixel -> input pixel
            shear = SHEAR * u[:, 4]
            rows = (scale * cos, -scale * sin, scale * (sin + shear * cos), scale * (cos - shear * sin))
        elif "paper" in self.kinds:
            u = rng.random((n, 6)) * 2 - 1  # shift y, shift x, scale, squeeze, shear; then kept or not
            u[u[:, 5] < 2 * KEPT - 1, :5] = 0  # the identity map: the image exactly
            height = 1 / ((1 + SCALE * u[:, 2]) * (1 + SQUEEZE * u[:, 3]))  # the inverse map, again
            width = 1 / ((1 + SCALE * u[:, 2]) * (1 - SQUEEZE * u[:, 3]))
            rows = (height, 0 * height, SHEAR * u[:, 4] * height, width)
        if set(AFFINE) & set(self.kinds):
            shifts = (self.centre + GRID * SHIFT * v for v in u[:, :2].T)
            affine = np.stack([row.astype(np.float32) for row in (*rows, *shifts)], axis=1)
        if "elastic" in self.kinds:
            # uniform(-1, 1) x alpha, on 256 levels (the Gaussian averages ~200): half the cost of floats
            noise = np.frombuffer(rng.bytes(2 * n * size * size), np.uint8).reshape(2 * n, size, size)
        return affine, noise

    def _coordinates(self, affine, noise):
        """Where each output pixel reads from, in 1/GRID pixel from the padded image's corner: the
        (ys, xs) of the maps that draw() returned, (n, size, size) float32 each."""
        ys, xs = self.ys + self.centre, self.xs + self.centre
        if affine is not None:
            a, b, c, d, dy, dx = (column[:, None, None] for column in affine.T)
            ys, xs = a * self.ys + b * self.xs + dy, c * self.ys + d * self.xs + dx
        if noise is not None:
            n, size = len(noise) // 2, self.size
            field = ((noise.astype(np.float32) - np.float32(NOISE_MID)) * np.float32(NOISE_SCALE)).reshape(-1, size)
            field = self.smooth @ (field @ self.smooth.T).reshape(2 * n, size, size)  # along x, then y
            ys, xs = ys + field[:n], xs + field[n:]
        return ys, xs

    def _sample(self, images, ys, xs):
        """Bilinear interpolation of `images` at (ys, xs) (in 1/GRID pixel, in the padded image);
        outside them the background."""
        n, size, width = len(images), self.size, self.width
        padded = np.full((n, width, width), self.low, np.float32)
        padded[:, PAD : PAD + size, PAD : PAD + size] = images
        # Rounded to the grid, then exact: the float32 weights are multiples of 1/GRID.
        top = (width - 2) * GRID  # sampling further out reads the background border
        qy = np.clip(np.rint(ys), 0, top).astype(np.int32)
        qx = np.clip(np.rint(xs), 0, top).astype(np.int32)
        fy = (qy & (GRID - 1)).astype(np.float32) * np.float32(1 / GRID)
        fx = (qx & (GRID - 1)).astype(np.float32) * np.float32(1 / GRID)
        first = np.arange(0, n * width * width, width * width, dtype=np.int32)[:, None, None]  # of each image
        index = first + (qy >> SHIFT_BITS) * width + (qx >> SHIFT_BITS)  # the top-left neighbour, flat
        flat = padded.reshape(-1)
        upper, right = flat.take(index), flat[1:].take(index)  # views shifted by one pixel, one row
        upper += (right - upper) * fx
        lower, right = flat[width:].take(index), flat[width + 1 :].take(index)
        lower += (right - lower) * fx
        upper += (lower - upper) * fy
        return np.clip(upper, self.low, self.high, out=upper)  # rounding must not leave the range
