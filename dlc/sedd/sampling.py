"""Samplers for a SEDD prior: Euler, analytic (Tweedie τ-leaping), the DLC remasking corrector, and a
MaskGIT-style confidence sampler as a baseline (SEDD `sampling.py`, DLC `AnalyticPredictorCorrector`).

Time runs from t = 1 (all masked / uniform) to t = ε_s = 1e-5 on the grid linspace(1, ε_s, steps + 1),
dt = (1 − ε_s)/steps; an optional final denoising step at t = ε_s removes the remaining masks.
Every random number of sample i comes from `PerSampleRNG(seed, [start_index + i])`, one float64 uniform
per (position, state) per step, so the samples do not depend on the batch size or on the number of
processes; categorical draws are exponential races in float64 (`graph.sample_categorical`).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..common import PerSampleRNG, autocast, resolve_device
from .graph import get_graph, reverse_rate, sample_categorical
from .noise import get_noise

__all__ = ["sample_sedd", "SAMPLERS", "euler_probs", "analytic_probs", "remask_noise", "apply_remask",
           "denoise_probs", "maskgit_schedule"]

SAMPLERS = ("analytic", "euler", "corrector", "maskgit")
SAMPLING_EPS = 1e-5


#################################################################################
#                      Transition probabilities of one step                     #
#################################################################################

def euler_probs(graph, x: torch.Tensor, score: torch.Tensor, rate_dt: torch.Tensor) -> torch.Tensor:
    """Euler step: onehot(x) + dt·σ'(t)·R(x), R the reverse rate (N, L, dim); rate_dt = dt·σ'(t) (N,)."""
    rate = reverse_rate(graph, x, score)
    return F.one_hot(x, graph.dim).to(rate.dtype) + rate_dt.reshape(-1, 1, 1) * rate


def analytic_probs(graph, x: torch.Tensor, score: torch.Tensor, dsigma: torch.Tensor) -> torch.Tensor:
    """Tweedie τ-leaping: (e^{−Δσ Q} s)_y · e^{Δσ Q}(x, y), unnormalised (N, L, dim).

    Absorbing, x masked: P(y) = (e^{Δσ} − 1) s_y for y ≠ mask, P(mask) = 1 − (e^{Δσ} − 1) Σ_y s_y;
    x unmasked: it stays (P = e_x, since s_x = 1).
    """
    return graph.staggered_score(score, dsigma) * graph.transp_transition(x, dsigma)


def remask_noise(probs: torch.Tensor, eta: float) -> torch.Tensor:
    """DLC remasking (paper eq. 4): move η(1 − p_mask) from argmax(p) to the mask entry (the last one).

    For an unmasked token p = e_x, so it is remasked with probability η. When argmax(p) is the mask
    itself the mask entry just grows by η(1 − p_mask) (the reference overwrites −1 with +1).
    """
    noise = torch.zeros_like(probs).scatter(-1, probs.argmax(dim=-1, keepdim=True), -1.0)
    noise[..., -1] = 1.0
    return eta * (1 - probs[..., -1:]) * noise


def apply_remask(probs: torch.Tensor, eta: float) -> torch.Tensor:
    """probs + remask_noise(probs, eta), computed without materialising the noise tensor (the sampler's path:
    half the memory traffic, so the corrector's per-step cost stays within 10 % of the analytic sampler's)."""
    amount = eta * (1 - probs[..., -1:])                                            # (N, L, 1)
    top = probs.argmax(dim=-1, keepdim=True)                                        # (N, L, 1)
    out = probs.scatter_add(-1, top, torch.where(top == probs.shape[-1] - 1, 0.0, -amount))
    out[..., -1:] += amount
    return out


def denoise_probs(graph, x: torch.Tensor, score: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Final step at σ = σ(ε_s): a Tweedie step over the whole σ with the mask column dropped (absorb)."""
    probs = graph.staggered_score(score, sigma) * graph.transp_transition(x, sigma)
    return probs[..., :-1] if graph.absorb else probs


def maskgit_schedule(length: int, steps: int) -> list[int]:
    """Number of masked positions after each MaskGIT step (cosine schedule, ≥ 1 unmasked per step, 0 at the end)."""
    left, out = length, []
    for k in range(steps):
        if left == 0:
            break
        ratio = (k + 1) / steps
        n = max(1, math.floor(length * math.cos(math.pi / 2 * ratio))) if k < steps - 1 else 0
        left = max(0, min(left - 1, n))
        out.append(left)
    return out


#################################################################################
#                                    Sampler                                    #
#################################################################################

@torch.no_grad()
def sample_sedd(model: nn.Module, n: int, *, sampler: str = "analytic", steps: int, eta: float = 0.01,
                t0: float = 0.3, t1: float = 0.55, denoise: bool = True, seed: int = 0, start_index: int = 0,
                batch_size: int = 256, device: str | torch.device = "auto", maskgit_temperature: float = 4.5,
                callback: Callable[[int, dict], None] | None = None) -> torch.Tensor:
    """Draw n token sequences c ~ p(c) from a SEDD score model; returns a long tensor (n, L) on the CPU.

    sampler: 'analytic' (Tweedie τ-leaping, the DLC default), 'euler', 'corrector' (analytic plus DLC
      remasking with probability `eta` for t0 < t < t1, with the step enlarged by η(1 − t)) or 'maskgit'
      (confidence-based parallel decoding over `steps` iterations with a cosine schedule and choice
      temperature `maskgit_temperature`; absorbing graph only).
    denoise: finish with the denoising step at t = 1e-5; the output then lies in [0, V). Without it,
      positions still masked keep the mask index V (absorb). 'maskgit' always ends fully unmasked.
    seed, start_index: sample i uses the randomness of global index start_index + i, so rank r of a
      torchrun job can pass its own range and get exactly what one process would produce.
    callback(step, logs) is called after every step (and after the denoising step, step = steps) with
      logs = {"t": time, "tokens": the (B, L) state (not modified afterwards), "start": global index of row 0}.
    """
    m = getattr(model, "module", model)
    cfg = m.config
    graph, noise = get_graph(cfg), get_noise(cfg)
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if int(steps) < 1:
        raise ValueError(f"steps={steps} must be ≥ 1")
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n ≥ 0 and batch_size ≥ 1 (got n={n}, batch_size={batch_size})")
    if sampler in ("corrector", "maskgit") and not graph.absorb:
        raise ValueError(f"sampler {sampler!r} needs the absorbing graph (this model uses graph={cfg.graph!r})")
    if sampler == "corrector" and not (0.0 <= eta < 1.0 and 0.0 <= t0 < t1 <= 1.0):
        raise ValueError(f"corrector needs 0 ≤ eta < 1 and 0 ≤ t0 < t1 ≤ 1 (got eta={eta}, t0={t0}, t1={t1})")
    if sampler == "maskgit" and not maskgit_temperature >= 0.0:
        raise ValueError(f"maskgit_temperature={maskgit_temperature} must be ≥ 0")
    steps = int(steps)
    dev = resolve_device(device)
    was_training = m.training
    m.eval().to(dev)

    def score_fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:          # exp(log-score) in float64
        with autocast(dev):
            log_score = m(x, sigma.to(torch.float32).expand(x.shape[0]).contiguous())
        if torch.isnan(log_score).any():    # argmax would silently turn NaN probabilities into token 0
            raise FloatingPointError(f"the score model returned NaN at sigma={float(sigma):.4g}; "
                                     f"check the checkpoint (diverged training?)")
        return log_score.double().exp()

    out = []
    try:
        for lo in range(0, n, batch_size):
            ids = range(start_index + lo, start_index + min(lo + batch_size, n))
            rng = PerSampleRNG(seed, ids, device=dev)
            if sampler == "maskgit":
                x = _maskgit(m, graph, noise, rng, cfg.seq_len, steps, maskgit_temperature, dev, callback,
                             start_index + lo)
            else:
                x = _diffuse(score_fn, graph, noise, rng, cfg.seq_len, sampler, steps, eta, t0, t1, denoise, dev,
                             callback, start_index + lo)
            out.append(x.cpu())
    finally:
        m.train(was_training)
    return torch.cat(out) if out else torch.empty(0, cfg.seq_len, dtype=torch.long)


def _diffuse(score_fn, graph, noise, rng: PerSampleRNG, length: int, sampler: str, steps: int, eta: float,
             t0: float, t1: float, denoise: bool, dev: torch.device, callback, start: int) -> torch.Tensor:
    """Euler / analytic / corrector chain from the limit state; returns (B, L)."""
    f64 = dict(dtype=torch.float64, device=dev)
    x = graph.sample_limit(len(rng), length, rng=rng, device=dev)
    times = torch.linspace(1.0, SAMPLING_EPS, steps + 1, **f64)
    dt = (1.0 - SAMPLING_EPS) / steps
    for k in range(steps):
        t = times[k]
        if sampler == "euler":
            sigma, dsig = noise(t)
            probs = euler_probs(graph, x, score_fn(x, sigma), (dt * dsig).reshape(1))
        else:
            renoise = sampler == "corrector" and t0 < float(t) < t1
            correction = eta * (1.0 - t) if renoise else 0.0                      # the δ step correction
            sigma = noise.total(t)
            t_next = (t - (dt + correction)).clamp_min(0.0)                    # large η could step below 0
            dsigma = sigma - noise.total(t_next)
            probs = analytic_probs(graph, x, score_fn(x, sigma), dsigma.reshape(1))
            if renoise:
                probs = apply_remask(probs, eta)
        x = sample_categorical(probs, rng.rand(length, graph.dim, dtype=torch.float64))
        if callback is not None:
            callback(k, {"t": float(t), "tokens": x, "start": start})
    if denoise:
        sigma = noise.total(times[-1])
        probs = denoise_probs(graph, x, score_fn(x, sigma), sigma.reshape(1))
        x = sample_categorical(probs, rng.rand(length, probs.shape[-1], dtype=torch.float64))
        if callback is not None:
            callback(steps, {"t": float(times[-1]), "tokens": x, "start": start})
    return x


def _maskgit(m: nn.Module, graph, noise, rng: PerSampleRNG, length: int, steps: int, temperature: float,
             dev: torch.device, callback, start: int) -> torch.Tensor:
    """MaskGIT decoding (Chang et al. 2022): sample every masked position from p(x0 | context), keep the
    most confident ones (log-probability plus temperature·(1 − k/K)·Gumbel), remask the rest."""
    V, B = graph.vocab_size, len(rng)
    x = graph.sample_limit(B, length, device=dev)
    sigma_max = float(noise.total(torch.tensor(1.0, dtype=torch.float64)))
    n_masked = length
    for k, left in enumerate(maskgit_schedule(length, steps)):
        # the noise level at which a fraction n_masked / L of the tokens is masked: 1 − e^{−σ} = ratio
        sigma = min(-math.log1p(-n_masked / length), sigma_max) if n_masked < length else sigma_max
        with autocast(dev):
            log_score = m(x, torch.full((B,), sigma, device=dev))
        if torch.isnan(log_score).any():
            raise FloatingPointError(f"the score model returned NaN at sigma={sigma:.4g}; check the checkpoint")
        logp = torch.log_softmax(log_score[..., :V].double(), dim=-1)                # p(x0 = y | x), (B, L, V)
        u = rng.rand(length, V + 1, dtype=torch.float64)
        masked = x == graph.mask_index
        sampled = torch.where(masked, sample_categorical(logp.exp(), u[..., :V]), x)
        conf = torch.gather(logp, -1, sampled.clamp_max(V - 1)[..., None]).squeeze(-1)
        gumbel = -torch.log(-torch.log(u[..., V].clamp(1e-300, 1.0 - 1e-16)))
        conf = torch.where(masked, conf + temperature * (1.0 - (k + 1) / steps) * gumbel, math.inf)
        x = sampled
        if left > 0:
            x = x.scatter(1, conf.topk(left, dim=1, largest=False).indices, graph.mask_index)
        n_masked = left
        if callback is not None:
            callback(k, {"t": n_masked / length, "tokens": x, "start": start})
    return x
