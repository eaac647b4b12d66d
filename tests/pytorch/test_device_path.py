"""PyTorch on a GPU: distortions computed on the device (against numpy's), the step captured as a
CUDA graph (against the eager step), and checkpoints that move between the two. The CUDA tests are
skipped without a GPU; the rest runs the same code on the CPU."""

import numpy as np
import pytest
import torch
from conftest import read_json

from lenet5.config import Config
from lenet5.data.augment import GRID
from lenet5.data.splits import augmenter, batches, load_splits
from lenet5.training.distributed import World
from model_pytorch import build
from train_pytorch.data import DeviceAugmenter, on_device
from train_pytorch.train import load_checkpoint, make_optimizer, make_steps, save_checkpoint

CPU = torch.device("cpu")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def split(mnist_dir):
    return load_splits(0, limit_train=1000, limit_test=1, data_dir=mnist_dir, progress=False).train


@pytest.mark.parametrize("kinds", ["affine", "elastic", "affine,elastic"])
def test_distortions_on_the_device_are_numpys(split, kinds):
    """The affine maps give numpy's images bit for bit. The elastic field's smoothing is a matrix
    product, whose last bit may differ from numpy's BLAS: a coordinate then rounds to the next
    1/GRID of a pixel, and the pixel moves by at most 2/GRID of the image's range (one such step
    along each axis). Such pixels are rarer than 1 in 10,000 (about 1 in 300,000 here)."""
    numpy_augment = augmenter(kinds)
    there = DeviceAugmenter(augmenter(kinds), CPU)
    x = split.x[:500]
    ours = numpy_augment(x, (1, 2, 3))
    theirs = there(torch.from_numpy(x), (1, 2, 3)).numpy()
    assert theirs.shape == ours.shape and theirs.dtype == ours.dtype
    moved = ours != theirs
    if "elastic" not in kinds:
        assert not moved.any()
    assert moved.mean() < 1e-4
    span = numpy_augment.high - numpy_augment.low
    assert np.abs(ours - theirs).max() <= 2 * span / GRID
    assert not np.array_equal(ours, numpy_augment(x, (1, 2, 4)))  # the key matters, as numpy's


def test_distorted_batches_on_the_device_are_the_host_paths(split):
    """--augment affine on a GPU: the split's batches indexed and distorted on the device are those
    that lenet5.data.splits.batches makes with numpy, from any batch of an epoch (a resume)."""
    kept = on_device(split, CPU, DeviceAugmenter(augmenter("affine"), CPU))
    for skip in (0, 9):
        host = list(batches(split, 96, seed=(3, 2), skip=skip, augment=augmenter("affine")))
        there = list(kept(96, (3, 2), skip))
        assert len(there) == len(host) == 11 - skip
        for (x, y), (x_there, y_there) in zip(host, there):
            assert np.array_equal(x, x_there.numpy()) and np.array_equal(y, y_there.numpy())


def test_a_checkpoint_of_a_captured_run_resumes_on_the_cpu(tmp_path):
    """A captured run's Adam is capturable and fused, its learning rate a GPU tensor; its checkpoint
    resumes in a run that steps eagerly on the CPU: the state comes back, the way of stepping is the
    resuming run's."""
    torch.manual_seed(0)
    model = build("lenet5", 10, "max", "relu", 0.0)
    optimizer = make_optimizer(Config(), model)
    model(torch.zeros(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    for group in optimizer.param_groups:  # as graph.CapturedStep leaves them (lr on the CPU here)
        group.update(capturable=True, fused=True, foreach=None, lr=torch.tensor(0.004))
    names = save_checkpoint(tmp_path / "checkpoint", model, optimizer)
    resumed = make_optimizer(Config(), model)
    load_checkpoint([tmp_path / name for name in names], model, resumed)
    group = resumed.param_groups[0]
    assert (group["capturable"], group["fused"], group["foreach"]) == (False, None, None)
    assert float(next(iter(resumed.state.values()))["step"]) == 1
    model(torch.ones(2, 1, 28, 28)).sum().backward()
    resumed.step()  # a capturable Adam would refuse the CPU
    assert float(next(iter(resumed.state.values()))["step"]) == 2


def _trained(split, captured, optimizer_name="adam", epochs=2):
    """Weights and summed losses after `epochs` epochs of 96-image batches (the last one, 40 images,
    eager in a captured run) on the GPU, from the same start."""
    device = torch.device("cuda")
    cfg = Config(optimizer=optimizer_name, batch_size=96, dropout=0.25)
    torch.manual_seed(0)
    model = build("lenet5", 10, "max", "relu", cfg.dropout).to(device)
    optimizer = make_optimizer(cfg, model)
    steps = make_steps(model, model, optimizer, split, cfg, device, World(), captured)
    losses = []
    for epoch in range(epochs):
        steps.begin_pass(epoch, epoch)
        for x, y in steps.batches(cfg.batch_size, (0, epoch), 0):
            loss, _ = steps.train(x, y, 0.002, len(y))
            losses.append(float(loss))
    return [p.detach().cpu().numpy() for p in model.parameters()], np.array(losses)


@cuda
def test_the_captured_step_trains_as_the_eager_one(split):
    """The same batches, dropout and schedule: the captured step's losses and weights are the eager
    step's within float rounding (fused Adam against foreach Adam)."""
    weights, losses = _trained(split, captured=True)
    eager_weights, eager_losses = _trained(split, captured=False)
    assert len(losses) == 22
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-3)
    for w, e in zip(weights, eager_weights):
        np.testing.assert_allclose(w, e, atol=1e-4)


@cuda
def test_a_run_that_cannot_be_captured_says_so_in_one_line(train):
    proc, run_dir = train("pytorch", "--device", "gpu", "--optimizer", "sgd", "--epochs", "1", "--limit-train", "500")
    assert "eager steps on the GPU: the captured step serves Adam and AdamW, not --optimizer sgd" in proc.stdout
    assert read_json(run_dir / "result.json")["test_accuracy"] > 0.5
