"""Noise schedules σ(t) of the SEDD forward process, t ∈ [0, 1] (SEDD `noise_lib.py`).

A token is corrupted by time t with probability 1 − e^{−σ(t)}. `noise(t)` returns (σ(t), σ'(t)).
"""
from __future__ import annotations

import math

import torch

__all__ = ["LogLinearNoise", "GeometricNoise", "get_noise", "NOISES"]

NOISES = ("loglinear", "geometric")


class LogLinearNoise:
    """σ(t) = −log(1 − (1−ε)t): the mask probability 1 − e^{−σ} = (1−ε)t is linear in t (SEDD-absorb)."""

    def __init__(self, eps: float = 1e-3):
        if not 0.0 < eps < 1.0:
            raise ValueError(f"noise eps={eps} must be in (0, 1)")
        self.eps = float(eps)

    def total(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log1p(-(1 - self.eps) * t)

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def __call__(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.total(t), self.rate(t)


class GeometricNoise:
    """σ(t) = σ_min^{1−t} σ_max^t (SEDD-uniform)."""

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max (got {sigma_min}, {sigma_max})")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def total(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min ** (1 - t) * self.sigma_max ** t

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        return self.total(t) * math.log(self.sigma_max / self.sigma_min)

    def __call__(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.total(t), self.rate(t)


def get_noise(config) -> LogLinearNoise | GeometricNoise:
    """The schedule named by `config.noise` ('loglinear' with `noise_eps`, or 'geometric')."""
    if config.noise == "loglinear":
        return LogLinearNoise(config.noise_eps)
    if config.noise == "geometric":
        return GeometricNoise(config.sigma_min, config.sigma_max)
    raise ValueError(f"unknown noise {config.noise!r}; choose one of {NOISES}")
