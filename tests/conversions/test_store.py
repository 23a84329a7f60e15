"""Scan store round trips: what goes in comes back, in both layouts, any tile."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversions.errors import InputError, StoreError
from conversions.store import open_scan_store, write_store_from_array

SAT = np.iinfo(np.uint32).max


def _frames(seed: int, shape=(37, 9, 11), lam=0.3) -> np.ndarray:
    return np.random.default_rng(seed).poisson(lam, shape).astype(np.uint32)


def _events_to_dense(ptr, frame, count, t0, t1):
    out = np.zeros((t1 - t0, len(ptr) - 1), np.float32)
    pix = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    out[frame - t0, pix] = count
    return out


@pytest.fixture(scope="module", params=["dense", "events"])
def stored(request, tmp_path_factory):
    frames = _frames(1)
    rng = np.random.default_rng(2)
    qmap = rng.uniform(2.6, 3.1, frames.shape[1:])
    valid = rng.random(frames.shape[1:]) > 0.1
    path = tmp_path_factory.mktemp("store") / f"{request.param}.zarr"
    store = write_store_from_array(path, frames, valid=valid, qmap=qmap,
                                   q_edges=[2.7, 2.8, 2.9, 3.0], layout=request.param,
                                   t_block=5, p_tile=7)
    return frames, valid, qmap, store


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_tiles_round_trip(stored, data):
    frames, _, _, store = stored
    T, P = store.n_frames, store.n_pixels
    t0 = data.draw(st.integers(0, T))
    t1 = data.draw(st.integers(t0, T))
    p0 = data.draw(st.integers(0, P))
    p1 = data.draw(st.integers(p0, P))
    expect = frames.reshape(T, -1)[t0:t1, store.pixels[p0:p1]].astype(np.float32)
    dense = store.read_dense(t0, t1, p0, p1)
    assert dense.dtype == np.float32 and dense.shape == (t1 - t0, p1 - p0)
    np.testing.assert_array_equal(dense, expect)
    ptr, frame, count = store.read_events(t0, t1, p0, p1)
    assert ptr.dtype == np.int64 and frame.dtype == np.int32 and count.dtype == np.int32
    assert ptr.shape == (p1 - p0 + 1,) and ptr[0] == 0 and ptr[-1] == len(frame)
    assert np.all(count > 0)
    for j in range(p1 - p0):  # time-ordered within each pixel
        assert np.all(np.diff(frame[ptr[j]:ptr[j + 1]]) > 0)
    np.testing.assert_array_equal(_events_to_dense(ptr, frame, count, t0, t1), expect)
    small = store.read_events(t0, t1, p0, p1, compact=True)  # the correlation's loads
    assert [a.dtype for a in small] == [np.int32, np.uint16, np.uint16]
    for got, want in zip(small, (ptr, frame, count)):
        np.testing.assert_array_equal(got, want)


def test_pixels_grouped_by_q_bin(stored):
    _, valid, qmap, store = stored
    edges = store.q_edges
    q = qmap.ravel()[store.pixels]
    ptr = store.attrs["q_bin_ptr"]
    for b in range(len(edges) - 1):
        inside = q[ptr[b]:ptr[b + 1]]
        assert np.all((inside >= edges[b]) & (inside < edges[b + 1]))
        expect = np.flatnonzero(valid.ravel() & (qmap.ravel() >= edges[b])
                                & (qmap.ravel() < edges[b + 1]))
        np.testing.assert_array_equal(np.sort(store.pixels[ptr[b]:ptr[b + 1]]), expect)
    assert store.pixel_valid.all()
    np.testing.assert_array_equal(store.valid, valid)
    np.testing.assert_allclose(store.qmap, qmap.astype(np.float32))


def test_sums_and_attributes(stored):
    frames, valid, _, store = stored
    flat = frames.reshape(frames.shape[0], -1)
    np.testing.assert_array_equal(store.frame_sum(), flat[:, store.pixels].sum(axis=1))
    mean = store.mean_image()
    np.testing.assert_allclose(mean[valid], frames.mean(axis=0)[valid])
    assert np.isnan(mean[~valid]).all()
    assert store.attrs["photon_total"] == flat[:, store.pixels].sum()
    assert store.density == pytest.approx(flat[:, store.pixels].mean())
    assert store.attrs["complete"] is True and store.attrs["format_version"] == 1
    assert str(store.n_frames) in store.summary() and "\n" not in store.summary()


@pytest.mark.parametrize("layout", ["dense", "events"])
def test_saturated_pixels_invalid_and_sums_exclude_them(tmp_path, layout):
    frames = _frames(3, (20, 6, 8), lam=2.0)
    frames[4, 1, 2] = SAT        # saturated once: invalid for the whole scan
    frames[15, 5, 7] = SAT
    store = write_store_from_array(tmp_path / "s.zarr", frames, layout=layout, t_block=6)
    assert not store.valid[1, 2] and not store.valid[5, 7]
    assert store.valid.sum() == 46
    ok = store.valid.ravel()
    flat = frames.reshape(20, -1).astype(np.float64)
    np.testing.assert_array_equal(store.frame_sum(), flat[:, ok].sum(axis=1))
    assert store.attrs["photon_total"] == flat[:, ok].sum()
    assert np.isnan(store.mean_image()[1, 2])
    # the valid pixels read back exactly
    cols = np.flatnonzero(store.pixel_valid)
    got = store.read_dense(0, 20, 0, store.n_pixels)[:, cols]
    np.testing.assert_array_equal(got, flat[:, store.pixels[cols]])


def test_auto_layout_follows_density(tmp_path):
    sparse = write_store_from_array(tmp_path / "a.zarr", _frames(4, lam=0.01))
    dense = write_store_from_array(tmp_path / "b.zarr", _frames(4, lam=1.0))
    assert sparse.layout == "events" and dense.layout == "dense"


def test_flat_order_without_edges(tmp_path):
    frames = _frames(5, (6, 4, 5))
    valid = np.ones((4, 5), bool)
    valid[0, 0] = False
    store = write_store_from_array(tmp_path / "s.zarr", frames, valid=valid)
    np.testing.assert_array_equal(store.pixels, np.arange(1, 20))
    assert np.isnan(store.qmap).all() and store.q_edges is None


def test_incomplete_store_refused(tmp_path):
    path = tmp_path / "s.zarr"
    write_store_from_array(path, _frames(6, (5, 3, 3)))
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["complete"] = False
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="incomplete") as exc:
        open_scan_store(path)
    assert str(path) in str(exc.value)
    with pytest.raises(StoreError, match="no scan store"):
        open_scan_store(tmp_path / "missing.zarr")


def test_bad_arrays_rejected(tmp_path):
    with pytest.raises(InputError, match="shape"):
        write_store_from_array(tmp_path / "a.zarr", _frames(7, (4, 3, 3)),
                               qmap=np.zeros((3, 4)), q_edges=[0, 1])
    with pytest.raises(InputError):
        write_store_from_array(tmp_path / "b.zarr", np.full((2, 3, 3), 0.5))


def test_never_overwrites_something_else(tmp_path):
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a scan store; not overwriting"):
        write_store_from_array(other, _frames(8, (3, 2, 2)))
    assert (other / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("layout", ["dense", "events"])
def test_finalise_interrupted_and_rerun_gives_the_same(tmp_path, layout):
    """A kill inside finalise_store (after it rewrote valid and frame_sum, before
    ``complete``) must not change the totals when it runs again."""
    import shutil

    import zarr

    from conversions.store import block_range, create_store, finalise_store, write_block

    frames = _frames(9, (12, 5, 6), lam=1.0)
    frames[2, 1, 1] = SAT
    path = tmp_path / "s.zarr"
    create_store(path, n_frames=12, frame_shape=(5, 6), dtype=frames.dtype,
                 base_valid=np.ones((5, 6), bool), frame_time_s=0.1, layout=layout, t_block=4)
    attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    for i in range(attrs["n_blocks"]):
        t0, t1 = block_range(attrs, i)
        write_block(path, i, frames[t0:t1])
    shutil.copytree(path / "_work", tmp_path / "work_copy")
    first = finalise_store(path)
    expect = (first.frame_sum(), first.valid, first.attrs["photon_total"])
    shutil.copytree(tmp_path / "work_copy", path / "_work")
    zarr.open_group(str(path), mode="r+").attrs.update(complete=False)
    again = finalise_store(path)
    np.testing.assert_array_equal(again.frame_sum(), expect[0])
    np.testing.assert_array_equal(again.valid, expect[1])
    assert again.attrs["photon_total"] == expect[2]
    ok = expect[1].ravel()
    np.testing.assert_array_equal(expect[0], frames.reshape(12, -1)[:, ok].sum(axis=1))


def test_compact_event_reads_keep_large_counts(tmp_path):
    # a count above uint16 turns the compact counts int32 instead of wrapping
    frames = np.zeros((12, 8, 8), np.uint32)
    frames[2, 1, 1], frames[9, 1, 1], frames[7, 3, 4] = 70_000, 3, 1
    store = write_store_from_array(tmp_path / "s.zarr", frames, layout="events", t_block=4)
    full = store.read_events(1, 11, 0, store.n_pixels)
    small = store.read_events(1, 11, 0, store.n_pixels, compact=True)
    assert small[2].dtype == np.int32 and small[1].dtype == np.uint16
    for got, want in zip(small, full):
        np.testing.assert_array_equal(got, want)
    assert sorted(full[2].tolist()) == [1, 3, 70_000]


KILL_CREATE = """
import sys
import numpy as np
from conversions.store import create_store
print("ready", flush=True)
while True:  # replace the store again and again until killed
    create_store(sys.argv[1], n_frames=40, frame_shape=(64, 64), dtype=np.dtype("uint32"),
                 base_valid=np.ones((64, 64), bool), frame_time_s=0.1, layout=sys.argv[2], t_block=4)
"""


@pytest.mark.parametrize("layout", ["dense", "events"])
def test_store_creation_killed_at_any_moment_leaves_a_store_or_nothing(tmp_path, layout):
    # SIGKILL while a store is created over an older one, at random moments: the path
    # holds a whole (empty) store or nothing, never a folder a rerun refuses to replace
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import zarr

    from conversions.store import WORK, write_store_from_array

    repo = Path(__file__).resolve().parents[2]
    path = tmp_path / "s.zarr"
    rng = np.random.default_rng(0)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", KILL_CREATE, str(path), layout], stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(repo)})
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if path.exists():
            attrs = zarr.open_group(str(path), mode="r").attrs
            assert attrs["format_version"] and attrs["complete"] is False and (path / WORK).is_dir()
    frames = _frames(4, (10, 6, 7))
    store = write_store_from_array(path, frames, layout=layout, t_block=4)
    np.testing.assert_array_equal(store.read_dense(0, 10, 0, store.n_pixels), frames.reshape(10, -1)[:, store.pixels])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # nothing left beside it


def test_bare_group_of_an_interrupted_creation_is_replaced(tmp_path):
    # what a kill left before creation was atomic: a group without attributes, nothing else
    import zarr

    path = tmp_path / "s.zarr"
    zarr.open_group(str(path), mode="w", zarr_format=3)
    store = write_store_from_array(path, _frames(5, (6, 4, 4)), t_block=3)
    assert store.attrs["complete"]
    (tmp_path / "mine").mkdir()
    zarr.open_group(str(tmp_path / "mine"), mode="w", zarr_format=3).attrs["owner"] = "someone"
    with pytest.raises(StoreError, match="not a scan store"):
        write_store_from_array(tmp_path / "mine", _frames(5, (6, 4, 4)))
