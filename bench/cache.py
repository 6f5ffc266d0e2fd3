"""The one stage cache, shared by every experiment: content-addressed, safe formats, verified on read.

    <cache>/stages/<stage>/<key>/stage.json     manifest: stage, key spec, sha256 of every file, seconds
    <cache>/stages/<stage>/<key>/...            the stage's files (safetensors, npz, JSON — never pickles)

A stage key is the sha256 of a canonical JSON of
    the stage's name and version, a hash of the source of the modules the stage declares (`Stage.code`),
    every field of its config (dataclasses.asdict: no hand-picked lists), the keys of its upstream
    stages, its seed, and the device and dtype it ran on.
So editing a report note or an unrelated module changes no key; editing a module a stage depends on,
or any of its settings, changes that stage's key and (through `upstream`) every key below it; and two
experiments that declare the same stage with the same config and inputs share one directory.

Every file a stage writes is hashed when written and checked when read: a file whose bytes differ
from the manifest (tampered, truncated, replaced) gives one warning line naming the file, and the
stage is computed again. Outputs are written to a hidden temporary directory and renamed into place,
so an interrupted run never leaves a half-written stage.

Leftovers of killed processes clean themselves: the temporary directory is named `.<key>.<host>-<pid>.<random>`
(`dlc.io.temp_tag`), and opening the cache (and every store) removes the temporaries whose writer is gone (a pid
of this host that no longer runs, or untouched for `dlc.io.ORPHAN_AGE_S`) and any `.rejected-*` directory (a
rejected stage whose removal was interrupted). Stage directories get 0o777 masked by the umask, not mkdtemp's 0o700.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from dlc.io import apply_umask, bytes_sha256, file_sha256, remove_orphans, temp_tag

CACHE_ENV = "DLC_BENCH_CACHE"
MANIFEST = "stage.json"
_TEMP_STAGE = re.compile(r"^\.[0-9a-f]{24}\..+$")      # `.<key>.<tag>.<random>` (and old `.<key>.<random>`)
_REJECTED = ".rejected-"
CACHE_FORMAT = 2     # bump when the layout of stage directories changes


def default_cache_dir() -> Path:
    """$DLC_BENCH_CACHE (with ~ expanded), else the user cache directory of dlc-bench."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("dlc-bench"))


#################################################################################
#                              Code hashes                                      #
#################################################################################

def source_files(module: str) -> list[Path]:
    """The .py files of a module, or of every module below a package."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"stage code dependency {module!r} is not an importable module")
    if spec.submodule_search_locations:
        return sorted(p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.py"))
    return [Path(spec.origin)]


@functools.lru_cache(maxsize=None)
def _code_hash_cached(modules: tuple[str, ...], stamp: tuple) -> str:
    h = hashlib.sha256()
    for m in modules:
        for path in source_files(m):
            h.update(f"{m}:{path.name}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def code_hash(modules: Iterable[str]) -> str:
    """sha256 over the source of `modules` (recomputed whenever a file's mtime or size changes)."""
    mods = tuple(sorted(set(modules)))
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for m in mods for p in source_files(m))
    return _code_hash_cached(mods, stamp)


#################################################################################
#                         Safe serialisation of values                          #
#################################################################################

_TENSORS, _ARRAYS, _TREE = "tensors.safetensors", "arrays.npz", "tree.json"


def save_tree(value: Any, directory: Path) -> None:
    """Save nested dicts/lists of tensors, arrays and JSON scalars as safetensors + npz + JSON."""
    import torch
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    arrays: dict[str, np.ndarray] = {}

    def enc(v: Any, path: str) -> Any:
        if isinstance(v, torch.Tensor):
            tensors[path] = v.detach().cpu().contiguous()
            return {"__tensor__": path}
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                raise TypeError(f"stage value {path}: object arrays cannot be stored safely")
            arrays[path] = v
            return {"__array__": path}
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, Mapping):
            if not all(isinstance(k, str) for k in v):
                return {"__items__": [[enc(k, f"{path}/k{i}"), enc(x, f"{path}/{i}")]
                                      for i, (k, x) in enumerate(v.items())]}
            return {"__dict__": {k: enc(x, f"{path}/{k}") for k, x in v.items()}}
        if isinstance(v, tuple):
            return {"__tuple__": [enc(x, f"{path}/{i}") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [enc(x, f"{path}/{i}") for i, x in enumerate(v)]
        if v is None or isinstance(v, (bool, int, float, str)):
            return {"__float__": repr(v)} if isinstance(v, float) and not np.isfinite(v) else v
        raise TypeError(f"stage value {path or '/'} of type {type(v).__name__} has no safe format; "
                        "give the stage its own save/load")

    tree = enc(value, "")
    if tensors:
        save_file(tensors, str(directory / _TENSORS))
    if arrays:
        with open(directory / _ARRAYS, "wb") as f:
            np.savez(f, **{f"a{i}": a for i, a in enumerate(arrays.values())})
        tree = {"__arrays__": list(arrays), "tree": tree}
    (directory / _TREE).write_text(json.dumps(tree))


def load_tree(directory: Path) -> Any:
    """Inverse of `save_tree`; never unpickles (npz opened with allow_pickle=False)."""
    from safetensors.torch import load_file

    tree = json.loads((directory / _TREE).read_text())
    tensors = load_file(str(directory / _TENSORS)) if (directory / _TENSORS).exists() else {}
    arrays: dict[str, np.ndarray] = {}
    if isinstance(tree, dict) and "__arrays__" in tree:
        with np.load(directory / _ARRAYS, allow_pickle=False) as z:
            arrays = {p: z[f"a{i}"] for i, p in enumerate(tree["__arrays__"])}
        tree = tree["tree"]

    def dec(v: Any) -> Any:
        if isinstance(v, list):
            return [dec(x) for x in v]
        if not isinstance(v, dict):
            return v
        if "__tensor__" in v:
            return tensors[v["__tensor__"]]
        if "__array__" in v:
            return arrays[v["__array__"]]
        if "__dict__" in v:
            return {k: dec(x) for k, x in v["__dict__"].items()}
        if "__items__" in v:
            return {_hashable(dec(k)): dec(x) for k, x in v["__items__"]}
        if "__tuple__" in v:
            return tuple(dec(x) for x in v["__tuple__"])
        if "__float__" in v:
            return float(v["__float__"])
        raise ValueError(f"unknown entry in {directory / _TREE}")

    return dec(tree)


def _hashable(k: Any) -> Any:
    return tuple(_hashable(x) for x in k) if isinstance(k, list) else k


#################################################################################
#                              Stages and keys                                  #
#################################################################################

@dataclass(frozen=True)
class Stage:
    """A reusable building block: its name, the modules its outputs depend on, and how it is stored.

    `code` lists importable modules or packages; their source is part of every key of this stage.
    `version` is bumped when the meaning of the output changes without a source change (e.g. data)."""
    name: str
    code: tuple[str, ...]
    save: Callable[[Any, Path], None] = save_tree
    load: Callable[[Path], Any] = load_tree
    version: str = "1"
    description: str = ""
    reload: bool = False      # return the stored value (read back) rather than the computed one

    def code_hash(self) -> str:
        return code_hash(self.code)


@dataclass(frozen=True)
class StageKey:
    stage: str
    hash: str
    spec: dict

    def __str__(self) -> str:
        return f"{self.stage}/{self.hash}"


def _jsonable(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {f.name: _jsonable(getattr(o, f.name)) for f in dataclasses.fields(o)}
    if isinstance(o, Mapping):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, float) and not np.isfinite(o):
        return repr(o)
    if o is None or isinstance(o, (bool, int, float, str)):
        return o
    return str(o)   # torch.device, torch.dtype, Path


def stage_key(stage: Stage, config: Any, *, upstream: Iterable[StageKey] = (), seed: int | None = None,
              device: Any = None, dtype: Any = None) -> StageKey:
    """The key of `stage` computed with `config` (a dataclass or mapping: every field counts) from the
    outputs `upstream`, with `seed`, on `device` in `dtype`."""
    spec = {"format": CACHE_FORMAT, "stage": stage.name, "version": stage.version, "code": stage.code_hash(),
            "config": _jsonable(config), "upstream": sorted(str(k) for k in upstream), "seed": seed,
            "device": None if device is None else str(device), "dtype": None if dtype is None else str(dtype)}
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return StageKey(stage.name, hashlib.sha256(blob.encode()).hexdigest()[:24], spec)


#################################################################################
#                                  The cache                                    #
#################################################################################

def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class StageCache:
    """Stage outputs under `<root>/stages/<stage>/<key>/`, written atomically, verified on read."""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser() / "stages"
        self.clean()

    def clean(self, stage: str | None = None) -> list[Path]:
        """Remove what killed processes left in the stage directories (of `stage`, or of every stage):
        temporaries whose writer is gone (`dlc.io.is_orphan`) and interrupted `.rejected-*` removals.
        Returns the removed paths; never raises."""
        try:
            parents = [self.root / stage] if stage else [e for e in self.root.iterdir() if e.is_dir()]
        except OSError:
            return []
        removed = []
        for parent in parents:
            removed += remove_orphans(parent, _TEMP_STAGE)
            try:
                rejected = [e for e in parent.iterdir() if e.name.startswith(_REJECTED)]
            except OSError:
                continue
            for e in rejected:
                shutil.rmtree(e, ignore_errors=True)
                removed.append(e)
        return removed

    def directory(self, key: StageKey) -> Path:
        return self.root / key.stage / key.hash

    def compute_seconds(self, key: StageKey) -> float | None:
        """The seconds the stage took when it was computed (its manifest's record), or None when not stored."""
        try:
            seconds = json.loads((self.directory(key) / MANIFEST).read_text()).get("seconds")
        except (OSError, ValueError, AttributeError):
            return None
        return float(seconds) if isinstance(seconds, (int, float)) else None

    def verify(self, key: StageKey) -> Path | None:
        """The directory of a complete stage whose files all match their recorded sha256, else None
        (a warning names the first bad file; the bad directory is removed so it is recomputed)."""
        d = self.directory(key)
        manifest = d / MANIFEST
        if not manifest.exists():
            return None
        try:
            meta = json.loads(manifest.read_text())
            files = meta["files"]
            if not isinstance(files, dict):
                raise ValueError("files")
        except (OSError, ValueError, KeyError, TypeError):
            return self._reject(d, manifest, "unreadable manifest")
        present = {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and p.name != MANIFEST}
        for extra in sorted(present - set(files)):
            return self._reject(d, d / extra, "not written by this stage")
        for rel, digest in sorted(files.items()):
            p = d / rel
            if not p.is_file():
                return self._reject(d, p, "missing")
            if file_sha256(p) != digest:
                return self._reject(d, p, "sha256 differs from the one recorded when it was written")
        return d

    def _reject(self, d: Path, path: Path, why: str) -> None:
        warn(f"cached file {path} is {why}; recomputing stage {d.parent.name}")
        trash = d.with_name(f"{_REJECTED}{d.name}-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.rename(d, trash)
            shutil.rmtree(trash, ignore_errors=True)
        except OSError:
            pass
        return None

    def load(self, key: StageKey, load: Callable[[Path], Any]) -> tuple[bool, Any]:
        """(True, value) from a verified stage directory, or (False, None) when absent or bad."""
        d = self.verify(key)
        if d is None:
            return False, None
        try:
            return True, load(d)
        except Exception as e:   # verified bytes we still cannot read: a format change, a bug
            self._reject(d, d, f"unreadable ({type(e).__name__}: {e})")
            return False, None

    def store(self, key: StageKey, value: Any, save: Callable[[Any, Path], None], seconds: float) -> Path:
        final = self.directory(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        self.clean(key.stage)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{temp_tag()}.", dir=final.parent))
        try:
            apply_umask(tmp, directory=True)
            save(value, tmp)
            files = {str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            meta = {"stage": key.stage, "key": key.hash, "spec": key.spec, "files": files, "seconds": seconds,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            (tmp / MANIFEST).write_text(json.dumps(meta, indent=1))
            try:
                os.rename(tmp, final)          # atomic: the stage appears complete or not at all
            except OSError:
                if (final / MANIFEST).exists():    # another process finished it first
                    shutil.rmtree(tmp, ignore_errors=True)
                else:                            # a leftover without manifest: replace it
                    shutil.rmtree(final, ignore_errors=True)
                    os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final


__all__ = ["CACHE_ENV", "Stage", "StageKey", "StageCache", "stage_key", "code_hash", "default_cache_dir",
           "save_tree", "load_tree", "source_files", "bytes_sha256", "warn"]
