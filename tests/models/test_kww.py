"""KWW fits recover simulator parameters and flag what they cannot measure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daskxpcs.kernels import lag_ladder
from daskxpcs.models import FIT_KEYS, fit_kww, fit_scan, kww_model

FRAME = 0.1


def ladder(n_frames: int = 6000) -> np.ndarray:
    """Multi-tau lags (s) of an n_frames scan."""
    return lag_ladder(n_frames) * FRAME


def noisy(lag, tau, beta, contrast=0.1, baseline=1.0, sigma=1e-3, seed=0):
    rng = np.random.default_rng(seed)
    return kww_model(lag, tau, beta, contrast, baseline) + rng.normal(0, sigma, lag.size)


@pytest.mark.parametrize("tau,beta", [(3.0, 1.0), (20.0, 1.6), (80.0, 2.0), (15.0, 0.7)])
def test_recovers_parameters(tau, beta):
    lag = ladder()
    sigma = 1e-3
    for seed in range(3):
        r = fit_kww(lag, noisy(lag, tau, beta, sigma=sigma, seed=seed), np.full(lag.size, sigma))
        assert set(r) == set(FIT_KEYS)
        assert r["fit_ok"] == 1 and r["reason"] == ""
        assert r["tau_s"] == pytest.approx(tau, rel=0.04)
        assert abs(r["beta"] - beta) < 0.05 * max(1.0, beta)
        assert r["contrast"] == pytest.approx(0.1, rel=0.03)
        assert r["baseline"] == pytest.approx(1.0, abs=1e-3)
        for k in ("tau_err_s", "beta_err", "contrast_err"):
            assert math.isfinite(r[k]) and r[k] > 0
        assert 0.3 < r["redchi"] < 3.0


def test_uncertainties_are_calibrated():
    """Pulls (fit - truth) / stderr over seeds have roughly unit spread and no large bias."""
    lag = ladder()
    sigma = 2e-3
    pulls_tau, pulls_beta = [], []
    for seed in range(30):
        r = fit_kww(lag, noisy(lag, 20.0, 1.6, sigma=sigma, seed=100 + seed), np.full(lag.size, sigma))
        assert r["fit_ok"] == 1
        pulls_tau.append((r["tau_s"] - 20.0) / r["tau_err_s"])
        pulls_beta.append((r["beta"] - 1.6) / r["beta_err"])
    for p in (np.array(pulls_tau), np.array(pulls_beta)):
        assert 0.6 < p.std() < 1.6
        assert abs(p.mean()) < 0.8


def test_unweighted_fit_still_gives_uncertainties():
    lag = ladder()
    r = fit_kww(lag, noisy(lag, 10.0, 1.5, seed=3))
    assert r["fit_ok"] == 1
    assert r["tau_s"] == pytest.approx(10.0, rel=0.04)
    assert 0 < r["tau_err_s"] < 1.0


@pytest.mark.parametrize("seed", range(12))
def test_pure_noise_is_flagged(seed):
    lag = ladder()
    rng = np.random.default_rng(seed)
    sigma = 2e-3
    r = fit_kww(lag, 1.0 + rng.normal(0, sigma, lag.size), np.full(lag.size, sigma))
    assert r["fit_ok"] == 0
    assert r["reason"]
    assert all(math.isnan(r[k]) for k in FIT_KEYS if k not in ("fit_ok", "reason"))


@pytest.mark.parametrize("tau", [0.02, 5000.0])
def test_tau_outside_the_lags_is_flagged(tau):
    lag = ladder(2000)  # up to 100 s
    r = fit_kww(lag, noisy(lag, tau, 1.5, seed=1), np.full(lag.size, 1e-3))
    assert r["fit_ok"] == 0
    assert math.isnan(r["tau_s"]) and math.isnan(r["tau_err_s"])


def test_tau_just_beyond_the_last_lag_is_flagged_not_reported():
    lag = ladder(2000)
    r = fit_kww(lag, kww_model(lag, 3 * lag[-1], 1.5, 0.1, 1.0), np.full(lag.size, 1e-4))
    assert r["fit_ok"] == 0
    assert "outside" in r["reason"] or "decay" in r["reason"] or "undetermined" in r["reason"]


def test_nan_lags_and_bad_errors_are_ignored():
    lag = ladder()
    y = noisy(lag, 20.0, 1.6, seed=5)
    y[-5:] = np.nan  # age windows: NaN beyond half their length
    err = np.full(lag.size, 1e-3)
    err[3] = 0.0
    err[7] = np.nan
    r = fit_kww(lag, y, err)
    assert r["fit_ok"] == 1
    assert r["tau_s"] == pytest.approx(20.0, rel=0.04)


def test_lag_range_limits_the_fit():
    lag = ladder()
    y = noisy(lag, 20.0, 1.6, seed=6)
    y[lag > 150] = 5.0  # garbage outside the range
    r = fit_kww(lag, y, np.full(lag.size, 1e-3), lag_range=(0.1, 150))
    assert r["fit_ok"] == 1 and r["tau_s"] == pytest.approx(20.0, rel=0.04)


def test_too_few_points():
    r = fit_kww([0.1, 0.2, 0.3], [1.1, 1.05, 1.0])
    assert r["fit_ok"] == 0 and "too few" in r["reason"]


def test_fit_scan_fits_every_bin_in_order():
    lag = ladder()
    taus = [5.0, 10.0, 20.0]
    g2 = np.array([noisy(lag, t, 1.6, seed=i) for i, t in enumerate(taus)]
                  + [1.0 + np.random.default_rng(9).normal(0, 1e-3, lag.size)])
    fits = fit_scan(lag, g2, np.full(g2.shape, 1e-3))
    assert len(fits) == 4
    for f, t in zip(fits[:3], taus):
        assert f["fit_ok"] == 1 and f["tau_s"] == pytest.approx(t, rel=0.04)
    assert fits[3]["fit_ok"] == 0


def test_model_values():
    lag = np.array([0.0, 2.0, 4.0])
    y = kww_model(lag, 2.0, 1.5, 0.2, 1.01)
    assert y == pytest.approx([1.21, 1.01 + 0.2 * math.exp(-2), 1.01 + 0.2 * math.exp(-2 * 2**1.5)])
