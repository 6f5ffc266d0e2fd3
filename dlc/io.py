"""Torch-free file helpers: atomic writes, the umask, orphan temporaries, sha256 of files and bytes (standard
library only).

`dlc.common` re-exports `atomic_write` and `atomic_write_bytes` from here; code that must stay torch-free
(the results schema, reports) imports this module instead of `dlc.common`.

Temporaries are named `.<name>.<tag>.<random>[.tmp]` beside their target, where `<tag>` = `temp_tag()` names the
writing process (`<host hash>-<pid>`), so `is_orphan` can tell a temporary whose writer died (killed mid-write)
from one still being written, and `remove_orphans` can clean them. Files and directories made here get the
permissions `open()` / `mkdir()` would give them (0o666 / 0o777 masked by the process umask), not the 0o600 /
0o700 of `tempfile`.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_write", "atomic_write_bytes", "file_sha256", "bytes_sha256", "umask", "apply_umask",
           "temp_tag", "is_orphan", "remove_orphans", "TEMP_FILE"]

_BLOCK = 1 << 20
_UMASK_LOCK = threading.Lock()
_UMASK: int | None = None
ORPHAN_AGE_S = 6 * 3600     # a temporary of a live (or another host's) writer untouched this long is abandoned


def umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status, thread-safe,
    always current). Elsewhere it is read once, under a lock, by setting and restoring it (`os.umask` has no
    read-only form), and cached: a program that changes its umask later should do so before writing files."""
    global _UMASK
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        if _UMASK is None:
            old = os.umask(0o077)   # the most restrictive mask while it is briefly set
            os.umask(old)
            _UMASK = old
        return _UMASK


def apply_umask(path: str | os.PathLike | int, directory: bool = False) -> None:
    """chmod `path` (or an open file descriptor) to 0o666 (0o777 for a directory) masked by the umask."""
    mode = (0o777 if directory else 0o666) & ~umask()
    if isinstance(path, int):
        os.fchmod(path, mode)
    else:
        os.chmod(path, mode)


def temp_tag() -> str:
    """`<8 hex of the host name's sha256>-<pid>`: who writes a temporary (see `is_orphan`)."""
    return f"{hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]}-{os.getpid()}"


_TAG = re.compile(r"\.([0-9a-f]{8})-(\d+)\.")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):   # exists, owned by someone else
        return True
    return True


def is_orphan(path: str | os.PathLike, max_age_s: float = ORPHAN_AGE_S, now: float | None = None) -> bool:
    """Whether the temporary `path` (a name made with `temp_tag()`) was left by a writer that is gone: its
    tag names this host and a pid that no longer runs, or it is older than `max_age_s` (another host's, a
    reused pid, or an old-style name without a tag)."""
    p = Path(path)
    try:
        age = (time.time() if now is None else now) - p.lstat().st_mtime
    except FileNotFoundError:
        return False
    if age > max_age_s:
        return True
    tags = _TAG.findall(p.name)     # the last match: the target's own name may look like a tag
    if not tags or tags[-1][0] != temp_tag().split("-")[0]:
        return False
    pid = int(tags[-1][1])
    return pid != os.getpid() and not _pid_alive(pid)


TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")     # an `atomic_write` temporary (old names without a tag too)


def remove_orphans(directory: str | os.PathLike, match: re.Pattern = TEMP_FILE,
                   max_age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Remove the orphan temporaries (`is_orphan`) among the entries of `directory` whose whole names match
    `match` (default: `atomic_write`'s temporaries); returns what was removed. Other entries are never touched.
    Never raises for a missing directory or an entry another process removes first."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for e in entries:
        if not match.match(e.name) or not is_orphan(e.path, max_age_s):
            continue
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:   # removed by another process first, or not ours to remove
            continue
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Write to a temporary file in the same directory, fsync, then rename over `path`.

    Nothing half-written is ever visible under `path`: a crash (or an exception inside the block)
    leaves either the old file or none, and the temporary file is removed (a killed writer's temporary,
    `.<name>.<temp_tag()>.<random>.tmp`, is an orphan for `remove_orphans`). The file gets the permissions
    of a plain `open(path, "w")`: 0o666 masked by the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{temp_tag()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            apply_umask(f.fileno())
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
