"""`dlc-bench metrics` and `dlc-bench ref-stats`, run in-process through `bench.cli.main`.

References: the pixel features recomputed with PIL + numpy, clean-fid's `frechet_distance` (scipy sqrtm) and
`kernel_distance`, torch-fidelity's precision/recall, vendi-score's `score_dual`; for Inception (seeded random
weights) torch-fidelity's `calculate_metrics` on the same images and weights file. Plus: the JSON equals the
library functions called directly, the run is written (results.json/csv, report.html) and recorded in the run
store, reference statistics give the same FD as the images they came from, and bad input exits 2 writing nothing.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.cli import main

from .test_features_helpers import UInt8Dataset, make_inception_weights, save_pngs, smooth_images


# tiny fixtures: the metrics warn (as they should) about rank-deficient covariances and KID subset sizes
pytestmark = pytest.mark.filterwarnings("ignore:KID. .* fewer than the subset size:RuntimeWarning",
                                        "ignore:.*covariance is rank-deficient:RuntimeWarning")


def run_cli(capsys, *argv) -> tuple[int, dict | None, str]:
    """(exit status, parsed stdout JSON or None, stderr)."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 and out.strip().startswith("{") else None), err


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """60 'real' and 60 'fake' 4x4 images (48-d pixel features: full-rank covariances), 20 + 20 of 8x8."""
    root = tmp_path_factory.mktemp("cli-images")
    return {"real": save_pngs(smooth_images(60, 4, seed=1), root / "real"),
            "fake": save_pngs(smooth_images(60, 4, seed=2, shift=25), root / "fake"),
            "big": save_pngs(smooth_images(20, 8, seed=3), root / "big"),
            "big_fake": save_pngs(smooth_images(20, 8, seed=4, shift=25), root / "big_fake")}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-cache")


def pixel_features(folder: Path) -> np.ndarray:
    """The `pixels` extractor recomputed independently: PIL → (C, H, W) flattened, / 255, float32."""
    files = sorted(folder.glob("*.png"))
    return np.stack([np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1).reshape(-1) for p in files]
                    ).astype(np.float32) / 255


@pytest.fixture(scope="module")
def pixel_run(folders, cache_dir, tmp_path_factory):
    """One full `dlc-bench metrics` run on the pixel folders, with --out and --store."""
    root = tmp_path_factory.mktemp("cli-run")
    out, store = root / "out", root / "runs.sqlite"
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["metrics", "--real", str(folders["real"]), "--fake", str(folders["fake"]), "--features", "pixels",
                   "--metrics", "fid,kid,pr,dc,vendi,vendi_q2,fd_inf", "--out", str(out), "--store", str(store),
                   "--cache-dir", str(cache_dir), "--quiet"])
    assert rc == 0, stderr.getvalue()
    return {"json": json.loads(stdout.getvalue()), "out": out, "store": store, "stderr": stderr.getvalue()}


def test_json_matches_direct_calls_and_independent_references(pixel_run, folders):
    from cleanfid.fid import frechet_distance, kernel_distance
    from torch_fidelity.metric_prc import prc_features_to_metric
    from vendi_score import vendi

    from bench.features import build_extractor
    from bench.metrics import fd, fd_infinity, kid, prdc, vendi_score

    got = pixel_run["json"]
    assert list(got) == ["fd_pixels", "kid", "kid_std", "precision", "recall", "density", "coverage", "vendi",
                         "vendi_q2", "fd_pixels_inf"]
    real, fake = pixel_features(folders["real"]), pixel_features(folders["fake"])
    ext = build_extractor("pixels")
    np.testing.assert_array_equal(ext.extract(folders["real"])["pixels"], real)
    # the library functions, called directly on the same features
    assert got["fd_pixels"] == fd(real=real, fake=fake)
    assert got["fd_pixels_inf"] == fd_infinity(real=real, fake=fake)
    k = kid(real=real, fake=fake)
    assert (got["kid"], got["kid_std"]) == (k["mean"], k["std"])
    pr, keys = prdc(real=real, fake=fake), ("precision", "recall", "density", "coverage")
    assert {m: got[m] for m in keys} == {m: pr[m] for m in keys}
    assert got["vendi"] == vendi_score(fake) and got["vendi_q2"] == vendi_score(fake, q=2)
    # independent references
    r64, f64 = real.astype(np.float64), fake.astype(np.float64)
    ref_fd = frechet_distance(r64.mean(0), np.cov(r64, rowvar=False), f64.mean(0), np.cov(f64, rowvar=False))
    assert got["fd_pixels"] > 0.05 and got["fd_pixels"] == pytest.approx(ref_fd, rel=1e-8)
    # clean-fid's KID with 60 < its subset size uses all samples in every subset: deterministic
    assert got["kid"] == pytest.approx(kernel_distance(f64, r64), rel=1e-8)
    prc = prc_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), verbose=False)  # (generated, real)
    assert (got["precision"], got["recall"]) == pytest.approx((prc["precision"], prc["recall"]), abs=1e-6)  # float32
    assert got["vendi_q2"] == pytest.approx(vendi.score_dual(f64, q=2), rel=1e-10)


def test_results_files_report_and_run_store(pixel_run):
    from bench.store import RunStore

    out, values = pixel_run["out"], pixel_run["json"]
    from bench.schema import SCHEMA_VERSION, read_results

    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "metrics" and results["schema_version"] == SCHEMA_VERSION
    assert read_results(out).run_id == results["run_id"]                       # a valid `Results` record
    features, metrics = results["stages"]                                       # what each step read
    assert features["extractor"]["extractor"] == "pixels" and features["inputs"]["n_fake"] == 60
    assert metrics["metric_specs"]["fd"]["higher_is_better"] is False
    assert {r["metric"]: r["value"] for r in results["metrics"]} == values
    fid_row = next(r for r in results["metrics"] if r["metric"] == "fd_pixels")
    assert fid_row["higher_is_better"] is False and fid_row["n"] == 60 and fid_row["layer"] == "pixels"
    with open(out / "results.csv") as f:
        csv_rows = {r["metric"]: float(r["value"]) for r in csv.DictReader(f)}
    assert csv_rows == pytest.approx(values, rel=1e-12)
    html = (out / "report.html").read_text()
    assert "fd_pixels" in html and "coverage" in html
    store = RunStore(pixel_run["store"])
    runs = store.runs(experiment="metrics")
    assert [r["run_id"] for r in runs] == [results["run_id"]] and runs[0]["out_dir"] == str(out.resolve())
    assert {m["metric"]: m["value"] for m in store.metrics(results["run_id"])} == pytest.approx(values, rel=1e-12)
    assert [h["value"] for h in store.history("metrics", "fd_pixels")] == [values["fd_pixels"]]


def test_ref_stats_round_trip_gives_the_same_fd(folders, cache_dir, tmp_path, capsys, pixel_run):
    from bench.refstats import load_ref_stats

    ref = tmp_path / "real-stats.npz"
    rc, _, err = run_cli(capsys, "ref-stats", folders["real"], "--features", "pixels", "--out", ref,
                         "--cache-dir", cache_dir, "--quiet")
    assert rc == 0, err
    stats = load_ref_stats(ref)
    real = pixel_features(folders["real"]).astype(np.float64)
    np.testing.assert_allclose(stats.mu, real.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(real, rowvar=False), rtol=1e-10, atol=1e-14)
    assert stats.n == 60 and stats.meta["extractor"]["extractor"] == "pixels"
    rc, got, err = run_cli(capsys, "metrics", "--real", ref, "--fake", folders["fake"], "--features", "pixels",
                           "--metrics", "fid,fd_inf,vendi", "--no-store", "--cache-dir", cache_dir, "--quiet")
    assert rc == 0, err
    assert got["vendi"] == pixel_run["json"]["vendi"]                  # fake-only metrics need no real images
    assert got["fd_pixels"] == pytest.approx(pixel_run["json"]["fd_pixels"], rel=1e-12)
    assert got["fd_pixels_inf"] == pytest.approx(pixel_run["json"]["fd_pixels_inf"], rel=1e-12)


def test_reference_batch_uses_stats_for_fd_and_images_for_the_rest(folders, cache_dir, tmp_path, capsys):
    """An .npz with mu/sigma and arr_0 (NHWC), as ADM's reference batches: FD from the statistics, KID from the
    images."""
    from bench.metrics import fd, kid
    from bench.refstats import META_KEY, build_ref_stats

    imgs = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folders["big"].glob("*.png"))])
    stats = build_ref_stats(imgs, "pixels", cache=False)                           # imgs: (20, 8, 8, 3) uint8
    shifted = stats.mu + 0.1                                                        # FD must come from these
    path = tmp_path / "ref_batch.npz"
    np.savez(path, arr_0=imgs, mu=shifted, sigma=stats.sigma, **{META_KEY: json.dumps(stats.meta, default=str)})
    rc, got, err = run_cli(capsys, "metrics", "--real", path, "--fake", folders["big_fake"], "--features", "pixels",
                           "--metrics", "fid,kid", "--no-store", "--cache-dir", cache_dir, "--quiet")
    assert rc == 0, err
    real, fake = pixel_features(folders["big"]), pixel_features(folders["big_fake"])
    assert got["kid"] == kid(real=real, fake=fake)["mean"]
    assert got["fd_pixels"] == pytest.approx(fd(real=(shifted, stats.sigma), fake=fake), rel=1e-12)
    assert abs(got["fd_pixels"] - fd(real=real, fake=fake)) > 0.01


# ---- bad input: one line, exit 2, nothing written ---------------------------------------------------------------

BAD = {
    "unknown metric": (["--metrics", "fid,kdi"], "unknown metric 'kdi'. Did you mean 'kid'"),
    "missing folder": (["--metrics", "fid", "--real", "{tmp}/nope"], "does not exist"),
    "mismatched dims": (["--metrics", "fid", "--fake", "{big}"], "feature dimensions differ"),
    "layer the extractor lacks": (["--metrics", "sfid"], "needs the layer 'spatial'"),
    "unknown extractor": (["--metrics", "fid", "--features", "pixls"], "Did you mean 'pixels'"),
    "IS needs logits": (["--metrics", "is"], "needs the layer 'logits_unbiased'"),
    "stats without images": (["--metrics", "fid,pr", "--real", "{stats}"], "only fid, sfid and fd_inf"),
    "ADM stats vs pixels": (["--metrics", "fid", "--real", "{adm}"], "not comparable"),
    "too few samples": (["--metrics", "pr", "--fake", "{three}"], "needs at least 4 samples"),
    "unknown layer": (["--metrics", "fid", "--layer", "pool3"], "pixels has no layer 'pool3'"),
    "empty batch size": (["--metrics", "fid", "--batch-size", "0"], "--batch-size must be >= 1"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_and_writes_nothing(case, folders, cache_dir, tmp_path, capsys):
    from bench.refstats import build_ref_stats, save_ref_stats

    stats = save_ref_stats(tmp_path / "stats.npz", build_ref_stats(folders["real"], "pixels", cache=cache_dir))
    np.savez(tmp_path / "adm.npz", mu=np.zeros(48), sigma=np.eye(48))          # ADM's own format: no metadata
    three = save_pngs(smooth_images(3, 4, seed=9), tmp_path / "three")
    extra, message = BAD[case]
    args = {"--real": str(folders["real"]), "--fake": str(folders["fake"]), "--features": "pixels"}
    it = iter(extra)
    for k in it:
        args[k] = next(it).format(tmp=tmp_path, big=folders["big"], stats=stats, adm=tmp_path / "adm.npz",
                                  three=three)
    out, store = tmp_path / "out", tmp_path / "runs.sqlite"
    argv = ["metrics", *[x for kv in args.items() for x in kv], "--out", out, "--store", store, "--cache-dir",
            cache_dir, "--quiet"]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], err
    assert not out.exists() and not store.exists()


def test_ref_stats_bad_output_name(folders, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "ref-stats", folders["real"], "--features", "pixels", "--out", tmp_path / "x.txt")
    assert rc == 2 and "must end in .npz" in err and not (tmp_path / "x.txt").exists()


# ---- Inception (seeded random weights) against torch-fidelity -------------------------------------------------

def test_inception_metrics_equal_torch_fidelity(tmp_path, cache_dir, capsys):
    """fid (on the 192-d layer: cheap), is, kid and pr through the CLI = torch-fidelity's calculate_metrics on the
    same 20 + 20 images and weights file, both run in one batch per side (identical float32 inputs)."""
    from torch_fidelity import calculate_metrics

    weights = make_inception_weights(tmp_path / "inception-random.pth")
    real, fake = smooth_images(20, 16, seed=11), smooth_images(20, 16, seed=12, shift=40)
    np.save(tmp_path / "real.npy", real.numpy())                                  # NCHW uint8
    np.save(tmp_path / "fake.npy", fake.permute(0, 2, 3, 1).numpy())              # NHWC uint8
    rc, got, err = run_cli(capsys, "metrics", "--real", tmp_path / "real.npy", "--fake", tmp_path / "fake.npy",
                           "--features", "inception-v3-compat", "--weights", weights, "--layer", "pool_192",
                           "--metrics", "fid,is,kid,pr", "--batch-size", 20, "--device", "cpu", "--no-store",
                           "--cache-dir", cache_dir, "--quiet")
    assert rc == 0, err
    ref = calculate_metrics(input1=UInt8Dataset(fake), input2=UInt8Dataset(real), cuda=False, batch_size=20,
                            fid=True, isc=True, kid=True, prc=True, feature_extractor="inception-v3-compat",
                            feature_extractor_weights_path=str(weights), feature_layer_fid="192",
                            feature_layer_kid="192", feature_layer_prc="192", kid_subset_size=20, cache=False,
                            save_cpu_ram=True, verbose=False)
    label = "fd_inception-v3-compat_pool_192"                      # never "fid" off pool3
    assert set(got) == {label, "is_adm", "is_fidelity", "is_fidelity_std", "kid", "kid_std", "precision", "recall"}
    assert got[label] > 1 and got[label] == pytest.approx(ref["frechet_inception_distance"], rel=1e-6)
    assert got["is_fidelity"] == pytest.approx(ref["inception_score_mean"], rel=1e-9)
    assert got["is_fidelity_std"] == pytest.approx(ref["inception_score_std"], rel=1e-6, abs=1e-12)
    assert got["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-6)
    # torch-fidelity returns float32 fractions
    assert (got["precision"], got["recall"]) == pytest.approx((ref["precision"], ref["recall"]), abs=1e-6)
