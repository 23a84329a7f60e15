"""FSDP position, dq1/dP and thermal expansion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daskxpcs.models import fine_profile, fit_linear, fit_q1, thermal_expansion


def detector(q1: float, seed: int = 0, n_frames: int = 20000):
    """A 160 x 170 detector around the FSDP: Lorentzian peak on a sloping background."""
    rng = np.random.default_rng(seed)
    ny, nx = 160, 170
    qmap = np.linspace(2.62, 3.10, nx)[None, :] + np.linspace(0.0, 0.02, ny)[:, None]
    valid = rng.random((ny, nx)) > 0.05
    rate = 0.04 / (1 + ((qmap - q1) / 0.16) ** 2) + 0.01 + 0.01 * (qmap - 2.6)
    pixel_sum = rng.poisson(rate * n_frames).astype(float)
    pixel_sum[~valid] = 1e9  # must be ignored
    truth_q = np.linspace(2.5, 3.3, 800001)
    truth = truth_q[np.argmax(0.04 / (1 + ((truth_q - q1) / 0.16) ** 2) + 0.01 * truth_q)]
    return pixel_sum, n_frames, qmap, valid, truth


def test_fine_profile_is_the_mean_valid_intensity():
    pixel_sum, n, qmap, valid, _ = detector(2.86)
    qc, inten = fine_profile(pixel_sum, n, qmap, valid, n_bins=50)
    edges = np.linspace(qmap[valid].min(), qmap[valid].max(), 51)
    b = 17
    sel = valid & (qmap >= edges[b]) & (qmap < edges[b + 1])
    assert qc[b] == pytest.approx(0.5 * (edges[b] + edges[b + 1]))
    assert inten[b] == pytest.approx(pixel_sum[sel].mean() / n, rel=1e-12)
    qc2, inten2 = fine_profile(pixel_sum, n, qmap, valid, n_bins=10, q_range=(2.0, 4.0))
    assert np.isnan(inten2[0]) and np.isfinite(inten2[4])


@pytest.mark.parametrize("q1", [2.79, 2.86, 2.93])
def test_q1_recovered(q1):
    pixel_sum, n, qmap, valid, truth = detector(q1, seed=int(q1 * 100))
    r = fit_q1(*fine_profile(pixel_sum, n, qmap, valid, n_bins=200))
    assert r["fit_ok"] == 1
    assert abs(r["q1"] - truth) < 1e-3
    assert 0 < r["q1_err"] < 1e-3
    assert abs(r["q1"] - truth) < 4 * r["q1_err"]


def test_q1_outside_the_detector_is_flagged():
    pixel_sum, n, qmap, valid, _ = detector(3.4)
    r = fit_q1(*fine_profile(pixel_sum, n, qmap, valid))
    assert r["fit_ok"] == 0 and "edge" in r["reason"] and math.isnan(r["q1"])


def test_dq1_dp_slope_recovered():
    rng = np.random.default_rng(1)
    p = np.array([0.1, 1.5, 3.3, 4.9, 6.3, 7.0])
    q1 = 2.87 + 4.91e-3 * p + rng.normal(0, 2e-4, p.size)
    r = fit_linear(p, q1, np.full(p.size, 2e-4))
    assert r["slope"] == pytest.approx(4.91e-3, abs=3 * r["slope_err"])
    assert r["slope_err"] < 1e-4
    assert r["intercept"] == pytest.approx(2.87, abs=1e-3)
    two = fit_linear([1.0, 2.0], [3.0, 5.0])
    assert two["slope"] == pytest.approx(2.0) and math.isnan(two["slope_err"])


def test_thermal_expansion_recovered():
    rng = np.random.default_rng(2)
    T = np.linspace(300, 520, 12)
    alpha = 3.85e-5
    q1 = 2.87 * (1 + 3 * alpha * (T - 300)) ** (-1 / 3) + rng.normal(0, 2e-5, T.size)
    r = thermal_expansion(T, q1)
    assert r["T0"] == 300
    assert r["alpha_T"] == pytest.approx(alpha, rel=0.03)
    assert 0 < r["alpha_T_err"] < 0.03 * alpha
