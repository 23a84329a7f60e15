"""Figure helpers: bounded TTCF reads equal numpy on the same array, selection logic, atomic saves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from daskxpcs.report import figures as F
from daskxpcs.report.load import Campaign, ScanResult
from daskxpcs.report.plotting import fmt, kww, new_figure, save


def _scan(ttcf: np.ndarray, chunk: int, *, name="s", frame_time=0.1, ttcf_bin=1, **meta) -> ScanResult:
    g = zarr.open_group(store=zarr.storage.MemoryStore(), mode="w")
    g.create_array("ttcf", data=ttcf.astype(np.float32), chunks=(1, chunk, chunk))
    g.attrs.update({"frame_time_s": frame_time, "ttcf_bin": ttcf_bin, **meta})
    return ScanResult(name, g, dict(g.attrs))


def _random_ttcf(rng, n_bins, n):
    a = rng.normal(1.0, 0.1, (n_bins, n, n))
    return (a + a.transpose(0, 2, 1)) / 2


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 70), chunk=st.integers(2, 40), max_px=st.integers(1, 50), seed=st.integers(0, 2**16))
def test_decimated_ttcf_equals_numpy_step(n, chunk, max_px, seed):
    rng = np.random.default_rng(seed)
    ttcf = _random_ttcf(rng, 3, n).astype(np.float32)
    s = _scan(ttcf, chunk, frame_time=0.05, ttcf_bin=2)
    img, dt = F.read_ttcf_decimated(s, max_px=max_px)
    step = math.ceil(n / max_px)
    assert img.shape[0] <= max_px and img.shape == img.T.shape
    np.testing.assert_array_equal(img, ttcf[-1, ::step, ::step])
    assert dt == pytest.approx(step * 2 * 0.05)


@settings(max_examples=12, deadline=None)
@given(n=st.integers(2, 70), chunk=st.integers(2, 33), k=st.integers(-2, 90), seed=st.integers(0, 2**16))
def test_c_at_tau_is_the_ttcf_diagonal(n, chunk, k, seed):
    ttcf = _random_ttcf(np.random.default_rng(seed), 2, n).astype(np.float32)
    s = _scan(ttcf, chunk)
    got = F.c_at_tau(s, k)
    if 1 <= k < n:
        np.testing.assert_array_equal(got, np.diagonal(ttcf[-1], offset=k))
    else:
        assert got.size == 0


def test_lag_for_tau_uses_binned_frames():
    s = _scan(np.ones((1, 4, 4)), 4, frame_time=0.1, ttcf_bin=4)
    assert F.lag_for_tau(s, 2.0) == 5  # 2 s / (0.1 s * 4)
    assert F.lag_for_tau(s, math.nan) == 0


def test_kww_params_only_for_usable_fits():
    good = {"tau_s": 2.0, "beta": 1.5, "contrast": 0.2, "baseline": 1.0, "fit_ok": 1}
    assert F.kww_params(good) == (2.0, 1.5, 0.2, 1.0)
    assert F.kww_params({**good, "fit_ok": 0}) is None
    assert F.kww_params({**good, "tau_s": math.nan}) is None
    assert F.kww_params(None) is None
    # the model is DESIGN.md's: g2(tau) = baseline + contrast e^-2
    assert kww(2.0, 2.0, 1.5, 0.2, 1.0) == pytest.approx(1.0 + 0.2 * math.exp(-2))


def test_hysteresis_pairs_match_pressure_and_t_w():
    c = Campaign(outdir=None)
    specs = [("c1", "compression", 3.3, 600), ("c2", "compression", 3.3, 3000), ("c3", "compression", 6.3, 900),
             ("d1", "decompression", 3.2, 2800), ("d2", "decompression", 1.0, 600)]
    for name, stage, p, tw in specs:
        g = zarr.open_group(store=zarr.storage.MemoryStore(), mode="w")
        g.create_array("g2", data=np.ones((2, 3)))
        g.create_array("lag_s", data=np.array([0.1, 0.2, 0.3]))
        c.scans[name] = ScanResult(name, g, {"sample": "S1", "stage": stage, "pressure_gpa": p, "t_w_s": tw})
    pairs = F.hysteresis_pairs(c, "S1")
    assert [(a.name, b.name) for a, b in pairs] == [("c2", "d1")]


def test_fmt_is_short_and_plain():
    assert fmt(3000.0, 3) == "3000"
    assert fmt(2.87123) == "2.871"
    assert fmt(math.nan) == "–"
    assert fmt(1.5e-7) == "1.500e-07"
    assert fmt(7) == "7" and fmt("S1") == "S1"


def test_save_is_atomic(tmp_path):
    fig = new_figure(2, 2)
    fig.subplots().plot([0, 1], [0, 1])
    path = save(fig, tmp_path / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = path.read_bytes()

    class Boom(Exception):
        pass

    bad = new_figure(2, 2)
    bad.savefig = lambda *a, **k: (_ for _ in ()).throw(Boom())  # fails mid-write
    with pytest.raises(Boom):
        save(bad, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
