"""tau(q) = 1 / (c q^alpha): alpha recovered from simulated speckle through the whole chain
(simulator -> Zarr store -> correlator -> KWW fits per q-bin -> q-dependence fit)."""

from __future__ import annotations

import numpy as np
import pytest

from conversions.store import write_store_from_array
from daskxpcs.correlate import correlate_scan
from daskxpcs.models import fit_qdep, fit_scan
from daskxpcs.simulate import ScanSpec, make_detector, simulate_scan


@pytest.mark.parametrize("alpha", [0.4, 1.0])
def test_alpha_recovered_from_speckle(tmp_path, alpha):
    import zarr

    edges = tuple(np.linspace(2.2, 3.8, 9))
    det = make_detector("wide", (48, 64), q_range=(2.2, 3.8), q_edges=edges, seed=1)
    spec = ScanSpec(n_frames=800, frame_time_s=0.1, tau_s=2.5, beta=1.6, contrast=0.25, rate=0.4,
                    alpha=alpha, q_ref=3.0, hot_frame_fraction=0.0, seed=7)
    frames, truth = simulate_scan(spec, det)
    store = write_store_from_array(tmp_path / "s.zarr", frames, qmap=det.qmap, q_edges=edges,
                                   frame_time_s=spec.frame_time_s)
    correlate_scan(store.path, tmp_path / "c.zarr", scheduler="synchronous")
    g = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    fits = fit_scan(g["lag_s"][:], g["g2"][:], g["g2_err"][:])[:-1]
    ok = [f["fit_ok"] == 1 for f in fits]
    assert all(ok), [f["reason"] for f in fits]
    q = g["q_centres"][:]
    res = fit_qdep(q, [f["tau_s"] for f in fits], [f["tau_err_s"] for f in fits])
    assert res["fit_ok"] == 1
    assert abs(res["alpha"] - alpha) < 0.1, res
    # conservative: tau errors are never scaled down when redchi < 1 (correlated lags)
    assert 0 < res["alpha_err"] < 0.3
