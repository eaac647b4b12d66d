"""What a run uses: the dataset named by --dataset (load_dataset), split into train, validation and
test, normalised and batched, with numpy only. Each framework turns the numpy batches into its own
tensors, so all three see the same images, the same validation split and, for the same seed, the
same batches in the same order.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import augment
from .download import DIGITS, DOWNLOADABLE, FASHION_CLASSES, default_data_dir, load_mnist
from .idx import DataError, load_idx_folder
from .image_folders import SPLIT_SEED, load_image_folder

MEAN, STD = 0.1307, 0.3081  # of MNIST's 60,000 training images, pixels scaled to [0, 1]
DROPOUT_STREAM = 0xD40  # keeps epoch_seed apart from the batch order's and augmentation's numbers


def load_dataset(dataset="mnist", data_dir=None, progress=True):
    """train_images, train_labels, test_images, test_labels (uint8, images (N, 28, 28)) and
    classes (names, in label order) of `dataset`: mnist, fashion-mnist, a folder of IDX files
    or a folder of images with one subfolder per class."""
    data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
    if dataset in DOWNLOADABLE:
        classes = DIGITS if dataset == "mnist" else FASHION_CLASSES
        return load_mnist(data_dir, progress, dataset) | {"classes": list(classes)}
    folder = Path(dataset).expanduser()
    if not folder.is_dir():
        raise DataError(f"--dataset {dataset}: no such folder (nor one of {', '.join(DOWNLOADABLE)})")
    if any((folder / f"train-images-idx3-ubyte{gz}").is_file() for gz in ("", ".gz")):
        return load_idx_folder(folder)
    return load_image_folder(folder, data_dir, progress)


def normalize(images, channels_last=False):
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), or (N, 28, 28, 1) if channels_last."""
    x = (images.astype(np.float32) / 255.0 - MEAN) / STD
    return x[..., None] if channels_last else x[:, None]


@dataclass
class Split:
    x: np.ndarray  # float32 images, normalised
    y: np.ndarray  # int64 labels

    def __len__(self):
        return len(self.y)


@dataclass
class Splits:
    """The splits a run trains, validates and tests on, and the class names in label order."""

    train: Split
    val: Split | None  # None with --val-size 0; the test split with --validate-on-test
    test: Split
    classes: list


def load_splits(
    val_size=5000,
    limit_train=0,
    limit_test=0,
    channels_last=False,
    data_dir=None,
    progress=True,
    dataset="mnist",
    validate_on_test=False,
):
    """Train, validation and test splits as normalised arrays, and the class names.

    The validation images are a fixed random draw from the training images (60,000 in MNIST;
    the same draw for every seed and framework). limit_train / limit_test keep only the first N
    images (smoke runs). validate_on_test makes `val` the test split (the benchmark's time to a
    test accuracy).
    """
    mnist = load_dataset(dataset, data_dir, progress)
    size = len(mnist["train_labels"])
    if not 0 <= val_size < size:  # --val-size's one check: only here is the dataset's size known
        raise DataError(f"--val-size must be between 0 and {size - 1} (the {dataset} training images), got {val_size}")
    order = np.random.default_rng(SPLIT_SEED).permutation(size)
    val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])
    if limit_train:
        train_idx = train_idx[:limit_train]
    test_end = limit_test or len(mnist["test_labels"])

    def split(images, labels):
        return Split(normalize(images, channels_last), labels.astype(np.int64))

    test = split(mnist["test_images"][:test_end], mnist["test_labels"][:test_end])
    val = split(mnist["train_images"][val_idx], mnist["train_labels"][val_idx]) if val_size else None
    return Splits(
        train=split(mnist["train_images"][train_idx], mnist["train_labels"][train_idx]),
        val=test if validate_on_test else val,
        test=test,
        classes=list(mnist["classes"]),
    )


def splits_of(cfg, channels_last=False):
    """The splits a run's options (a lenet5.config.Config) ask for, with the framework's layout."""
    return load_splits(
        cfg.val_size,
        cfg.limit_train,
        cfg.limit_test,
        channels_last=channels_last,
        data_dir=cfg.data_dir,
        progress=not cfg.no_progress,
        dataset=cfg.dataset,
        validate_on_test=cfg.validate_on_test,
    )


def num_batches(n, batch_size):
    return -(-n // batch_size)


def epoch_seed(seed, epoch):
    """The seed of a framework's own random numbers (dropout) for one epoch, from (seed, epoch)
    as the batch order is: a run resumed at an epoch's start draws what an uninterrupted one would."""
    return int(np.random.SeedSequence([seed, epoch, DROPOUT_STREAM]).generate_state(1)[0])


def augmenter(text):
    """An Augmenter of the kinds an --augment value names (None for none), which knows the
    normalised black and white."""
    kinds = augment.parse(text)
    low, high = normalize(np.array([[[0, 255]]], np.uint8)).ravel()
    return augment.Augmenter(kinds, low, high) if kinds else None


def epoch_order(n, seed):
    """The order of `n` training images in one epoch, from `seed` ((run seed, epoch)): batches
    takes them in it, and a framework that keeps the split on its device indexes it so."""
    return np.random.default_rng(seed).permutation(n)


def batches(split, batch_size, seed=None, skip=0, augment=None):
    """Yield (x, y) numpy batches; shuffled by `seed` (e.g. (run seed, epoch)) unless it is None;
    the first `skip` batches left out (an epoch resumed where it stopped); each distorted by
    `augment` (an augment.Augmenter, from (seed, batch number)), one batch ahead in a thread,
    so that the framework trains on one while the next is made.

    Deriving each epoch's order from (seed, epoch) instead of a running generator makes a
    resumed run see exactly the batches an uninterrupted one would.
    """
    n = len(split)
    order = epoch_order(n, seed) if seed is not None else None
    starts = range(skip * batch_size, n, batch_size)

    def batch(start):
        idx = order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
        x, y = split.x[idx], split.y[idx]
        return (augment(x, (*seed, start // batch_size)), y) if augment else (x, y)

    if not augment:
        yield from map(batch, starts)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="augment") as pool:
        ahead = None
        for start in starts:
            made, ahead = ahead, pool.submit(batch, start)
            if made:
                yield made.result()
        if ahead:
            yield ahead.result()
