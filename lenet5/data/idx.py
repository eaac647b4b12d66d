"""MNIST's file format: parse an IDX file, and read a folder holding the four IDX files of a
dataset laid out as MNIST is. DataError, the one error of every data module, is defined here,
in the module the others all build on.
"""

import gzip
import zlib

import numpy as np

# The four files of MNIST (and of every dataset laid out like it), and the array each holds.
ARRAYS = {
    "train-images-idx3-ubyte": "train_images",
    "train-labels-idx1-ubyte": "train_labels",
    "t10k-images-idx3-ubyte": "test_images",
    "t10k-labels-idx1-ubyte": "test_labels",
}


class DataError(Exception):
    """A dataset could not be fetched or read; the message says what to do."""


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
        raise DataError(
            f"{name}: header promises shape {shape} ({int(np.prod(shape))} bytes) but {len(raw) - header} bytes follow"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def by_array(arrays):
    """{file name: array} of the four files -> {train_images, train_labels, test_images, test_labels: array}."""
    return {key: arrays[name] for name, key in ARRAYS.items()}


def load_idx_folder(folder):
    """The four MNIST-named IDX files (each .gz or not) of a folder, checked for shape."""
    arrays = {}
    for name in ARRAYS:
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
            raise DataError(
                f"{folder}: {part}-labels-idx1-ubyte has shape {y.shape}, but there are {len(x)} {part} images"
            )
    num_classes = 1 + int(
        max(arrays["train-labels-idx1-ubyte"].max(initial=0), arrays["t10k-labels-idx1-ubyte"].max(initial=0))
    )
    return by_array(arrays) | {"classes": [str(label) for label in range(num_classes)]}
