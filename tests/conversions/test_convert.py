"""convert(): fixtures to stores, masks, q-bins, layouts, frame time, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conv_rawfiles import EXPECTED_FORMATS, poisson_frames, write_lima

from conversions.convert import convert
from conversions.errors import InputError, StoreError
from conversions.store import open_scan_store

SAT32 = np.iinfo(np.uint32).max


@pytest.mark.parametrize("fmt", sorted(EXPECTED_FORMATS))
@pytest.mark.parametrize("layout", ["dense", "events"])
def test_fixture_to_store(tmp_path, format_fixtures, expected, fmt, layout):
    store = convert(format_fixtures / EXPECTED_FORMATS[fmt], tmp_path / "s.zarr",
                    layout=layout, frame_time_s=0.1 if fmt == "lima2" else None,
                    scheduler="synchronous", t_block=5)
    counts, bad = expected["counts"], expected["bad"]
    # flagged pixels: the file's mask (eiger, lima2) or 0xFFFFFFFF in the frames
    np.testing.assert_array_equal(store.valid, ~bad)
    assert store.n_frames == 24 and store.frame_time_s == pytest.approx(0.1)
    assert store.attrs["source_format"] == fmt and store.layout == layout
    flat = counts.reshape(24, -1)
    cols = np.flatnonzero(store.pixel_valid)
    got = store.read_dense(0, 24, 0, store.n_pixels)[:, cols]
    np.testing.assert_array_equal(got, flat[:, store.pixels[cols]])
    np.testing.assert_array_equal(store.frame_sum(), flat[:, ~bad.ravel()].sum(axis=1))
    assert store.attrs["photon_total"] == flat[:, ~bad.ravel()].sum()
    np.testing.assert_allclose(store.mean_image()[~bad], counts.mean(axis=0)[~bad])


def test_qmap_mask_and_saturation(tmp_path):
    frames = poisson_frames(0, (30, 12, 14), 0.2)
    frames[9, 3, 3] = SAT32
    qmap = np.linspace(2.5, 3.2, 12 * 14).reshape(12, 14)
    mask = np.zeros((12, 14), np.uint8)
    mask[0, :] = 1
    raw = write_lima(tmp_path / "r.h5", frames)
    edges = [2.7, 2.8, 2.9, 3.0]
    store = convert(raw, tmp_path / "s.zarr", qmap=qmap, q_edges=edges, mask=mask,
                    t_block=8, scheduler="threads")
    valid = mask == 0
    valid[3, 3] = False
    np.testing.assert_array_equal(store.valid, valid)
    inside = (mask == 0) & (qmap >= 2.7) & (qmap < 3.0)
    assert set(store.pixels.tolist()) == set(np.flatnonzero(inside).tolist())
    assert np.all(np.diff(np.digitize(qmap.ravel()[store.pixels], edges)) >= 0)
    ok = store.valid.ravel()[store.pixels]
    flat = frames.reshape(30, -1)[:, store.pixels[ok]]
    np.testing.assert_array_equal(store.frame_sum(), flat.sum(axis=1))
    assert store.density == pytest.approx(flat.mean())
    assert store.layout == "dense"  # 0.2 photons / pixel / frame
    np.testing.assert_allclose(store.qmap, qmap.astype(np.float32))


def test_auto_layout_measures_density(tmp_path):
    sparse = write_lima(tmp_path / "a.h5", poisson_frames(1, (40, 16, 16), 0.01))
    dense = write_lima(tmp_path / "b.h5", poisson_frames(1, (40, 16, 16), 0.5))
    assert convert(sparse, tmp_path / "a.zarr").layout == "events"
    assert convert(dense, tmp_path / "b.zarr").layout == "dense"


def test_frame_time_argument_file_or_error(tmp_path):
    frames = poisson_frames(2, (4, 5, 6), 0.1)
    with_time = write_lima(tmp_path / "a.h5", frames, exposure=0.05, latency=0.01)
    no_time = write_lima(tmp_path / "b.h5", frames, exposure=None)
    assert convert(with_time, tmp_path / "a.zarr").frame_time_s == pytest.approx(0.06)
    assert convert(with_time, tmp_path / "a2.zarr", frame_time_s=0.2).frame_time_s == 0.2
    with pytest.raises(InputError, match="records no frame time.*--frame-time") as exc:
        convert(no_time, tmp_path / "b.zarr")
    assert "b.h5" in str(exc.value)
    assert not (tmp_path / "b.zarr").exists()


def test_rerun_of_complete_store_is_kept(tmp_path):
    raw = write_lima(tmp_path / "r.h5", poisson_frames(3, (10, 5, 6), 0.3))
    convert(raw, tmp_path / "s.zarr")
    meta = tmp_path / "s.zarr" / "zarr.json"
    before = meta.stat().st_mtime_ns
    store = convert(raw, tmp_path / "s.zarr")
    assert meta.stat().st_mtime_ns == before and store.attrs["complete"]
    # different parameters: rewritten
    store = convert(raw, tmp_path / "s.zarr", layout="events")
    assert store.layout == "events"


def test_processes_scheduler(tmp_path):
    frames = poisson_frames(4, (24, 8, 9), 0.3)
    raw = write_lima(tmp_path / "r.h5", frames)
    store = convert(raw, tmp_path / "s.zarr", scheduler="processes", t_block=6, layout="events")
    np.testing.assert_array_equal(store.read_dense(0, 24, 0, 72), frames.reshape(24, -1))


@pytest.mark.distributed
def test_active_distributed_client_is_used(tmp_path):
    from distributed import Client, LocalCluster

    frames = poisson_frames(5, (24, 8, 9), 0.3)
    raw = write_lima(tmp_path / "r.h5", frames)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://",
                      host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        store = convert(raw, tmp_path / "s.zarr", t_block=6)
        prefixes = client.run_on_scheduler(
            lambda dask_scheduler: list(dask_scheduler.task_prefixes))
        assert "block_task" in prefixes
    np.testing.assert_array_equal(store.read_dense(0, 24, 0, 72), frames.reshape(24, -1))


KILL_SCRIPT = """
import sys
from conversions.convert import convert
convert(sys.argv[1], sys.argv[2], scheduler="synchronous", t_block=2, layout="events")
"""


def _done_blocks(store: Path) -> int:
    return len(list(store.glob("_work/b*.npz")))  # a block's done marker


def test_resume_after_sigkill(tmp_path):
    frames = poisson_frames(6, (60, 48, 48), 0.05)
    frames[50, 7, 7] = SAT32
    raw = write_lima(tmp_path / "r.h5", frames)
    store_path = tmp_path / "s.zarr"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(raw), str(store_path)],
                            env=env)
    deadline = time.monotonic() + 120
    while _done_blocks(store_path) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "conversion finished before it could be killed"
    done = _done_blocks(store_path)
    assert 3 <= done < 30
    with pytest.raises(StoreError, match="incomplete"):
        open_scan_store(store_path)
    store = convert(raw, store_path, scheduler="synchronous", t_block=2, layout="events")
    assert store.attrs["blocks_reused"] >= done
    valid = np.ones((48, 48), bool)
    valid[7, 7] = False
    np.testing.assert_array_equal(store.valid, valid)
    flat = frames.reshape(60, -1)
    np.testing.assert_array_equal(store.read_dense(0, 60, 0, 48 * 48)[:, valid.ravel()],
                                  flat[:, valid.ravel()])
    np.testing.assert_array_equal(store.frame_sum(), flat[:, valid.ravel()].sum(axis=1))
    assert store.attrs["photon_total"] == flat[:, valid.ravel()].sum()


@pytest.mark.parametrize("layout", ["dense", "events"])
def test_kill_during_store_creation_starts_afresh(tmp_path, layout):
    # A store whose counts arrays are missing (a kill inside create_store) must be
    # rebuilt by a rerun, not resumed into.
    import shutil

    import zarr

    frames = poisson_frames(3, (12, 6, 7), 0.3)
    raw = write_lima(tmp_path / "r.h5", frames)
    path = tmp_path / "s.zarr"
    convert(raw, path, layout=layout, t_block=5, scheduler="synchronous")
    zarr.open_group(str(path), mode="r+").attrs["complete"] = False
    shutil.rmtree(path / layout)
    store = convert(raw, path, layout=layout, t_block=5, scheduler="synchronous")
    assert store.attrs["complete"] and store.layout == layout
    np.testing.assert_array_equal(store.read_dense(0, 12, 0, store.n_pixels),
                                  frames.reshape(12, -1)[:, store.pixels])


@pytest.mark.parametrize("fmt", sorted(EXPECTED_FORMATS))
def test_relative_raw_paths(tmp_path, monkeypatch, format_fixtures, expected, fmt):
    # users type relative paths; the lock-free reader must find the data files from them
    monkeypatch.chdir(format_fixtures.parent)
    raw = Path(format_fixtures.name) / EXPECTED_FORMATS[fmt]
    store = convert(raw, tmp_path / "s.zarr", frame_time_s=0.1 if fmt == "lima2" else None,
                    scheduler="synchronous", t_block=7)
    bad = expected["bad"]
    flat = expected["counts"].reshape(24, -1)
    np.testing.assert_array_equal(store.frame_sum(), flat[:, ~bad.ravel()].sum(axis=1))
    if fmt != "lima2":
        assert store.attrs["lock_free"], fmt  # the lock-free path, not the h5py fallback
