"""The campaign runner end to end on tiny campaigns: tables, resume, SIGKILL, failed scans,
and real scheduler/worker processes giving the same numbers as threads."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from campaign_helpers import scan_entry, speckle_frames, write_lima, write_manifest
from daskprocs import REPO, DaskProcesses

from daskxpcs import simulate
from daskxpcs.campaign import run_campaign
from daskxpcs.campaign.tables import COLUMNS, read_table

TABLES = ("scans", "isobars", "aging", "qdep", "structure")


def _complete(out: Path) -> set[str]:
    done = set()
    root = out / "results.zarr"
    if not root.exists():
        return done
    for d in root.iterdir():
        try:
            if json.loads((d / "zarr.json").read_text())["attributes"].get("campaign_complete") is True:
                done.add(d.name)
        except (OSError, ValueError, KeyError):
            pass
    return done


def assert_same_tables(a: Path, b: Path, rtol: float = 0.0) -> None:
    for t in TABLES:
        ra, rb = read_table(a / f"{t}.csv"), read_table(b / f"{t}.csv")
        assert len(ra) == len(rb), t
        for x, y in zip(ra, rb):
            for k in COLUMNS[t]:
                if isinstance(x[k], float) and isinstance(y[k], float):
                    assert (math.isnan(x[k]) and math.isnan(y[k])) or x[k] == pytest.approx(y[k], rel=rtol, abs=0), \
                        (t, k, x, y)
                else:
                    assert x[k] == y[k], (t, k, x, y)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The simulator's tiny campaign cut to sample S1: 4 scans (LIMA, Bliss, Eiger, LIMA2) in 2 isobars."""
    root = tmp_path_factory.mktemp("tiny")
    full = simulate.simulate_campaign(root / "campaign", preset="tiny", seed=1)
    head, *scans = full.read_text().split("[[scan]]")
    keep = [b for b in scans if 'sample = "S1"' in b]
    assert len(keep) == 4
    path = full.with_name("campaign-s1.toml")
    path.write_text(head + "".join("[[scan]]" + b for b in keep))
    return path


@pytest.fixture(scope="module")
def baseline(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "out"
    assert run_campaign(tiny, out=out, report=False, progress=False) == 0
    return out


def test_tables_summary_and_groups(baseline, tiny):
    from daskxpcs.campaign.manifest import load_manifest

    man = load_manifest(tiny)
    names = [s.name for s in man.scans]
    for t in TABLES:
        header = (baseline / f"{t}.csv").read_text().splitlines()[0]
        assert header == ",".join(COLUMNS[t])
    scans = read_table(baseline / "scans.csv")
    n_q = len(man.geometries["run1"].q_edges) - 1
    assert [r["scan"] for r in scans] == [n for n in names for _ in range(n_q + 1)]
    assert [r["q_index"] for r in scans[: n_q + 1]] == list(range(n_q)) + [-1]
    assert {r["scan"] for r in read_table(baseline / "structure.csv")} == set(names)
    iso = read_table(baseline / "isobars.csv")
    assert len(iso) == len(man.isobars())
    assert sum(r["n_scans"] for r in iso) == len(names)
    aging = read_table(baseline / "aging.csv")  # only isobars of >= 3 scans
    assert [(r["sample"], r["pressure_gpa"]) for r in aging] == [
        k[::2] for k, v in man.isobars().items() if len(v) >= 3]
    s = json.loads((baseline / "summary.json").read_text())
    assert s["n_scans"] == len(names) and s["n_succeeded"] == len(names) and s["failed_scans"] == []
    for pkg in ("daskxpcs", "dask", "numpy", "zarr", "h5py"):
        assert s["versions"][pkg] not in ("", "not installed")
    assert s["parameters"]["ttcf_bin"] == 1 and s["parameters"]["engine"] == "auto"
    assert {"convert_s", "correlate_s", "analyse_s"} <= set(s["timings_s"]["stages"])
    assert any("slope" in k for k in s["structure_slopes"]["S1/compression"])
    assert _complete(baseline) == set(names)
    # no temporary files left next to the outputs
    assert not [p for p in baseline.iterdir() if p.name.startswith(".")]


def test_rerun_skips_and_redoes_only_what_changed(baseline, tiny, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(baseline, out)
    before = {t: (out / f"{t}.csv").read_bytes() for t in TABLES}
    assert run_campaign(tiny, out=out, report=False, progress=False) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_resumed"] == s["n_scans"]
    assert {t: (out / f"{t}.csv").read_bytes() for t in TABLES} == before
    # a frame file linked from a Bliss master touched (new mtime): that scan, and only that one,
    # is redone, to the same numbers
    from daskxpcs.campaign.manifest import load_manifest

    bliss = next(s for s in load_manifest(tiny).scans if s.raw_entry is not None)
    linked = next(Path(f) for f in bliss.source_files if Path(f) != bliss.raw)
    st = os.stat(linked)
    os.utime(linked, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert run_campaign(tiny, out=out, report=False, progress=False) == 0
    finally:
        os.utime(linked, ns=(st.st_atime_ns, st.st_mtime_ns))
    s = json.loads((out / "summary.json").read_text())
    assert s["n_resumed"] == s["n_scans"] - 1
    assert s["frame_pixels_processed"] == bliss.n_frames * bliss.frame_shape[0] * bliss.frame_shape[1]
    assert_same_tables(baseline, out)


def test_resume_after_sigkill(baseline, tiny, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "daskxpcs.cli", "run", str(tiny), "--out", str(out),
                             "--no-report", "--max-in-flight", "1"], stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    deadline = time.monotonic() + 240
    try:
        while not _complete(out):
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.02)  # kill soon after the first scan: scans of this tiny campaign are fast
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_with = _complete(out)
    n_scans = len(list((out / "results.zarr").iterdir()))
    assert 1 <= len(killed_with) < 4 and not (out / "summary.json").exists(), (
        killed_with, (tmp_path / "run.log").read_text())
    assert run_campaign(tiny, out=out, report=False, progress=False) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_resumed"] >= len(killed_with) and s["n_resumed"] < s["n_scans"], (n_scans, s["n_resumed"])
    assert_same_tables(baseline, out)


@pytest.mark.distributed
def test_distributed_workers_same_numbers_with_a_worker_killed(baseline, tiny, tmp_path):
    from distributed import Client

    out = tmp_path / "out"
    killed: dict = {}

    def killer(address: str) -> None:
        try:
            deadline = time.monotonic() + 240
            while not list((out / "stores").glob("*.zarr")) and time.monotonic() < deadline:
                time.sleep(0.05)
            with Client(address, timeout="60s") as c:
                pids = c.run(os.getpid)
            addr, pid = sorted(pids.items())[0]
            killed.update(address=addr, pid=pid, done_at_kill=len(_complete(out)), t=time.monotonic())
            os.kill(pid, signal.SIGKILL)  # a worker process started by our own `dask worker` nanny
        except Exception as exc:  # reported by the assertions below
            killed["error"] = repr(exc)

    with DaskProcesses(tmp_path, n_workers=2) as procs:
        t = threading.Thread(target=killer, args=(procs.address,))
        t.start()
        rc = run_campaign(tiny, out=out, scheduler=procs.address, report=False, progress=False)
        t_end = time.monotonic()
        t.join()
    assert rc == 0, json.loads((out / "summary.json").read_text())["failed_scans"]
    assert "error" not in killed and killed["done_at_kill"] < 4 and killed["t"] < t_end, killed
    s = json.loads((out / "summary.json").read_text())
    assert s["scheduler"]["kind"] == "distributed" and s["n_succeeded"] == s["n_scans"]
    assert_same_tables(baseline, out, rtol=1e-9)


def test_bad_scans_are_named_and_the_others_finish(tmp_path, capsys):
    scans = []
    for i, p in enumerate([1.0, 2.0]):
        name = f"good{i}"
        write_lima(tmp_path / "raw" / f"{name}.h5", speckle_frames(48, seed=i))
        scans.append(scan_entry(name, f"raw/{name}.h5", p=p))
    # truncated file: the header survives, frame chunks do not
    trunc = write_lima(tmp_path / "raw" / "trunc.h5", speckle_frames(48, seed=7))
    data = trunc.read_bytes()
    trunc.write_bytes(data[: len(data) * 2 // 3])
    scans.append(scan_entry("trunc", "raw/trunc.h5", p=3.0))
    # a file without the frames dataset
    with h5py.File(tmp_path / "raw" / "nodata.h5", "w") as f:
        f.create_group("entry_0000/measurement")
    scans.append(scan_entry("nodata", "raw/nodata.h5", p=3.0, frame_time_s=0.1))
    # every pixel masked
    scans.append({**scan_entry("masked", "raw/good0.h5", p=4.0), "geometry": "g2"})
    np.save(tmp_path / "all_bad.npy", np.ones((24, 20), np.uint8))
    extra = ('\n[[geometry]]\nname = "g2"\nqmap = "qmap.npy"\nmask = "all_bad.npy"\n'
             'q_edges = [1.0, 1.5, 2.0, 2.5]\n')
    manifest = write_manifest(tmp_path, scans)
    text = manifest.read_text()
    head, rest = text.split("\n[[scan]]", 1)
    manifest.write_text(head + extra + "\n[[scan]]" + rest)
    out = tmp_path / "out"
    assert run_campaign(manifest, out=out, report=False, progress=False) == 1
    err = capsys.readouterr().err
    s = json.loads((out / "summary.json").read_text())
    failed = {f["scan"]: f["reason"] for f in s["failed_scans"]}
    assert set(failed) == {"trunc", "nodata", "masked"}, failed
    assert "every pixel is masked" in failed["masked"]
    assert "trunc.h5" in failed["trunc"]
    assert "nodata.h5" in failed["nodata"]
    for name in failed:
        assert f'"{name}" failed: ' in err
    assert "3 of 5 scans failed" in err
    assert {r["scan"] for r in read_table(out / "scans.csv")} == {"good0", "good1"}
    assert _complete(out) == {"good0", "good1"}
