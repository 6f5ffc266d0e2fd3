"""Every config value is checked when the config is read, and what depends on the machine (device, dtype,
data directories, memory) when a run starts: one line `error: <key>=<value> <problem> (<fix>)`, exit 2,
nothing written."""
from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from dataclasses import dataclass, field

import pytest

from bench.config import field_type, load_config, override, preflight, valid_keys
from bench.errors import UserError
from bench.experiment import get_experiment, load_builtin_experiments
from dlc import validate as v
from dlc.validate import ConfigError


@pytest.fixture(scope="module")
def smoke():
    return load_config(get_experiment("dlc-pipeline").config_cls, "dlc-pipeline", "smoke", [])[0]


def _error(config, key: str, value: str) -> str:
    with pytest.raises(UserError) as e:
        override(config, [f"{key}={value}"])
    return str(e.value)


# ----------------------------------------------------------------------------- the helpers
@pytest.mark.parametrize("call, text", [
    (lambda: v.positive("hidden", -5), "hidden=-5 must be ≥ 1 (set a positive integer)"),
    (lambda: v.positive("hidden", 0), "hidden=0 must be ≥ 1"),
    (lambda: v.positive("lr", -1.0), "lr=-1.0 must be > 0 (set a finite number greater than 0)"),
    (lambda: v.positive("lr", math.nan), "lr=nan is not a finite number (set a finite number greater than 0)"),
    (lambda: v.positive("lr", "x"), "lr='x' is not a number"),
    (lambda: v.finite("t", math.inf), "t=inf is not a finite number"),
    (lambda: v.non_negative("variance", -1.0), "variance=-1.0 must be ≥ 0"),
    (lambda: v.probability("p", 1.5), "p=1.5 must be in [0, 1] (set a value in [0, 1])"),
    (lambda: v.in_range("d", 1.0, 0, 1, hi_open=True), "d=1.0 must be in [0, 1)"),
    (lambda: v.interval("s", (0.8, 0.5), 0, 1), "s=[0.8,0.5] is not an interval"),
    (lambda: v.interval("s", (0.5,), 0, 1), "s=[0.5] must be a pair of numbers"),
    (lambda: v.nonempty("variants", ()), "variants=[] is empty"),
    (lambda: v.choice("sampler", "ddmp", ("ddpm", "euler")),
     "sampler='ddmp' is not a valid choice. Did you mean 'ddpm'? (choose one of ddpm, euler)"),
    (lambda: v.choice("sampler", "x", ("ddpm", "ddim")), "sampler='x' is not a valid choice (choose one of"),
    (lambda: v.within_memory({"a": 3 * 2**30, "b": 2**30}, "lower n", available=2**30),
     "memory estimate=4.0 GiB exceeds this machine's 1.0 GiB (largest: a 3.0 GiB, b 1.0 GiB) (lower n)"),
])
def test_helpers_raise_one_line_config_errors(call, text):
    with pytest.raises(ConfigError) as e:
        call()
    assert text in str(e.value) and "\n" not in str(e.value) and isinstance(e.value, ValueError)


def test_helpers_accept_good_values_and_check_skips_unset_optionals():
    v.positive("n", 1), v.positive("lr", 1e-9), v.non_negative("w", 0), v.probability("p", 1.0)
    v.interval("s", (0.2, 0.2), 0, 1), v.choice("c", "a", "ab"), v.within_memory({"a": 1}, "", available=10)

    @dataclass(frozen=True)
    class C:
        size: typing.Optional[int] = None
        lr: float = 0.1

    v.check(C(), positive=("size", "lr"))
    with pytest.raises(ConfigError, match="size=0"):
        v.check(C(size=0), positive=("size", "lr"))


def test_config_error_names_the_dotted_key_once():
    e = ConfigError("steps", 0, "must be ≥ 1", "set a positive integer")
    assert str(e.at("prior.train.")) == "prior.train.steps=0 must be ≥ 1 (set a positive integer)"
    assert e.at("prior.train.").at("prior.train.") .field == "prior.train.steps" and e.at("") is e


# ----------------------------------------------------------------------------- every field of dlc-pipeline
def _scalar(tp):
    """int / float behind Optional[...] (None for other types)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    tp = args[0] if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType")) else tp
    return tp if tp in (int, float) else None


def _numeric_keys():
    cls = get_experiment("dlc-pipeline").config_cls
    out = []
    for key in valid_keys(cls):
        tp = field_type(cls, key)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if _scalar(tp) is int:
            out.append((key, "-1"))
        elif _scalar(tp) is float:
            out.append((key, "nan"))
        elif origin is tuple and args and args[0] is float:   # pairs and lists of numbers
            out.append((key, "nan,0.5" if len(args) == 2 and args[1] is not Ellipsis else "nan"))
    return out


SEEDS = {"prior.train.seed", "representation.projector.seed"}   # any integer seeds a generator


@pytest.mark.parametrize("key, bad", [kv for kv in _numeric_keys() if kv[0] not in SEEDS])
def test_every_numeric_field_refuses_a_bad_value_naming_its_dotted_key(smoke, key, bad):
    msg = _error(smoke, key, bad)
    assert msg.startswith("invalid config: ") and f"{key}=" in msg and "\n" not in msg, msg


def test_the_numeric_field_walk_sees_every_group(smoke):
    keys = {k for k, _ in _numeric_keys()}
    for k in ("data.n_train", "encoder.L", "encoder.train.lr", "encoder.train.crops.flip_p", "prior.train.lr",
              "prior.train.betas", "prior_sampling.t0", "dit.lr", "dit_sampling.cfg_scale", "eval.n_samples"):
        assert k in keys


@pytest.mark.parametrize("key, bad", [
    ("data.dataset", "shape"), ("data.image_size", "0"), ("data.image_size", "30"), ("data.test_split", ""),
    ("encoder.backbone", "resnet"), ("encoder.V", "1"), ("encoder.tau", "-0.5"), ("encoder.train.batch_size", "1"),
    ("encoder.train.momentum", "1.1"), ("encoder.train.crops.hue", "0.7"),
    ("encoder.train.crops.global_scale", "0.8,0.5"), ("encoder.train.crops.ratio", "0,1"),
    ("encoder.train.crops.blur_p_global", "[]"), ("encoder.train.crops.n_global", "0"),
    ("prior.model", "huge"), ("prior.hidden", "63"), ("prior.train.steps", "0"), ("prior.train.lr", "nan"),
    ("prior.train.betas", "0.9,1"), ("prior.train.sampling_eps", "0"), ("prior.train.ema", "2"),
    ("prior_sampling.sampler", "ancestral"), ("prior_sampling.steps", "0"), ("prior_sampling.eta", "1"),
    ("prior_sampling.t1", "0.1"),
    ("dit.model", "DiT-huge/2"), ("dit.t_dist", "normal"), ("dit.lr", "-1"), ("dit.lr", "inf"), ("dit.ema", "1.5"),
    ("dit.drop_prob", "1"), ("dit.t_std", "0"), ("dit.steps", "0"),
    ("dit_sampling.sampler", "dpm"), ("dit_sampling.steps", "0"), ("dit_sampling.batch_size", "0"),
    ("eval.n_samples", "0"), ("eval.variants", "[]"), ("eval.features", "incepton"), ("eval.resize", "bicubic"),
    ("eval.grid", "0"), ("eval.n_compose", "40"),
])
def test_out_of_range_and_unknown_choices_name_the_key(smoke, key, bad):
    msg = _error(smoke, key, bad)
    assert f"{key}=" in msg and "(" in msg and "\n" not in msg, msg


def test_the_fix_and_the_cli_hint_share_one_parenthesis(smoke):
    msg = _error(smoke, "dit.lr", "nan")
    assert msg == ("invalid config: dit.lr=nan is not a finite number (change the --set value dit.lr=nan; set a "
                   "finite number greater than 0)")


def test_preset_files_and_sweeps_name_the_key_too(tmp_path):
    cls = get_experiment("dlc-pipeline").config_cls
    mine = tmp_path / "mine.yaml"
    mine.write_text("include: dlc-pipeline/smoke\nencoder: {train: {crops: {flip_p: 2}}}\n")
    with pytest.raises(UserError, match=r"^invalid config: encoder\.train\.crops\.flip_p=2\.0 must be in \[0, 1\] "
                                        r"\(change the preset's value or override it with --set; set a value in \[0, 1\]\)"):
        load_config(cls, "dlc-pipeline", None, [], config_file=str(mine))
    from bench.config import expand_sweep

    smoke = load_config(cls, "dlc-pipeline", "smoke", [])[0]
    with pytest.raises(UserError, match=r"at sweep point prior\.train\.lr=nan: prior\.train\.lr=nan is not"):
        expand_sweep(smoke, {"prior.train.lr": [0.001, float("nan")]})


@pytest.mark.parametrize("make", [
    lambda: __import__("dlc.dit.models", fromlist=["x"]).DiTConfig(hidden_size=0),
    lambda: __import__("dlc.dit.models", fromlist=["x"]).DiTConfig(dlc_pool="max"),
    lambda: __import__("dlc.sedd.model", fromlist=["x"]).SEDDConfig(sigma_max=1e-5),
    lambda: __import__("dlc.sedd.model", fromlist=["x"]).SEDDConfig(noise_eps=0.0),
    lambda: __import__("dlc.encoder.backbones", fromlist=["x"]).ViTConfig(drop_path=1.0),
    lambda: __import__("dlc.encoder.backbones", fromlist=["x"]).ViTConfig(patch_size=0),
    lambda: __import__("dlc.baselines.rdm", fromlist=["x"]).RDMConfig(depth=0),
    lambda: __import__("dlc.baselines.rcg", fromlist=["x"]).RCGProjectorConfig(out_dim=0),
    lambda: __import__("dlc.encoder.train", fromlist=["x"]).SEMTrainConfig(clip_grad=0.0),
    lambda: __import__("bench.stages.representation", fromlist=["x"]).RDMStageConfig(lr=math.nan),
    lambda: __import__("bench.stages.representation", fromlist=["x"]).RDMSamplingConfig(eta=-1.0),
    lambda: __import__("bench.stages.representation", fromlist=["x"]).RepresentationConfig(kind="pca"),
])
def test_dlc_configs_check_themselves_when_built_directly(make):
    with pytest.raises(ValueError):
        make()


# ----------------------------------------------------------------------------- shipped presets
def _presets():
    return [(name, p) for name, exp in load_builtin_experiments().items() for p in exp.presets()]


@pytest.mark.parametrize("name, preset", _presets())
def test_every_shipped_preset_builds_and_expands_its_sweep(name, preset):
    from bench.config import expand_sweep

    exp = get_experiment(name)
    cfg, loaded = load_config(exp.config_cls, name, preset, [])
    points = expand_sweep(cfg, getattr(loaded, "sweep", None) or None)
    assert points and all(dataclasses.is_dataclass(c) for _, c in points)


@pytest.mark.parametrize("preset", ["smoke", "laptop"])
def test_small_presets_pass_the_preflight_here(preset):
    exp = get_experiment("dlc-pipeline")
    cfg, _ = load_config(exp.config_cls, "dlc-pipeline", preset, [])
    assert preflight(cfg, "cpu", "float32") == ("cpu", "float32")
    assert sum(cfg.estimate().values()) < 2**30


def test_paper_preset_needs_a_big_machine_and_says_so():
    exp = get_experiment("dlc-pipeline")
    cfg, _ = load_config(exp.config_cls, "dlc-pipeline", "paper", [])
    need = sum(cfg.estimate().values())
    assert 16 * 2**30 < need < 2**40             # 50k test images at 256 px and their L×V soft codes
    cfg.check_resources(available=2**40)         # an 8-GPU node
    with pytest.raises(ConfigError, match=r"memory estimate=\d+\.\d GiB exceeds this machine's 8\.0 GiB"):
        cfg.check_resources(available=8 * 2**30)
    with pytest.raises(UserError, match=r"^data\.data_dir='/data/imagenet' is not a directory on this machine"):
        preflight(cfg, "cpu", "float32")         # the missing data set is named first


# ----------------------------------------------------------------------------- device, dtype, memory
@pytest.mark.parametrize("device, text", [
    ("banana", "--device='banana' is not a device (use --device auto, cpu"),
    ("cuda", "--device='cuda' asks for CUDA, which this machine does not have"),
    ("cuda:1", "--device='cuda:1' asks for CUDA"),
    ("mps", "--device='mps' asks for Apple MPS, which is not available here"),
    ("meta", "--device='meta' is a meta device, which runs do not support"),
])
def test_devices_that_do_not_exist_are_refused(device, text, smoke, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError) as e:
        preflight(smoke, device, "float32")
    assert str(e.value).startswith(text) and "\n" not in str(e.value)


def test_a_cuda_index_past_the_device_count_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert v.check_device("cuda:1") == "cuda:1" and v.check_device("CPU") == "cpu"
    with pytest.raises(ConfigError, match=r"--device='cuda:2' does not exist: this machine has 2 CUDA device\(s\) "
                                          r"\(use cuda:0 … cuda:1\)"):
        v.check_device("cuda:2")


@pytest.mark.parametrize("dtype", ["int8", "float64", "complex64", ""])
def test_unsupported_dtypes_are_refused(dtype, smoke):
    with pytest.raises(UserError, match=r"^--dtype=.* is not a valid choice.*\(choose one of float32, bfloat16\)"):
        preflight(smoke, "cpu", dtype)
    assert v.check_dtype("bf16") == "bfloat16" and v.check_dtype("FP32") == "float32"


def test_absurd_sizes_are_refused_with_the_estimate(smoke):
    big = override(smoke, ["data.n_train=1000000000000"])    # a valid config: the check is the machine's
    with pytest.raises(UserError, match=r"^memory estimate=\d+\.\d (TiB|PiB) exceeds this machine's .* "
                                        r"\(largest: .*images .*\) \(lower data\.n_train"):
        preflight(big, "cpu", "float32")
    point = override(smoke, ["eval.n_samples=48"])
    with pytest.raises(UserError, match="memory estimate"):               # every sweep point is checked
        preflight(smoke, "cpu", "float32", points=[({}, point), ({"data.n_train": 10**12}, big)])


def test_the_mechanism_for_a_flat_config(monkeypatch):
    """What an experiment's own config (e.g. toy-mixture's) adds: checks in __post_init__ and, for what
    depends on the machine, check_resources()."""
    from bench.config import build

    @dataclass(frozen=True)
    class Toy:
        hidden: int = 64
        lr: float = 1e-3
        variance: float = 0.1
        n_eval: int = 1000
        sampler: str = "ddpm"
        extra: dict = field(default_factory=dict)

        def __post_init__(self):
            v.check(self, positive=("hidden", "lr", "variance", "n_eval"))
            v.choice("sampler", self.sampler, ("ddpm", "ddim"))

        def check_resources(self, available=None):
            v.within_memory({"evaluation points": 16 * self.n_eval}, "lower n_eval", available)

    for key, bad, text in [("hidden", "0", "hidden=0 must be ≥ 1"), ("lr", "nan", "lr=nan is not a finite"),
                           ("variance", "-1", "variance=-1.0 must be > 0"), ("sampler", "x", "sampler='x'")]:
        with pytest.raises(UserError, match=f"^invalid config: {text}"):
            override(build(Toy, {}), [f"{key}={bad}"])
    with pytest.raises(UserError, match=r"^memory estimate=14\.6 TiB exceeds .* \(lower n_eval\)"):
        preflight(build(Toy, {"n_eval": 10**12}), "cpu", "float32")


# ----------------------------------------------------------------------------- the command line
@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DLC_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLC_BENCH_STORE", str(tmp_path / "store.sqlite"))
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> str:
        from bench.cli import main

        out = tmp_path / "out"
        code = main(["run", "dlc-pipeline", "--preset", "smoke", *args, "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert not out.exists() and not (tmp_path / "cache").exists() and not (tmp_path / "results").exists()
        return lines[0]
    return run


@pytest.mark.parametrize("args, fragment", [
    (["--set", "dit.lr=nan"], "dit.lr=nan is not a finite number"),
    (["--set", "dit.lr=-1"], "dit.lr=-1.0 must be > 0"),
    (["--set", "prior.train.steps=0"], "prior.train.steps=0 must be ≥ 1"),
    (["--set", "encoder.L=0"], "encoder.L=0 must be ≥ 1"),
    (["--set", "data.n_train=-5"], "data.n_train=-5 must be ≥ 0"),
    (["--set", "prior_sampling.steps=0"], "prior_sampling.steps=0 must be ≥ 1"),
    (["--set", "data.image_size=30"], "data.image_size=30 is not a multiple of vit-tiny's patch size 4"),
    (["--sweep", "dit.lr=0.001,nan"], "at sweep point dit.lr=nan: dit.lr=nan"),
])
def test_cli_config_errors_are_one_line_exit_2_nothing_written(cli, args, fragment):
    assert fragment in cli(*args)


def _cli_runs_the_preflight() -> bool:
    import bench.cli

    return "preflight(" in inspect.getsource(bench.cli)


needs_preflight = pytest.mark.skipif(not _cli_runs_the_preflight(),
                                     reason="bench/cli.py does not call bench.config.preflight yet")


@needs_preflight
@pytest.mark.parametrize("args, fragment", [
    (["--device", "banana"], "error: --device='banana' is not a device"),
    (["--device", "cuda:7"], "error: --device='cuda:7'"),
    (["--dtype", "int8"], "error: --dtype='int8' is not a valid choice"),
    (["--set", "data.n_train=1000000000000"], "error: memory estimate="),
])
def test_cli_machine_checks_are_one_line_exit_2_nothing_written(cli, args, fragment, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if torch.cuda.is_available() else 0)
    assert cli(*args).startswith(fragment)
