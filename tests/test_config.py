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


#################################################################################
#            dlc.registry: one did-you-mean helper, one generic registry        #
#################################################################################

def test_did_you_mean_is_shared_and_torch_free():
    import subprocess
    import sys

    import bench.registry
    import dlc.registry

    assert bench.registry.did_you_mean is dlc.registry.did_you_mean
    assert issubclass(bench.registry.Registry, dlc.registry.Registry)
    p = subprocess.run([sys.executable, "-c", "import sys, dlc.registry; print('torch' in sys.modules)"],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "False", p.stderr


def test_did_you_mean_behaviour():
    from dlc.registry import did_you_mean

    assert did_you_mean("smok", ["smoke", "laptop"]) == " Did you mean 'smoke'?"
    assert did_you_mean("LAPTOP", ["smoke", "laptop"]) == " Did you mean 'laptop'?"     # case-insensitive fallback
    assert did_you_mean("zzz", ["smoke", "laptop"]) == ""
    assert did_you_mean("tinyy", {"tiny": 1, "tin": 2}) == " Did you mean 'tiny' or 'tin'?"   # any iterable
    assert did_you_mean("colr", ["colour", "color"], n=1).count("'") == 2


def test_dlc_registry_raises_value_errors_bench_registry_user_errors():
    from dlc.registry import Registry as DlcRegistry, UnknownNameError

    reg: DlcRegistry[int] = DlcRegistry("backbone")
    reg.register("vit-tiny", 1)
    with pytest.raises(ValueError, match=r"unknown backbone 'vit-tinny'. Did you mean 'vit-tiny'\? \(valid backbone"):
        reg.get("vit-tinny")
    with pytest.raises(UnknownNameError):
        reg.get("x")
    breg: Registry[int] = Registry("metric")
    with pytest.raises(UserError, match=r"\(none registered\)"):
        breg.get("fid")


@pytest.mark.parametrize("call, fragment", [
    (lambda: __import__("dlc.encoder", fromlist=["build_backbone"]).build_backbone("vit-tinny"),
     "Did you mean 'vit-tiny'"),
    (lambda: __import__("dlc.sedd", fromlist=["build_sedd"]).build_sedd("tinyy"), "Did you mean 'tiny'"),
    (lambda: __import__("dlc.dit", fromlist=["build_dit"]).build_dit("DiT-XL2"), "Did you mean 'DiT-XL/2'"),
    (lambda: __import__("dlc.data", fromlist=["DATASETS"]).DATASETS.get("fashion-mnst"),
     "Did you mean 'fashion-mnist'"),
])
def test_dlc_unknown_names_use_the_shared_helper(call, fragment):
    with pytest.raises(ValueError, match=fragment):
        call()


#################################################################################
#               Nested groups start from the field's default                     #
#################################################################################

@dataclass(frozen=True)
class Train:
    steps: int = 1000
    lr: float = 3e-4


@dataclass(frozen=True)
class Stage:
    name: str = "s"
    train: Train = field(default_factory=lambda: Train(steps=20, lr=0.5))

    def __post_init__(self):
        if self.train.steps < 1:
            raise ValueError("train.steps must be ≥ 1")


@dataclass(frozen=True)
class Outer:
    stage: Stage = field(default_factory=Stage)


def test_a_partial_group_in_a_preset_keeps_the_fields_default_factory():
    """`stage: {train: {steps: 5}}` means what `--set stage.train.steps=5` means: lr stays the factory's 0.5."""
    cfg = build(Outer, {"stage": {"train": {"steps": 5}}})
    assert cfg.stage.train == Train(steps=5, lr=0.5)
    assert cfg == override(Outer(), ["stage.train.steps=5"])


def test_value_errors_of_post_init_are_user_errors_everywhere():
    with pytest.raises(UserError, match=r"invalid config stage: train.steps must be ≥ 1 \(change the preset"):
        build(Outer, {"stage": {"train": {"steps": 0}}})
    with pytest.raises(UserError, match=r"invalid config: train.steps must be ≥ 1 \(change the --set value "
                                         r"stage.train.steps=0\)"):
        override(Outer(), ["stage.train.steps=0"])
    with pytest.raises(UserError, match=r"expected an integer, got 'x' \(change the --set value stage.train.steps=x\)"):
        override(Outer(), ["stage.train.steps=x"])
