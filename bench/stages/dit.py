"""DiT p(x|c) stages: images → DiT inputs (pixels or VAE latents), training (with checkpoints along the way),
and sampling x ~ DiT(c). Training and sampling settings are separate configs, so changing the sampler, its
steps or the CFG scale recomputes only samples and what is measured on them."""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dlc.validate import check as check_fields, choice, in_range

from ..cache import Stage
from .base import gather_block, progress_callback, rank_block


OBJECTIVES = ("eps", "velocity", "x0")
SAMPLERS = {"eps": ("ddpm", "ddim"), "velocity": ("euler", "heun"), "x0": ("euler", "heun")}


@dataclass(frozen=True)
class DiTConfig:
    model: str = "DiT-mini/4"        # dlc.dit.DIT_MODELS
    vae: str = "pixel"               # pixel, or an AutoencoderKL hub id / directory (latent diffusion)
    objective: str = "eps"           # eps: DDPM ε-prediction, learned σ (DiT, the paper); velocity | x0: flow
                                     #   matching (linear interpolant, velocity loss, fixed σ; dlc.dit.flow)
    t_dist: str = "logit-normal"     # flow matching training times: uniform | logit-normal
    t_mean: float = 0.0              #   logit-normal location and scale
    t_std: float = 1.0
    t_uniform: float = 0.0           #   share of the draws from the uniform law (a mixture)
    steps: int = 3000
    batch_size: int = 128
    lr: float = 5e-4
    warmup: int = 0                  # linear learning-rate warm-up steps
    ema: float = 0.999
    grad_clip: float = 1.0           # 0: none
    drop_prob: float = 0.1           # null-condition probability (conditioned DiTs, for CFG)
    dlc_pool: str = "mean"           # DLC conditioner: mean of the L position embeddings (the paper) or sum
    ckpt_every: int = 0              # keep the EMA weights every this many steps (0: only the final ones)
    encode_batch_size: int = 64      # images → latents
    monitor_every: int = 0           # code-swap gap on held-out images every this many steps (0: at the end only)
    monitor_n: int = 128             # held-out images for it (0: none)

    def __post_init__(self):
        from dlc.registry import did_you_mean

        if self.objective not in OBJECTIVES:
            raise ValueError(f"dit.objective={self.objective!r}.{did_you_mean(self.objective, OBJECTIVES)} "
                             f"Choose from {', '.join(OBJECTIVES)}")
        from dlc.dit.models import DLC_POOLS

        if self.dlc_pool not in DLC_POOLS:
            raise ValueError(f"dit.dlc_pool={self.dlc_pool!r}.{did_you_mean(self.dlc_pool, DLC_POOLS)} "
                             f"Choose from {', '.join(DLC_POOLS)}")
        bad = [f"{k}={getattr(self, k)}" for k in ("warmup", "ckpt_every", "monitor_every", "monitor_n")
               if getattr(self, k) < 0]
        if bad:
            raise ValueError(f"dit.{', dit.'.join(bad)}: must be ≥ 0 (0 turns it off)")
        from dlc.dit import DIT_MODELS
        from dlc.dit.flow import T_DISTS

        choice("model", self.model, DIT_MODELS)
        choice("t_dist", self.t_dist, T_DISTS)
        check_fields(self, finite=("t_mean",), positive=("t_std", "steps", "batch_size", "lr", "encode_batch_size"),
                     non_negative=("grad_clip",), probability=("t_uniform", "ema"))
        in_range("drop_prob", self.drop_prob, 0.0, 1.0, hi_open=True)
        self.process()                                     # flow settings checked now, not after training

    def process(self):
        """The training/sampling process: dlc.dit's GaussianDiffusion (eps) or FlowMatching."""
        from dlc.dit import create_diffusion, create_flow

        if self.objective == "eps":
            return create_diffusion()
        return create_flow(self.objective, t_dist=self.t_dist, t_mean=self.t_mean, t_std=self.t_std,
                           t_uniform=self.t_uniform)


@dataclass(frozen=True)
class DiTSamplingConfig:
    sampler: str = "ddpm"            # ddpm | ddim (objective eps); euler | heun (flow matching)
    steps: int = 100
    cfg_scale: float = 1.0           # classifier-free guidance on the condition (1: none)
    guided_channels: int = 0         # 0: all channels (the DLC convention); 3: the DiT/RCG one
    batch_size: int = 250

    def __post_init__(self):
        choice("sampler", self.sampler, sorted({s for ok in SAMPLERS.values() for s in ok}))
        check_fields(self, positive=("steps", "batch_size"), non_negative=("cfg_scale", "guided_channels"))

    def check(self, dit: DiTConfig) -> None:
        """The sampler must suit the DiT's objective (called by experiments before any training)."""
        from dlc.registry import did_you_mean

        ok = SAMPLERS[dit.objective]
        if self.sampler not in ok:
            raise ValueError(f"dit_sampling.sampler={self.sampler!r} does not sample a DiT trained with objective "
                             f"{dit.objective!r}.{did_you_mean(self.sampler, ok)} Choose from {', '.join(ok)}")


# ----------------------------------------------------------------------------- latents
def encode_latents(ctx: Any, cfg: DiTConfig, data, seed: int) -> torch.Tensor:
    """Images → what the DiT models: pixels in [-1, 1], or scaled VAE latents (posterior sample, per-index seed)."""
    from dlc.common import PerSampleRNG
    from dlc.dit import load_vae

    vae = load_vae(cfg.vae, device=ctx.device)
    out = []
    for idx, x in data.batches(cfg.encode_batch_size):
        x = x.to(ctx.device).float() / 127.5 - 1.0
        with torch.no_grad():
            out.append(vae.encode(x, PerSampleRNG(seed, idx.tolist(), device=ctx.device)).float().cpu())
    return torch.cat(out)


LATENTS = Stage("latents", code=("dlc.dit.vae", "dlc.common", "bench.stages.dit"), description="images → DiT inputs")


def latents_key(ctx: Any, cfg: DiTConfig, k_data, seed: int, split: str = "train"):
    """The LATENTS key of the training images, or (split='held-out') of the first `monitor_n` test images."""
    spec: dict[str, Any] = {"vae": cfg.vae, "batch_size": cfg.encode_batch_size}
    if split != "train":
        spec.update(split=split, n=cfg.monitor_n)
    return ctx.key(LATENTS, spec, upstream=[k_data], seed=seed)


# ----------------------------------------------------------------------------- training
def train(ctx: Any, cfg: DiTConfig, latents: torch.Tensor, cond: torch.Tensor | None, cond_kind: str,
          cond_shape: dict, seed: int, name: str, held_out: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """Train a DiT conditioned on `cond` (kind 'dlc', 'vector', 'class', or 'none' with cond=None).
    held_out: (inputs, conditions) of held-out images for the code-swap gap (conditioned DiTs), recorded every
    `monitor_every` steps and at the end."""
    from dlc.dit import build_dit, train_dit
    from dlc.dit.diagnostics import code_swap_gap

    process = cfg.process()
    kw: dict[str, Any] = {"input_size": latents.shape[-1], "in_channels": latents.shape[1], "cond": cond_kind,
                          "learn_sigma": cfg.objective == "eps"}
    if cond_kind != "none":
        kw.update(drop_prob=cfg.drop_prob, **cond_shape)
    torch.manual_seed(seed)
    model = build_dit(cfg.model, **kw)
    bar, cb = progress_callback(ctx, cfg.steps, f"train DiT ({name})", {"loss": ".4f"})
    scratch = Path(tempfile.mkdtemp(prefix="dlc-dit-ckpt-")) if cfg.ckpt_every else None   # moved into the stage
    save_path = str(scratch / "step-{step:08d}") if scratch is not None else None
    monitor = None
    if held_out is not None and cond is not None and cfg.monitor_n:
        hx, hc = held_out[0][:cfg.monitor_n], held_out[1][:cfg.monitor_n]
        monitor = lambda ema, step: {"code_swap_gap": code_swap_gap(ema, process, hx, hc, seed=seed,
                                                                    device=ctx.device)}
    res = train_dit(model, process, latents, cond, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                    warmup_steps=cfg.warmup,
                    ema_decay=cfg.ema, ema_warmup=True, grad_clip=cfg.grad_clip or None, seed=seed,
                    device=ctx.device, log_every=25, callback=cb, save_path=save_path,
                    save_every=cfg.ckpt_every or None, monitor=monitor, monitor_every=cfg.monitor_every or None)
    bar.close()
    return {"model": res.ema.cpu(), "losses": [float(x) for x in res.losses], "checkpoints": scratch,
            "monitor": res.monitor}


def _save_dit(value: dict, d: Path) -> None:
    from dlc.dit import save_dit

    save_dit(d / "model", value["model"])
    (d / "losses.json").write_text(json.dumps(value["losses"]))
    (d / "monitor.json").write_text(json.dumps(value.get("monitor", [])))
    ck = value.get("checkpoints")
    if isinstance(ck, Path) and ck.is_dir():
        files = sorted(ck.iterdir())
        if files:
            (d / "checkpoints").mkdir()
            for f in files:
                shutil.move(str(f), d / "checkpoints" / f.name)
        shutil.rmtree(ck, ignore_errors=True)


def _load_dit(d: Path) -> dict:
    from dlc.dit import load_dit

    ck = d / "checkpoints"
    steps = sorted(p.with_suffix("") for p in ck.glob("step-*.safetensors")) if ck.is_dir() else []
    return {"model": load_dit(d / "model")[0], "losses": json.loads((d / "losses.json").read_text()),
            "monitor": json.loads((d / "monitor.json").read_text()),
            "checkpoints": {int(p.name.split("-")[1]): p for p in steps}}


DIT = Stage("dit", code=("dlc.dit", "dlc.common", "dlc.dist", "bench.stages.dit"), save=_save_dit, load=_load_dit,
            reload=True, description="DiT p(x|c) (EMA weights; checkpoints every ckpt_every steps; code-swap gap)")


def load_checkpoint(path: Path):
    """The EMA DiT saved at one step of training (a value of `DIT`'s 'checkpoints')."""
    from dlc.dit import load_dit

    return load_dit(path)[0]


# ----------------------------------------------------------------------------- sampling
def sample_images(ctx: Any, dit: DiTConfig, cfg: DiTSamplingConfig, model, cond, n: int, seed: int,
                  desc: str) -> torch.Tensor:
    """x ~ DiT(cond) for global sample indices [0, n), split over ranks; uint8 (n, 3, H, W)."""
    from dlc.dit import load_vae, sample_dit, to_uint8

    lo, hi = rank_block(n, ctx.rank, ctx.world_size)
    bar = ctx.progress(total=(hi - lo) * cfg.steps, desc=desc)
    chunk = []
    for s in range(lo, hi, cfg.batch_size):
        e = min(hi, s + cfg.batch_size)
        c = None if cond is None else cond[s:e]
        x = sample_dit(model, dit.process(), c, num_samples=None if c is not None else e - s,
                       cfg_scale=cfg.cfg_scale, guided_channels=cfg.guided_channels or None, steps=cfg.steps,
                       seed=seed, indices=range(s, e), batch_size=cfg.batch_size, device=ctx.device,
                       sampler=cfg.sampler, clip_denoised=dit.vae == "pixel",
                       progress=lambda i, total: bar.update(e - s))
        chunk.append(x)
    bar.close()
    lat = torch.cat(chunk) if chunk else torch.empty(0)
    vae = load_vae(dit.vae, device=ctx.device)
    with torch.no_grad():
        imgs = [to_uint8(vae.decode(lat[i:i + 64].to(ctx.device))).permute(0, 3, 1, 2).cpu()
                for i in range(0, len(lat), 64)]
    local = torch.cat(imgs) if imgs else torch.empty(0, 3, 1, 1, dtype=torch.uint8)
    return gather_block(local, lo, n)


IMAGE_SAMPLES = Stage("image-samples", code=("dlc.dit", "bench.stages.dit"), description="x ~ DiT(c)")
