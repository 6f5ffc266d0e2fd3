"""Output locations of a command: checked before anything is written, created only when writing starts, and
removed again (when they hold nothing) if the command fails; `check_overwrite` guards earlier output (--force)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import UserError
from .schema import RESULTS_JSON, read_results


def check_writable_dir(path: Path, what: str, option: str) -> Path:
    """`path` if it is a writable directory or could be created as one, else a UserError naming the fix.
    Creates nothing."""
    path = Path(path).expanduser()
    hint = f"choose another location with {option}"
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{what} {path} exists and is not a directory", hint=hint)
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"{what} {path} is not writable", hint=hint)
        return path
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what} {path} cannot be created ({parent} is not a directory)", hint=hint)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path} cannot be created ({parent} is not writable)", hint=hint)
    return path


def ensure_writable_dir(path: Path, what: str, option: str) -> Path:
    """Create `path` if needed and prove it is writable, or raise a UserError naming the fix. Call it only
    when about to write (`check_writable_dir` checks without creating)."""
    path = check_writable_dir(path, what, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{what} {path} is not writable ({e.strerror or e})", hint=f"choose another location "
                        f"with {option}") from None
    return path


def check_overwrite(path: Path, option: str, force: bool, identity: dict | None = None) -> None:
    """Unless `force` (--force), a UserError when writing `path` would write over earlier output: an existing
    file, or a directory holding a run (its results.json) — except this very run (`run_identity`), interrupted
    after its results.json, which the same command finishes instead (`execute`). Creates nothing."""
    path = Path(path).expanduser()
    if force or not path.exists():
        return
    if path.is_dir():
        if not (path / RESULTS_JSON).is_file() or (identity is not None and _interrupted_run_of(path, identity)):
            return
        try:
            problem = f"{path} already holds run {read_results(path).run_id}"
        except (OSError, ValueError, UserError):
            problem = f"{path} already holds a {RESULTS_JSON}"
    else:
        problem = f"{path} already exists"
    raise UserError(f"{option.split()[0]} {problem}", hint=f"pass --force to overwrite it, or another {option}")


def _interrupted_run_of(out_dir: Path, identity: dict) -> bool:
    from .run import FINISHING, identity_of

    try:
        return (out_dir / FINISHING).is_file() and identity_of(read_results(out_dir)) == identity
    except (OSError, ValueError, UserError):
        return False


def _missing_dirs(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


@contextlib.contextmanager
def removed_on_failure(*paths: Path) -> Iterator[None]:
    """Nothing is created here; the block creates `paths` (and their missing parents) when it first writes
    there. If the block raises, the folders it created that hold no file are removed, and after a UserError
    also the first path with everything in it, when the block created it (only the block wrote there)."""
    created = [_missing_dirs(Path(p)) for p in paths]
    try:
        yield
    except BaseException as e:
        if isinstance(e, UserError) and created and created[0]:
            shutil.rmtree(created[0][0], ignore_errors=True)
        for d in (d for ds in created for d in ds):
            with contextlib.suppress(OSError):
                _prune_empty(d)
        raise


def _prune_empty(d: Path) -> None:
    """Remove directory `d` if it (recursively) holds only empty directories."""
    if not d.is_dir() or d.is_symlink():
        return
    for sub in d.iterdir():
        _prune_empty(sub)
    d.rmdir()      # OSError when not empty: kept


__all__ = ["check_overwrite", "check_writable_dir", "ensure_writable_dir", "removed_on_failure"]
