"""Shared test set-up.

Under pytest-xdist every worker gets one intra-op thread (and so do the subprocesses it starts):
two 2-thread torch processes on a 2-core machine spin-wait on each other and run many times slower.
Tests never download anything: the Hugging Face libraries are forced offline.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
