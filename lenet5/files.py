"""Writing files so that a crash or a parallel reader never sees half of one."""

import json
import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` to write to; it replaces `path` only when the block
    succeeds, so a crash leaves the old file or the new one, never half of one. The temporary
    name keeps the suffix, which some savers insist on (Keras: .keras)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path, data):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
