"""The shared stage cache: keys (every config field, upstream keys, the stage's own source, device/dtype),
safe storage (no pickles), verification of every stored file, atomic writes."""
from __future__ import annotations

import dataclasses
import importlib
import json
import pickle
import sys
import textwrap

import numpy as np
import pytest
import torch

from bench.cache import Stage, StageCache, code_hash, load_tree, save_tree, stage_key


@dataclasses.dataclass(frozen=True)
class Cfg:
    a: int = 1
    b: float = 0.5
    nested: tuple[int, ...] = (1, 2)


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Two importable throw-away modules: `dep_mod` (a stage's code) and `other_mod` (unrelated)."""
    root = tmp_path / "mods"
    root.mkdir()
    (root / "dep_mod.py").write_text("X = 1\n")
    (root / "other_mod.py").write_text("Y = 1\n")
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    yield root
    for m in ("dep_mod", "other_mod"):
        sys.modules.pop(m, None)


def _edit(path, text):
    path.write_text(text)
    st = path.stat()   # make sure the mtime moves even on coarse clocks
    import os
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_key_covers_config_code_upstream_seed_device_dtype(modules):
    st = Stage("s", code=("dep_mod",))
    base = stage_key(st, Cfg(), seed=0, device="cpu", dtype=torch.float32)
    assert stage_key(st, Cfg(), seed=0, device="cpu", dtype=torch.float32) == base
    changed = [stage_key(st, Cfg(a=2), seed=0, device="cpu", dtype=torch.float32),
               stage_key(st, Cfg(nested=(1, 3)), seed=0, device="cpu", dtype=torch.float32),
               stage_key(st, Cfg(), seed=1, device="cpu", dtype=torch.float32),
               stage_key(st, Cfg(), seed=0, device="cuda:0", dtype=torch.float32),
               stage_key(st, Cfg(), seed=0, device="cpu", dtype=torch.bfloat16),
               stage_key(st, Cfg(), upstream=[base], seed=0, device="cpu", dtype=torch.float32),
               stage_key(Stage("t", code=("dep_mod",)), Cfg(), seed=0, device="cpu", dtype=torch.float32)]
    assert len({k.hash for k in changed} | {base.hash}) == len(changed) + 1
    # editing an unrelated module keeps the key; editing the stage's own module changes it
    _edit(modules / "other_mod.py", "Y = 2  # a new note\n")
    assert stage_key(st, Cfg(), seed=0, device="cpu", dtype=torch.float32) == base
    _edit(modules / "dep_mod.py", "X = 2\n")
    assert stage_key(st, Cfg(), seed=0, device="cpu", dtype=torch.float32) != base


def test_every_field_of_a_new_config_counts():
    """No hand-picked field lists: a field added to a config is in the key without touching the stage."""
    New = dataclasses.make_dataclass("New", [("a", int, 1), ("added", int, 0)], frozen=True)
    st = Stage("s", code=("bench.cache",))
    assert stage_key(st, New(added=0)) != stage_key(st, New(added=1))


def test_tree_round_trip(tmp_path):
    value = {"t": torch.arange(6, dtype=torch.float32).reshape(2, 3), "a": np.arange(4.0), "f": 1.5, "i": 3,
             "s": "x", "none": None, "nan": float("nan"), "list": [1, torch.ones(2)], "tup": (1, 2),
             "nested": {"state": {"w": torch.zeros(1)}}, "b": True, "np": np.float64(2.5),
             3: "int key"}
    save_tree(value, tmp_path)
    back = load_tree(tmp_path)
    assert torch.equal(back["t"], value["t"]) and np.array_equal(back["a"], value["a"])
    assert back["f"] == 1.5 and back["i"] == 3 and back["s"] == "x" and back["none"] is None
    assert np.isnan(back["nan"]) and back["tup"] == (1, 2) and torch.equal(back["list"][1], torch.ones(2))
    assert torch.equal(back["nested"]["state"]["w"], torch.zeros(1)) and back["b"] is True and back["np"] == 2.5
    assert back[3] == "int key"
    with pytest.raises(TypeError, match="no safe format"):
        save_tree({"m": torch.nn.Linear(1, 1)}, tmp_path / "x")
    with pytest.raises(TypeError, match="object arrays"):
        save_tree(np.array([{}], dtype=object), tmp_path)


def _store(cache, key, value):
    return cache.store(key, value, save_tree, seconds=0.0)


def test_tampered_array_and_bytes_are_detected(tmp_path, capsys):
    cache = StageCache(tmp_path)
    st = Stage("s", code=("bench.cache",))
    key = stage_key(st, Cfg())
    d = _store(cache, key, {"x": np.arange(10.0), "t": torch.ones(3)})
    assert cache.load(key, load_tree)[0]
    # a cached array scaled by 3 (a valid npz, other bytes): rejected, stage recomputed
    with np.load(d / "arrays.npz") as z:
        arrs = {k: z[k] * 3 for k in z.files}
    with open(d / "arrays.npz", "wb") as f:
        np.savez(f, **arrs)
    hit, _ = cache.load(key, load_tree)
    err = capsys.readouterr().err
    assert not hit and err.count("\n") == 1 and "arrays.npz" in err and "sha256" in err
    assert not d.exists()
    # flipped bytes in a safetensors file
    d = _store(cache, key, {"t": torch.ones(3)})
    raw = bytearray((d / "tensors.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (d / "tensors.safetensors").write_bytes(bytes(raw))
    assert not cache.load(key, load_tree)[0]
    assert "tensors.safetensors" in capsys.readouterr().err
    # a truncated manifest
    d = _store(cache, key, {"t": torch.ones(3)})
    (d / "stage.json").write_text("{")
    assert not cache.load(key, load_tree)[0]
    assert "manifest" in capsys.readouterr().err


class _Bomb:
    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(_Bomb.marker),))


def test_planted_pickle_is_never_unpickled(tmp_path, capsys):
    cache = StageCache(tmp_path / "c")
    st = Stage("s", code=("bench.cache",))
    key = stage_key(st, Cfg())
    marker = tmp_path / "PWNED"
    _Bomb.marker = str(marker)
    # 1) a pickle dropped next to verified files (the old format's value.pt)
    d = _store(cache, key, {"t": torch.ones(2)})
    torch.save({"x": _Bomb()}, d / "value.pt")
    assert not cache.load(key, load_tree)[0]
    assert "value.pt" in capsys.readouterr().err
    # 2) a pickle in place of a stored file, with the manifest's sha256 rewritten to match: the bytes verify,
    #    but the loaders never unpickle (np.load allow_pickle=False, safetensors, JSON)
    d = _store(cache, key, {"a": np.arange(3)})
    with open(d / "arrays.npz", "wb") as f:
        np.savez(f, a0=np.array([_Bomb()], dtype=object))
    meta = json.loads((d / "stage.json").read_text())
    from dlc.io import file_sha256
    meta["files"]["arrays.npz"] = file_sha256(d / "arrays.npz")
    (d / "stage.json").write_text(json.dumps(meta))
    hit, _ = cache.load(key, load_tree)
    assert not hit and "unreadable" in capsys.readouterr().err
    # 3) a pickle as the whole tree file
    d = _store(cache, key, {"t": torch.ones(2)})
    (d / "tree.json").write_bytes(pickle.dumps(_Bomb()))
    assert not cache.load(key, load_tree)[0]
    assert not marker.exists()


def test_store_is_atomic(tmp_path):
    cache = StageCache(tmp_path)
    key = stage_key(Stage("s", code=("bench.cache",)), Cfg())

    def boom(value, d):
        (d / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.store(key, 1, boom, seconds=0.0)
    assert not cache.directory(key).exists()
    assert not [p for p in cache.directory(key).parent.iterdir()]


def test_code_hash_of_package_covers_submodules(tmp_path, monkeypatch):
    pkg = tmp_path / "pk" / "pkg_x"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub.py").write_text(textwrap.dedent("A = 1\n"))
    monkeypatch.syspath_prepend(str(tmp_path / "pk"))
    importlib.invalidate_caches()
    h = code_hash(["pkg_x"])
    _edit(pkg / "sub.py", "A = 2\n")
    assert code_hash(["pkg_x"]) != h
