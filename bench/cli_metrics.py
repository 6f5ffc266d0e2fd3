"""`dlc-bench metrics` and `dlc-bench ref-stats` (registered once the extractors and metrics land)."""
from __future__ import annotations

import argparse

METRICS_COMMANDS: dict = {}


def add_metrics_parsers(sub: argparse._SubParsersAction) -> None:
    return None
