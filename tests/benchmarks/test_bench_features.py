"""Feature-extraction benchmark (run with `make bench`): our `inception-v3-compat` vs torch-fidelity's
`FeatureExtractorInceptionV3`, timed in the same process on identical batches with the same random weights file.

Both run torch-fidelity's modules and its TF1-bilinear resize; ours re-sequences the forward to give pool3, the
sFID spatial layer and the logits in one pass. Target (issue #3): images/s ≥ 1.0× torch-fidelity's. The assertion
allows 5 % (≥ 0.95×): the two do the same arithmetic, so the expected ratio is 1.0 and what remains is timing noise
on a shared 2-core machine (runs are interleaved and the best of 4 taken to damp it).
16 images of 64 px (resized to 299 inside, so the cost is that of 299 px input), one batch: < 1 minute on 2 cores.
"""
from __future__ import annotations

import time

import pytest
import torch

from bench.features import build_extractor

from ..test_features_helpers import make_inception_weights, smooth_images

pytestmark = pytest.mark.benchmark

N_IMAGES, SIZE, ROUNDS = 16, 64, 4


def test_inception_features_images_per_second_vs_torch_fidelity(benchmark, tmp_path):
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    weights = make_inception_weights(tmp_path / "inception-random.pth")
    images = smooth_images(N_IMAGES, SIZE, seed=0)                                   # (32, 3, 64, 64) uint8
    ours = build_extractor("inception-v3-compat", weights=weights, device="cpu")
    ref = tfi.FeatureExtractorInceptionV3("ref", ["2048", "logits_unbiased"],
                                          feature_extractor_weights_path=str(weights)).eval()

    def run_ours():
        return ours(images, ["pool3", "logits_unbiased"])

    def run_ref():
        with torch.no_grad():
            return ref(images)

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out

    ref_times, our_times = [], []
    for _ in range(ROUNDS - 1):                              # interleaved: drift on a shared machine hits both
        t, ref_out = timed(run_ref)
        ref_times.append(t)
        t, our_out = timed(run_ours)
        our_times.append(t)
    our_out = benchmark.pedantic(run_ours, rounds=1, iterations=1)   # the last pair: recorded by pytest-benchmark
    our_times.append(benchmark.stats["min"])
    ref_times.append(timed(run_ref)[0])
    assert torch.equal(our_out["pool3"], ref_out[0]) and torch.equal(our_out["logits_unbiased"], ref_out[1])
    ref_ips, our_ips = N_IMAGES / min(ref_times), N_IMAGES / min(our_times)
    ratio = our_ips / ref_ips
    benchmark.extra_info.update(ours_images_per_s=our_ips, torch_fidelity_images_per_s=ref_ips, ratio=ratio)
    print(f"\ninception-v3-compat {N_IMAGES}x{SIZE}px → 299: torch-fidelity {ref_ips:.2f} img/s, "
          f"ours {our_ips:.2f} img/s → {ratio:.3f}×")
    assert ratio >= 0.95
