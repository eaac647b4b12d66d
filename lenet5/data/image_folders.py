"""Datasets of one's own pictures: a folder with one subfolder of images per class (or train/ and
test/ folders each laid out so), every image converted to 28x28 as MNIST was made (lenet5/data/images.py),
and the converted arrays cached so that the conversion runs again only when the folder changes.
"""

import hashlib
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..files import write_npz
from . import images
from .idx import DataError

# Fixed, so every --seed and every framework validates (data.load_splits) and tests (a folder without
# train/ and test/) on the same images. Here, not in data.py: data.py imports this module.
SPLIT_SEED = 20_260_101
IMAGE_FOLDER_VERSION = 1  # of the conversion: a change to lenet5/data/images.py bumps it, renewing the caches


def _class_folders(folder):
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder):
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in images.IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )


def _convert_classes(folder, classes, progress, every_class=True):
    """Every image under folder/<class>/ through the MNIST-like preprocessing: (images, labels).
    Unreadable images are skipped (one line says how many); a class with none left is an error
    (unless not `every_class`: a test split may lack some), and so is a folder with none at all."""
    files = [(path, label) for label, name in enumerate(classes) for path in _image_files(folder / name)]
    converted, labels, skipped = [], [], []
    for path, label in tqdm(files, desc=f"convert {folder.name}", unit="image", disable=not progress, leave=False):
        try:
            converted.append(images.to_mnist(images.load_image(path)))
            labels.append(label)
        except images.ImageError as error:
            skipped.append(f"{path}: {error}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}", file=sys.stderr)
    counts = np.bincount(labels, minlength=len(classes))
    for name, count in zip(classes, counts):
        if count == 0 and (every_class or not labels):
            raise DataError(f"{folder / name}: no readable image in this class folder")
    return np.stack(converted), np.array(labels, np.uint8 if len(classes) <= 256 else np.int64)


def load_image_folder(folder, data_dir, progress=True):
    """A folder with one subfolder of images per class (class names: the subfolders' names,
    sorted), or train/ and test/ folders each laid out so. Every image is converted to 28x28
    as MNIST was made; the arrays are cached in <data_dir>/image-folders/, keyed by the files'
    names, sizes and times, so the conversion runs again only when the folder changes. Without
    train/ and test/, a fixed draw of a seventh of the images (as MNIST's 10,000 of 70,000) is the
    test split."""
    parts = {"train": folder / "train", "test": folder / "test"}
    given = all(p.is_dir() for p in parts.values())
    classes = [p.name for p in _class_folders(parts["train"] if given else folder)]
    if not classes:
        raise DataError(
            f"{folder}: no class folders (expected one subfolder of images per class, "
            "or train/ and test/ holding such subfolders)"
        )
    if given:
        extra = sorted({p.name for p in _class_folders(parts["test"])} - set(classes))
        if extra:
            raise DataError(f"{parts['test']}: class folder(s) {', '.join(extra)} not in {parts['train']}")
    files = _image_files(folder)
    key = hashlib.sha256(f"{IMAGE_FOLDER_VERSION} {folder.resolve()} {given}".encode())
    for path in files:
        stat = path.stat()
        key.update(f"{path.relative_to(folder)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    cache = Path(data_dir).expanduser() / "image-folders" / f"{folder.name}-{key.hexdigest()[:16]}.npz"
    if cache.is_file():
        with np.load(cache) as saved:
            return {name: saved[name] for name in saved.files} | {"classes": [str(c) for c in saved["classes"]]}

    if given:
        train_images, train_labels = _convert_classes(parts["train"], classes, progress)
        test_images, test_labels = _convert_classes(parts["test"], classes, progress, every_class=False)
    else:
        all_images, all_labels = _convert_classes(folder, classes, progress)
        if len(all_labels) < 7:
            raise DataError(f"{folder}: {len(all_labels)} readable images are too few to split off a test set")
        order = np.random.default_rng(SPLIT_SEED).permutation(len(all_labels))
        test_idx, train_idx = np.sort(order[: len(order) // 7]), np.sort(order[len(order) // 7 :])
        train_images, train_labels = all_images[train_idx], all_labels[train_idx]
        test_images, test_labels = all_images[test_idx], all_labels[test_idx]
    arrays = dict(
        train_images=train_images, train_labels=train_labels, test_images=test_images, test_labels=test_labels
    )
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_npz(cache, classes=np.array(classes), **arrays)
    except OSError as error:  # a cache is a saving, not a need
        print(f"could not cache the converted images in {cache.parent} ({error.strerror})", file=sys.stderr)
    return arrays | {"classes": classes}
