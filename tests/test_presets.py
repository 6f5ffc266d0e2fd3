"""Presets: shipped presets resolve as before, `include:` composition, sweeps, --config, one-line errors, the wheel."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from bench import cli
from bench.config import expand_sweep, parse_sweep_args, split_values, to_dict
from bench.presets import (LoadedConfig, available_presets, configs_dir, load_config, merge, read_preset,
                           resolve_config)
from bench.errors import UserError
from tests.test_config import Cfg as BaseCfg, Optim  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
# Recorded from `git archive c6dd1f4` (the flat presets, before include: and the move to bench/configs/):
# {"<experiment>/<preset>": {"seeds", "config": to_dict(load_config(...)), and for dlc-pipeline "effective":
# the SEMTrainConfig / SEDDTrainConfig (seed 0) that c6dd1f4's stage code built from the flat config}}.
BEFORE = Path(__file__).parent / "data" / "presets_c6dd1f4.json"


#################################################################################
#           The shipped presets resolve to the configs of c6dd1f4               #
#################################################################################

def _experiments():
    from bench.experiment import load_builtin_experiments

    return load_builtin_experiments()


def _legacy_dlc_pipeline(rec: dict) -> dict:
    """c6dd1f4's flat dlc-pipeline config (recorded in BEFORE) in today's layout: sampling settings in their
    own groups, the encoder / prior training settings as the dlc training configs its stage code derived
    from them (recorded beside it as `effective`)."""
    old, eff = rec["config"], rec["effective"]
    enc, pri, dit = dict(old["encoder"]), dict(old["prior"]), dict(old["dit"])
    for k in ("steps", "batch_size", "lr", "warmup_steps", "head_out_dim", "koleo_weight", "freeze_backbone",
              "n_local_crops"):
        enc.pop(k)
    enc["train"] = eff["sem_train"]
    sampling = {new: pri.pop(old_k) for old_k, new in (("sampler", "sampler"), ("sample_steps", "steps"),
                                                      ("eta", "eta"), ("t0", "t0"), ("t1", "t1"),
                                                      ("sample_batch_size", "batch_size"))}
    for k in ("steps", "batch_size", "lr", "warmup", "ema"):
        pri.pop(k)
    pri["train"] = eff["sedd_train_seed0"]
    dit_sampling = {new: dit.pop(old_k) for old_k, new in (("sampler", "sampler"), ("sample_steps", "steps"),
                                                          ("cfg_scale", "cfg_scale"),
                                                          ("guided_channels", "guided_channels"),
                                                          ("sample_batch_size", "batch_size"))}
    dit["ckpt_every"] = 0                         # c6dd1f4 kept only the final weights
    return {"data": old["data"], "encoder": enc, "prior": pri, "prior_sampling": sampling, "dit": dit,
            "dit_sampling": dit_sampling, "eval": old["eval"]}


def _effective_now(name: str, cfg) -> dict:
    d = to_dict(cfg)
    if name == "dlc-pipeline":   # what the SEDD stage trains with: the run's seed, warmup capped at steps
        t = d["prior"]["train"]
        d["prior"]["train"] = {**t, "seed": 0, "warmup": min(t["warmup"], t["steps"])}
    return d


# Settings changed on purpose since c6dd1f4 (every other setting must resolve as it did then; fields added
# since take their dataclass defaults unless listed here). Issue 10: the laptop DiT is trained with flow
# matching (the ε-loss ignores the code at this budget), every factor is probed, FD gets bootstrap intervals.
# Issue 11: the DiTs keep their EMA weights along training (fd-vs-steps reads them).
_FLOW = {"dit.objective": "x0", "dit.t_mean": 0.5, "dit.t_uniform": 0.3, "dit.dlc_pool": "sum",
         "dit_sampling.sampler": "euler", "eval.probe_factors": ["shape", "colour", "size", "x", "y", "background"]}
_GROUPS_ADDED = ("representation", "rdm", "rdm_sampling")     # for the rcg / embedding variants
CHANGED_SINCE = {
    "dlc-pipeline/laptop": {**_FLOW, "dit.steps": 2000, "dit.warmup": 100, "dit.monitor_every": 500,
                            "dit.monitor_n": 256, "dit.ckpt_every": 500, "eval.n_samples": 500, "eval.bootstrap": 100,
                            "eval.probe_n": 2000},
    "dlc-pipeline/smoke": {**_FLOW, "dit.warmup": 5, "dit.monitor_every": 15, "dit.monitor_n": 32, "dit.ckpt_every": 15,
                           "eval.bootstrap": 20},
}


def _with_changes(key: str, expected: dict) -> dict:
    """`expected` plus the fields added since (at their dataclass defaults) and the deliberate changes of
    CHANGED_SINCE."""
    from dataclasses import MISSING, fields

    from bench.experiments.dlc_pipeline import DLCPipelineConfig, EvalConfig
    from bench.stages.dit import DiTConfig

    out = {g: dict(v) if isinstance(v, dict) else v for g, v in expected.items()}
    for group, cls in ((g, type(getattr(DLCPipelineConfig(), g))) for g in _GROUPS_ADDED):
        out.setdefault(group, to_dict(cls()))      # the baselines' stage groups, added since, at their defaults
    for group, cls in (("dit", DiTConfig), ("eval", EvalConfig)):
        for f in fields(cls):
            if f.name not in out[group]:
                v = f.default if f.default_factory is MISSING else f.default_factory()
                out[group][f.name] = list(v) if isinstance(v, tuple) else v
    out.setdefault("vary", list(DLCPipelineConfig().vary))   # top-level field added since (every seed retrains all)
    for path, v in CHANGED_SINCE.get(key, {}).items():
        group, name = path.split(".")
        out[group][name] = v
    return out


@pytest.mark.parametrize("key", sorted(json.loads(BEFORE.read_text())))
def test_shipped_presets_resolve_as_at_c6dd1f4(key):
    """Rewriting the presets with `include:` (and moving the pipeline to shared stage configs) changed no
    setting: every preset resolves to what it resolved to at c6dd1f4, recorded in tests/data, except the
    deliberate changes listed in CHANGED_SINCE."""
    rec = json.loads(BEFORE.read_text())[key]
    name, preset = key.split("/")
    exp = _experiments().get(name)
    cfg, seeds = load_config(exp.config_cls, name, preset, [])
    expected = _legacy_dlc_pipeline(rec) if name == "dlc-pipeline" else rec["config"]
    if name == "dlc-pipeline":
        expected = _with_changes(key, expected)
    assert _effective_now(name, cfg) == expected
    assert list(seeds) == rec["seeds"]


def test_every_shipped_preset_is_recorded():
    """Every preset of the experiments that existed at c6dd1f4 is in its record (experiments added since, e.g.
    eta-sweep, are checked by their own tests)."""
    recorded = set(json.loads(BEFORE.read_text()))
    names = {k.split("/")[0] for k in recorded}
    have = {f"{name}/{p}" for name, exp in _experiments().items() if name in names for p in exp.presets()}
    assert have == recorded


def test_pipeline_presets_include_the_base_and_state_only_their_deltas():
    d = configs_dir() / "dlc-pipeline"
    assert configs_dir() == ROOT / "bench" / "configs" or os.environ.get("DLC_BENCH_CONFIGS")
    for p in ("smoke", "laptop", "paper"):
        import yaml

        raw = yaml.safe_load((d / f"{p}.yaml").read_text())
        assert raw["include"] == "_base"
        assert "seeds" not in raw and "sampler" not in raw.get("prior_sampling", {})
    assert "_base" not in available_presets("dlc-pipeline")


#################################################################################
#                                 include:                                      #
#################################################################################

@dataclass(frozen=True)
class Cfg(BaseCfg):   # test_config's Cfg, plus a __post_init__ check
    def __post_init__(self):
        if self.name == "bad":
            raise ValueError("name must not be 'bad'")


@pytest.fixture
def presets(tmp_path, monkeypatch):
    root = tmp_path / "configs"
    monkeypatch.setenv("DLC_BENCH_CONFIGS", str(root))

    def write(rel: str, text: str) -> Path:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p
    return write


def test_include_bare_name_deep_merges_and_lists_replace(presets):
    presets("exp/_base.yaml", "seeds: [0, 1]\nhidden: 16\nn_modes: [1, 2, 3]\noptim: {lr: 0.5, betas: [0.1, 0.2]}\n")
    presets("exp/laptop.yaml", "include: _base\nn_modes: [7]\noptim: {lr: 0.25}\n")
    cfg, seeds = load_config(Cfg, "exp", "laptop")
    assert cfg.hidden == 16 and cfg.n_modes == (7,) and seeds == (0, 1)
    assert cfg.optim == Optim(lr=0.25, betas=(0.1, 0.2))          # nested groups merge key by key
    assert available_presets("exp") == ["laptop"]                 # '_*' files are include-only bases


def test_include_list_order_other_experiment_and_relative_path(presets, tmp_path):
    presets("other/paper.yaml", "hidden: 8\nname: other\n")
    presets("exp/a.yaml", "hidden: 1\nkind: b\n")
    presets("exp/extra/more.yaml", "limit: 5\nhidden: 2\n")
    presets("exp/mix.yaml", "include: [other/paper, a, extra/more.yaml]\nuse_ema: false\n")
    cfg, _ = load_config(Cfg, "exp", "mix")
    assert (cfg.hidden, cfg.name, cfg.kind, cfg.limit, cfg.use_ema) == (2, "other", "b", 5, False)  # later wins
    assert read_preset("exp", "mix") == {"hidden": 2, "name": "other", "kind": "b", "limit": 5, "use_ema": False}


def test_bare_names_in_an_included_preset_of_another_experiment_are_its_own(presets):
    presets("other/_base.yaml", "hidden: 3\n")
    presets("other/paper.yaml", "include: _base\nname: p\n")
    presets("exp/_base.yaml", "hidden: 99\n")
    presets("exp/x.yaml", "include: other/paper\n")
    assert load_config(Cfg, "exp", "x")[0].hidden == 3


def test_merge_rules():
    assert merge({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}, "e": 2}) == \
        {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert merge({"a": {"b": 1}}, {"a": None}) == {"a": None}


@pytest.mark.parametrize("files, preset, fragment", [
    ({"exp/a.yaml": "include: lapop\n", "exp/laptop.yaml": "hidden: 1\n"}, "a",
     r"include 'lapop': experiment 'exp' has no preset 'lapop'. Did you mean 'laptop'\?"),
    ({"exp/a.yaml": "include: exq/laptop\n"}, "a", r"experiment 'exq' has no presets. Did you mean 'exp'\?"),
    ({"exp/a.yaml": "include: missing.yaml\n"}, "a", r"include 'missing.yaml': file .*missing.yaml not found"),
    ({"exp/a.yaml": "include: [3]\n"}, "a", r"include entries must be preset names or .yaml paths"),
    ({"exp/a.yaml": "include: {x: 1}\n"}, "a", r"include must be a name, a path or a list"),
    ({"exp/a.yaml": "include: b\n", "exp/b.yaml": "include: [c]\n", "exp/c.yaml": "include: a\n"}, "a",
     r"include cycle: exp/a.yaml → exp/b.yaml → exp/c.yaml → exp/a.yaml \(remove one"),
    ({"exp/a.yaml": "include: a\n"}, "a", r"include cycle: exp/a.yaml → exp/a.yaml"),
    ({"exp/a.yaml": "include: _b\n", "exp/_b.yaml": "hiden: 1\n"}, "a", r"unknown config key 'hiden'. Did you"),
    ({"exp/a.yaml": "include: _b\n", "exp/_b.yaml": "[1, 2]\n"}, "a", r"must hold a mapping"),
    ({"exp/_b.yaml": "hidden: 1\n"}, "_b", r"include-only base, not a preset"),
    ({"exp/a.yaml": "hidden: 1\n"}, "../exp/a", r"preset '../exp/a' is not a name: .* \(use --config FILE.yaml"),
])
def test_include_errors_are_one_line_user_errors(presets, files, preset, fragment):
    for rel, text in files.items():
        presets(rel, text)
    with pytest.raises(UserError, match=fragment) as e:
        load_config(Cfg, "exp", preset)
    assert "\n" not in str(e.value)


def test_diamond_includes_are_not_cycles(presets):
    presets("exp/_root.yaml", "hidden: 5\n")
    presets("exp/_l.yaml", "include: _root\nlimit: 1\n")
    presets("exp/_r.yaml", "include: _root\nkind: b\n")
    presets("exp/top.yaml", "include: [_l, _r]\n")
    cfg, _ = load_config(Cfg, "exp", "top")
    assert (cfg.hidden, cfg.limit, cfg.kind) == (5, 1, "b")


#################################################################################
#                                   Sweeps                                      #
#################################################################################

def test_preset_sweep_cartesian_product_typed_values(presets):
    presets("exp/s.yaml", "hidden: 8\nsweep:\n  optim.lr: [0, 0.1]\n  kind: [a, b]\n  n_modes: [[9], [9, 25]]\n")
    loaded = resolve_config(Cfg, "exp", "s", [])
    assert isinstance(loaded, LoadedConfig) and loaded.preset == "s"
    assert loaded.sweep == (("optim.lr", (0.0, 0.1)), ("kind", ("a", "b")), ("n_modes", ((9,), (9, 25))))
    points = expand_sweep(loaded.config, loaded.sweep)
    assert len(points) == 8
    assert points[0][0] == {"optim.lr": 0.0, "kind": "a", "n_modes": (9,)}       # first axis varies slowest
    assert points[-1][0] == {"optim.lr": 0.1, "kind": "b", "n_modes": (9, 25)}
    assert [lb["optim.lr"] for lb, _ in points] == [0.0] * 4 + [0.1] * 4
    for labels, cfg in points:
        assert type(cfg.optim.lr) is float and cfg.optim.lr == labels["optim.lr"]
        assert cfg.kind == labels["kind"] and cfg.n_modes == labels["n_modes"] and cfg.hidden == 8
    assert loaded.config.optim.lr == 1e-3                                        # the base is untouched


def test_nested_sweep_mapping_and_cli_sweeps_replace_a_preset_axis(presets):
    presets("exp/s.yaml", "sweep:\n  optim: {lr: [1, 2]}\n  hidden: [4, 8]\n")
    loaded = resolve_config(Cfg, "exp", "s", ["name=y"], sweeps=["hidden=16", "limit=none,3"])
    assert loaded.sweep == (("optim.lr", (1.0, 2.0)), ("hidden", (16,)), ("limit", (None, 3)))
    assert all(c.name == "y" for _, c in expand_sweep(loaded.config, loaded.sweep))


def test_sweep_can_be_dropped_by_an_including_file(presets):
    presets("exp/_s.yaml", "sweep: {hidden: [1, 2]}\n")
    presets("exp/one.yaml", "include: _s\nsweep: null\n")
    assert resolve_config(Cfg, "exp", "one").sweep == ()


def test_empty_sweep_is_the_config_itself():
    cfg = Cfg()
    assert expand_sweep(cfg, ()) == [({}, cfg)]
    assert expand_sweep(cfg, {}) == [({}, cfg)]
    assert expand_sweep(cfg, None) == [({}, cfg)]


def test_expand_sweep_accepts_a_mapping_of_raw_values():
    points = expand_sweep(Cfg(), {"hidden": ["1", "2"], "use_ema": ["false"]})
    assert [(lb, c.hidden, c.use_ema) for lb, c in points] == [({"hidden": 1, "use_ema": False}, 1, False),
                                                              ({"hidden": 2, "use_ema": False}, 2, False)]


@pytest.mark.parametrize("sweep, fragment", [
    ({"hiden": [1, 2]}, r"unknown config key 'hiden'. Did you mean 'hidden'\?"),
    ({"optim.lrr": [1]}, r"Did you mean 'optim.lr'"),
    ({"hidden": ["x"]}, r"config key 'hidden': expected an integer, got 'x' \(give hidden values of type int\)"),
    ({"kind": ["c"]}, r"'c' is not one of"),
    ({"hidden": 3}, r"config key 'hidden' needs a list of values"),
    ({"hidden": "1,2"}, r"needs a list of values"),
    ({"hidden": []}, r"config key 'hidden' has no values"),
    ({"hidden": [1, 1]}, r"repeats the value 1"),
    ({"optim": [{"lr": 1}]}, r"group of settings and cannot be swept .*optim.lr"),
    ({"seeds": [[0], [1]]}, r"seeds cannot be swept"),
    ({"hidden": [4, -1]}, r"invalid config at sweep point hidden=-1: hidden must be positive \(change or drop"),
    ({"name": ["ok", "bad"]}, r"invalid config at sweep point name=bad: name must not be 'bad'"),
])
def test_bad_sweeps_are_user_errors(sweep, fragment):
    with pytest.raises(UserError, match=fragment) as e:
        expand_sweep(Cfg(), sweep)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, fragment", [
    ("sweep: [1, 2]\n", r"sweep must map config keys to lists of values"),
    ("sweep: {hidden: [1, 2]}\nhidden: 5\n", None),
])
def test_sweep_key_in_files(presets, text, fragment):
    presets("exp/s.yaml", text)
    if fragment is None:
        assert resolve_config(Cfg, "exp", "s").config.hidden == 5
    else:
        with pytest.raises(UserError, match=fragment):
            resolve_config(Cfg, "exp", "s")


def test_cli_sweep_parsing_and_conflicts(presets):
    assert split_values("0,0.01,[a,b],(1,2)") == ["0", "0.01", "[a,b]", "(1,2)"]
    assert parse_sweep_args(["a=1,2", "b=x", "a=3"]) == [("b", ["x"]), ("a", ["3"])]
    for bad in ("hidden", "hidden=", "=1,2"):
        with pytest.raises(UserError, match="malformed --sweep"):
            parse_sweep_args([bad])
    presets("exp/s.yaml", "hidden: 2\n")
    with pytest.raises(UserError, match=r"'hidden' is both set with --set and swept"):
        resolve_config(Cfg, "exp", "s", ["hidden=3"], sweeps=["hidden=4,5"])
    with pytest.raises(UserError, match=r"--sweep: config key 'hiden'|unknown config key 'hiden'"):
        resolve_config(Cfg, "exp", "s", sweeps=["hiden=4,5"])


#################################################################################
#                 --config files and one-line validation errors                 #
#################################################################################

def test_config_file_alone_or_over_a_preset(presets, tmp_path):
    presets("exp/laptop.yaml", "seeds: [5]\nhidden: 16\noptim: {lr: 0.5}\n")
    mine = tmp_path / "elsewhere" / "my-eta.yaml"
    mine.parent.mkdir()
    mine.write_text("include: exp/laptop\noptim: {betas: [0.5, 0.6]}\n")
    loaded = resolve_config(Cfg, "exp", None, config_file=mine)
    assert loaded.preset == "my-eta" and loaded.seeds == (5,)
    assert loaded.config.optim == Optim(lr=0.5, betas=(0.5, 0.6)) and loaded.config.hidden == 16
    over = tmp_path / "over.yaml"
    over.write_text("hidden: 3\n")
    loaded = resolve_config(Cfg, "exp", "laptop", ["limit=2"], config_file=over)
    assert (loaded.config.hidden, loaded.config.optim.lr, loaded.config.limit, loaded.preset) == (3, 0.5, 2, "over")
    with pytest.raises(UserError, match=r"config file .*nope.yaml not found \(pass an existing YAML file"):
        resolve_config(Cfg, "exp", None, config_file=tmp_path / "nope.yaml")
    with pytest.raises(UserError, match=r"no config given"):
        resolve_config(Cfg, "exp", None)


def test_post_init_value_errors_become_user_errors(presets):
    presets("exp/bad.yaml", "name: bad\n")
    with pytest.raises(UserError, match=r"invalid config: name must not be 'bad' \(change the preset"):
        load_config(Cfg, "exp", "bad")
    presets("exp/ok.yaml", "name: fine\n")
    with pytest.raises(UserError, match=r"invalid config: name must not be 'bad' \(change the --set value name=bad\)"):
        load_config(Cfg, "exp", "ok", ["name=bad"])
    # several --set are applied at once: no intermediate state is validated
    cfg, _ = load_config(Cfg, "exp", "ok", ["hidden=-1", "hidden=4"])
    assert cfg.hidden == 4


def _run_cli(argv, capsys):
    capsys.readouterr()
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("extra, fragment", [
    (["--set", "eval.variants=[dlc,bogus]"], r"^error: invalid config: unknown variant\(s\) \['bogus'\].* \(change the "
                                             r"--set value eval.variants=\[dlc,bogus\]\)$"),
    (["--set", "prior.model=tinyy"], r"^error: invalid config: .*Did you mean 'tiny'\?.*\(change the --set"),
    (["--sweep", "eval.variants=[dlc],[dlc,bogus]"],
     r"^error: invalid config at sweep point eval.variants=\[dlc,bogus\]"),
    (["--sweep", "prior_sampling.etaa=0,1"], r"^error: unknown config key 'prior_sampling.etaa'. Did you mean "
                                             r"'prior_sampling.eta'"),
    (["--sweep", "prior_sampling.eta=0,x"], r"^error: config key 'prior_sampling.eta': expected a number, got 'x' \("),
    (["--sweep", "prior_sampling.eta"], r"^error: malformed --sweep"),
    (["--set", "prior_sampling.eta=0.1", "--sweep", "prior_sampling.eta=0,1"], r"both set with --set and swept"),
])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(extra, fragment, capsys, tmp_path):
    out = tmp_path / "out"
    rc, stdout, err = _run_cli(["run", "dlc-pipeline", "--preset", "smoke", "--out", str(out), "--cache-dir",
                                str(tmp_path / "c"), "--no-store", *extra], capsys)
    import re

    assert rc == 2 and len(err.strip().splitlines()) == 1 and re.search(fragment, err.strip()), err
    assert "Traceback" not in err and not out.exists() and not (tmp_path / "c").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["run", "toy-mixture"], r"^error: dlc-bench run needs a config \(pass --preset NAME"),
    (["run", "toy-mixture", "--config", "/no/such/file.yaml"], r"^error: config file /no/such/file.yaml not found"),
    (["run", "toy-mixture", "--preset", "_base"], r"^error: experiment 'toy-mixture' has no preset '_base'"),
])
def test_cli_config_errors(argv, fragment, capsys, tmp_path):
    import re

    rc, _, err = _run_cli(argv + ["--out", str(tmp_path / "o"), "--no-store"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and re.search(fragment, err.strip()), err
    assert not (tmp_path / "o").exists()


def test_cli_unknown_include_in_a_config_file(capsys, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("include: dlc-pipeline/laptp\n")
    rc, _, err = _run_cli(["run", "dlc-pipeline", "--config", str(mine), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "has no preset 'laptp'. Did you mean 'laptop'?" in err and len(err.strip().splitlines()) == 1
    mine.write_text("include: mine.yaml\n")
    rc, _, err = _run_cli(["run", "dlc-pipeline", "--config", str(mine), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "include cycle:" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("preset", ["../evil", "../../../../tmp/x", "x.y", "Laptop", "..", ".", "", "a\\b",
                                    "exp/laptop", "laptop ", "laptop\n", "{ABS}"])
def test_preset_names_that_are_paths_are_refused_and_nothing_is_read(preset, presets, tmp_path, monkeypatch):
    """`--preset` is a name ([a-z0-9_-]+) looked up only in the presets folder; every file planted where a path
    would lead (beside the folder, above it, a dotted or capitalised name inside it) is left unread."""
    from bench import presets as mod

    presets("exp/laptop.yaml", "hidden: 1\n")
    presets("exp/x.y.yaml", "hidden: 2\n")
    presets("exp/Laptop.yaml", "hidden: 3\n")
    (tmp_path / "evil.yaml").write_text("hidden: 4\n")
    preset = preset.replace("{ABS}", str(tmp_path / "evil"))
    read = []
    monkeypatch.setattr(mod, "_load_yaml", lambda path: read.append(path) or {})
    with pytest.raises(UserError) as e:
        load_config(Cfg, "exp", preset)
    msg = str(e.value)
    assert msg == f"preset {preset!r} is not a name: use only a-z, 0-9, '_' and '-' (use --config FILE.yaml for " \
                  "your own file)" and "\n" not in msg
    assert read == []


@pytest.mark.parametrize("ref, bad", [("../evil", "'..'"), ("Exp/laptop", "'Exp'"), ("exp/x.y", "'x.y'"),
                                      ("exp/../evil", "'../evil'"), ("/evil", "''"), ("exp/", "''")])
def test_include_names_are_names_too(ref, bad, presets, tmp_path):
    """`include: E/P` names a preset of experiment E: both parts are names; only a ref ending in .yaml is a path."""
    presets("exp/laptop.yaml", "hidden: 1\n")
    presets("exp/x.y.yaml", "hidden: 2\n")
    presets("evil.yaml", "hidden: 3\n")             # what `include: ../evil` reached: configs/../evil.yaml
    (tmp_path / "evil.yaml").write_text("hidden: 4\n")
    presets("exp/a.yaml", f"include: {ref!r}\n")
    with pytest.raises(UserError, match=rf"^in exp/a.yaml: include {re.escape(repr(ref))}: (experiment|preset) "
                                        rf"{re.escape(bad)} is not a name: .* \(include a path ending in .yaml, "
                                        r"relative to this file\)$"):
        load_config(Cfg, "exp", "a")


def test_valid_names_and_relative_yaml_includes_still_resolve(presets, tmp_path):
    presets("my-exp_2/_base.yaml", "hidden: 5\n")
    presets("my-exp_2/v2_big-1.yaml", "include: [_base, ../shared/more.yaml]\nlimit: 3\n")
    presets("shared/more.yaml", "name: m\n")
    presets("exp/top.yaml", "include: my-exp_2/v2_big-1\n")
    assert read_preset("my-exp_2", "v2_big-1") == {"hidden": 5, "name": "m", "limit": 3}
    cfg, _ = load_config(Cfg, "exp", "top")
    assert (cfg.hidden, cfg.name, cfg.limit) == (5, "m", 3)


def test_cli_preset_path_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, monkeypatch):
    """The issue's reproduction: no YAML outside the presets folder is loaded, no results/ folder, no store."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("DLC_BENCH_STORE", str(tmp_path / "store" / "runs.sqlite"))
    (tmp_path / "x.yaml").write_text("n_train: 10\n")
    preset = os.path.relpath(tmp_path / "x", work)
    rc, out, err = _run_cli(["run", "toy-mixture", "--preset", preset], capsys)
    assert rc == 2 and out == "" and err == f"error: preset {preset!r} is not a name: use only a-z, 0-9, '_' and " \
                                            "'-' (use --config FILE.yaml for your own file)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work", "x.yaml"] and not any(work.iterdir())


class _Calls:
    def __init__(self):
        self.calls = []

    def __call__(self, exp, config, *, preset, seeds, out_dir, sweep=None, **kw):
        self.calls.append({"exp": exp.name, "config": config, "preset": preset, "seeds": seeds, "sweep": sweep,
                           "has_sweep_kw": sweep is not None})
        from types import SimpleNamespace

        return SimpleNamespace(run_id="fake-run")


def test_cmd_run_hands_the_sweep_to_execute_only_when_there_is_one(monkeypatch, tmp_path, capsys):
    import bench.run

    fake = _Calls()
    monkeypatch.setattr(bench.run, "execute", fake)
    mine = tmp_path / "eta-sweep.yaml"
    mine.write_text("include: dlc-pipeline/smoke\nsweep: {prior_sampling.eta: [0, 0.001, 0.01, 0.1, 0.5]}\n")
    base = ["--out", str(tmp_path / "o"), "--no-store", "--quiet"]
    assert cli.main(["run", "dlc-pipeline", "--config", str(mine), "--sweep", "dit_sampling.steps=4,8", *base]) == 0
    call = fake.calls[-1]
    assert call["preset"] == "eta-sweep" and call["seeds"] == (0,)
    assert [lb for lb, _ in call["sweep"]] == [{"prior_sampling.eta": e, "dit_sampling.steps": s}
                                              for e in (0.0, 0.001, 0.01, 0.1, 0.5) for s in (4, 8)]
    assert all(c.prior_sampling.eta == lb["prior_sampling.eta"] and c.dit_sampling.steps == lb["dit_sampling.steps"]
               for lb, c in call["sweep"])
    assert cli.main(["run", "dlc-pipeline", "--preset", "smoke", "--seeds", "1,2", *base]) == 0
    call = fake.calls[-1]
    assert call["sweep"] is None and call["preset"] == "smoke" and call["seeds"] == (1, 2)


def test_a_real_sweep_run_through_execute(presets, tmp_path, capsys):
    """A tiny registered experiment swept end to end through bench.run.execute (when it takes `sweep`)."""
    import inspect

    import bench.run
    from bench.experiment import EXPERIMENTS, experiment

    if "sweep" not in inspect.signature(bench.run.execute).parameters:
        pytest.skip("bench.run.execute has no sweep keyword yet")
    seen = []

    def fn(ctx):
        seen.append(ctx.config)
        for seed in ctx.seeds:
            ctx.add_metric("score", ctx.config.hidden * ctx.config.optim.lr, higher_is_better=True, seed=seed, n=1)

    presets("unit-sweep/smoke.yaml", "seeds: [0]\nhidden: 2\nsweep: {optim.lr: [1, 2]}\n")
    EXPERIMENTS.unregister("unit-sweep")
    experiment("unit-sweep", description="unit test", config=Cfg)(fn)
    try:
        out = tmp_path / "o"
        rc = cli.main(["run", "unit-sweep", "--preset", "smoke", "--sweep", "hidden=3,4", "--out", str(out),
                       "--cache-dir", str(tmp_path / "c"), "--no-store", "--quiet"])
    finally:
        EXPERIMENTS.unregister("unit-sweep")
    assert rc == 0, capsys.readouterr().err
    assert [(c.optim.lr, c.hidden) for c in seen] == [(1.0, 3), (1.0, 4), (2.0, 3), (2.0, 4)]
    res = json.loads((out / "results.json").read_text())
    assert res["preset"] == "smoke"


#################################################################################
#                         The presets ship in the wheel                         #
#################################################################################

def test_bench_config_still_exports_the_preset_api():
    import bench.config
    import bench.presets

    for name in ("load_config", "resolve_config", "LoadedConfig", "configs_dir", "available_presets",
                 "read_preset", "preset_path", "RESERVED_PRESET_KEYS"):
        assert getattr(bench.config, name) is getattr(bench.presets, name)
    with pytest.raises(AttributeError):
        bench.config.no_such_name  # noqa: B018


def test_configs_dir_is_in_the_package_and_env_overrides(monkeypatch, tmp_path):
    monkeypatch.delenv("DLC_BENCH_CONFIGS", raising=False)
    import bench

    assert configs_dir() == Path(bench.__file__).resolve().parent / "configs"
    assert (configs_dir() / "toy-mixture" / "smoke.yaml").is_file()
    assert not (ROOT / "configs").exists()
    monkeypatch.setenv("DLC_BENCH_CONFIGS", str(tmp_path))
    assert configs_dir() == tmp_path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of this working tree (so the build writes nothing into the checkout)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for pkg in ("dlc", "bench", "toy", "reports"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(dist), str(src)], capture_output=True, text=True, timeout=600, cwd=src)
    assert p.returncode == 0, p.stdout + p.stderr
    (whl,) = dist.glob("dlc_bench-*.whl")
    return whl


def test_wheel_holds_every_preset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bench" / "configs").rglob("*.yaml"))
    assert shipped and all(s in names for s in shipped), sorted(set(shipped) - names)
    assert "bench/configs/dlc-pipeline/_base.yaml" in names
    # every package of the checkout is in the wheel
    pkgs = {str(p.parent.relative_to(ROOT)) for d in ("dlc", "bench", "toy", "reports")
            for p in (ROOT / d).rglob("__init__.py")}
    assert all(f"{p}/__init__.py" in names for p in pkgs), sorted(p for p in pkgs if f"{p}/__init__.py" not in names)


def test_installed_wheel_lists_and_runs_presets(wheel, tmp_path):
    target = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    env = {k: v for k, v in os.environ.items() if k != "DLC_BENCH_CONFIGS"}
    env.update(PYTHONPATH=str(target), DLC_BENCH_STORE=str(tmp_path / "store.sqlite"))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    p = subprocess.run([sys.executable, "-m", "bench.cli", "list"], capture_output=True, text=True, cwd=cwd,
                       env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    (row,) = [ln for ln in p.stdout.splitlines() if ln.startswith("toy-mixture")]
    assert "laptop, paper, smoke" in row
    (row,) = [ln for ln in p.stdout.splitlines() if ln.startswith("dlc-pipeline")]
    assert "laptop, paper, smoke" in row and "_base" not in row
    code = "import bench.config as c, sys; print(c.configs_dir())"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert Path(p.stdout.strip()).is_relative_to(target), p.stdout + p.stderr
    # a user file including a built-in preset, resolved from the installed package
    (cwd / "mine.yaml").write_text("include: dlc-pipeline/laptop\nsweep: {prior_sampling.eta: [0, 0.1]}\n")
    code = ("from bench.config import resolve_config, expand_sweep\nfrom bench.experiment import get_experiment\n"
            "e = get_experiment('dlc-pipeline')\nl = resolve_config(e.config_cls, 'dlc-pipeline', None, "
            "config_file='mine.yaml')\nprint(l.preset, len(expand_sweep(l.config, l.sweep)), l.config.dit.steps)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert p.stdout.split() == ["mine", "4", "2000"], p.stdout + p.stderr   # its eta axis × the preset's CFG axis


@pytest.mark.slow
def test_installed_wheel_runs_the_toy_smoke(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "DLC_BENCH_CONFIGS"}
    env.update(PYTHONPATH=str(target))
    p = subprocess.run([sys.executable, "-m", "bench.cli", "run", "toy-mixture", "--preset", "smoke", "--out",
                        str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "--no-store", "--quiet"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((tmp_path / "o" / "results.json").read_text())["preset"] == "smoke"
