"""The downloadable datasets, MNIST and Fashion-MNIST: their mirrors and checksums, the download
(with a timeout, falling through to the next mirror), the check of every file on every load, and
the cache folder that keeps them.
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

from filelock import FileLock
from tqdm import tqdm

from ..files import atomic_path
from .idx import DataError, by_array, parse_idx

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
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGITS = tuple(str(digit) for digit in range(10))
DOWNLOADABLE = ("mnist", "fashion-mnist")
TRAIN_SIZE = 60_000  # training images of each, MNIST and Fashion-MNIST
TIMEOUT = float(os.environ.get("LENET5_DOWNLOAD_TIMEOUT", 30))  # seconds of silence before a mirror is given up


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


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _download(url, progress):
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        name = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]
        chunks = []
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=f"download {name}", disable=not progress, leave=False
        ) as bar:
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
        f"could not download {name}; tried:\n  "
        + "\n  ".join(failures)
        + f"\nSet {variable} to a working mirror (comma-separated base URLs, file:// allowed), "
        f"or place the four {label} .gz files in a folder and point {variable} at it as file:///that/folder/"
    )


def _read_verified(path, src):
    """The file's bytes if it exists and matches its checksum, else None."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
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
        except OSError as error:  # not allowed, a file on the way, a full disk
            raise DataError(
                f"cannot write {dataset} into {data_dir} ({error.strerror}); "
                "choose another folder with --data-dir or LENET5_DATA_DIR"
            ) from None
    return by_array({name: src.parse(data, name) for name, data in raw.items()})
