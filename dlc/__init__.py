"""dlc: reference implementation of Discrete Latent Codes (SEM encoder, SEDD prior, DiT, baselines).

Knows nothing of the benchmark harness (`bench/`); every component runs on CPU with tiny presets and
on GPUs (under torchrun) with the paper presets.
"""
__version__ = "0.1.0"
