"""Flow matching with the linear interpolant (SiT, Ma et al. 2024; rectified flow, Liu et al. 2023), for the DiT.

    x_t = (1 − t) x_0 + t ε,   t ∈ [0, 1],  ε ~ N(0, I)       (t = 1 is pure noise, t = 0 the data)
    v   = dx_t/dt = ε − x_0                                   (the velocity the network learns)

What the network outputs (`prediction`):
  "velocity"  v̂ directly; loss ‖v̂ − v‖²                                                   (SiT)
  "x0"        x̂_0; turned into v̂ = (x_t − x̂_0) / t and trained with the same velocity loss, which is
              ‖x̂_0 − x_0‖² / t² (t clamped below at `t_min`, JiT, Li & He 2025)
Both share the minimiser E[v | x_t] (for "x0": E[x_0 | x_t]); they differ in how the loss weighs the noise
levels. The variance is fixed (the DiT is built with learn_sigma=False).

Training times t (`t_dist`): "uniform" on (0, 1); "logit-normal" sigmoid(N(t_mean, t_std²)) (SD3); a
mixture puts a fraction `t_uniform` of the draws on the uniform law. The DiT sees t·`time_scale` (1000, the
range of the DDPM timesteps its sinusoidal embedding was designed for).

Sampling integrates dx/dt = v̂(x, t) from t = 1 to t = 0 over a uniform grid of `steps` intervals with Euler
(one network call per step) or Heun (two, the last step Euler: 2·steps − 1 calls; Karras et al. 2022). CFG
combines the conditional and null outputs linearly, which for "x0" equals combining velocities. Every random
number comes from `PerSampleRNG` (only the initial noise), so a sample depends only on its global index.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..common import PerSampleRNG
from .diffusion import mean_flat

__all__ = ["FlowMatching", "create_flow", "PREDICTIONS", "T_DISTS", "FLOW_SAMPLERS"]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PREDICTIONS = ("velocity", "x0")
T_DISTS = ("uniform", "logit-normal")
FLOW_SAMPLERS = ("euler", "heun")


def _bcast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))   # (N,) → (N, 1, 1, 1)


class FlowMatching:
    """The linear-interpolant flow of the module docstring; `training_losses` and `sample_loop` mirror
    `GaussianDiffusion`'s so `train_diffusion` and `sample_dit` take either."""

    def __init__(self, prediction: str = "velocity", *, t_dist: str = "logit-normal", t_mean: float = 0.0,
                 t_std: float = 1.0, t_uniform: float = 0.0, t_min: float = 0.05, time_scale: float = 1000.0):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction={prediction!r}; choose one of {PREDICTIONS}")
        if t_dist not in T_DISTS:
            raise ValueError(f"t_dist={t_dist!r}; choose one of {T_DISTS}")
        if not (t_std > 0 and 0 <= t_uniform <= 1 and 0 < t_min < 1 and time_scale > 0):
            raise ValueError(f"need t_std > 0, 0 ≤ t_uniform ≤ 1, 0 < t_min < 1, time_scale > 0 (got t_std={t_std}, "
                             f"t_uniform={t_uniform}, t_min={t_min}, time_scale={time_scale})")
        self.prediction, self.t_dist = prediction, t_dist
        self.t_mean, self.t_std, self.t_uniform, self.t_min = float(t_mean), float(t_std), float(t_uniform), float(t_min)
        self.time_scale = float(time_scale)

    def __repr__(self) -> str:
        return (f"FlowMatching(prediction={self.prediction!r}, t_dist={self.t_dist!r}, t_mean={self.t_mean}, "
                f"t_std={self.t_std}, t_uniform={self.t_uniform})")

    # ----------------------------------------------------------------- time
    def sample_timesteps(self, n: int, generator: torch.Generator | None = None,
                         device: str | torch.device = "cpu") -> torch.Tensor:
        """(n,) float32 training times in (0, 1) from `t_dist` (a `t_uniform` share from the uniform law)."""
        u = torch.rand(n, generator=generator, device=device)
        if self.t_dist == "uniform" and self.t_uniform == 0:
            return u
        z = torch.randn(n, generator=generator, device=device)
        t = u if self.t_dist == "uniform" else torch.sigmoid(self.t_mean + self.t_std * z)
        if self.t_uniform > 0:
            pick = torch.rand(n, generator=generator, device=device) < self.t_uniform
            t = torch.where(pick, u, t)
        return t

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """Flow time in [0, 1] → the value the DiT's timestep embedding sees."""
        return t * self.time_scale

    # ----------------------------------------------------------------- interpolant
    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        tt = _bcast(t, x_start)
        return (1 - tt) * x_start + tt * noise

    def velocity(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's output → v̂ (for "x0": (x_t − x̂_0)/max(t, t_min))."""
        if model_output.shape != x_t.shape:
            raise ValueError(f"flow matching needs a model output shaped like its input {tuple(x_t.shape)} "
                             f"(got {tuple(model_output.shape)}: build the DiT with learn_sigma=False)")
        if self.prediction == "velocity":
            return model_output
        return (x_t - model_output) / _bcast(t, x_t).clamp(min=self.t_min)

    def pred_xstart(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The network's output → x̂_0 (for "velocity": x_t − t v̂)."""
        if self.prediction == "x0":
            return model_output
        return x_t - _bcast(t, x_t) * self.velocity(model_output, x_t, t)

    def training_losses(self, model_fn: ModelFn, x_start: torch.Tensor, t: torch.Tensor,
                        noise: torch.Tensor | None = None) -> dict:
        """Per-sample velocity losses {"mse", "loss"} (the same here) at flow times t (N,) in (0, 1)."""
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise)
        v_hat = self.velocity(model_fn(x_t, self.model_timesteps(t)), x_t, t)
        # the target is ε − x_0 = (x_t − x_0)/t; for "x0" with the same clamp as v̂, so that the loss is
        # ‖x̂_0 − x_0‖² / max(t, t_min)²
        v = noise - x_start if self.prediction == "velocity" else self.velocity(x_start, x_t, t)
        mse = mean_flat((v_hat - v) ** 2)
        return {"mse": mse, "loss": mse}

    # ----------------------------------------------------------------- sampling
    def sample_loop(self, model_fn: ModelFn, shape: Sequence[int], rng: PerSampleRNG, *, steps: int = 50,
                    sampler: str = "euler", clip_denoised: bool = False, noise: torch.Tensor | None = None,
                    progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Integrate from noise (t = 1) to data (t = 0) in `steps` uniform intervals. clip_denoised clamps x̂_0
        to [−1, 1] at every evaluation (pixels). The velocity of an x̂_0 is (x_t − x̂_0)/t without the training
        clamp (the ODE's own field; the network is never called at t = 0), so the last Euler step lands on x̂_0."""
        if sampler not in FLOW_SAMPLERS:
            raise ValueError(f"sampler={sampler!r}; choose one of {FLOW_SAMPLERS}")
        if int(steps) < 1:
            raise ValueError(f"steps must be ≥ 1 (got {steps})")
        steps = int(steps)
        if len(rng) != shape[0]:
            raise ValueError(f"the RNG holds {len(rng)} samples but shape asks for {shape[0]}")
        x = rng.randn(*shape[1:]) if noise is None else noise
        if tuple(x.shape) != tuple(shape):
            raise ValueError(f"noise has shape {tuple(x.shape)}, expected {tuple(shape)}")

        def v(x: torch.Tensor, t: float) -> torch.Tensor:
            tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.float32)
            out = model_fn(x, self.model_timesteps(tt)).to(x.dtype)
            if self.prediction == "velocity" and not clip_denoised:
                return self.velocity(out, x, tt)
            x0 = self.pred_xstart(out, x, tt)
            return (x - (x0.clamp(-1, 1) if clip_denoised else x0)) / t     # exact: t ≥ 1/steps > 0 here

        grid = torch.linspace(1.0, 0.0, steps + 1).tolist()
        for i in range(steps):
            t, t_next = grid[i], grid[i + 1]
            d = v(x, t)
            x_next = x + (t_next - t) * d                       # Euler step (t decreases)
            if sampler == "heun" and t_next > 0:
                x_next = x + (t_next - t) * 0.5 * (d + v(x_next, t_next))
            x = x_next
            if progress is not None:
                progress(i + 1, steps)
        return x


def create_flow(prediction: str = "velocity", **kw) -> FlowMatching:
    """The flow-matching process of the module docstring (the keyword arguments of `FlowMatching`)."""
    return FlowMatching(prediction, **kw)
