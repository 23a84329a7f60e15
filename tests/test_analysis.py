"""Analysis glue on real Zarr v3 groups laid out as docs/internals.md's correlation outputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import zarr

from daskxpcs.analysis import (
    SCAN_COLUMNS,
    analyse_isobar,
    analyse_scan,
    pooled_c_at_tau,
    scan_structure,
    structure_slopes,
)
from daskxpcs.kernels import lag_ladder
from daskxpcs.models import delta_c, kww_model

FRAME = 0.1
N_FRAMES = 6000
TTCF_BIN = 50
Q_EDGES = np.linspace(2.70, 3.02, 9)
Q_CENTRES = 0.5 * (Q_EDGES[:-1] + Q_EDGES[1:])
ALPHA = 0.36
TAU0, TAU_STAR = 5.0, 2300.0
N_WIN = 4


def tau_at(t_s: float, q) -> np.ndarray:
    """Ground truth: aging at the union q scaled by q^-alpha across bins."""
    q_ref = Q_CENTRES.mean()
    return TAU0 * np.exp(t_s / TAU_STAR) * (np.asarray(q) / q_ref) ** -ALPHA


def make_group(path, t_w: float, seed: int, sigma: float = 2e-4) -> zarr.Group:
    rng = np.random.default_rng(seed)
    n_q = Q_CENTRES.size
    lags = lag_ladder(N_FRAMES)
    lag_s = lags * FRAME
    duration = N_FRAMES * FRAME
    n_pixels = np.array(list(rng.integers(500, 900, n_q)) + [0])
    n_pixels[-1] = n_pixels[:-1].sum()
    q_union = float(np.sum(n_pixels[:-1] * Q_CENTRES) / n_pixels[-1])
    q_all = np.append(Q_CENTRES, q_union)

    taus = tau_at(t_w + duration / 2, q_all)
    g2 = np.array([kww_model(lag_s, t, 1.7, 0.05, 1.0) for t in taus]) + rng.normal(0, sigma, (n_q + 1, lag_s.size))
    g2_err = np.full(g2.shape, sigma)

    t0 = np.arange(N_WIN) * duration / N_WIN
    g2_age = np.empty((N_WIN, n_q + 1, lag_s.size))
    for w in range(N_WIN):
        tw = tau_at(t_w + t0[w] + duration / N_WIN / 2, q_all)
        g2_age[w] = np.array([kww_model(lag_s, t, 1.7, 0.05, 1.0) for t in tw])
    g2_age += rng.normal(0, 2 * sigma, g2_age.shape)
    g2_age[:, :, lag_s >= duration / N_WIN / 2] = np.nan

    n_t = N_FRAMES // TTCF_BIN
    g = zarr.open_group(str(path), mode="w")
    ttcf = g.create_array("ttcf", shape=(n_q + 1, n_t, n_t), chunks=(1, 32, 32), dtype="float32")
    # spread of C grows with seed: later isobars more heterogeneous
    ttcf[...] = (1.0 + 0.02 * rng.standard_normal((n_q + 1, n_t, n_t))).astype("float32")
    for name, data in {
        "g2": g2, "g2_err": g2_err, "lag_frames": lags, "lag_s": lag_s,
        "g2_age": g2_age, "g2_age_err": np.full(g2_age.shape, 2 * sigma), "age_t0_s": t0,
        "c_diag_mean": np.ones(g2.shape), "c_diag_var": np.full(g2.shape, 1e-4),
        "intensity": np.full((n_q + 1, N_FRAMES), 0.01), "n_pixels": n_pixels,
        "q_edges": Q_EDGES, "q_centres": Q_CENTRES,
    }.items():
        g.create_array(name, data=np.asarray(data))
    g.attrs.update({"frame_time_s": FRAME, "n_frames": N_FRAMES, "ttcf_bin": TTCF_BIN, "engine": "test"})
    return g


def meta(name: str, t_w: float, **extra) -> dict:
    return {"scan": name, "sample": "S1", "stage": "compression", "pressure_gpa": 6.3, "t_w_s": t_w, **extra}


@pytest.fixture(scope="module")
def isobar(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    tws = [300.0, 2500.0, 5000.0]
    groups = [make_group(root / f"s{i}.zarr", tw, seed=i) for i, tw in enumerate(tws)]
    metas = [meta(f"s{i}", tw, q1_inv_angstrom=2.88 + 0.001 * i) for i, tw in enumerate(tws)]
    rows = [r for g, m in zip(groups, metas) for r in analyse_scan(g, m)]
    return groups, metas, rows


def test_scan_rows_follow_design_columns(isobar):
    groups, metas, rows = isobar
    n_q = Q_CENTRES.size
    assert len(rows) == 3 * (n_q + 1)
    for r in rows:
        assert tuple(r) == SCAN_COLUMNS
    assert SCAN_COLUMNS[:16] == (
        "scan", "sample", "stage", "pressure_gpa", "t_w_s", "q_index", "q_inv_angstrom", "tau_s",
        "tau_err_s", "beta", "beta_err", "contrast", "contrast_err", "baseline", "redchi", "fit_ok")
    first = rows[: n_q + 1]
    assert [r["q_index"] for r in first] == list(range(n_q)) + [-1]
    assert [r["q_inv_angstrom"] for r in first[:n_q]] == pytest.approx(Q_CENTRES)
    npix = np.asarray(groups[0]["n_pixels"][...])
    assert first[-1]["q_inv_angstrom"] == pytest.approx(np.sum(npix[:-1] * Q_CENTRES) / npix[-1])
    truth = tau_at(metas[0]["t_w_s"] + N_FRAMES * FRAME / 2, [r["q_inv_angstrom"] for r in first])
    for r, t in zip(first, truth):
        assert r["fit_ok"] == 1 and r["reason"] == ""
        assert r["tau_s"] == pytest.approx(t, rel=0.03)
        assert abs(r["beta"] - 1.7) < 0.05
        assert r["scan"] == "s0" and r["pressure_gpa"] == 6.3 and r["t_w_s"] == 300.0


def test_fits_age_fits_and_chi4_stored(isobar):
    groups, metas, rows = isobar
    g = zarr.open_group(groups[0].store, mode="r")
    fits = g.attrs["fits"]
    assert len(fits) == Q_CENTRES.size + 1 and fits[-1]["q_index"] == -1
    assert fits[-1]["tau_s"] == pytest.approx(rows[Q_CENTRES.size]["tau_s"])
    json.dumps(dict(g.attrs), allow_nan=False)  # NaN stored as null
    age = g.attrs["age_fits"]
    assert [a["window"] for a in age] == list(range(N_WIN))
    for a in age:
        assert a["t_w_s"] == pytest.approx(300.0 + a["age_t0_s"])
        assert a["fit_ok"] == 1
        assert a["tau_s"] == pytest.approx(float(tau_at(a["t_mid_s"], rows[Q_CENTRES.size]["q_inv_angstrom"])), rel=0.05)
    c4 = np.asarray(g["chi4"][...])
    assert c4.shape == np.asarray(g["g2"]).shape
    g2 = np.asarray(g["g2"][...])
    expect = 1e-4 / (g2[-1, 0] - fits[-1]["baseline"]) ** 2
    assert c4[-1] == pytest.approx(np.full(c4.shape[1], expect))


def test_failed_fit_rows_are_nan(tmp_path):
    g = make_group(tmp_path / "flat.zarr", 0.0, seed=5)
    flat = 1.0 + np.random.default_rng(1).normal(0, 2e-4, g["g2"].shape)
    g["g2"][...] = flat
    rows = analyse_scan(g, meta("flat", 0.0))
    for r in rows:
        assert r["fit_ok"] == 0 and r["reason"]
        assert math.isnan(r["tau_s"]) and math.isnan(r["beta"]) and math.isnan(r["contrast"])
    assert np.isnan(np.asarray(g["chi4"][...])).all()
    assert zarr.open_group(str(tmp_path / "flat.zarr"), mode="r").attrs["fits"][0]["tau_s"] is None


@pytest.mark.parametrize("tau,bin_", [(12.0, 50), (0.73, 1), (300.0, 50)])
def test_pooled_c_at_tau_is_the_diagonal(tmp_path, tau, bin_):
    g = zarr.open_group(str(tmp_path / "t.zarr"), mode="w")
    n_t = 90
    arr = g.create_array("ttcf", shape=(3, n_t, n_t), chunks=(1, 16, 16), dtype="float32")
    data = np.random.default_rng(0).random((3, n_t, n_t)).astype("float32")
    arr[...] = data
    k = round(tau / FRAME)
    k = round(k / bin_) if bin_ > 1 else k
    out = pooled_c_at_tau(g, tau, FRAME, bin_)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, np.diagonal(data[2], k))
    assert out.size == n_t - k


def test_pooled_c_at_tau_out_of_range(tmp_path):
    g = zarr.open_group(str(tmp_path / "t.zarr"), mode="w")
    g.create_array("ttcf", shape=(2, 20, 20), chunks=(1, 8, 8), dtype="float32")
    assert pooled_c_at_tau(g, 0.01, FRAME, 1).size == 0  # tau below one TTCF step
    assert pooled_c_at_tau(g, 2.0, FRAME, 1).size == 0  # k = T'
    assert pooled_c_at_tau(g, math.nan, FRAME, 1).size == 0


def test_analyse_isobar(isobar):
    groups, metas, rows = isobar
    iso, aging, qdep = analyse_isobar(groups, metas, rows)
    assert list(iso) == ["sample", "stage", "pressure_gpa", "n_scans", "tau_mean_s", "tau_std_s", "beta_mean",
                         "delta_c_90", "delta_c_80", "delta_c_70", "delta_c_60", "q1_inv_angstrom"]
    union = [r for r in rows if r["q_index"] == -1]
    taus = np.array([r["tau_s"] for r in union])
    assert iso["n_scans"] == 3
    assert iso["tau_mean_s"] == pytest.approx(taus.mean()) and iso["tau_std_s"] == pytest.approx(taus.std(ddof=1))
    assert iso["q1_inv_angstrom"] == pytest.approx(2.881)
    # Delta C: every scan's union diagonal at its own k' = round(round(tau/frame)/bin), pooled
    pooled = []
    for g, r in zip(groups, union):
        k = round(round(r["tau_s"] / FRAME) / TTCF_BIN)
        pooled.append(np.diagonal(np.asarray(g["ttcf"][-1], dtype=float), k))
    expect = delta_c(np.concatenate(pooled))
    for key, v in expect.items():
        assert iso[key] == pytest.approx(v, rel=1e-12)
    assert iso["delta_c_90"] == pytest.approx(2 * 1.645 * 0.02, rel=0.1)

    q_union = union[0]["q_inv_angstrom"]
    assert aging is not None and aging["fit_ok"] == 1 and aging["n_points"] == 3
    for which, n_points in (("scans", 3), ("windows", 3 * N_WIN), ("both", 3 * N_WIN + 3)):
        a = analyse_isobar(groups, metas, rows, aging_points=which)[1]
        assert a["n_points"] == n_points
        assert a["tau_star_s"] == pytest.approx(TAU_STAR, rel=0.05)
        assert a["tau0_s"] == pytest.approx(float(tau_at(0.0, q_union)), rel=0.05)
        if which == "scans":
            assert a == aging

    assert qdep["fit_ok"] == 1 and qdep["n_points"] == 3 * Q_CENTRES.size
    assert abs(qdep["alpha"] - ALPHA) < 0.05
    assert list(qdep)[:7] == ["sample", "stage", "pressure_gpa", "alpha", "alpha_err", "c", "c_err"]


def test_analyse_isobar_max_tw_and_few_scans(isobar):
    groups, metas, rows = isobar
    _, aging, _ = analyse_isobar(groups, metas, rows, max_tw_s=1000.0, aging_points="windows")
    assert aging["fit_ok"] == 1 and aging["n_points"] == N_WIN  # one scan's windows only
    _, aging, _ = analyse_isobar(groups, metas, rows, max_tw_s=1000.0)
    assert aging["fit_ok"] == 0 and aging["n_points"] == 1 and math.isnan(aging["tau_star_s"])
    with pytest.raises(ValueError, match="aging_points"):
        analyse_isobar(groups, metas, rows, aging_points="all")
    iso, aging2, _ = analyse_isobar(groups[:2], metas[:2], rows)
    assert aging2 is None and iso["n_scans"] == 2


def test_aging_falls_back_to_scan_level_points(tmp_path):
    """A scan whose windows cannot be fitted contributes its scan-level tau at mid-scan."""
    tws = [300.0, 2500.0, 5000.0]
    groups = [make_group(tmp_path / f"s{i}.zarr", tw, seed=10 + i) for i, tw in enumerate(tws)]
    groups[2]["g2_age"][...] = np.full(groups[2]["g2_age"].shape, np.nan)
    metas = [meta(f"s{i}", tw) for i, tw in enumerate(tws)]
    rows = [r for g, m in zip(groups, metas) for r in analyse_scan(g, m)]
    assert all(a["fit_ok"] == 0 for a in groups[2].attrs["age_fits"])
    _, aging, _ = analyse_isobar(groups, metas, rows, aging_points="windows")
    assert aging["n_points"] == 2 * N_WIN + 1
    assert aging["tau_star_s"] == pytest.approx(TAU_STAR, rel=0.05)


def test_scan_structure_and_slopes():
    rng = np.random.default_rng(3)
    ny, nx = 120, 140
    qmap = np.linspace(2.62, 3.10, nx)[None, :] + np.zeros((ny, 1))
    valid = np.ones((ny, nx), bool)
    rows = []
    for p in [0.1, 1.5, 3.3, 4.9, 6.3]:
        q1 = 2.80 + 4.91e-3 * p
        rate = 0.05 * np.exp(-0.5 * ((qmap - q1) / 0.15) ** 2) + 0.005
        s = scan_structure(rng.poisson(rate * 50000).astype(float), 50000, qmap, valid)
        assert s["q1_fit_ok"] == 1 and abs(s["q1_inv_angstrom"] - q1) < 1e-3
        rows.append({"scan": f"p{p}", "sample": "S1", "stage": "compression", "pressure_gpa": p,
                     "q1_inv_angstrom": s["q1_inv_angstrom"]})
    out = structure_slopes(rows)
    assert list(out) == ["S1/compression"]
    assert out["S1/compression"]["dq1_dp_slope"] == pytest.approx(4.91e-3, abs=3e-4)
    assert out["S1/compression"]["dq1_dp_slope_err"] > 0
    none = scan_structure(np.ones((4, 4)), 10, np.full((4, 4), np.nan), np.ones((4, 4), bool))
    assert none["q1_fit_ok"] == 0 and math.isnan(none["q1_inv_angstrom"])


def test_thermal_expansion_in_slopes():
    T = np.linspace(300, 500, 6)
    q1 = 2.87 * (1 + 3 * 3.85e-5 * (T - 300)) ** (-1 / 3)
    rows = [{"scan": f"t{i}", "sample": "S2", "stage": "compression", "pressure_gpa": 0.0,
             "q1_inv_angstrom": v, "temperature_k": t} for i, (t, v) in enumerate(zip(T, q1))]
    out = structure_slopes(rows)["S2/compression"]
    assert out["alpha_T"] == pytest.approx(3.85e-5, rel=1e-3) and out["T0_k"] == 300
    assert math.isnan(out["dq1_dp_slope"])
