"""Aging tau(t_w) and tau(q) fits recover known laws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from daskxpcs.models import fit_aging, fit_qdep


@pytest.mark.parametrize("seed", range(4))
def test_aging_recovers_tau_star(seed):
    rng = np.random.default_rng(seed)
    t = np.linspace(300, 8000, 10)
    tau = 34.0 * np.exp(t / 2300.0)
    rel = 0.03
    noisy = tau * (1 + rel * rng.normal(size=t.size))
    r = fit_aging(t, noisy, rel * noisy)
    assert r["fit_ok"] == 1 and r["n_points"] == 10
    assert r["tau_star_s"] == pytest.approx(2300.0, rel=0.05)
    assert r["tau0_s"] == pytest.approx(34.0, rel=0.05)
    assert abs(r["tau_star_s"] - 2300) < 4 * r["tau_star_err_s"]
    assert abs(r["tau0_s"] - 34) < 4 * r["tau0_err_s"]


def test_aging_exact_data_and_plateau_cut():
    t = np.array([500.0, 2000.0, 4000.0, 6000.0, 9000.0])
    tau = 34.0 * np.exp(t / 2300.0)
    tau[-1] = tau[-2]  # plateau beyond 8000 s, excluded as in the paper
    r = fit_aging(t, tau, max_tw_s=8000)
    assert r["n_points"] == 4
    assert r["tau_star_s"] == pytest.approx(2300.0, rel=1e-6)
    assert r["tau0_s"] == pytest.approx(34.0, rel=1e-6)
    biased = fit_aging(t, tau)
    assert biased["tau_star_s"] > 2400


def test_aging_needs_three_points_and_growth():
    r = fit_aging([100.0, 200.0, np.nan], [10.0, 12.0, 13.0])
    assert r["fit_ok"] == 0 and r["n_points"] == 2 and math.isnan(r["tau_star_s"])
    r = fit_aging([100.0, 1000.0, 2000.0], [50.0, 30.0, 20.0])
    assert r["fit_ok"] == 0 and "grow" in r["reason"] and math.isnan(r["tau0_s"])


@pytest.mark.parametrize("seed", range(4))
def test_qdep_recovers_alpha(seed):
    rng = np.random.default_rng(seed)
    q = np.linspace(2.70, 3.02, 8)
    tau = 1.0 / (0.05 * q**0.36)
    rel = 0.002  # the q range is narrow (ln q spans 0.11): alpha_err ~ 0.015
    noisy = tau * (1 + rel * rng.normal(size=q.size))
    r = fit_qdep(q, noisy, rel * noisy)
    assert r["fit_ok"] == 1
    assert abs(r["alpha"] - 0.36) < 0.05
    assert abs(r["alpha"] - 0.36) < 4 * r["alpha_err"]
    assert r["c"] == pytest.approx(0.05, rel=0.05)
    assert 0 < r["alpha_err"] < 0.05 and r["c_err"] > 0


def test_qdep_exact_and_too_few():
    q = np.array([2.7, 2.8, 2.9, 3.0])
    r = fit_qdep(q, 1.0 / (0.2 * q**2))
    assert r["alpha"] == pytest.approx(2.0, abs=1e-9) and r["c"] == pytest.approx(0.2, rel=1e-9)
    r = fit_qdep(q[:2], [1.0, 2.0])
    assert r["fit_ok"] == 0 and math.isnan(r["alpha"])


def test_qdep_shared_alpha_over_aging_scans():
    """Three scans of an aging isobar: tau differs by a factor per scan at every q."""
    rng = np.random.default_rng(7)
    q = np.linspace(2.70, 3.02, 8)
    qs, taus, labels = [], [], []
    for s, factor in enumerate([1.0, 3.0, 9.0]):
        tau = factor / (0.05 * q**0.36) * (1 + 0.002 * rng.normal(size=q.size))
        qs.append(q)
        taus.append(tau)
        labels.append(np.full(q.size, s))
    qs, taus, labels = map(np.concatenate, (qs, taus, labels))
    r = fit_qdep(qs, taus, 0.002 * taus, groups=labels)
    assert r["fit_ok"] == 1 and r["n_points"] == 24
    assert abs(r["alpha"] - 0.36) < 0.03 and abs(r["alpha"] - 0.36) < 4 * r["alpha_err"]
    assert r["c"] == pytest.approx(0.05 / 3.0, rel=0.05)  # geometric mean of the scans' c
    pooled = fit_qdep(qs, taus, 0.002 * taus)  # one c for all: alpha is lost in the spread
    assert abs(pooled["alpha"] - 0.36) > 4 * r["alpha_err"] or pooled["alpha_err"] > 10 * r["alpha_err"]
