"""Gaussian diffusion (DDPM / improved DDPM / ADM conventions as used by DiT) with respacing, ancestral and
DDIM sampling, for images (DiT: ε-prediction, learned σ, MSE + VLB) and vectors (RDM: x0-prediction, fixed σ).

One class, `GaussianDiffusion`, parameterised by its betas, what the model predicts (`mean_type`: "eps" or "x0")
and its variance (`var_type`: "learned_range", "fixed_small", "fixed_large"). `respace(steps)` keeps a subset
of the timesteps (`space_timesteps`) with the betas recomputed so the kept ᾱ are unchanged:
β'_i = 1 − ᾱ_{t_i} / ᾱ_{t_{i−1}}. The model always sees the original timestep indices.

Formulas (Ho et al. 2020; Nichol & Dhariwal 2021):
  q(x_t | x_0)         = N(√ᾱ_t x_0, (1−ᾱ_t) I)
  q(x_{t−1} | x_t, x_0) = N(μ̃, β̃_t I),  μ̃ = β_t√ᾱ_{t−1}/(1−ᾱ_t) x_0 + (1−ᾱ_{t−1})√α_t/(1−ᾱ_t) x_t,
                                         β̃_t = β_t (1−ᾱ_{t−1})/(1−ᾱ_t)
  learned range:       log Σ = f log β_t + (1−f) log β̃_t,  f = (v+1)/2
  VLB term (bits/dim): KL(q(x_{t−1}|x_t,x_0) ‖ p(x_{t−1}|x_t)) for t > 0, −log p(x_0|x_1) (discretised) at t = 0.
Sampling draws every random number from `dlc.common.PerSampleRNG`, so a sample depends only on its global index.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from ..common import PerSampleRNG

__all__ = [
    "GaussianDiffusion", "create_diffusion", "get_betas", "space_timesteps",
    "normal_kl", "discretized_gaussian_log_likelihood", "mean_flat",
]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MEAN_TYPES = ("eps", "x0")
VAR_TYPES = ("learned_range", "fixed_small", "fixed_large")
LOSS_TYPES = ("mse", "rescaled_mse")


#################################################################################
#                            Schedules and respacing                            #
#################################################################################

def get_betas(schedule: str, num_timesteps: int = 1000, *, start: float | None = None,
              end: float | None = None) -> np.ndarray:
    """float64 betas.

    "linear":     linspace(1e-4·1000/T, 0.02·1000/T, T)  (DDPM/ADM/DiT)
    "ldm_linear": linspace(√start, √end, T)², defaults start=0.0015, end=0.0195 (LDM "linear", RCG's RDM)
    "cosine":     Nichol & Dhariwal's cos² ᾱ with s=0.008, β clipped at 0.999
    """
    T = int(num_timesteps)
    if T < 1:
        raise ValueError(f"num_timesteps must be ≥ 1; got {num_timesteps}")
    if schedule == "linear":
        scale = 1000 / T
        return np.linspace(scale * (1e-4 if start is None else start), scale * (0.02 if end is None else end), T,
                           dtype=np.float64)
    if schedule == "ldm_linear":
        s, e = (0.0015 if start is None else start), (0.0195 if end is None else end)
        return np.linspace(s ** 0.5, e ** 0.5, T, dtype=np.float64) ** 2
    if schedule == "cosine":
        f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=np.float64)
    raise ValueError(f"unknown beta schedule {schedule!r}; choose 'linear', 'ldm_linear' or 'cosine'")


def space_timesteps(num_timesteps: int, section_counts: int | str | Sequence[int]) -> list[int]:
    """Timesteps kept when respacing a T-step process (sorted), by ADM's rule (`respace.space_timesteps` of
    guided-diffusion / DiT): the same steps for every T and every step count.

    An int or "N" keeps N steps spread over [0, T−1] by accumulating the fractional stride s = (T−1)/(N−1) and
    rounding the running total: t_0 = round(0.0), t_i = round(s + s + ... + s) (i float additions, Python's
    round-half-even), which is not always round(i·s): N = 21 over 1000 steps keeps 499 where round(10·49.95)
    would give 500. "250" over 1000 steps keeps 0, 4, 8, 12, 16, 20, ... 999 (s = 999/249 ≈ 4.012). "a,b,c"
    (or a sequence) splits [0, T) into len sections, the first T mod len one step longer, and spreads a, b, c
    steps over each the same way (a count of 1 keeps the section's first step). "ddimN" keeps range(0, T, k) for
    the smallest integer stride k in 1..T−1 giving exactly N steps (DDIM's rule; like ADM, no k = T, so
    "ddim1" is refused). Unlike ADM, a section of 0 steps is refused rather than dropped.
    """
    T = int(num_timesteps)
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim") and section_counts[4:].strip().isdigit():
            n = int(section_counts[4:])
            for stride in range(1, T):
                if len(range(0, T, stride)) == n:
                    return list(range(0, T, stride))
            raise ValueError(f"cannot take exactly {n} DDIM steps out of {T} with an integer stride below {T}")
        try:
            section_counts = [int(s) for s in section_counts.split(",")]
        except ValueError:
            raise ValueError(f"bad timestep respacing {section_counts!r}; use an int, 'a,b,c' or 'ddimN'") from None
    elif isinstance(section_counts, (int, np.integer)):
        section_counts = [int(section_counts)]
    size_per, extra = divmod(T, len(section_counts))
    start, kept = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if not 1 <= count <= size:
            raise ValueError(f"cannot take {count} steps from a section of {size} steps "
                             f"(respacing {section_counts} of a {T}-step process)")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0                      # accumulated, not j·stride: ADM rounds the running float sum
        for _ in range(count):
            kept.append(start + round(cur))
            cur += stride
        start += size
    return sorted(set(kept))


#################################################################################
#                          Gaussian helper distributions                         #
#################################################################################

def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all but the batch dimension."""
    return x.mean(dim=tuple(range(1, x.ndim)))


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: torch.Tensor, *, means: torch.Tensor, log_scales: torch.Tensor,
                                        bin_width: float = 2.0 / 255.0) -> torch.Tensor:
    """log P(bin of x) under N(means, e^{2 log_scales}) for data in [-1, 1] quantised to 256 levels (nats).

    The edge bins extend to ±∞. Uses the exact normal CDF (ADM/DiT use a tanh approximation of it)."""
    centered = x - means
    inv_std = torch.exp(-log_scales)
    plus = inv_std * (centered + bin_width / 2)
    minus = inv_std * (centered - bin_width / 2)
    log_cdf_plus = torch.special.log_ndtr(plus)
    log_one_minus_cdf_minus = torch.special.log_ndtr(-minus)
    # log(Φ(b) − Φ(a)) in log space, on the side of zero where the bin lies (no cancellation in either tail)
    upper = centered > 0
    lo, hi = torch.where(upper, -plus, minus), torch.where(upper, -minus, plus)   # Φ(hi) − Φ(lo), lo < hi
    log_hi = torch.special.log_ndtr(hi)
    log_delta = log_hi + torch.log(-torch.expm1(torch.special.log_ndtr(lo) - log_hi))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_delta))


#################################################################################
#                               Gaussian diffusion                              #
#################################################################################

class GaussianDiffusion:
    """A discrete-time Gaussian diffusion with T steps; the tensors it holds are float64 on the CPU and
    are gathered per batch and cast to the input's dtype and device."""

    def __init__(self, betas: Iterable[float], *, mean_type: str = "eps", var_type: str = "learned_range",
                 loss_type: str = "mse", timestep_map: Sequence[int] | None = None):
        if mean_type not in MEAN_TYPES:
            raise ValueError(f"mean_type={mean_type!r}; choose one of {MEAN_TYPES}")
        if var_type not in VAR_TYPES:
            raise ValueError(f"var_type={var_type!r}; choose one of {VAR_TYPES}")
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type={loss_type!r}; choose one of {LOSS_TYPES}")
        betas = np.asarray(list(betas) if not isinstance(betas, np.ndarray) else betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("betas must be a 1-D array with values in (0, 1]")
        self.mean_type, self.var_type, self.loss_type = mean_type, var_type, loss_type
        self.num_timesteps = T = len(betas)
        self.timestep_map = torch.as_tensor(list(range(T)) if timestep_map is None else list(timestep_map),
                                            dtype=torch.long)
        self.original_num_steps = int(self.timestep_map.max()) + 1 if timestep_map is not None else T

        ab = np.cumprod(1.0 - betas)
        ab_prev = np.append(1.0, ab[:-1])
        post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
        arrays = dict(
            betas=betas, alphas_cumprod=ab, alphas_cumprod_prev=ab_prev,
            sqrt_alphas_cumprod=np.sqrt(ab), sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - ab),
            sqrt_recip_alphas_cumprod=np.sqrt(1.0 / ab), sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / ab - 1.0),
            posterior_variance=post_var,
            # β̃_0 = 0, so the log is clipped with β̃_1 at t = 0 (ADM)
            posterior_log_variance_clipped=np.log(np.append(post_var[1], post_var[1:]) if T > 1 else betas),
            posterior_mean_coef1=betas * np.sqrt(ab_prev) / (1.0 - ab),
            posterior_mean_coef2=(1.0 - ab_prev) * np.sqrt(1.0 - betas) / (1.0 - ab),
            log_betas=np.log(betas),
            fixed_large_log_variance=np.log(np.append(post_var[1], betas[1:]) if T > 1 else betas),
        )
        for name, arr in arrays.items():
            setattr(self, name, torch.from_numpy(arr))
        self._cache: dict = {}

    # ----------------------------------------------------------------- helpers
    def _get(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """arr[t] broadcast to like's shape, in like's dtype/device (per-device copies are cached)."""
        key = (name, like.device, like.dtype)
        arr = self._cache.get(key)
        if arr is None:
            arr = self._cache[key] = getattr(self, name).to(device=like.device, dtype=like.dtype)
        out = arr[t.to(like.device)]
        return out.reshape(-1, *([1] * (like.ndim - 1)))

    def sample_timesteps(self, n: int, generator: torch.Generator | None = None,
                         device: str | torch.device = "cpu") -> torch.Tensor:
        """(n,) training timestep indices, uniform over [0, T) (DDPM/ADM/DiT)."""
        return torch.randint(0, self.num_timesteps, (n,), generator=generator, device=device)

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """Indices of this (possibly respaced) process → timesteps of the original process (what models see)."""
        return self.timestep_map.to(t.device)[t]

    def respace(self, steps: int | str | Sequence[int] | None) -> "GaussianDiffusion":
        """A process over the kept timesteps `space_timesteps(T, steps)` with the same ᾱ there. None: self."""
        if steps is None:
            return self
        if not isinstance(steps, (int, str, np.integer)):
            kept = sorted({int(s) for s in steps})
            if not kept or kept[0] < 0 or kept[-1] >= self.num_timesteps:
                raise ValueError(f"respaced timesteps must lie in [0, {self.num_timesteps})")
        else:
            kept = space_timesteps(self.num_timesteps, steps)
        ab = self.alphas_cumprod.numpy()
        last, new_betas = 1.0, []
        for i in kept:
            new_betas.append(1.0 - ab[i] / last)
            last = ab[i]
        tmap = self.timestep_map[kept].tolist()
        out = GaussianDiffusion(new_betas, mean_type=self.mean_type, var_type=self.var_type,
                                loss_type=self.loss_type, timestep_map=tmap)
        out.original_num_steps = self.original_num_steps
        return out

    # ----------------------------------------------------------- forward process
    def q_mean_variance(self, x_start: torch.Tensor, t: torch.Tensor):
        """Mean, variance and log-variance of q(x_t | x_0)."""
        mean = self._get("sqrt_alphas_cumprod", t, x_start) * x_start
        var = 1.0 - self._get("alphas_cumprod", t, x_start)
        return mean, var.expand_as(x_start), torch.log(var).expand_as(x_start)

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε."""
        if noise is None:
            noise = torch.randn_like(x_start)
        return (self._get("sqrt_alphas_cumprod", t, x_start) * x_start
                + self._get("sqrt_one_minus_alphas_cumprod", t, x_start) * noise)

    def q_posterior_mean_variance(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log-variance of q(x_{t−1} | x_t, x_0)."""
        mean = (self._get("posterior_mean_coef1", t, x_t) * x_start
                + self._get("posterior_mean_coef2", t, x_t) * x_t)
        var = self._get("posterior_variance", t, x_t).expand_as(x_t)
        logvar = self._get("posterior_log_variance_clipped", t, x_t).expand_as(x_t)
        return mean, var, logvar

    # ----------------------------------------------------------- reverse process
    def predict_xstart_from_eps(self, x_t, t, eps):
        return (self._get("sqrt_recip_alphas_cumprod", t, x_t) * x_t
                - self._get("sqrt_recipm1_alphas_cumprod", t, x_t) * eps)

    def predict_eps_from_xstart(self, x_t, t, pred_xstart):
        return ((self._get("sqrt_recip_alphas_cumprod", t, x_t) * x_t - pred_xstart)
                / self._get("sqrt_recipm1_alphas_cumprod", t, x_t))

    def split_output(self, model_output: torch.Tensor, x: torch.Tensor):
        """(mean part, variance part or None) of a model output; learned_range outputs 2·C channels."""
        if self.var_type == "learned_range":
            C = x.shape[1]
            if model_output.shape[1] != 2 * C:
                raise ValueError(f"learned_range needs a model output of {2 * C} channels (ε and v); "
                                 f"got {model_output.shape[1]}")
            return model_output[:, :C], model_output[:, C:]
        if model_output.shape != x.shape:
            raise ValueError(f"model output shape {tuple(model_output.shape)} ≠ input shape {tuple(x.shape)}")
        return model_output, None

    def p_mean_variance(self, model_output: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                        clip_denoised: bool = False) -> dict:
        """p(x_{t−1} | x_t) from a model output: dict(mean, variance, log_variance, pred_xstart)."""
        out, v = self.split_output(model_output, x)
        if self.var_type == "learned_range":
            min_log = self._get("posterior_log_variance_clipped", t, x)
            max_log = self._get("log_betas", t, x)
            frac = (v + 1) / 2
            log_var = frac * max_log + (1 - frac) * min_log
        else:
            name = "posterior_log_variance_clipped" if self.var_type == "fixed_small" else "fixed_large_log_variance"
            log_var = self._get(name, t, x).expand_as(x)
        pred_xstart = self.predict_xstart_from_eps(x, t, out) if self.mean_type == "eps" else out
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": mean, "variance": torch.exp(log_var), "log_variance": log_var, "pred_xstart": pred_xstart}

    # ------------------------------------------------------------------- losses
    def vb_terms_bpd(self, model_output: torch.Tensor, x_start: torch.Tensor, x_t: torch.Tensor,
                     t: torch.Tensor, clip_denoised: bool = False) -> dict:
        """Per-sample VLB term in bits/dim: the KL to the true posterior for t > 0, the decoder NLL at t = 0."""
        true_mean, _, true_logvar = self.q_posterior_mean_variance(x_start, x_t, t)
        p = self.p_mean_variance(model_output, x_t, t, clip_denoised=clip_denoised)
        out = mean_flat(normal_kl(true_mean, true_logvar, p["mean"], p["log_variance"])) / math.log(2.0)
        first = (t == 0).nonzero().squeeze(1)  # the decoder term only for the (few) rows at t = 0
        if len(first):
            nll = -mean_flat(discretized_gaussian_log_likelihood(
                x_start[first], means=p["mean"][first], log_scales=0.5 * p["log_variance"][first])) / math.log(2.0)
            out = out.index_put((first,), nll)
        return {"output": out, "pred_xstart": p["pred_xstart"]}

    def training_losses(self, model_fn: ModelFn, x_start: torch.Tensor, t: torch.Tensor,
                        noise: torch.Tensor | None = None) -> dict:
        """Per-sample losses: "mse" on the predicted ε (or x0), plus for learned σ the VLB term "vb" whose
        gradient reaches only the variance channels (the mean is detached). "loss" = mse + vb.
        model_fn(x_t, model_timesteps) → model output; t are indices of this process."""
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise)
        model_output = model_fn(x_t, self.model_timesteps(t))
        out, v = self.split_output(model_output, x_t)
        target = noise if self.mean_type == "eps" else x_start
        terms = {"mse": mean_flat((target - out) ** 2)}
        if v is not None:
            frozen = torch.cat([out.detach(), v], dim=1)
            vb = self.vb_terms_bpd(frozen, x_start, x_t, t)["output"]
            if self.loss_type == "rescaled_mse":
                vb = vb * (self.num_timesteps / 1000.0)
            terms["vb"] = vb
            terms["loss"] = terms["mse"] + vb
        else:
            terms["loss"] = terms["mse"]
        return terms

    # ----------------------------------------------------------------- sampling
    def p_sample_loop(self, model_fn: ModelFn, shape: Sequence[int], rng: PerSampleRNG, *,
                      clip_denoised: bool = False, noise: torch.Tensor | None = None,
                      progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Ancestral sampling x_T → x_0. shape = (N, ...) with N == len(rng); every draw comes from rng."""
        x = self._initial_noise(shape, rng, noise)
        for i, step in enumerate(reversed(range(self.num_timesteps))):
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
            p = self.p_mean_variance(model_fn(x, self.model_timesteps(t)), x, t, clip_denoised)
            if step > 0:
                x = p["mean"] + torch.exp(0.5 * p["log_variance"]) * rng.randn(*shape[1:], dtype=x.dtype)
            else:
                x = p["mean"]
            if progress is not None:
                progress(i + 1, self.num_timesteps)
        return x

    def ddim_sample_loop(self, model_fn: ModelFn, shape: Sequence[int], rng: PerSampleRNG, *, eta: float = 0.0,
                         clip_denoised: bool = False, noise: torch.Tensor | None = None,
                         progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """DDIM (Song et al. 2021) over this process's timesteps: x_{t−1} = √ᾱ_{t−1} x̂_0 +
        √(1−ᾱ_{t−1}−σ²) ε̂ + σ z, σ = η √((1−ᾱ_{t−1})/(1−ᾱ_t)) √(1−ᾱ_t/ᾱ_{t−1})."""
        x = self._initial_noise(shape, rng, noise)
        for i, step in enumerate(reversed(range(self.num_timesteps))):
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
            p = self.p_mean_variance(model_fn(x, self.model_timesteps(t)), x, t, clip_denoised)
            eps = self.predict_eps_from_xstart(x, t, p["pred_xstart"])
            ab, ab_prev = self._get("alphas_cumprod", t, x), self._get("alphas_cumprod_prev", t, x)
            sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
            x = p["pred_xstart"] * torch.sqrt(ab_prev) + torch.sqrt((1 - ab_prev - sigma ** 2).clamp(min=0)) * eps
            if step > 0 and eta > 0:
                x = x + sigma * rng.randn(*shape[1:], dtype=x.dtype)
            if progress is not None:
                progress(i + 1, self.num_timesteps)
        return x

    def _initial_noise(self, shape, rng: PerSampleRNG, noise):
        if len(rng) != shape[0]:
            raise ValueError(f"the RNG holds {len(rng)} samples but shape asks for {shape[0]}")
        if noise is not None:
            if tuple(noise.shape) != tuple(shape):
                raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
            return noise
        return rng.randn(*shape[1:])


def create_diffusion(steps: int | str | Sequence[int] | None = None, *, num_timesteps: int = 1000,
                     schedule: str = "linear", mean_type: str = "eps", learn_sigma: bool = True,
                     sigma_small: bool = False, loss_type: str = "mse") -> GaussianDiffusion:
    """DiT's diffusion: T=1000, linear β, ε-prediction, learned σ (MSE + VLB). `steps` respaces it
    (e.g. 250 for sampling); None keeps all T steps (training)."""
    var_type = "learned_range" if learn_sigma else ("fixed_small" if sigma_small else "fixed_large")
    base = GaussianDiffusion(get_betas(schedule, num_timesteps), mean_type=mean_type, var_type=var_type,
                             loss_type=loss_type)
    return base.respace(steps)
