"""Physics of one simulated scan: rate, contrast, KWW shape (incl. compressed), aging, avalanches, artefacts."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fit_kww, numpy_g2
from hypothesis import given, settings
from hypothesis import strategies as st

from daskxpcs.kernels import lag_ladder
from daskxpcs.simulate import ScanSpec, expected_g2, iter_scan_blocks, make_detector, simulate_scan
from daskxpcs.simulate.scan import internal_increments, time_grid

FLAT = dict(alpha=0.0, fsdp_background=1e6)  # one tau and a flat intensity over the detector


@settings(max_examples=6, deadline=None)
@given(rate=st.floats(1e-3, 1.0), seed=st.integers(0, 2**16))
def test_mean_counts_equal_rate(rate, seed):
    det = make_detector(shape=(32, 32), gap_rows=(5,), n_dead=3, n_hot=2, seed=seed)
    spec = ScanSpec(n_frames=200, frame_time_s=0.1, tau_s=1.0, rate=rate, contrast=0.2, seed=seed)
    frames, _ = simulate_scan(spec, det, truth=False)
    valid = det.valid
    mean = frames[:, valid].mean(dtype=np.float64)
    n = valid.sum() * spec.n_frames
    tau_frames = spec.tau_s / spec.frame_time_s
    sigma = np.sqrt(rate / n + spec.contrast * rate**2 * (2 * tau_frames + 1) / n)
    assert abs(mean - rate) < 5 * sigma, (mean, rate, sigma)


@pytest.mark.parametrize("n_modes", [1, 3])
def test_contrast_of_intensity_and_counts(n_modes):
    det = make_detector(shape=(48, 48))
    spec = ScanSpec(n_frames=600, tau_s=2.0, beta=1.0, contrast=0.3, n_modes=n_modes, rate=0.8, seed=3, **FLAT)
    frames, _, inten = simulate_scan(spec, det, truth=False, with_intensity=True)
    i = inten.reshape(spec.n_frames, -1)
    # speckle contrast of the noise-free intensity: var / mean^2 = (1 - f)^2 / M = contrast
    c = np.mean(i.var(axis=0) / i.mean(axis=0) ** 2)
    assert c == pytest.approx(spec.contrast, rel=0.1)
    # the photon counts give the same through g2(1) - 1 (Poisson adds nothing at lag >= 1)
    g2 = numpy_g2(frames, np.arange(48 * 48), np.array([1]))[0]
    expect = spec.contrast * np.exp(-2 * (spec.frame_time_s / spec.tau_s) ** spec.beta)
    assert g2 - 1 == pytest.approx(expect, rel=0.1)


@pytest.mark.parametrize("beta", [0.6, 1.0, 1.8])
def test_numpy_g2_recovers_kww(beta):
    det = make_detector(shape=(48, 48))
    spec = ScanSpec(n_frames=1000, frame_time_s=0.1, tau_s=4.0, beta=beta, contrast=0.3, rate=0.5, seed=11, **FLAT)
    frames, truth = simulate_scan(spec, det)
    lags = lag_ladder(spec.n_frames)
    g2 = numpy_g2(frames, np.flatnonzero(det.valid), lags)
    fit = fit_kww(lags * spec.frame_time_s, g2, tau0=2.0)
    assert fit["tau"] == pytest.approx(spec.tau_s, rel=0.1)
    assert abs(fit["beta"] - beta) < 0.1
    assert fit["contrast"] == pytest.approx(spec.contrast, rel=0.15)
    # with alpha = 0 the truth's expected fit is the nominal one
    assert truth["expected"]["tau_s"][-1] == pytest.approx(spec.tau_s, rel=1e-3)
    assert truth["expected"]["beta"][-1] == pytest.approx(beta, abs=1e-3)


def test_aging_heterogeneity_and_q_dependence_match_truth():
    """Time warping (aging inside the scan, rate changes), avalanches and tau(q): the plain
    numpy g2 of each q-bin matches the exact expected g2 the truth is fitted on."""
    det = make_detector(shape=(64, 64), q_edges=(2.70, 2.88, 3.05))
    spec = ScanSpec(
        n_frames=900, frame_time_s=0.1, tau_s=3.0, beta=1.5, contrast=0.3, rate=0.6, alpha=2.0,
        tau_star_s=150.0, rate_segments=((300, 2.0), (450, 0.5), (600, 1.0)), avalanches=(500,), seed=5,
    )
    assert not time_grid(spec).exact
    frames, truth = simulate_scan(spec, det)
    lags = lag_ladder(spec.n_frames)
    q = det.qmap.ravel()
    taus = []
    for b, (lo, hi) in enumerate(zip(det.q_edges[:-1], det.q_edges[1:])):
        pix = np.flatnonzero(det.valid.ravel() & (q >= lo) & (q < hi))
        g2 = numpy_g2(frames, pix, lags)
        ref = expected_g2(spec, det, pix, lags)
        np.testing.assert_allclose(g2, ref, atol=0.02)
        fit = fit_kww(lags * spec.frame_time_s, g2, tau0=3.0)
        assert fit["tau"] == pytest.approx(truth["expected"]["tau_s"][b], rel=0.1)
        taus.append(fit["tau"])
    assert taus[1] < taus[0]  # faster at larger q
    assert truth["heterogeneous"] and truth["avalanche_frames"] == [500]


def test_avalanche_decorrelates_completely():
    det = make_detector(shape=(40, 40))
    # tau far longer than the scan: no decay except across the avalanche
    spec = ScanSpec(n_frames=200, tau_s=1e4, beta=1.0, contrast=0.4, rate=0.5, avalanches=(100,), seed=2, **FLAT)
    _, _, inten = simulate_scan(spec, det, truth=False, with_intensity=True)
    i = inten.reshape(spec.n_frames, -1)
    i = i / i.mean()  # ensemble normalisation (flat profile): a time mean would hide the speckle
    same = np.mean(i[10] * i[90])
    across = np.mean(i[90] * i[110])
    assert same - 1 == pytest.approx(0.4, abs=0.06)
    assert across - 1 == pytest.approx(0.0, abs=0.06)


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_detector_artefacts(dtype):
    det = make_detector(shape=(24, 30), gap_rows=(7,), gap_cols=(12,), n_dead=5, n_hot=3, seed=1)
    spec = ScanSpec(n_frames=60, tau_s=0.5, rate=0.2, dtype=dtype, beam_rms=0.05, seed=4)
    frames, _ = simulate_scan(spec, det, truth=False)
    top = np.iinfo(dtype).max
    assert frames.dtype == np.dtype(dtype)
    assert (frames[:, det.gap] == top).all()
    assert (frames[:, det.dead] == 0).all()
    hot = frames[:, det.hot]
    assert (hot == top).any(axis=0).all() and not (hot == top).all(axis=0).any()
    assert not (frames[:, det.valid] == top).any()
    # the DESIGN.md valid-pixel rule recovers exactly the detector's valid mask
    rule = ~(det.mask.astype(bool) | (frames == top).any(axis=0))
    np.testing.assert_array_equal(rule, det.valid)


@settings(max_examples=6, deadline=None)
@given(block=st.integers(1, 70), on_disk=st.booleans(), tile_rows=st.integers(1, 14), workers=st.integers(1, 3))
def test_streaming_equals_in_memory(block, on_disk, tile_rows, workers, tmp_path_factory):
    det = make_detector(shape=(13, 16), n_dead=2, n_hot=1)
    spec = ScanSpec(n_frames=64, tau_s=0.4, beta=1.7, rate=0.3, tau_star_s=20.0, avalanches=(30,), seed=9)
    ref, _ = simulate_scan(spec, det, truth=False)
    workdir = tmp_path_factory.mktemp("tiles")
    blocks = list(
        iter_scan_blocks(spec, det, block_frames=block, memmap_bytes=0 if on_disk else 1 << 30, workdir=workdir,
                         tile_rows=tile_rows, workers=workers)
    )
    assert all(b.shape[0] <= block for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), ref)
    assert not list(workdir.iterdir())  # the temporary tile file is never visible on disk


def test_time_grid_exact_for_rate_factors():
    spec = ScanSpec(n_frames=100, tau_s=1.0, rate_segments=((20, 2.0), (50, 0.5), (70, 1.0)))
    g = time_grid(spec)
    assert g.exact
    u = np.concatenate([[0], np.cumsum(internal_increments(spec))])
    np.testing.assert_allclose(g.index * g.h[0], u, rtol=1e-12, atol=1e-12)


def test_invalid_parameters():
    with pytest.raises(ValueError, match="beta"):
        ScanSpec(n_frames=10, beta=2.5)
    with pytest.raises(ValueError, match="contrast"):
        ScanSpec(n_frames=10, contrast=0.6, n_modes=2)
