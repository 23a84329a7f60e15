"""--plan: sizes, tasks, memory and time from raw headers only; header-only archive files."""

from __future__ import annotations

import json
import os

import h5py
import hdf5plugin
import numpy as np
import pytest
from campaign_helpers import SHAPE, scan_entry, write_manifest

from daskxpcs.campaign.manifest import load_manifest
from daskxpcs.campaign.plan import (
    DEFAULT_DENSITY, DEFAULT_SCAN_OVERHEAD_S, DEFAULT_THROUGHPUT, DEFAULT_TTCF_RATE, WORKERS, format_plan,
    plan_campaign,
)


def header_only_lima(path, n_frames: int, shape, dtype="uint32") -> None:
    """A LIMA file whose frames dataset has no chunk written: the header of a scan of any size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        det = f.create_group("entry_0000/ESRF-ID10/eiger")
        det.create_dataset("data", shape=(n_frames,) + tuple(shape), dtype=dtype, chunks=(1,) + tuple(shape),
                           **hdf5plugin.Bitshuffle(cname="lz4"))
        det["acquisition/exposure_time"] = 0.09
        det["acquisition/latency_time"] = 0.01
        f["entry_0000/measurement/data"] = h5py.SoftLink("/entry_0000/ESRF-ID10/eiger/data")


def _campaign(tmp_path, n_frames=(100, 300), shape=SHAPE):
    scans = []
    for i, n in enumerate(n_frames):
        header_only_lima(tmp_path / "raw" / f"s{i}.h5", n, shape)
        scans.append(scan_entry(f"s{i}", f"raw/s{i}.h5", p=1.0 + i))
    return write_manifest(tmp_path, scans)


def test_plan_numbers(tmp_path, monkeypatch):
    monkeypatch.delenv("DASKXPCS_THROUGHPUT", raising=False)
    man = load_manifest(_campaign(tmp_path))
    plan = plan_campaign(man, max_in_flight=2)
    assert len(plan.scans) == 2 and plan.isobars == 2
    assert plan.frame_pixels == 400 * SHAPE[0] * SHAPE[1]
    assert plan.uncompressed_bytes == 4 * plan.frame_pixels
    assert plan.raw_bytes == sum(os.path.getsize(tmp_path / "raw" / f"s{i}.h5") for i in range(2))
    q = np.load(tmp_path / "qmap.npy")
    assert plan.scans[0].bin_pixels == int(((q >= 1.0) & (q < 2.5)).sum())
    assert plan.ttcf_bytes == 4 * 4 * (100**2 + 300**2)
    assert plan.throughput == DEFAULT_THROUGHPUT and plan.scan_overhead_s == DEFAULT_SCAN_OVERHEAD_S
    assert plan.density == DEFAULT_DENSITY  # header-only files hold no photon
    par = plan.parallel_tasks()
    assert par > 2
    for w in WORKERS:
        work = plan.frame_pixels / DEFAULT_THROUGHPUT + 4 * 4 * (100**2 + 300**2) / DEFAULT_TTCF_RATE
        assert plan.times_s[w] == pytest.approx(work / min(w, par) + 2 * DEFAULT_SCAN_OVERHEAD_S / min(w, 2))
    assert plan.peak_worker_bytes > plan.peak_task_bytes > 0
    text = format_plan(plan)
    for w in WORKERS:
        assert f"on {w:>2} worker" in text


def test_plan_uses_a_measured_throughput(tmp_path):
    man = load_manifest(_campaign(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({
        "frame_pixels_processed": 1e9, "n_scans": 5, "n_resumed": 1, "failed_scans": [],
        "timings_s": {"scans_s": 50.0, "stages": {"convert_s": 30.0, "correlate_s": 45.0, "analyse_s": 25.0}},
        "scheduler": {"workers": 2}, "parameters": {"max_in_flight": 2}}))
    plan = plan_campaign(man, calibration=out)
    # 3/4 of the 50 s wall on block work over 2 workers; 1/4 on analysis, 2 scans at a time, 4 scans
    assert plan.throughput == pytest.approx(1e9 / (37.5 * 2))
    assert plan.scan_overhead_s == pytest.approx(12.5 * 2 / 4)
    assert "measured" in plan.calibration_source


def test_plan_samples_the_photon_density(tmp_path):
    from campaign_helpers import speckle_frames, write_lima

    frames = speckle_frames(16, mean=0.2)
    write_lima(tmp_path / "raw" / "a.h5", frames)
    plan = plan_campaign(load_manifest(write_manifest(tmp_path, [scan_entry("a", "raw/a.h5")])))
    q = np.load(tmp_path / "qmap.npy")
    sel = (q >= 1.0) & (q < 2.5)
    assert plan.density == pytest.approx(frames[8:10][:, sel].mean())


def test_plan_of_an_archive_sized_header_only_campaign(tmp_path):
    shape = (2162, 2068)
    path = _campaign(tmp_path, n_frames=(10000, 10000), shape=shape)
    np.save(tmp_path / "qmap.npy", np.full(shape, 1.2, np.float32))
    plan = plan_campaign(load_manifest(path))
    assert plan.frame_pixels == 2 * 10000 * shape[0] * shape[1]
    assert plan.raw_bytes < 10**6  # headers only
    assert plan.times_s[64] < plan.times_s[8] < plan.times_s[1]


def test_cli_plan_prints_and_creates_nothing(tmp_path, capsys):
    from daskxpcs.cli import main

    path = _campaign(tmp_path)
    assert main(["run", str(path), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "scans            2 in 2 isobars (400 frames)" in out
    assert "expected time" in out
    assert not (tmp_path / "out").exists()
