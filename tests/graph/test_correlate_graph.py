"""Correlation graph: exact agreement with a plain-numpy reference, engines, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dask
from conversions.store import write_store_from_array
from daskxpcs.correlate import correlate_graph, correlate_scan
from xpcs_reference import ladder, reference

RTOL = 1e-5
COMPARED = ("ttcf", "g2", "g2_err", "g2_age", "g2_age_err", "c_diag_mean", "c_diag_var", "intensity", "n_pixels")


def read_out(path) -> dict:
    g = zarr.open_group(str(path), mode="r")
    assert g.attrs["complete"] is True
    return {k: g[k][:] for k in g.array_keys()} | {"attrs": dict(g.attrs)}


def assert_matches(got: dict, ref: dict, names=COMPARED):
    for k in names:
        np.testing.assert_allclose(got[k], ref[k], rtol=RTOL, atol=0, equal_nan=True, err_msg=k)
    np.testing.assert_array_equal(got["lag_frames"], ref["lag_frames"])


def make_scan(rng, T, ny, nx, density, n_bins, bad_fraction, dtype=np.uint16):
    frames = rng.poisson(density, (T, ny, nx)).astype(dtype)
    valid = rng.random((ny, nx)) >= bad_fraction
    qmap = rng.uniform(1.0, 2.0, (ny, nx)).astype(np.float32)
    edges = None if n_bins == 0 else np.linspace(1.0, 2.0, n_bins + 1)[:].tolist()
    if n_bins:
        edges[-1] = 1.95  # some pixels fall outside every bin
    return frames, valid, qmap, edges


def test_lag_ladder_matches_design():
    from daskxpcs.kernels import lag_ladder

    want = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160]
    assert lag_ladder(2 * 160 + 1).tolist() == want
    assert lag_ladder(2 * 170).tolist() == want
    np.testing.assert_array_equal(lag_ladder(14000), ladder(14000))
    assert lag_ladder(14000)[-1] <= 7000 and lag_ladder(1).size == 0


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    T=st.integers(3, 48),
    shape=st.tuples(st.integers(2, 9), st.integers(2, 9)),
    density=st.sampled_from([0.0, 0.02, 0.2, 1.0, 4.0]),
    n_bins=st.integers(0, 3),
    bad=st.sampled_from([0.0, 0.3]),
    t_block=st.integers(3, 50),  # 1-frame blocks and 1-pixel tiles: test_unit_blocks_and_tiles
    p_tile=st.integers(4, 90),
    store_blocks=st.tuples(st.integers(1, 50), st.integers(1, 90)),
    ttcf_bin=st.integers(1, 3),
    engine=st.sampled_from(["events", "dense", "auto"]),
    layout=st.sampled_from(["events", "dense"]),
    n_windows=st.integers(1, 4),
    seed=st.integers(0, 2**31),
)
def test_matches_numpy_reference(tmp_path_factory, T, shape, density, n_bins, bad, t_block, p_tile, store_blocks,
                                 ttcf_bin, engine, layout, n_windows, seed):
    rng = np.random.default_rng(seed)
    frames, valid, qmap, edges = make_scan(rng, T, *shape, density, n_bins, bad)
    d = tmp_path_factory.mktemp("scan")
    write_store_from_array(d / "s.zarr", frames, valid=valid, qmap=qmap, q_edges=edges, layout=layout,
                           t_block=store_blocks[0], p_tile=store_blocks[1])
    ref = reference(frames, valid, qmap, edges, ttcf_bin=ttcf_bin, n_windows=n_windows)
    empty = ref["n_pixels"][:-1] == 0
    with warnings_for(empty):
        correlate_scan(d / "s.zarr", d / "out.zarr", engine=engine, t_block=t_block, p_tile=p_tile,
                       ttcf_bin=ttcf_bin, n_windows=n_windows, scheduler="synchronous")
    got = read_out(d / "out.zarr")
    assert got["ttcf"].shape == (len(ref["n_pixels"]), T // ttcf_bin, T // ttcf_bin)
    assert_matches(got, ref)
    np.testing.assert_allclose(got["age_t0_s"], ref["age_edges"][:-1] * 0.1)


def warnings_for(empty):
    if empty.any():  # one warning per empty bin; each must match (pytest re-emits the others)
        bins = "|".join(str(int(b)) for b in np.flatnonzero(empty))
        return pytest.warns(RuntimeWarning, match=f"q-bin ({bins}) ")
    import contextlib

    return contextlib.nullcontext()


@pytest.fixture(scope="module")
def mixed_scan(tmp_path_factory):
    """24 x 16 px, 70 frames; bins of very different density so 'auto' mixes engines."""
    rng = np.random.default_rng(7)
    T, ny, nx = 70, 16, 16
    rate = np.where(np.arange(nx) < 8, 0.01, 0.8)[None, None, :] * np.ones((T, ny, nx))
    frames = rng.poisson(rate).astype(np.uint32)
    frames[10:13] = 0  # frames without photons
    valid = rng.random((ny, nx)) > 0.1
    qx = np.linspace(1.0, 2.0, nx)[None, :] + np.zeros((ny, 1))
    edges = [1.0, 1.3, 1.5, 1.7, 2.01]
    d = tmp_path_factory.mktemp("mixed")
    write_store_from_array(d / "s.zarr", frames, valid=valid, qmap=qx, q_edges=edges, t_block=32, p_tile=64)
    return d, frames, valid, qx, edges


def test_tile_statistics_joined_in_pixel_chunks(mixed_scan, tmp_path, monkeypatch):
    # a tile's statistics join its time-block loads a few pixels at a time
    import daskxpcs.graph.correlate as gc

    d, frames, valid, qx, edges = mixed_scan
    monkeypatch.setattr(gc, "EVENTS_PER_CHUNK", 3)
    plan = gc.plan_correlation(d / "s.zarr", engine="events", t_block=24, p_tile=40)
    assert len(gc._event_chunks(plan.rate[:40] * plan.n_frames, 0)) > 2
    correlate_scan(d / "s.zarr", tmp_path / "o.zarr", engine="events", t_block=24, p_tile=40, scheduler="threads")
    assert_matches(read_out(tmp_path / "o.zarr"), reference(frames, valid, qx, edges))


def test_events_equal_dense_and_reference(mixed_scan, tmp_path):
    d, frames, valid, qx, edges = mixed_scan
    ref = reference(frames, valid, qx, edges)
    outs = {}
    for engine in ("events", "dense", "auto"):
        t = correlate_scan(d / "s.zarr", tmp_path / f"{engine}.zarr", engine=engine, t_block=24, p_tile=40,
                           scheduler="threads")
        outs[engine] = read_out(tmp_path / f"{engine}.zarr")
        assert outs[engine]["attrs"]["engine"] == (engine if engine != "auto" else "mixed")
        assert t["engine"] == outs[engine]["attrs"]["engine"]
    for engine, got in outs.items():
        assert_matches(got, ref)
    for k in COMPARED:
        np.testing.assert_allclose(outs["events"][k], outs["dense"][k], rtol=1e-12, equal_nan=True, err_msg=k)
    # frames without photons: NaN rows in the TTCF, g2 still finite
    assert np.isnan(outs["events"]["ttcf"][:, 11, :]).all()
    assert np.isfinite(outs["events"]["g2"]).all()


def test_empty_bin_warns_and_is_nan(mixed_scan, tmp_path):
    d, frames, valid, qx, edges = mixed_scan
    new_edges = [1.0, 1.3, 1.31, 1.7, 2.01]  # bin 1 holds no pixel column
    ref = reference(frames, valid, qx, new_edges)
    with pytest.warns(RuntimeWarning, match=r"q-bin 1 \[1.3, 1.31\)"):
        correlate_scan(d / "s.zarr", tmp_path / "o.zarr", q_edges=new_edges, t_block=32, scheduler="synchronous")
    got = read_out(tmp_path / "o.zarr")
    assert got["n_pixels"][1] == 0
    assert np.isnan(got["ttcf"][1]).all() and np.isnan(got["g2"][1]).all()
    assert_matches(got, ref)


def test_qmap_override_single_block_and_binning(mixed_scan, tmp_path):
    d, frames, valid, qx, edges = mixed_scan
    q2 = qx.T.copy()  # bins now run along y
    e2 = [1.0, 1.5, 2.01]
    ref = reference(frames, valid, q2, e2, ttcf_bin=3, n_windows=2)
    correlate_scan(d / "s.zarr", tmp_path / "o.zarr", qmap=q2, q_edges=e2, t_block=500, ttcf_bin=3, n_windows=2,
                   scheduler="synchronous")
    got = read_out(tmp_path / "o.zarr")
    assert got["ttcf"].shape == (3, 23, 23) and got["attrs"]["ttcf_bin"] == 3
    assert_matches(got, ref)
    np.testing.assert_allclose(got["q_centres"], [1.25, 1.755])


def test_no_q_information_is_one_bin(tmp_path):
    rng = np.random.default_rng(3)
    frames = rng.poisson(0.5, (20, 5, 6)).astype(np.uint16)
    frames[4, 2, 3] = 65535  # saturated once: invalid for the whole scan
    write_store_from_array(tmp_path / "s.zarr", frames, t_block=8)
    correlate_scan(tmp_path / "s.zarr", tmp_path / "o.zarr", t_block=7, scheduler="synchronous")
    got = read_out(tmp_path / "o.zarr")
    assert got["ttcf"].shape == (2, 20, 20) and got["n_pixels"].tolist() == [29, 29]
    assert_matches(got, reference(frames))
    np.testing.assert_array_equal(got["ttcf"][0], got["ttcf"][1])


class ComputeForbidden(RuntimeError):
    pass


def forbid_compute(*args, **kwargs):
    raise ComputeForbidden("graph construction must not compute")


def test_graph_construction_computes_nothing(mixed_scan, tmp_path):
    d, *_ = mixed_scan
    with dask.config.set(scheduler=forbid_compute):
        g = correlate_graph(d / "s.zarr", tmp_path / "o.zarr", t_block=16, p_tile=30)
        with pytest.raises(ComputeForbidden):
            g.compute()
    assert not (tmp_path / "o.zarr").exists()  # nothing written while building
    keys = list(g.__dask_graph__().keys())
    assert any("xpcs-numtree" in str(k) for k in keys)
    res = g.compute(scheduler="synchronous")
    assert set(res) >= {"g2", "g2_err", "g2_age"}
    assert read_out(tmp_path / "o.zarr")["attrs"]["complete"] is True


def test_tasks_bounded_by_block_size(mixed_scan, tmp_path):
    """No task returns a whole T x T matrix: numerators and C blocks are (tb, tb)."""
    d, frames, *_ = mixed_scan
    g = correlate_graph(d / "s.zarr", tmp_path / "o.zarr", t_block=16, p_tile=30)
    from dask.local import get_sync

    biggest = {}

    def largest(obj) -> int:
        if isinstance(obj, np.ndarray):
            return obj.size
        if isinstance(obj, dict):
            obj = list(obj.values())
        if isinstance(obj, (list, tuple)):
            return max((largest(v) for v in obj), default=0)
        return 0

    def track(key, result):
        biggest[key] = largest(result)

    from dask.callbacks import Callback

    with Callback(posttask=lambda key, result, dsk, state, id: track(key, result)):
        dask.compute(g, scheduler=get_sync)
    T = frames.shape[0]
    assert len(biggest) > 50
    assert 16 * 16 <= max(biggest.values()) < T * T / 2


@pytest.mark.parametrize("engine", ["events", "dense"])
def test_unit_blocks_and_tiles(tmp_path, engine):
    rng = np.random.default_rng(5)
    frames = rng.poisson(0.7, (7, 3, 3)).astype(np.uint16)
    qmap = rng.uniform(0, 1, (3, 3))
    write_store_from_array(tmp_path / "s.zarr", frames, qmap=qmap, q_edges=[0, 0.5, 1.0], t_block=2, p_tile=2)
    correlate_scan(tmp_path / "s.zarr", tmp_path / "o.zarr", engine=engine, t_block=1, p_tile=1, n_windows=3,
                   scheduler="synchronous")
    assert_matches(read_out(tmp_path / "o.zarr"), reference(frames, None, qmap, [0, 0.5, 1.0], n_windows=3))


@pytest.mark.parametrize("T", [1, 2])
def test_tiny_scans(tmp_path, T):
    """One or two frames: empty or one-lag ladders, TTCF binned away entirely."""
    frames = np.random.default_rng(T).poisson(1.0, (T, 3, 3)).astype(np.uint16)
    write_store_from_array(tmp_path / "s.zarr", frames)
    correlate_scan(tmp_path / "s.zarr", tmp_path / "o.zarr", ttcf_bin=2, scheduler="synchronous")
    got = read_out(tmp_path / "o.zarr")
    assert got["ttcf"].shape == (2, T // 2, T // 2) and got["g2"].shape == (2, T // 2)
    assert_matches(got, reference(frames, ttcf_bin=2))


def test_bad_q_information_is_an_input_error(tmp_path):
    from conversions.errors import InputError

    frames = np.random.default_rng(0).poisson(1.0, (6, 3, 4)).astype(np.uint16)
    write_store_from_array(tmp_path / "s.zarr", frames)
    with pytest.raises(InputError, match="no q-map"):
        correlate_graph(tmp_path / "s.zarr", tmp_path / "o.zarr", q_edges=[0.0, 1.0])
    with pytest.raises(InputError, match=r"qmap shape \(4, 3\)"):
        correlate_graph(tmp_path / "s.zarr", tmp_path / "o.zarr", qmap=np.ones((4, 3)), q_edges=[0.0, 2.0])
    with pytest.raises(InputError, match="engine"):
        correlate_graph(tmp_path / "s.zarr", tmp_path / "o.zarr", engine="gpu")


def test_dense_groups_of_one_thread_share_no_result_memory(mixed_scan):
    # dense blocks live in per-thread buffers reused by the next task: no result may alias them
    from daskxpcs import kernels as K
    from daskxpcs.graph import tasks
    from daskxpcs.graph.correlate import plan_correlation

    d, *_ = mixed_scan
    plan = plan_correlation(d / "s.zarr", engine="dense", t_block=24, p_tile=40)
    blocks = plan.blocks[:2]

    def run(t):
        p0, p1 = plan.tiles[t]
        layout = K.tile_layout(plan.labels[p0:p1], plan.n_q)
        return tasks.dense_group(str(d / "s.zarr"), p0, p1, layout, blocks, blocks, plan.lags, plan.edges)

    first = run(0)
    kept = ({k: {b: v.copy() for b, v in nums.items()} for k, nums in first[0].items()}, first[1][1].copy(),
            {k: v.copy() for k, v in first[2].items()})
    run(1)  # the same thread, other pixels: refills the buffers
    for k, nums in first[0].items():
        for b, v in nums.items():
            np.testing.assert_array_equal(v, kept[0][k][b])
    np.testing.assert_array_equal(first[1][1], kept[1])
    for k, v in first[2].items():
        np.testing.assert_array_equal(v, kept[2][k])


@pytest.fixture(scope="module")
def bright_scan(tmp_path_factory):
    """1 ph/px/frame in 20-frame blocks; block 2 holds one pixel at 1000 counts: no byte
    holds it, and float32 product and lag sums of its bin would round."""
    rng = np.random.default_rng(11)
    frames, valid, qmap, edges = make_scan(rng, 60, 16, 16, 1.0, 2, 0.0)
    frames[45, 3, 4] = 1000
    d = tmp_path_factory.mktemp("bright")
    write_store_from_array(d / "s.zarr", frames, valid=valid, qmap=qmap, q_edges=edges, layout="dense",
                           t_block=20, p_tile=256)
    return d / "s.zarr", frames, valid, qmap, edges


def test_dense_group_products_by_counts(bright_scan):
    # bytes (exact int32) where the CPU has a byte kernel and counts fit, BLAS float64 where float32 could round
    from conversions.store import open_scan_store
    from daskxpcs import kernels as K
    from daskxpcs.graph import tasks
    from daskxpcs.graph.correlate import plan_correlation

    store, frames, *_ = bright_scan
    plan = plan_correlation(store, engine="dense", t_block=20, p_tile=256)
    (p0, p1), = plan.tiles
    layout = K.tile_layout(plan.labels[p0:p1], plan.n_q)
    nums, _, sums = tasks.dense_group(str(store), p0, p1, layout, plan.blocks, plan.blocks, plan.lags, plan.edges)
    x = frames.reshape(60, -1)[:, open_scan_store(store).pixels[p0:p1]].astype(np.int64)
    small = np.int32 if K.int8_isa() else np.float32
    for (a, b), num in nums.items():
        for q, v in num.items():
            m = plan.labels[p0:p1] == q
            assert v.dtype == (np.float64 if b == (40, 60) else small), (a, b, q, v.dtype)
            np.testing.assert_array_equal(v, x[a[0]:a[1], m] @ x[b[0]:b[1], m].T)
    for a, s in sums.items():
        for q in layout.bins:
            np.testing.assert_array_equal(s[q], x[a[0]:a[1], plan.labels[p0:p1] == q].sum(axis=1))


def test_dense_byte_and_blas_products_give_identical_results(bright_scan, tmp_path, request):
    store, frames, valid, qmap, edges = bright_scan
    ref = reference(frames, valid, qmap, edges, n_windows=3)
    runs = []
    for name in ("default", "blas"):
        if name == "blas":
            request.getfixturevalue("without_int8")
        correlate_scan(store, tmp_path / f"{name}.zarr", engine="dense", t_block=20, p_tile=128, n_windows=3,
                       scheduler="threads")
        runs.append(read_out(tmp_path / f"{name}.zarr"))
    assert_matches(runs[0], ref)
    for k in COMPARED:
        np.testing.assert_array_equal(runs[0][k], runs[1][k], err_msg=k)
