"""MNIST for every framework: download, verify, parse, split, normalise and batch, with numpy only.

Each framework turns the numpy batches into its own tensors, so all three see the same images,
the same validation split and, for the same seed, the same batches in the same order.

--dataset also takes Fashion-MNIST (the same IDX files from its own mirrors), a folder holding
the four IDX files, or a folder of images with one subfolder per class (see load_dataset).
"""
import gzip
import hashlib
import http.client
import os
import sys
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from filelock import FileLock
from tqdm import tqdm

from . import images
from .files import atomic_path

# SHA-256 of each file *after* decompression: mirrors gzip the same bytes differently.
FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Tried in order; yann.lecun.com now answers with an error page, so it comes last.
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# Fashion-MNIST has the same four file names. Only the MD5s of its .gz files are published
# (github.com/zalandoresearch/fashion-mnist; torchvision checks the same), so the .gz files are
# what is checked, and kept, in the cache.
FASHION_FILES = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
)
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot")
DIGITS = tuple(str(digit) for digit in range(10))
DOWNLOADABLE = ("mnist", "fashion-mnist")
MEAN, STD = 0.1307, 0.3081  # of the 60,000 training images, pixels scaled to [0, 1]
TRAIN_SIZE = 60_000
SPLIT_SEED = 20_260_101  # fixed, so every --seed and every framework validates on the same images
IMAGE_FOLDER_VERSION = 1  # of the conversion: a change to lenet5/images.py bumps it, renewing the caches
TIMEOUT = float(os.environ.get("LENET5_DOWNLOAD_TIMEOUT", 30))  # seconds of silence before a mirror is given up


class DataError(Exception):
    """MNIST could not be fetched or read; the message says what to do."""


def default_data_dir():
    """$LENET5_DATA_DIR, else the user's cache folder (XDG on Linux, LOCALAPPDATA on Windows)."""
    if os.environ.get("LENET5_DATA_DIR"):
        return Path(os.environ["LENET5_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA") or Path.home() / ".cache"
    return Path(cache) / "lenet5" / "mnist"


def mirrors_variable(dataset):
    return f"LENET5_{dataset.upper().replace('-', '_')}_MIRRORS"  # LENET5_FASHION_MNIST_MIRRORS


def mirrors(dataset="mnist"):
    """Base URLs to try, from $LENET5_MNIST_MIRRORS (or $LENET5_FASHION_MNIST_MIRRORS),
    comma-separated, or the public ones."""
    env = os.environ.get(mirrors_variable(dataset), "")
    public = DEFAULT_MIRRORS if dataset == "mnist" else FASHION_MIRRORS
    urls = [u.strip() for u in env.split(",") if u.strip()] or list(public)
    return [u if u.endswith("/") else u + "/" for u in urls]


@dataclass
class Source:
    """How a downloadable dataset's files are checked and cached: MNIST's by the SHA-256 of the
    decompressed bytes, kept decompressed; Fashion-MNIST's by the published MD5 of the .gz, kept
    as that .gz."""
    name: str
    checksums: dict
    algorithm: str
    suffix: str  # of the cached files: "" (decompressed) or ".gz" (as downloaded)

    def digest(self, stored):
        return hashlib.new(self.algorithm, stored).hexdigest()

    def to_store(self, download):
        raw = gzip.decompress(download)  # a .gz either way: an error page fails here
        return download if self.suffix else raw

    def parse(self, stored, name):
        return parse_idx(gzip.decompress(stored) if self.suffix else stored, name)


def source(dataset="mnist"):
    # Built at each call from the module's tables, which the tests replace with tiny files' sums.
    if dataset == "mnist":
        return Source("mnist", FILES, "sha256", "")
    return Source(dataset, FASHION_FILES, "md5", ".gz")


def parse_idx(raw, name="IDX data"):
    """Parse an uncompressed IDX file (unsigned-byte data, as MNIST uses) into a numpy array."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"{name}: IDX data type 0x{raw[2]:02x} is not unsigned byte (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(shape)):
        raise DataError(f"{name}: header promises shape {shape} ({int(np.prod(shape))} bytes) "
                        f"but {len(raw) - header} bytes follow")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _download(url, progress):
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
        chunks = []
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}",
                  disable=not progress, leave=False) as bar:
            while chunk := response.read(1 << 16):
                chunks.append(chunk)
                bar.update(len(chunk))
    body = b"".join(chunks)
    if total and len(body) < total:
        raise http.client.IncompleteRead(body, total - len(body))
    return body


def _fetch(name, src, progress):
    """Verified bytes to cache of one file, from the first mirror that serves it right."""
    failures = []
    for base in mirrors(src.name):
        url = urllib.parse.urljoin(base, name + ".gz")
        try:
            stored = src.to_store(_download(url, progress))
        except (OSError, EOFError, ValueError, zlib.error, http.client.HTTPException) as error:
            failures.append(f"{url}: {error or type(error).__name__}")  # network, HTTP, cut short, not gzip
            continue
        if src.digest(stored) != src.checksums[name]:
            what = "MD5 of the .gz file" if src.suffix else "SHA-256 of the decompressed file"
            failures.append(f"{url}: wrong content ({what} differs)")
            continue
        return stored
    variable, label = mirrors_variable(src.name), "MNIST" if src.name == "mnist" else "Fashion-MNIST"
    raise DataError(
        f"could not download {name}; tried:\n  " + "\n  ".join(failures) +
        f"\nSet {variable} to a working mirror (comma-separated base URLs, file:// allowed), "
        f"or place the four {label} .gz files in a folder and point {variable} at it as file:///that/folder/")


def _read_verified(path, src):
    """The file's bytes if it exists and matches its checksum, else None."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    return raw if src.digest(raw) == src.checksums[path.name.removesuffix(src.suffix)] else None


def load_mnist(data_dir=None, progress=True, dataset="mnist"):
    """The four MNIST (or Fashion-MNIST) arrays, downloading into the cache on first use.

    Returns a dict with train_images (60000, 28, 28) uint8, train_labels (60000,) uint8,
    test_images (10000, 28, 28) and test_labels (10000,). Files are checked against their
    checksum on every load; a missing or damaged one is fetched again, under a file lock so
    that parallel runs download once, and written atomically. Fashion-MNIST's files have the
    same names as MNIST's, so they go into the cache's fashion-mnist/ subfolder.
    """
    data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
    src = source(dataset)
    if dataset != "mnist":
        data_dir = data_dir / dataset
    raw = {name: _read_verified(data_dir / (name + src.suffix), src) for name in src.checksums}
    missing = [name for name, data in raw.items() if data is None]
    if missing:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(data_dir / ".download.lock"))
            with lock:
                for name in missing:
                    path = data_dir / (name + src.suffix)
                    raw[name] = _read_verified(path, src)  # another process may have fetched it meanwhile
                    if raw[name] is None:
                        raw[name] = _fetch(name, src, progress)
                        with atomic_path(path) as tmp:
                            tmp.write_bytes(raw[name])
        except PermissionError as error:
            raise DataError(f"cannot write {dataset} into {data_dir} ({error.strerror}); "
                            "choose another folder with --data-dir or LENET5_DATA_DIR") from None
    arrays = {name: src.parse(data, name) for name, data in raw.items()}
    return {
        "train_images": arrays["train-images-idx3-ubyte"],
        "train_labels": arrays["train-labels-idx1-ubyte"],
        "test_images": arrays["t10k-images-idx3-ubyte"],
        "test_labels": arrays["t10k-labels-idx1-ubyte"],
    }


def load_idx_folder(folder):
    """The four MNIST-named IDX files (each .gz or not) of a folder, checked for shape."""
    arrays = {}
    for name in FILES:
        path = next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)
        if path is None:
            raise DataError(f"{folder}: no {name} (or {name}.gz) there")
        try:
            raw = path.read_bytes()
            arrays[name] = parse_idx(gzip.decompress(raw) if path.suffix == ".gz" else raw, path.name)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path}: unreadable ({error})") from None
    for part in ("train", "t10k"):
        x, y = arrays[f"{part}-images-idx3-ubyte"], arrays[f"{part}-labels-idx1-ubyte"]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(f"{folder}: {part}-images-idx3-ubyte has shape {x.shape}, not (N, 28, 28)")
        if y.shape != x.shape[:1]:
            raise DataError(f"{folder}: {part}-labels-idx1-ubyte has shape {y.shape}, "
                            f"but there are {len(x)} {part} images")
    num_classes = 1 + int(max(arrays["train-labels-idx1-ubyte"].max(initial=0),
                              arrays["t10k-labels-idx1-ubyte"].max(initial=0)))
    return {
        "train_images": arrays["train-images-idx3-ubyte"],
        "train_labels": arrays["train-labels-idx1-ubyte"],
        "test_images": arrays["t10k-images-idx3-ubyte"],
        "test_labels": arrays["t10k-labels-idx1-ubyte"],
        "classes": [str(label) for label in range(num_classes)],
    }


def _class_folders(folder):
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder):
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in images.IMAGE_SUFFIXES
                  and p.is_file() and not p.name.startswith("."))


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
        raise DataError(f"{folder}: no class folders (expected one subfolder of images per class, "
                        "or train/ and test/ holding such subfolders)")
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
        test_idx, train_idx = np.sort(order[:len(order) // 7]), np.sort(order[len(order) // 7:])
        train_images, train_labels = all_images[train_idx], all_labels[train_idx]
        test_images, test_labels = all_images[test_idx], all_labels[test_idx]
    arrays = dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                  test_labels=test_labels)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            np.savez(tmp, classes=np.array(classes), **arrays)
    except OSError as error:  # a cache is a saving, not a need
        print(f"could not cache the converted images in {cache.parent} ({error.strerror})", file=sys.stderr)
    return arrays | {"classes": classes}


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
    val: Optional[Split]  # None with --val-size 0; the test split with --validate-on-test
    test: Split
    classes: list


def load_splits(val_size=5000, limit_train=0, limit_test=0, channels_last=False,
                data_dir=None, progress=True, dataset="mnist", validate_on_test=False):
    """Train, validation and test splits as normalised arrays, and the class names.

    The validation images are a fixed random draw from the training images (60,000 in MNIST;
    the same draw for every seed and framework). limit_train / limit_test keep only the first N
    images (smoke runs). validate_on_test makes `val` the test split (the benchmark's time to a
    test accuracy).
    """
    mnist = load_dataset(dataset, data_dir, progress)
    size = len(mnist["train_labels"])
    if not 0 <= val_size < size:
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
    return Splits(train=split(mnist["train_images"][train_idx], mnist["train_labels"][train_idx]),
                  val=test if validate_on_test else val, test=test, classes=list(mnist["classes"]))


def num_batches(n, batch_size):
    return -(-n // batch_size)


def batches(split, batch_size, seed=None, skip=0):
    """Yield (x, y) numpy batches; shuffled by `seed` (e.g. (run seed, epoch)) unless it is None;
    the first `skip` batches left out (an epoch resumed where it stopped).

    Deriving each epoch's order from (seed, epoch) instead of a running generator makes a
    resumed run see exactly the batches an uninterrupted one would.
    """
    n = len(split)
    order = np.random.default_rng(seed).permutation(n) if seed is not None else None
    for start in range(skip * batch_size, n, batch_size):
        idx = order[start:start + batch_size] if order is not None else slice(start, start + batch_size)
        yield split.x[idx], split.y[idx]
