"""Figures shared by experiments: sample grids (torchvision.utils.make_grid) as matplotlib panels, metrics against a
sweep axis, and means with 95 % intervals against an axis."""
from __future__ import annotations

from typing import Collection, Mapping, Sequence

import numpy as np
import torch


def image_grid(images: torch.Tensor, cols: int) -> np.ndarray:
    """uint8 (N, 3, H, W) → one (rows·(H+1)+1, cols·(W+1)+1, 3) image with 1-px white separators."""
    from torchvision.utils import make_grid

    return make_grid(images, nrow=cols, padding=1, pad_value=255).permute(1, 2, 0).numpy()


def grid_panels(sets: Mapping[str, torch.Tensor], cols: int = 8, panel_width: float | None = None):
    """One matplotlib figure with a titled grid panel per image set. panel_width (inches): size each panel to its
    grid's aspect ratio (tall grids otherwise lose pixel rows when drawn); default 3.2 × 3.6 per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grids = {name: image_grid(imgs, cols) for name, imgs in sets.items()}
    if panel_width:
        h, w = next(iter(grids.values())).shape[:2]
        size = (panel_width * len(sets), panel_width * h / w + 0.4)
    else:
        size = (3.2 * len(sets), 3.6)
    fig, axes = plt.subplots(1, len(sets), figsize=size)
    for ax, (name, grid) in zip(np.atleast_1d(axes), grids.items()):
        ax.imshow(grid, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    return fig


def sweep_figure(rows: list[dict], axis: str, metrics: list[str]):
    """Each metric against a sweep axis, one line per combination of the rows' other labels (variant, ...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from .schema import METRIC_COLUMNS

    df = pd.DataFrame([r for r in rows if r["metric"] in metrics and r.get(axis) is not None])
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(3.6 * max(1, len(metrics)), 3.0), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sub = df[df["metric"] == m].dropna(axis=1, how="all")
        labels = [c for c in sub.columns if c not in (*METRIC_COLUMNS, axis, "seed")]
        for g, part in (sub.groupby(labels, dropna=False) if labels else [((), sub)]):
            g = g if isinstance(g, tuple) else (g,)
            part = part.sort_values(axis)
            ax.plot(part[axis], part["value"], marker="o",
                    label=", ".join(str(v) for v in g if not pd.isna(v)) or None)
        ax.set_xlabel(axis)
        ax.set_title(m, fontsize=10)
        if labels:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def interval_panels(panels: Sequence[tuple[str, Mapping[str, Sequence[tuple[float, float, float, float]]]]], *,
                    xlabel: str, ylabel: str, colors: Mapping[str, str] | None = None, dashed: Collection[str] = (),
                    logx: bool = False, symlog: float = 0.0):
    """One panel per (title, series): each series, {name: [(x, mean, ci_low, ci_high), ...]}, is drawn as its mean
    with the 95 % interval as error bars (e.g. a KL against the number of modes, over seeds); the series named in
    `dashed` (a floor, a reference) dashed with small markers. `logx`: a log x axis; `symlog` > 0: a log x axis
    that is linear within ±symlog, so that x = 0 can be drawn (e.g. η = 0 beside η = 0.001)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = colors or {}
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels):
        for name, pts in series.items():
            if not pts:
                continue
            x, m, lo, hi = (np.array(v, dtype=float) for v in zip(*sorted(pts)))     # no interval: nan
            style = dict(ls="--", marker=".", capsize=2) if name in dashed else dict(marker="o", ms=4, capsize=3)
            ax.errorbar(x, m, yerr=[m - lo, hi - m], label=name, color=colors.get(name), **style)
        if logx:
            ax.set_xscale("log")
        elif symlog > 0:
            ax.set_xscale("symlog", linthresh=symlog)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
