"""Public correlate_scan: schedulers (local and a real distributed cluster), output groups, physics."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from conversions.store import write_store_from_array
from daskxpcs.correlate import correlate_scan

sys.path.insert(0, str(Path(__file__).parent / "graph"))
from xpcs_reference import reference  # noqa: E402

ARRAYS = ("ttcf", "g2", "g2_err", "g2_age", "g2_age_err", "c_diag_mean", "c_diag_var", "intensity")


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    rng = np.random.default_rng(11)
    T, ny, nx = 50, 10, 12
    frames = rng.poisson(rng.uniform(0.02, 1.5, (1, ny, nx)), (T, ny, nx)).astype(np.uint16)
    qmap = np.hypot(*np.meshgrid(np.arange(nx) - 5.5, np.arange(ny) - 4.5)) / 3.0
    edges = [0.0, 0.8, 1.4, 2.2]
    valid = rng.random((ny, nx)) > 0.05
    d = tmp_path_factory.mktemp("sched")
    write_store_from_array(d / "s.zarr", frames, valid=valid, qmap=qmap, q_edges=edges, t_block=16, p_tile=32)
    ref = reference(frames, valid, qmap, edges, ttcf_bin=2)
    return d / "s.zarr", ref


def check(group, ref):
    assert group.attrs["complete"] is True
    for k in ARRAYS:
        np.testing.assert_allclose(group[k][:], ref[k], rtol=1e-5, equal_nan=True, err_msg=k)


@pytest.mark.parametrize("scheduler", ["threads", "synchronous", "processes"])
def test_local_schedulers(scan, tmp_path, scheduler):
    store, ref = scan
    t = correlate_scan(store, tmp_path / "o.zarr", t_block=20, p_tile=40, ttcf_bin=2, scheduler=scheduler)
    assert t["total_s"] >= t["compute_s"] > 0 and t["n_tasks"] > 10
    g = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    check(g, ref)
    assert g.attrs["timings"]["engine"] == g.attrs["engine"]


def test_writes_into_existing_group(scan, tmp_path):
    """The campaign runner passes a group inside results.zarr; other members survive."""
    store, ref = scan
    root = zarr.open_group(str(tmp_path / "results.zarr"), mode="w")
    other = root.create_group("other_scan")
    other.attrs["keep"] = 1
    g = root.create_group("scan_a")
    correlate_scan(store, g, t_block=20, ttcf_bin=2, scheduler="synchronous")
    root = zarr.open_group(str(tmp_path / "results.zarr"), mode="r")
    check(root["scan_a"], ref)
    assert root["other_scan"].attrs["keep"] == 1
    # a rerun overwrites cleanly
    correlate_scan(store, zarr.open_group(str(tmp_path / "results.zarr"))["scan_a"], t_block=8, ttcf_bin=2,
                   scheduler="threads")
    check(zarr.open_group(str(tmp_path / "results.zarr"), mode="r")["scan_a"], ref)


@pytest.mark.distributed
def test_distributed_local_cluster(scan, tmp_path):
    from distributed import Client, LocalCluster

    store, ref = scan
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        t = correlate_scan(store, tmp_path / "o.zarr", t_block=20, p_tile=40, ttcf_bin=2, scheduler=client)
        assert t["n_tasks"] > 10
        # picked up as Dask's default when a client is active; a zarr.Group travels to workers
        group = zarr.open_group(str(tmp_path / "results.zarr"), mode="w").create_group("scan")
        correlate_scan(store, group, t_block=20, ttcf_bin=2)
    check(zarr.open_group(str(tmp_path / "o.zarr"), mode="r"), ref)
    check(zarr.open_group(str(tmp_path / "results.zarr"), mode="r")["scan"], ref)


def kww_speckle(rng, T, n_px, tau, beta, rate):
    """Photon counts of fully developed speckle with |g1| = exp(-(dt/tau)^beta), exactly.

    The complex field of each pixel is a stationary Gaussian process drawn with the
    Cholesky factor of its covariance; counts are Poisson of |E|^2 * rate, so
    g2 = 1 + exp(-2 (dt/tau)^beta).
    """
    t = np.arange(T)
    cov = np.exp(-(np.abs(t[:, None] - t[None, :]) / tau) ** beta)
    L = np.linalg.cholesky(cov + 1e-9 * np.eye(T))
    z = (rng.standard_normal((T, n_px)) + 1j * rng.standard_normal((T, n_px))) / np.sqrt(2)
    intensity = np.abs(L @ z) ** 2
    return rng.poisson(intensity * rate)


def test_kww_recovered_from_simulated_speckle(tmp_path):
    from scipy.optimize import curve_fit

    rng = np.random.default_rng(2024)
    T, ny, nx, tau, beta = 400, 32, 32, 15.0, 0.8
    counts = kww_speckle(rng, T, ny * nx, tau, beta, rate=0.4).reshape(T, ny, nx).astype(np.uint32)
    write_store_from_array(tmp_path / "s.zarr", counts, frame_time_s=0.1)
    correlate_scan(tmp_path / "s.zarr", tmp_path / "o.zarr", t_block=128, scheduler="threads")
    g = zarr.open_group(str(tmp_path / "o.zarr"), mode="r")
    lag_s, g2, err = g["lag_s"][:], g["g2"][0], g["g2_err"][0]
    assert np.all(err > 0)

    def kww(t, base, contrast, tau_s, b):
        return base + contrast * np.exp(-2 * (t / tau_s) ** b)

    p, _ = curve_fit(kww, lag_s, g2, p0=[1.0, 0.5, 1.0, 1.0], sigma=err, bounds=([0.5, 0, 1e-3, 0.2], [1.5, 2, 100, 2]))
    assert abs(p[2] - tau * 0.1) < 0.1 * tau * 0.1, p
    assert abs(p[3] - beta) < 0.1, p
    assert abs(p[0] - 1.0) < 0.05 and abs(p[1] - 1.0) < 0.15, p
