"""Torch-free file helpers: atomic writes and sha256 of files and bytes (standard library only).

`dlc.common` re-exports `atomic_write` and `atomic_write_bytes` from here; code that must stay torch-free
(the results schema, reports) imports this module instead of `dlc.common`.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_write", "atomic_write_bytes", "file_sha256", "bytes_sha256"]

_BLOCK = 1 << 20


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Write to a temporary file in the same directory, fsync, then rename over `path`.

    Nothing half-written is ever visible under `path`: a crash (or an exception inside the block)
    leaves either the old file or none, and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_write`)."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the whole file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def bytes_sha256(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()
