"""Small pieces every stage uses: rank-blocked index ranges, gathering, progress callbacks."""
from __future__ import annotations

from typing import Any, Callable

import torch


def rank_block(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous block [lo, hi) of the global indices [0, n) owned by `rank` (all of them in one process)."""
    per = -(-n // world_size)
    return min(n, rank * per), min(n, (rank + 1) * per)


def gather_block(local: torch.Tensor, lo: int, n: int) -> torch.Tensor:
    """Reassemble the blocks of every rank into (n, ...) on the CPU (identity in one process)."""
    from dlc import dist as ddist

    return ddist.gather_indexed(local, torch.arange(lo, lo + len(local)), n).cpu()


def progress_callback(ctx: Any, total: int, desc: str, fields: dict[str, str]) -> tuple[Any, Callable]:
    """A progress bar and a training callback(step, logs) showing `fields` {log key: format}."""
    bar = ctx.progress(total=total, desc=desc)

    def cb(step: int, logs: dict) -> None:
        bar.n = step
        bar.set_postfix({k: format(logs.get(k, float("nan")), f) for k, f in fields.items()})
        bar.refresh()

    return bar, cb
