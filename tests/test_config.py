"""Typed configs, presets, --set overrides and the registry's error messages."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from bench.config import build, coerce, config_hash, load_config, override, parse_seeds, valid_keys
from bench.errors import UserError
from bench.registry import Registry


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class Cfg:
    n_modes: tuple[int, ...] = (9, 121)
    hidden: int = 64
    name: str = "x"
    use_ema: bool = True
    kind: Literal["a", "b"] = "a"
    limit: Optional[int] = None
    optim: Optim = field(default_factory=Optim)

    def validate(self) -> None:
        if self.hidden <= 0:
            raise ValueError("hidden must be positive")


def test_coerce_scalars_and_containers():
    assert coerce("12", int, "k") == 12
    assert coerce("1e3", int, "k") == 1000
    assert coerce("1e-3", float, "k") == 1e-3
    assert coerce("true", bool, "k") is True and coerce("no", bool, "k") is False
    assert coerce("9,121,400", tuple[int, ...], "k") == (9, 121, 400)
    assert coerce("[1, 2]", tuple[int, ...], "k") == (1, 2)
    assert coerce([0.5, 1], tuple[float, float], "k") == (0.5, 1.0)
    assert coerce("none", Optional[int], "k") is None and coerce("3", Optional[int], "k") == 3
    assert coerce("b", Literal["a", "b"], "k") == "b"


@pytest.mark.parametrize("value,tp,fragment", [
    ("abc", int, "expected an integer"),
    ("1.5", int, "expected an integer"),
    ("maybe", bool, "expected a boolean"),
    ("x", float, "expected a number"),
    ("c", Literal["a", "b"], "is not one of"),
    ("1,x", tuple[int, ...], "expected an integer"),
    ("1,2,3", tuple[float, float], "expected 2 values"),
])
def test_coerce_rejects_wrong_types(value, tp, fragment):
    with pytest.raises(UserError, match=fragment):
        coerce(value, tp, "key")


def test_override_nested_and_type_checked():
    cfg = override(Cfg(), ["hidden=128", "optim.lr=3e-4", "n_modes=9,25", "kind=b", "limit=7"])
    assert cfg.hidden == 128 and cfg.optim.lr == 3e-4 and cfg.n_modes == (9, 25) and cfg.kind == "b"
    assert cfg.limit == 7
    assert Cfg().hidden == 64  # frozen originals untouched


def test_unknown_key_suggests_and_lists_valid_keys():
    with pytest.raises(UserError) as e:
        override(Cfg(), ["hiden=3"])
    msg = str(e.value)
    assert "unknown config key 'hiden'" in msg and "Did you mean 'hidden'" in msg and "optim.lr" in msg
    with pytest.raises(UserError, match="Did you mean 'optim.lr'"):
        override(Cfg(), ["optim.lrr=1"])
    with pytest.raises(UserError, match="group of settings"):
        override(Cfg(), ["optim=3"])
    with pytest.raises(UserError, match="use --set key=value"):
        override(Cfg(), ["hidden"])


def test_validate_hook_and_build_from_mapping():
    with pytest.raises(UserError, match="hidden must be positive"):
        override(Cfg(), ["hidden=-1"])
    cfg = build(Cfg, {"hidden": 8, "optim": {"lr": 0.1}})
    assert cfg.optim.lr == 0.1 and cfg.optim.betas == (0.9, 0.999)
    with pytest.raises(UserError, match="unknown config key 'optim.momentum'"):
        build(Cfg, {"optim": {"momentum": 0.9}})
    assert set(valid_keys(Cfg)) >= {"hidden", "optim.lr", "optim.betas"}


def test_config_hash_changes_with_any_value():
    assert config_hash(Cfg()) == config_hash(Cfg())
    assert config_hash(Cfg()) != config_hash(override(Cfg(), ["optim.lr=0.002"]))


def test_presets_from_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("DLC_BENCH_CONFIGS", str(tmp_path))
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "smoke.yaml").write_text("seeds: [3, 4]\nhidden: 16\noptim:\n  lr: 0.5\n")
    (tmp_path / "exp" / "bad.yaml").write_text("hidden: [oops\n")
    (tmp_path / "exp" / "typo.yaml").write_text("hiddn: 3\n")
    cfg, seeds = load_config(Cfg, "exp", "smoke", ["hidden=32"])
    assert cfg.hidden == 32 and cfg.optim.lr == 0.5 and seeds == (3, 4)
    with pytest.raises(UserError, match="no preset 'smokee'.*Did you mean 'smoke'"):
        load_config(Cfg, "exp", "smokee")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(Cfg, "exp", "bad")
    with pytest.raises(UserError, match="unknown config key 'hiddn'"):
        load_config(Cfg, "exp", "typo")


def test_parse_seeds():
    assert parse_seeds("0,1,2") == (0, 1, 2)
    assert parse_seeds("2-4") == (2, 3, 4)
    assert parse_seeds("7") == (7,)
    for bad in ("a", "3-1", "1,1", ""):
        with pytest.raises(UserError):
            parse_seeds(bad)


def test_registry_duplicates_names_and_did_you_mean():
    reg: Registry[int] = Registry("widget")
    reg.register("toy-mixture", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("toy-mixture", 2)
    for bad in ("has space", "a/b", "", "-lead"):
        with pytest.raises(ValueError, match="invalid widget name"):
            reg.register(bad, 3)
    with pytest.raises(UserError, match="unknown widget 'toy-mixtur'. Did you mean 'toy-mixture'"):
        reg.get("toy-mixtur")
    assert reg.get("toy-mixture") == 1 and "toy-mixture" in reg and len(reg) == 1
