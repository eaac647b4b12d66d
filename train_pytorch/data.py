"""The training split on PyTorch's device: its batches indexed there (on_device), and on a GPU
distorted there (DeviceAugmenter), so that an epoch needs nothing from the host but its order and
a few random numbers per image.

DeviceAugmenter computes lenet5/data/augment.py's distortions. Its random numbers are numpy's
(Augmenter.draw: a few per image, and the elastic noise), so the images are those of
lenet5/data/augment.py; the per-pixel work (the sampling grid, the elastic smoothing, the bilinear
read) runs here with the same float32 operations in the same order. Only the smoothing's matrix
products may round their last bit differently from numpy's BLAS; after the coordinates are rounded
to 1/GRID of a pixel, about one pixel in 300,000 then reads from a neighbouring grid point
(tests/pytorch/test_device_path.py states the tolerance).
"""

import torch
import torch.nn.functional as F

from lenet5.data.augment import GRID, NOISE_MID, NOISE_SCALE, PAD, SHIFT_BITS
from lenet5.data.splits import epoch_order


def on_device(split, device, augment=None):
    """The split uploaded to the device once; its batches (lenet5.training.loop.Steps) indexed there,
    in each epoch's order (lenet5.data.splits.epoch_order), sent as one index tensor, and distorted
    there by `augment` (a DeviceAugmenter), if given."""
    x, y = torch.from_numpy(split.x).to(device), torch.from_numpy(split.y).to(device)

    def batches(batch_size, seed, skip):
        order = torch.from_numpy(epoch_order(len(y), seed)).to(device)
        for start in range(skip * batch_size, len(y), batch_size):
            idx = order[start : start + batch_size]
            batch = x[idx]
            if augment:
                yield augment(batch, (*seed, start // batch_size)), y[idx]
            else:
                # Viewed with channels-last strides (one grey channel: the same memory), as numpy's
                # batches are: the convolutions then run channels-last, 20% faster a step here, and
                # the bits are those of the batches made on the host.
                yield batch.as_strided(batch.shape, (batch[0].numel(), 1, batch.shape[3], 1)), y[idx]

    return batches


class DeviceAugmenter:
    """Distorts batches (N, 1, size, size) on their device as `augment` (a lenet5 Augmenter) does."""

    def __init__(self, augment, device):
        self.augment, self.device, self.size = augment, device, None

    def _prepare(self, size):
        """The numpy Augmenter's grids for this size (its draw() lays them out), on the device."""
        self.size = size
        self.ys, self.xs, self.smooth = (
            torch.from_numpy(array).to(self.device) for array in (self.augment.ys, self.augment.xs, self.augment.smooth)
        )
        self.centre = float(self.augment.centre)

    def __call__(self, x, key):
        """`x` distorted: a new tensor of its shape, from `key` ((seed, epoch, batch)) as numpy's."""
        n, size = len(x), x.shape[-1]
        affine, noise = self.augment.draw(n, size, key)
        if size != self.size:
            self._prepare(size)
        ys, xs = self.ys + self.centre, self.xs + self.centre
        if affine is not None:
            a, b, c, d, dy, dx = torch.from_numpy(affine).to(self.device, non_blocking=True).T[:, :, None, None]
            ys, xs = a * self.ys + b * self.xs + dy, c * self.ys + d * self.xs + dx
        if noise is not None:
            levels = torch.tensor(noise).to(self.device, non_blocking=True).float()
            field = ((levels - NOISE_MID) * NOISE_SCALE).reshape(-1, size)
            field = self.smooth @ (field @ self.smooth.T).reshape(2 * n, size, size)  # along x, then y
            ys, xs = ys + field[:n], xs + field[n:]
        return self._sample(x.reshape(n, size, size), ys, xs).reshape(x.shape)

    def _sample(self, images, ys, xs):
        """Bilinear interpolation at (ys, xs), as Augmenter._sample (exact in float32 but the last step)."""
        n, width = len(images), self.size + 2 * PAD + 1
        low, high = float(self.augment.low), float(self.augment.high)
        padded = F.pad(images, (PAD, PAD + 1, PAD, PAD + 1), value=low)  # a spare row and column, as numpy's
        top = (width - 2) * GRID
        qy = torch.round(ys).clamp_(0, top).to(torch.int32)  # round half to even, as np.rint
        qx = torch.round(xs).clamp_(0, top).to(torch.int32)
        fy = (qy & (GRID - 1)).float() * (1 / GRID)
        fx = (qx & (GRID - 1)).float() * (1 / GRID)
        first = torch.arange(0, n * width * width, width * width, dtype=torch.int32, device=images.device)
        index = (first[:, None, None] + (qy >> SHIFT_BITS) * width + (qx >> SHIFT_BITS)).long()
        flat = padded.reshape(-1)
        upper, right = flat.take(index), flat[1:].take(index)
        upper = upper + (right - upper) * fx
        lower, right = flat[width:].take(index), flat[width + 1 :].take(index)
        lower = lower + (right - lower) * fx
        upper = upper + (lower - upper) * fy
        return upper.clamp_(low, high)
