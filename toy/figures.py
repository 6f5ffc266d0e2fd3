"""Figures of the toy study: samples over the data (Fig. 2a–c, Fig. 11), KL vs number of modes
(Fig. 2d), and the score-magnitude heatmap with its vector field (Fig. 2e–f)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

VARIANT_COLORS = {"unconditional": "#c0392b", "oracle": "#2471a3", "gmm": "#229954", "data": "#7f8c8d"}


def samples_grid(data: Mapping[int, np.ndarray], samples: Mapping[tuple[str, int], np.ndarray],
                 variants: Sequence[str], n_modes: Sequence[int], max_points: int = 4000):
    """Rows: data then each variant; columns: number of modes. Model samples drawn over the data (grey)."""
    rows = ["data", *variants]
    fig, axes = plt.subplots(len(rows), len(n_modes), figsize=(2.6 * len(n_modes), 2.6 * len(rows)),
                             squeeze=False)
    for j, n in enumerate(n_modes):
        d = data[n][:max_points]
        lim = np.abs(data[n]).max() * 1.15
        for i, row in enumerate(rows):
            ax = axes[i, j]
            ax.scatter(d[:, 0], d[:, 1], s=0.6, c="#c8ccd0", linewidths=0, rasterized=True)
            if row != "data":
                s = samples[(row, n)][:max_points]
                ax.scatter(s[:, 0], s[:, 1], s=0.6, c=VARIANT_COLORS.get(row, "k"), linewidths=0, rasterized=True)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"N = {n}")
            if j == 0:
                ax.set_ylabel(row)
    fig.tight_layout()
    return fig


def score_fields(fields: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], centers: np.ndarray):
    """Heatmap of |score| with the (normalised) vector field; one panel per (title, X, Y, S) with S (H, W, 2)."""
    fig, axes = plt.subplots(1, len(fields), figsize=(4.6 * len(fields), 4.2), squeeze=False)
    for ax, (title, X, Y, S) in zip(axes[0], fields):
        mag = np.linalg.norm(S, axis=-1)
        im = ax.pcolormesh(X, Y, np.log10(mag + 1e-12), shading="auto", cmap="magma")
        step = max(1, X.shape[0] // 24)
        U = S[::step, ::step, 0] / (mag[::step, ::step] + 1e-12)
        V = S[::step, ::step, 1] / (mag[::step, ::step] + 1e-12)
        ax.quiver(X[::step, ::step], Y[::step, ::step], U, V, color="white", scale=40, width=0.003, alpha=0.8)
        ax.scatter(centers[:, 0], centers[:, 1], s=2, c="#00e5ff", linewidths=0)
        ax.set_title(title, fontsize=10)
        ax.set_aspect("equal")
        fig.colorbar(im, ax=ax, fraction=0.046, label="log10 |score|")
    fig.tight_layout()
    return fig
