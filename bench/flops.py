"""Floating-point operations of a call, counted by torch's dispatcher (`torch.utils.flop_counter`): matmuls,
convolutions and attention, 2 per multiply-add; element-wise work is not counted (as in the papers' FLOPs)."""
from __future__ import annotations

from typing import Any, Callable


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """The FLOPs of `fn(*args, **kwargs)` (forward, and backward when `fn` calls it), run once."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad() if kwargs.pop("no_grad", True) else torch.enable_grad():
        with FlopCounterMode(display=False) as counter:
            fn(*args, **kwargs)
    return int(counter.get_total_flops())


__all__ = ["count_flops"]
