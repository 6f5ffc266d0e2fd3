"""toy-mixture's configuration: one flat group (the sweep axis n_modes, data, model, training, sampling, GMM,
evaluation, figures), each value checked when the config is read, and the memory its points need."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dlc.validate import at_least, check, choice, in_range, nonempty, positive, within_memory
from toy import data as tdata

VARIANTS = ("unconditional", "oracle", "gmm")


@dataclass(frozen=True)
class ToyMixtureConfig:
    # data
    n_modes: tuple[int, ...] = (9, 121, 400, 900)
    variants: tuple[str, ...] = VARIANTS
    variance: float = 0.1
    spacing: float = 1.0
    n_train: int = 50_000                 # finite training set per (N, seed), shared by the variants
    # model: a `layers`-layer MLP
    hidden: int = 128
    layers: int = 4
    t_dim: int = 64
    c_dim: int = 64
    # training (improved DDPM: cosine schedule, learned variance, hybrid loss)
    batch_size: int = 1024
    train_samples: int = 1_536_000        # samples seen per model; steps = train_samples / batch_size
    lr: float = 2e-3
    warmup: int = 100
    diffusion_steps: int = 1000
    # sampling
    sample_steps: int = 100               # respaced ancestral steps
    clip_x0: bool = True                  # clamp x̂0 to the training data's bounding box (ADM clip_denoised)
    # GMM variant
    gmm_fit_samples: int = 20_000
    gmm_covariance: Literal["spherical", "diag", "full", "tied"] = "spherical"
    gmm_max_iter: int = 100
    gmm_init: Literal["kmeans", "k-means++", "random", "random_from_data"] = "kmeans"
    # evaluation
    n_kde: int = 10_000                   # samples the KDE is fitted on (model samples, or true ones for the floor)
    n_eval: int = 10_000                  # evaluation points (true samples for forward KL, model samples for reverse)
    bandwidth: Literal["silverman", "scott"] = "silverman"
    n_cv: int = 2_000                     # held-out true samples for the cross-validated bandwidth
    cv_bandwidths: tuple[float, ...] = (0.04, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5, 2.0)
    mode_radius_sigmas: float = 3.0
    # figures
    figure_points: int = 4000
    score_n_modes: int = 121              # N used for the score-field figure (must be in n_modes)
    score_t: int = 100                    # diffusion timestep (of diffusion_steps) at which the score is drawn
    score_condition: int = 6              # component index the conditional score is drawn for (as the paper)

    def __post_init__(self):
        check(self, positive=("variance", "spacing", "n_train", "hidden", "layers", "t_dim", "c_dim", "batch_size",
                              "train_samples", "lr", "diffusion_steps", "sample_steps", "gmm_fit_samples",
                              "gmm_max_iter", "n_eval", "n_cv", "mode_radius_sigmas", "figure_points"),
              non_negative=("warmup", "score_t", "score_condition"))
        nonempty("n_modes", self.n_modes)
        nonempty("variants", self.variants)
        for n in self.n_modes:
            tdata.grid_side(n)
        for v in self.variants:
            choice("variants", v, VARIANTS)
        for k, options in (("gmm_covariance", ("spherical", "diag", "full", "tied")), ("bandwidth", ("silverman", "scott")),
                           ("gmm_init", ("kmeans", "k-means++", "random", "random_from_data"))):
            choice(k, getattr(self, k), options)
        at_least("n_kde", self.n_kde, 3)
        at_least("train_samples", self.train_samples, self.batch_size, "set train_samples ≥ batch_size")
        in_range("sample_steps", self.sample_steps, 1, self.diffusion_steps)
        in_range("score_t", self.score_t, 0, self.diffusion_steps, hi_open=True)
        nonempty("cv_bandwidths", self.cv_bandwidths)
        for h in self.cv_bandwidths:
            positive("cv_bandwidths", h)
        if self.score_n_modes not in self.n_modes:
            raise ValueError(f"score_n_modes={self.score_n_modes} is not one of n_modes={list(self.n_modes)}")

    def check_resources(self, available: int | None = None) -> None:
        """Refuse sizes whose arrays (float64 2-D points) cannot fit this machine's memory (the KDE works in
        bounded chunks)."""
        points = self.n_train + 2 * (self.n_kde + self.n_eval) + self.n_cv + self.gmm_fit_samples
        within_memory({"training, reference and evaluation points": 16 * points}, "lower n_train, n_kde or n_eval",
                      available)


# the sweep axis and variant list enter keys one value at a time (n_modes=n, variant=v); figures only read these
NOT_IN_KEYS = ("n_modes", "variants", "figure_points", "score_n_modes", "score_t", "score_condition")
