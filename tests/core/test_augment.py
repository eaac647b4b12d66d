"""--augment: the distorted batches, bit for bit the same in every framework's environment."""

import hashlib

import numpy as np
import pytest

from lenet5 import envs
from lenet5.config import FRAMEWORKS, ROOT
from lenet5.data import augment
from lenet5.data.splits import Split, augmenter, batches, normalize

KINDS = ["affine", "elastic", "affine,elastic", "paper", "paper,elastic"]


def digits(n=64, channels_last=False, seed=0):
    """A normalised batch of blobby 'digits': random strokes on black, as MNIST's value range."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for image in images:
        for _ in range(3):
            y, x = rng.integers(6, 22, 2)
            image[y - 2 : y + 3, x - 6 : x + 6] = rng.integers(128, 256)
    images[:, 10:18, 12:16] = 255  # every image has white
    return normalize(images, channels_last)


def centre_and_mass(ink):
    """Each image's centre of mass ((2, N): y, x) and total ink."""
    ink = ink.reshape(len(ink), 28, 28)
    mass = ink.sum(axis=(1, 2))
    axis = np.arange(28)
    return np.stack([(ink.sum(2) * axis).sum(1) / mass, (ink.sum(1) * axis).sum(1) / mass]), mass


def digest(kinds, key, channels_last=False):
    """sha256 of a distorted batch, as every environment computes it (lenet5.envs.call runs this)."""
    x = digits(channels_last=channels_last)
    out = augmenter(kinds)(x, tuple(key))
    return hashlib.sha256(np.ascontiguousarray(out.reshape(len(x), 28, 28)).tobytes()).hexdigest()


@pytest.mark.parametrize("kinds", KINDS)
def test_the_same_seed_epoch_and_batch_give_the_same_bits_and_others_differ(kinds):
    assert digest(kinds, (0, 1, 2)) == digest(kinds, (0, 1, 2))
    others = {digest(kinds, key) for key in [(0, 1, 2), (1, 1, 2), (0, 2, 2), (0, 1, 3)]}
    assert len(others) == 4
    assert digest(kinds, (0, 1, 2), channels_last=True) == digest(kinds, (0, 1, 2))  # TensorFlow's layout


def test_every_environment_distorts_a_batch_to_the_same_bits(monkeypatch):
    """numpy 1.23 (MXNet's) and 2.x (the others'), with their own BLAS: identical batches."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))  # where the other environments find digest()
    mine = {kinds: digest(kinds, (3, 5, 7)) for kinds in KINDS}
    for framework in FRAMEWORKS:
        for kinds in KINDS:
            assert envs.call(framework, "core.test_augment:digest", kinds, [3, 5, 7]) == mine[kinds], framework


@pytest.mark.parametrize("kinds", KINDS)
def test_pixels_stay_in_range_and_the_digit_stays_a_digit(kinds):
    x = digits(256)
    low, high = normalize(np.array([[[0, 255]]], np.uint8)).ravel()
    for batch in range(4):
        out = augmenter(kinds)(x, (0, 1, batch))
        assert out.dtype == np.float32 and out.shape == x.shape
        assert out.min() >= low and out.max() <= high
        assert not np.array_equal(out, x)
        before, after = centre_and_mass(x - low), centre_and_mass(out - low)
        # Distorted (elastic stretches and squeezes strokes: +-60% of ink), not lost off the edge
        # nor moved far: a wrong scale of the displacements fails here.
        assert np.all((after[1] / before[1] > 0.4) & (after[1] / before[1] < 1.8))
        assert np.all(np.hypot(*(after[0] - before[0])) < 6)  # pixels


def test_no_distortion_samples_each_pixel_exactly():
    x = digits()
    identity = augment.Augmenter((), *normalize(np.array([[[0, 255]]], np.uint8)).ravel())
    assert np.array_equal(identity(x, (0, 0, 0)), x)


def test_augment_none_leaves_the_batches_as_they_always_were():
    """--augment none: the pipeline of before, byte for byte (each epoch's permutation of the split)."""
    x = digits(100)
    split = Split(x, np.arange(100, dtype=np.int64))
    assert augmenter("none") is None
    order = np.random.default_rng((4, 2)).permutation(100)
    expected = [(x[order[i : i + 32]], order[i : i + 32]) for i in range(0, 100, 32)]
    got = list(batches(split, 32, seed=(4, 2), augment=augmenter("none")))
    assert len(got) == len(expected)
    for (gx, gy), (ex, ey) in zip(got, expected):
        assert gx.tobytes() == ex.tobytes() and gy.tolist() == ey.tolist()


def test_augmented_batches_come_in_the_same_order_and_resume_where_they_stopped():
    x = digits(100)
    split = Split(x, np.arange(100, dtype=np.int64))
    plain = list(batches(split, 32, seed=(4, 2)))
    whole = list(batches(split, 32, seed=(4, 2), augment=augmenter("affine")))
    resumed = list(batches(split, 32, seed=(4, 2), skip=2, augment=augmenter("affine")))
    assert [y.tolist() for _, y in whole] == [y.tolist() for _, y in plain]
    assert all(a.tobytes() == b.tobytes() for (a, _), (b, _) in zip(whole[2:], resumed))
    assert not any(np.array_equal(a, b) for (a, _), (b, _) in zip(whole, plain))


@pytest.mark.parametrize(
    "text, kinds",
    [("none", ()), ("affine", ("affine",)), ("elastic,affine", ("affine", "elastic")), (" affine ", ("affine",))],
)
def test_augment_values(text, kinds):
    assert augment.parse(text) == kinds


@pytest.mark.parametrize("text", ["", "rotate", "affine,", "none,affine", "affine;elastic"])
def test_unknown_augmentations_are_refused(text):
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment.parse(text)


def test_affine_and_paper_are_alternatives():
    with pytest.raises(ValueError, match="affine and paper are two kinds of affine map; choose one"):
        augment.parse("paper,affine")


def test_the_papers_distortions_are_the_kinds_its_text_names_and_one_image_in_ten_is_kept():
    """Section III-B: translations, scaling, squeezing (narrower and taller, or the reverse) and
    horizontal shearing, no rotation; 60,000 originals in 600,000 images."""
    n, distort = 5000, augmenter("paper")
    x = digits(n)
    affine, noise = distort.draw(n, 28, (0, 1, 0))
    a, b, c, d, dy, dx = (affine[:, i].astype(np.float64) for i in range(6))
    centre = (augment.PAD + 27 / 2) * augment.GRID
    kept = (a == 1) & (c == 0) & (d == 1) & (dy == centre) & (dx == centre)
    assert noise is None and abs(kept.mean() - augment.KEPT) < 0.02
    assert np.array_equal(distort(x, (0, 1, 0))[kept], x[kept])  # the images themselves, bit for bit
    a, c, d, dy, dx = a[~kept], c[~kept], d[~kept], dy[~kept], dx[~kept]
    assert (b == 0).all()  # no rotation, and a shear of x alone: y reads from y
    scale = 1 / np.sqrt(a * d)  # the inverse maps: the geometric mean of height and width
    squeeze = a / d  # the output's width over its height, (1 - q) / (1 + q)
    shear = c / a
    for values, bound in [(scale, 1.1), (squeeze, 1.1 / 0.9), (1 / squeeze, 1.1 / 0.9)]:
        assert values.max() <= bound * 1.0001 and values.max() > 1 + 0.8 * (bound - 1)  # both ways
    assert np.abs(shear).max() <= augment.SHEAR * 1.0001 and np.abs(shear).max() > 0.9 * augment.SHEAR
    shift = np.abs(np.concatenate([dy, dx]) - centre) / augment.GRID
    assert shift.max() <= augment.SHIFT * 1.0001 and shift.max() > 0.9 * augment.SHIFT
