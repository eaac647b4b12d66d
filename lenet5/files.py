"""Writing files so that a crash, a full disk or a parallel reader never sees half of one.

Everything the project writes goes through `staging`: the files are made in a hidden folder
beside their destination and moved into place only when all of them are complete. A write that
fails (a full disk, a quota, an I/O error) raises an OSError naming the destination and leaves
nothing behind; a process killed meanwhile leaves only the hidden folder (`is_leftover`), which
the next resume of a run removes.
"""

import errno
import io
import itertools
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

STAGING_PREFIX = ".lenet5-tmp-"
MIN_FREE = 1 << 20  # bytes: below this, a disk counts as full
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO}  # what a write says when the disk cannot take it


# Lines of an error's message that are not what it says: a traceback's (Python's, MXNet's C++
# frames), TensorFlow's graph, gRPC's details; and a C++ source location before gloo's words.
NOT_THE_MESSAGE = re.compile(
    r"\s|Traceback \(most recent call last\)|Graph execution error|Detected at node|Additional GRPC|$"
)
SOURCE_LOCATION = re.compile(r"^\[[^\]]*\.(?:cc|cpp|h):\d+\]\s*")  # "[../gloo/transport/tcp/pair.cc:553] "


def first_line(error, sentences=0):
    """What a library's exception says, in one line: its first line that is not a traceback's,
    without a C++ source location or MXNet's "MXNetError: Check failed: ", cut after its first
    `sentences` sentences if given (gloo's advice and emoji follow them); its name if it says nothing.
    A line that ends in a colon takes the next with it (TensorFlow's lost worker is named there)."""
    message = (getattr(error, "message", None) or str(error)).strip()  # TensorFlow's .message: no traceback
    lines = list(itertools.dropwhile(NOT_THE_MESSAGE.match, message.splitlines()))
    line = " ".join(lines[:2]) if lines and lines[0].endswith(":") else "".join(lines[:1])
    line = SOURCE_LOCATION.sub("", line).removeprefix("MXNetError: ").removeprefix("Check failed: ")
    if sentences:
        line = " ".join(re.split(r"(?<=\.)\s+", line)[:sentences]).rstrip(".")
    return line or type(error).__name__


def is_leftover(path):
    """Whether `path` is a staging folder that a killed process left behind."""
    return Path(path).name.startswith(STAGING_PREFIX)


def free_bytes(folder):
    """Bytes that this process may still write on the file system holding `folder` (root may
    use the blocks reserved for it)."""
    folder = Path(folder).resolve()
    while not folder.exists():
        folder = folder.parent
    stat = os.statvfs(folder)
    return (stat.f_bfree if os.geteuid() == 0 else stat.f_bavail) * stat.f_frsize


def write_error(error, path, tmp=None):
    """The exception to raise for a write of `path` that failed with `error`: an OSError about no
    file (a failed write() names none) or about one in the temporary folder `tmp` names `path`
    instead. torch.save, Keras, MXNet and ffmpeg report a full disk in their own words, without
    errno (or with another one: a broken pipe); when the disk is indeed full, that becomes ENOSPC."""
    if type(error).__module__.startswith("lenet5."):  # the project's own errors say what they mean
        return error
    if not (isinstance(error, OSError) and error.errno in DISK_ERRORS) and free_bytes(Path(path).parent) < MIN_FREE:
        words = f"{type(error).__name__}: {first_line(error)[:200]}"
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({words})", str(path))
    if isinstance(error, OSError) and (error.filename is None or (tmp and str(error.filename).startswith(str(tmp)))):
        return OSError(error.errno, error.strerror or str(error), str(path))
    return error


@contextmanager
def staging(folder, replace=True):
    """Yield a new hidden folder inside `folder` (made if need be) to write files into; when the
    block succeeds they move into `folder` under the same names, replacing files of those names
    (or, with replace=False, failing with FileExistsError rather than replacing any). The hidden
    folder is removed in any case."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    except OSError as error:  # a full disk has no room for a folder either
        raise OSError(error.errno, error.strerror, str(folder)) from None
    try:
        try:
            yield tmp
        except Exception as error:
            # Judged before the half-written files go: a full disk still looks full.
            raise write_error(error, folder / next((p.name for p in tmp.iterdir()), ""), tmp) from None
        linked = []
        for made in sorted(tmp.iterdir()):
            dest = folder / made.name
            try:
                if replace:
                    os.replace(made, dest)
                else:
                    os.link(made, dest)  # fails rather than replaces
                    linked.append(dest)
            except OSError as error:  # all or none; the error names the file, not its temporary twin
                for path in linked:
                    path.unlink()
                raise OSError(error.errno, error.strerror, str(dest)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_path(path, replace=True):
    """Yield a temporary path to write `path` through (`staging`): a crash or a full disk leaves
    the old file or the new one, never half of one. The temporary path has the same name, which
    some savers insist on (Keras: .keras)."""
    path = Path(path)
    with staging(path.parent, replace) as tmp:
        yield tmp / path.name


def write_text(path, text, replace=True):
    with atomic_path(path, replace) as tmp:
        tmp.write_text(text)


def write_npz(path, compressed=False, **arrays):
    """An .npz file of `arrays`, made in memory first: numpy's zip writer, cut short by a full
    disk, fails again as it is collected and prints a second error."""
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def write_json(path, data):
    write_text(path, json.dumps(data, indent=2) + "\n")


def describe(error):
    """An OSError in one line: the file, then the cause ("No space left on device")."""
    if error.filename is None:
        return error.strerror or str(error)
    return f"{error.filename}: {error.strerror or error}"
