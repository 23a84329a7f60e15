"""``daskxpcs run MANIFEST --plan``: a dry run from the raw headers only.

Reports the number of scans and tasks, the data volume (raw bytes on disk, frames x
pixels, TTCF bytes to write), the expected peak memory per worker from the block
sizes, and the expected wall time on 1, 8 and 64 workers.

Time model: one throughput ``R`` in frame-pixels per second per worker (a worker = one
thread of one process), so ``time(W) = frames*pixels / (R * min(W, parallel tasks))``.
``R`` comes from the ``summary.json`` of an earlier run in the output folder when there is
one (``frame_pixels_processed / (scans_s * workers)``), else from ``DEFAULT_THROUGHPUT``,
measured with ``benchmarks/bench_archive.py --scale`` on a 2-core machine (see its docstring).
The model is linear in frames x pixels; the TTCF's T^2 cost makes it optimistic for scans
much longer than the calibration run (the benchmark prints actual / projected).

Only the raw headers are read, so a manifest of header-only HDF5 files (chunked datasets
with no chunk written, a few kB each) plans an archive that does not fit on this disk.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daskxpcs.campaign.manifest import Manifest
from daskxpcs.campaign.state import file_stat

__all__ = ["Plan", "plan_campaign", "format_plan", "DEFAULT_THROUGHPUT", "WORKERS"]

# frame-pixels per second per worker thread, whole pipeline (convert + correlate + analyse),
# measured by benchmarks/bench_archive.py --scale 0.05 (threads, 2 cores); see README of the benchmark.
DEFAULT_THROUGHPUT = 2.0e7
WORKERS = (1, 8, 64)
WORKER_BASE_BYTES = 300 * 2**20  # an idle Dask worker process with numba/zarr loaded


@dataclass
class ScanPlan:
    name: str
    n_frames: int
    frame_shape: tuple[int, int]
    itemsize: int
    raw_bytes: int
    bin_pixels: int
    n_q: int
    tasks: int
    task_bytes: int

    @property
    def frame_pixels(self) -> int:
        return self.n_frames * self.frame_shape[0] * self.frame_shape[1]


@dataclass
class Plan:
    """What ``--plan`` prints. Bytes, seconds, frame-pixels per second per worker."""

    manifest: str
    scans: list[ScanPlan]
    unreadable: list[str]
    ttcf_bin: int
    max_in_flight: int
    throughput: float
    throughput_source: str
    t_block: int
    p_tile: int
    isobars: int
    times_s: dict[int, float] = field(default_factory=dict)

    @property
    def n_tasks(self) -> int:
        return sum(s.tasks for s in self.scans) + 4 * self.isobars + 1

    @property
    def frame_pixels(self) -> int:
        return sum(s.frame_pixels for s in self.scans)

    @property
    def raw_bytes(self) -> int:
        return sum(s.raw_bytes for s in self.scans)

    @property
    def uncompressed_bytes(self) -> int:
        return sum(s.frame_pixels * s.itemsize for s in self.scans)

    @property
    def ttcf_bytes(self) -> int:
        return sum((s.n_q + 1) * (s.n_frames // self.ttcf_bin) ** 2 * 4 for s in self.scans)

    @property
    def peak_task_bytes(self) -> int:
        return max((s.task_bytes for s in self.scans), default=0)

    @property
    def peak_worker_bytes(self) -> int:
        return WORKER_BASE_BYTES + self.peak_task_bytes

    def parallel_tasks(self) -> int:
        """Independent block tasks available at once with ``max_in_flight`` scans."""
        per = sorted((s.tasks for s in self.scans), reverse=True)[: self.max_in_flight]
        return max(1, sum(per))

    def time_s(self, workers: int) -> float:
        return self.frame_pixels / (self.throughput * min(workers, self.parallel_tasks()))


def _blocks() -> tuple[int, int]:
    try:
        from conversions.store import DENSE_P_TILE, EVENTS_T_BLOCK

        return int(EVENTS_T_BLOCK), int(DENSE_P_TILE)
    except ImportError:
        return 256, 8192


def _bytes(stat) -> int:
    if stat is None:
        return 0
    if stat and isinstance(stat[0], (list, tuple)):
        return sum(int(s[1]) for s in stat)
    return int(stat[0])


def _calibration(out: Path | None) -> tuple[float, str]:
    if out is not None:
        p = Path(out) / "summary.json"
        try:
            s = json.loads(p.read_text())
            fp = float(s["frame_pixels_processed"])
            wall = float(s["timings_s"]["scans_s"])
            workers = int(s["scheduler"]["workers"])
            if fp > 0 and wall > 0 and workers > 0:
                return fp / (wall * workers), f"measured by the earlier run in {p}"
        except (OSError, KeyError, TypeError, ValueError):
            pass
    env = os.environ.get("DASKXPCS_THROUGHPUT")
    if env:
        return float(env), "DASKXPCS_THROUGHPUT"
    return DEFAULT_THROUGHPUT, "default constant (benchmarks/bench_archive.py, 2-core machine)"


def _bin_pixels(man: Manifest) -> dict[str, int | None]:
    """Valid pixels inside the q-range of each geometry (the pixels the correlator handles)."""
    from daskxpcs.campaign.manifest import split_array_spec

    out: dict[str, int | None] = {}
    for name, g in man.geometries.items():
        if g.qmap is None:
            out[name] = None
            continue
        file, ds = split_array_spec(g.qmap)
        if ds is None:
            q = np.load(file, mmap_mode="r")
        else:
            import h5py

            with h5py.File(file, "r") as f:
                q = f[ds][()]
        inside = (q >= g.q_edges[0]) & (q < g.q_edges[-1])
        if g.mask is not None:
            mfile, mds = split_array_spec(g.mask)
            if mds is None:
                m = np.load(mfile, mmap_mode="r")
            else:
                import h5py

                with h5py.File(mfile, "r") as f:
                    m = f[mds][()]
            inside &= np.asarray(m) == 0
        out[name] = int(np.count_nonzero(inside))
    return out


def plan_campaign(man: Manifest, *, ttcf_bin: int = 1, max_in_flight: int = 2,
                  calibration: str | Path | None = None) -> Plan:
    """Sizes, tasks, memory and time of a validated manifest, from raw headers only.

    Parameters
    ----------
    man : Manifest
        From ``load_manifest`` (headers read).
    ttcf_bin : int
        TTCF binning (frames), as for the run.
    max_in_flight : int
        Scans processed at once.
    calibration : path, optional
        An output folder whose ``summary.json`` gives a measured throughput.
    """
    t_block, p_tile = _blocks()
    thr, src = _calibration(Path(calibration) if calibration else None)
    bins = _bin_pixels(man)
    scans, unreadable = [], []
    for s in man.scans:
        if s.n_frames is None or s.frame_shape is None:
            unreadable.append(f"{s.label}: {s.header_error or 'header not read'}")
            continue
        g = man.geometry_of(s)
        ny, nx = s.frame_shape
        itemsize = np.dtype(s.dtype or "uint32").itemsize
        P = bins.get(g.name) or ny * nx
        n_q = len(g.q_edges) - 1
        n_t = math.ceil(s.n_frames / t_block)
        n_p = math.ceil(P / p_tile)
        # conversion: one task per time block; correlation: every pair of time blocks per pixel tile
        # plus a reduction per pair; analysis: a few per scan.
        tasks = n_t + n_t * (n_t + 1) // 2 * (n_p + 1) + 4
        conv = 2 * t_block * ny * nx * itemsize  # raw frames decoded + the valid-pixel selection
        corr = 2 * t_block * p_tile * 4 + 2 * (n_q + 1) * t_block * t_block * 8  # two blocks + partial sums
        scans.append(ScanPlan(s.name, s.n_frames, (ny, nx), itemsize, _bytes(file_stat(s.raw)), P, n_q, tasks,
                              max(conv, corr)))
    plan = Plan(str(man.path), scans, unreadable, int(ttcf_bin), int(max_in_flight), thr, src, t_block, p_tile,
                len(man.isobars()))
    plan.times_s = {w: plan.time_s(w) for w in WORKERS}
    return plan


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n}"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def format_plan(plan: Plan) -> str:
    """The plan as printed by ``--plan``."""
    frames = sum(s.n_frames for s in plan.scans)
    lines = [
        f"plan for {plan.manifest}",
        f"  scans            {len(plan.scans)} in {plan.isobars} isobars ({frames} frames)"
        + (f", {len(plan.unreadable)} unreadable" if plan.unreadable else ""),
        f"  tasks            ~{plan.n_tasks:,} (t_block {plan.t_block} frames, p_tile {plan.p_tile} pixels)",
        f"  raw on disk      {_size(plan.raw_bytes)}",
        f"  raw uncompressed {_size(plan.uncompressed_bytes)} ({plan.frame_pixels:.3e} frames x pixels)",
        f"  TTCF to write    {_size(plan.ttcf_bytes)} (ttcf_bin {plan.ttcf_bin}, float32, before compression)",
        f"  peak memory      {_size(plan.peak_worker_bytes)} per worker thread "
        f"({_size(plan.peak_task_bytes)} largest task + {_size(WORKER_BASE_BYTES)} worker)",
        f"  throughput       {plan.throughput:.3g} frame-pixels/s per worker ({plan.throughput_source})",
    ]
    for w, t in plan.times_s.items():
        lines.append(f"  expected time    {_duration(t):>10} on {w:>2} worker{'s' if w > 1 else ''}")
    for u in plan.unreadable:
        lines.append(f"  unreadable       {u}")
    return "\n".join(lines)
