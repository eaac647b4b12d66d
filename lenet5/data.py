"""MNIST for every framework: download, verify, parse, split, normalise and batch, with numpy only.

Each framework turns the numpy batches into its own tensors, so all three see the same images,
the same validation split and, for the same seed, the same batches in the same order.
"""
import gzip
import hashlib
import http.client
import os
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm import tqdm

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
MEAN, STD = 0.1307, 0.3081  # of the 60,000 training images, pixels scaled to [0, 1]
TRAIN_SIZE = 60_000
SPLIT_SEED = 20_260_101  # fixed, so every --seed and every framework validates on the same images
TIMEOUT = float(os.environ.get("LENET5_DOWNLOAD_TIMEOUT", 30))  # seconds of silence before a mirror is given up


class DataError(Exception):
    """MNIST could not be fetched or read; the message says what to do."""


def default_data_dir():
    """$LENET5_DATA_DIR, else the user's cache folder (XDG on Linux, LOCALAPPDATA on Windows)."""
    if os.environ.get("LENET5_DATA_DIR"):
        return Path(os.environ["LENET5_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA") or Path.home() / ".cache"
    return Path(cache) / "lenet5" / "mnist"


def mirrors():
    """Base URLs to try, from $LENET5_MNIST_MIRRORS (comma-separated) or the public ones."""
    env = os.environ.get("LENET5_MNIST_MIRRORS", "")
    urls = [u.strip() for u in env.split(",") if u.strip()] or list(DEFAULT_MIRRORS)
    return [u if u.endswith("/") else u + "/" for u in urls]


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


def _fetch(name, urls, progress):
    """Decompressed, verified bytes of one file from the first mirror that serves it right."""
    failures = []
    for base in urls:
        url = urllib.parse.urljoin(base, name + ".gz")
        try:
            raw = gzip.decompress(_download(url, progress))
        except (OSError, EOFError, ValueError, zlib.error, http.client.HTTPException) as error:
            failures.append(f"{url}: {error or type(error).__name__}")  # network, HTTP, cut short, not gzip
            continue
        if _sha256(raw) != FILES[name]:
            failures.append(f"{url}: wrong content (SHA-256 of the decompressed file differs)")
            continue
        return raw
    raise DataError(
        f"could not download {name}; tried:\n  " + "\n  ".join(failures) +
        "\nSet LENET5_MNIST_MIRRORS to a working mirror (comma-separated base URLs, file:// allowed), "
        "or place the four MNIST .gz files in a folder and point LENET5_MNIST_MIRRORS at it as file:///that/folder/")


def _read_verified(path):
    """The file's bytes if it exists and matches its checksum, else None."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    return raw if _sha256(raw) == FILES[path.name] else None


def load_mnist(data_dir=None, progress=True):
    """The four MNIST arrays, downloading into the cache on first use.

    Returns a dict with train_images (60000, 28, 28) uint8, train_labels (60000,) uint8,
    test_images (10000, 28, 28) and test_labels (10000,). Files are stored decompressed and
    checked against their SHA-256 on every load; a missing or damaged one is fetched again,
    under a file lock so that parallel runs download once, and written atomically.
    """
    data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
    raw = {name: _read_verified(data_dir / name) for name in FILES}
    missing = [name for name, data in raw.items() if data is None]
    if missing:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(data_dir / ".download.lock"))
            with lock:
                for name in missing:
                    path = data_dir / name
                    raw[name] = _read_verified(path)  # another process may have fetched it meanwhile
                    if raw[name] is None:
                        raw[name] = _fetch(name, mirrors(), progress)
                        with atomic_path(path) as tmp:
                            tmp.write_bytes(raw[name])
        except PermissionError as error:
            raise DataError(f"cannot write MNIST into {data_dir} ({error.strerror}); "
                            "choose another folder with --data-dir or LENET5_DATA_DIR") from None
    arrays = {name: parse_idx(data, name) for name, data in raw.items()}
    return {
        "train_images": arrays["train-images-idx3-ubyte"],
        "train_labels": arrays["train-labels-idx1-ubyte"],
        "test_images": arrays["t10k-images-idx3-ubyte"],
        "test_labels": arrays["t10k-labels-idx1-ubyte"],
    }


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


def load_splits(val_size=5000, limit_train=0, limit_test=0, channels_last=False,
                data_dir=None, progress=True, validate_on_test=False):
    """Train, validation and test splits as normalised arrays; `val` is None when val_size is 0.

    The validation images are a fixed random draw from the 60,000 training images (the same for
    every seed and framework). limit_train / limit_test keep only the first N images (smoke runs).
    validate_on_test makes `val` the test split (the benchmark's time to a test accuracy).
    """
    if not 0 <= val_size < TRAIN_SIZE:
        raise DataError(f"--val-size must be between 0 and {TRAIN_SIZE - 1}, got {val_size}")
    mnist = load_mnist(data_dir, progress)
    order = np.random.default_rng(SPLIT_SEED).permutation(TRAIN_SIZE)
    val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])
    if limit_train:
        train_idx = train_idx[:limit_train]
    test_end = limit_test or len(mnist["test_labels"])

    def split(images, labels):
        return Split(normalize(images, channels_last), labels.astype(np.int64))

    splits = {
        "train": split(mnist["train_images"][train_idx], mnist["train_labels"][train_idx]),
        "val": split(mnist["train_images"][val_idx], mnist["train_labels"][val_idx]) if val_size else None,
        "test": split(mnist["test_images"][:test_end], mnist["test_labels"][:test_end]),
    }
    if validate_on_test:
        splits["val"] = splits["test"]
    return splits


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
