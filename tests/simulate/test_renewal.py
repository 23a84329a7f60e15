"""The renewal generator: its g2 and rate against the exact model's truth (beta = 1), its
artefacts against the exact generator's, and a campaign written with it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from daskxpcs.simulate import ScanSpec, expected_g2, iter_scan_blocks, make_detector, read_frames, simulate_campaign
from daskxpcs.simulate.renewal import _fill_block, scan_events
from daskxpcs.simulate.scan import _finish_block, hot_frames, simulate_scan, time_grid

#: tolerance in standard errors for each compared lag (jackknife over 32 independent
#: pixel groups: P(|t_31| > 4) ~ 4e-4 per lag)
N_SE = 4.0


def g2_and_se(frames: np.ndarray, pixels: np.ndarray, lags, groups: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """DESIGN.md ensemble g2 over `pixels` and its delete-one-group jackknife standard error.

    g2(k) = mean_t N(t, t+k) / (mean_{t<T-k} S(t) mean_{t>=k} S(t)), N and S means over the
    pixels.  Pixels are independent in the model, so random groups of them are
    independent samples.
    """
    x = frames.reshape(frames.shape[0], -1)[:, pixels].astype(np.float64)
    grp = np.random.default_rng(0).permutation(len(pixels)) % groups
    n_pix = np.bincount(grp, minlength=groups).astype(np.float64)
    g2, se = np.empty(len(lags)), np.empty(len(lags))
    for i, k in enumerate(lags):
        num = np.bincount(grp, (x[:-k] * x[k:]).sum(axis=0), groups)  # per group, summed over t
        a = np.bincount(grp, x[:-k].sum(axis=0), groups)
        b = np.bincount(grp, x[k:].sum(axis=0), groups)

        def est(num, a, b, n):  # (sum N / (T-k) / n) / ((sum a / (T-k) / n) (sum b / (T-k) / n))
            return num * n * (x.shape[0] - k) / (a * b)

        g2[i] = est(num.sum(), a.sum(), b.sum(), n_pix.sum())
        loo = est(num.sum() - num, a.sum() - a, b.sum() - b, n_pix.sum() - n_pix)
        se[i] = np.sqrt((groups - 1) / groups * np.sum((loo - loo.mean()) ** 2))
    return g2, se


@pytest.fixture(scope="module")
def plain_scan():
    """64 x 64 px, 3000 frames, 0.05 ph/px/frame, contrast 0.2, tau = 20 frames, no aging."""
    det = make_detector(shape=(64, 64))
    spec = ScanSpec(n_frames=3000, frame_time_s=0.1, tau_s=2.0, beta=1.0, contrast=0.2, rate=0.05, seed=7)
    frames, _ = simulate_scan(spec, det, truth=False, method="renewal")
    return spec, det, frames


def test_g2_matches_exact_model_truth(plain_scan):
    spec, det, frames = plain_scan
    pix = np.flatnonzero(det.valid)
    lags = np.array([1, 3, 10, 20, 40, 80])
    g2, se = g2_and_se(frames, pix, lags)
    ref = expected_g2(spec, det, pix, lags)
    assert np.all(np.abs(g2 - ref) < N_SE * se), (g2 - ref) / se
    # the test has power: a twice slower (or twice less contrasted) model is rejected by the same rule
    slow = expected_g2(dataclasses.replace(spec, tau_s=2 * spec.tau_s), det, pix, lags)
    assert np.any(np.abs(g2 - slow) > N_SE * se)
    faint = expected_g2(dataclasses.replace(spec, contrast=spec.contrast / 2), det, pix, lags)
    assert np.any(np.abs(g2 - faint) > N_SE * se)


def test_mean_rate(plain_scan):
    spec, det, frames = plain_scan
    valid = det.valid
    mean = frames[:, valid].mean(dtype=np.float64)
    n = valid.sum() * spec.n_frames
    tau_frames = spec.tau_s / spec.frame_time_s
    # Poisson plus speckle: the intensity stays correlated over ~tau / 2 frames (bounded above by 2 tau)
    sigma = np.sqrt(spec.rate / n + spec.contrast * spec.rate**2 * (2 * tau_frames + 1) / n)
    assert abs(mean - spec.rate) < 5 * sigma, (mean, spec.rate, sigma)


def test_warped_time_and_avalanche_match_truth():
    """Aging inside the scan (off-grid frames), rate changes, an avalanche and tau(q)."""
    det = make_detector(shape=(64, 64))
    spec = ScanSpec(
        n_frames=900, frame_time_s=0.1, tau_s=3.0, beta=1.0, contrast=0.3, rate=0.6, alpha=2.0,
        tau_star_s=150.0, rate_segments=((300, 2.0), (450, 0.5), (600, 1.0)), avalanches=(500,), seed=5,
    )
    assert not time_grid(spec).exact
    frames, _ = simulate_scan(spec, det, truth=False, method="renewal")
    pix = np.flatnonzero(det.valid)
    lags = np.array([1, 4, 15, 40, 120, 400])
    g2, se = g2_and_se(frames, pix, lags)
    ref = expected_g2(spec, det, pix, lags)
    assert np.all(np.abs(g2 - ref) < N_SE * se), (g2 - ref) / se
    # the test has power: the same model without the aging (tau x 1.8 over the scan) is rejected
    no_aging = expected_g2(dataclasses.replace(spec, tau_star_s=None), det, pix, lags)
    assert np.any(np.abs(g2 - no_aging) > N_SE * se)


def test_avalanche_renews_the_speckle():
    """Slow dynamics (tau = 10 scans): the mean intensity of a pixel in the two halves of the
    scan is the same speckle without an avalanche, independent ones across it."""
    det = make_detector(shape=(32, 32))
    spec = ScanSpec(n_frames=400, tau_s=400.0, contrast=0.5, rate=1.0, alpha=0.0, fsdp_background=1e6, seed=2)

    def halves_corr(s):
        frames, _ = simulate_scan(s, det, truth=False, method="renewal")
        x = frames.reshape(s.n_frames, -1).astype(np.float64)
        return np.corrcoef(x[:200].mean(axis=0), x[200:].mean(axis=0))[0, 1]

    # 1024 pixels: sd of a null correlation ~ 0.03
    assert halves_corr(spec) > 0.5
    assert abs(halves_corr(dataclasses.replace(spec, avalanches=(200,)))) < 0.15


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_artefacts_as_exact_generator(dtype):
    det = make_detector(shape=(32, 40), gap_rows=(7,), gap_cols=(20,), n_dead=5, n_hot=4, seed=3)
    spec = ScanSpec(n_frames=300, tau_s=1.0, rate=0.5, dtype=dtype, hot_frame_fraction=0.1, seed=9)
    exact, _ = simulate_scan(spec, det, truth=False)
    ren, _ = simulate_scan(spec, det, truth=False, method="renewal")
    assert ren.dtype == exact.dtype == np.dtype(dtype) and ren.shape == exact.shape
    top = np.iinfo(dtype).max
    assert np.all(ren[:, det.gap] == top) and np.all(exact[:, det.gap] == top)
    assert np.all(ren[:, det.dead] == 0) and np.all(exact[:, det.dead] == 0)
    np.testing.assert_array_equal(ren[:, det.hot] == top, exact[:, det.hot] == top)
    assert np.any(ren[:, det.hot] == top) and np.any(ren[:, det.hot] != top)
    np.testing.assert_array_equal(ren == top, exact == top)  # nowhere else at the maximum
    assert ren[:, det.valid].sum() > 0
    # the dense frames are the events through the exact generator's artefact step
    ptr, pixels = scan_events(spec, det)
    counts = np.zeros((spec.n_frames, det.gap.size), np.uint32)
    np.add.at(counts, (np.repeat(np.arange(spec.n_frames), np.diff(ptr)), pixels), 1)
    ref = _finish_block(counts.reshape(ren.shape), 0, spec, det, hot_frames(spec, det))
    np.testing.assert_array_equal(ren, ref)
    # blocks of any size give the same frames
    blocks = list(iter_scan_blocks(spec, det, block_frames=7, method="renewal"))
    assert max(b.shape[0] for b in blocks) == 7
    np.testing.assert_array_equal(np.concatenate(blocks), ren)


def test_counts_clip_below_dtype_maximum():
    top = np.iinfo(np.uint16).max
    out = np.zeros((2, 3), np.uint16)
    ptr = np.array([0, 70_000, 70_002])
    pixels = np.array([1] * 70_000 + [2, 2], np.int32)
    _fill_block(out, ptr, pixels, 0, top)
    np.testing.assert_array_equal(out, [[0, top - 1, 0], [0, 0, 2]])


def test_event_buffer_overflow_redraws_the_same_events():
    det = make_detector(shape=(16, 16), n_dead=3)
    spec = ScanSpec(n_frames=200, tau_s=1.0, rate=0.3, seed=4)
    ptr, pixels = scan_events(spec, det)
    ptr2, pixels2 = scan_events(spec, det, capacity=10)
    assert ptr[-1] > 10
    np.testing.assert_array_equal(ptr, ptr2)
    np.testing.assert_array_equal(pixels, pixels2)
    assert not np.isin(pixels, np.flatnonzero(det.dead)).any()


def test_renewal_needs_beta_one_and_a_known_method(tmp_path):
    det = make_detector(shape=(8, 8))
    spec = ScanSpec(n_frames=50, beta=1.5)
    with pytest.raises(ValueError, match="beta"):
        iter_scan_blocks(spec, det, method="renewal")  # at the call, not at the first block
    with pytest.raises(ValueError, match="method"):
        iter_scan_blocks(spec, det, method="fast")
    with pytest.raises(ValueError, match="with_intensity"):
        simulate_scan(dataclasses.replace(spec, beta=1.0), det, method="renewal", with_intensity=True)
    with pytest.raises(ValueError, match="method"):
        simulate_campaign(tmp_path, preset="tiny", method="fast")


def test_tiny_campaign_with_renewal(tmp_path):
    manifest = simulate_campaign(tmp_path, preset="tiny", seed=1, method="renewal")
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["global"]["generator"] == "renewal"
    assert {t["format"] for t in truth["scans"].values()} == {"lima", "bliss", "eiger", "lima2"}
    for name, t in truth["scans"].items():
        assert t["beta"] == 1.0 and t["spec"]["beta"] == 1.0
        # the truth is fitted on the beta = 1 expected g2 (rate changes and avalanches bend it a little)
        assert t["expected"]["beta"][-1] == pytest.approx(1.0, abs=0.2)
        frames = read_frames(tmp_path / t["raw"], t["format"], entry=t["raw_entry"])
        assert frames.shape == (t["n_frames"], *truth["geometries"][t["geometry"]]["shape"])
        valid = np.load(tmp_path / truth["geometries"][t["geometry"]]["valid_file"])
        assert frames[:, valid].mean() == pytest.approx(t["rate"], rel=0.15), name
    assert all(i["beta"] == 1.0 for i in truth["isobars"])
    assert any(i["beta_preset"] != 1.0 for i in truth["isobars"])
    assert manifest == tmp_path / "campaign.toml" and manifest.exists()
