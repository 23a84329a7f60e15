"""``daskxpcs run MANIFEST --plan``: a dry run from the raw headers only.

Reports the number of scans and tasks, the data volume (raw bytes on disk, frames x
pixels, TTCF bytes to write), the expected peak memory per worker from the block
sizes, and the expected wall time on 1, 8 and 64 workers.

Time model::

    time(W) = (frames*pixels / R + ttcf_bytes / B) / min(W, parallel tasks)
              + n_scans * c0 / min(W, max_in_flight)

with ``R`` the conversion + correlation throughput in frame-pixels per second per worker
(one worker = one thread), ``B`` the TTCF bytes per second per worker (the work that grows
as T^2: writing the two-time maps and the event pairs behind them) and ``c0`` the fixed
time of a scan (start-up of its conversion and correlation, KWW fits, structure; run
``max_in_flight`` scans at a time). ``R`` and ``c0`` come from the ``summary.json`` of an
earlier run in the output folder when there is one (its wall time split by its per-stage
times, less its TTCF term: ``c0`` is then its analysis time per scan), else from
``DEFAULT_THROUGHPUT`` / ``DEFAULT_SCAN_OVERHEAD_S``, fitted on two runs of different scan
lengths; ``B`` is ``DEFAULT_TTCF_RATE``. All were measured on a 2-core machine (see the
constants).

Tasks and memory follow the block sizes of ``conversions`` and ``daskxpcs.graph``; the
photon density (which picks the layouts and the pixel tiles) is sampled from two frames of
the first scan, else taken as ``DEFAULT_DENSITY``.

Only the raw headers (and two frames, for the density) are read, so a manifest of
header-only HDF5 files (chunked datasets with no chunk written, a few kB each) plans an
archive that does not fit on this disk (``benchmarks/bench_archive.py`` does so).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daskxpcs.campaign.manifest import Manifest
from daskxpcs.campaign.state import file_stat

__all__ = ["Plan", "plan_campaign", "format_plan", "ttcf_nbytes", "DEFAULT_THROUGHPUT", "DEFAULT_SCAN_OVERHEAD_S",
           "DEFAULT_TTCF_RATE", "WORKERS"]

# Fitted on two runs of `benchmarks/bench_archive.py` (threads, 2 shared cores, renewal
# generator, 512 x 512 at 0.01 ph/px/frame): the full preset (66 scans x 4000 frames,
# 258.7 s, 21.1 GB of TTCF) and `--scale 0.25 --isobars 2` (12 scans x 1000 frames,
# 12.9 s, 0.53 GB). Both fit wall = (fp / R + ttcf / B) / 2 + scans * c0 / 2 exactly with
# R = 3.39e8 frame-pixels/s and c0 = 0.84 s per scan (per in-flight slot) once B is fixed.
DEFAULT_THROUGHPUT = 3.39e8
DEFAULT_SCAN_OVERHEAD_S = 0.84
# TTCF bytes per second per worker thread, the term growing with T^2 (pair tasks, writes):
# `benchmarks/bench_correlate.py memory` against `sparse` (14 000 and 2 000 frames of
# 1024 x 1024 at 0.01 ph/px/frame: 8.62 GB and 0.18 GB of TTCF, 54.1 s and 2.58 s on 2
# threads, whole processes).
DEFAULT_TTCF_RATE = 8.2e7
DEFAULT_DENSITY = 0.01  # photons / pixel / frame, sparse 21 keV XPCS
WORKERS = (1, 8, 64)
WORKER_BASE_BYTES = 300 * 2**20  # an idle Dask worker process with numba/zarr loaded


def ttcf_nbytes(n_q: int, n_frames: int, ttcf_bin: int) -> int:
    """Bytes of one scan's ``ttcf`` before compression: n_q + 1 float32 maps of T' x T'."""
    return 4 * (n_q + 1) * (n_frames // ttcf_bin) ** 2


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
    scan_overhead_s: float
    calibration_source: str
    density: float
    density_source: str
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
        return sum(ttcf_nbytes(s.n_q, s.n_frames, self.ttcf_bin) for s in self.scans)

    @property
    def peak_task_bytes(self) -> int:
        return max((s.task_bytes for s in self.scans), default=0)

    @property
    def peak_worker_bytes(self) -> int:
        return WORKER_BASE_BYTES + self.peak_task_bytes

    def parallel_tasks(self) -> int:
        """Block tasks available at once with ``max_in_flight`` scans."""
        per = sorted((s.tasks for s in self.scans), reverse=True)[: self.max_in_flight]
        return max(1, sum(per))

    def time_s(self, workers: int) -> float:
        """Expected wall time (s) on ``workers`` worker threads."""
        work = self.frame_pixels / self.throughput + self.ttcf_bytes / DEFAULT_TTCF_RATE
        return work / min(workers, self.parallel_tasks()) + len(self.scans) * self.scan_overhead_s / min(
            workers, self.max_in_flight)


def _calibration(out: Path | None) -> tuple[float, float, str]:
    """(throughput, per-scan overhead, where they come from)."""
    if out is not None:
        p = Path(out) / "summary.json"
        try:
            s = json.loads(p.read_text())
            fp = float(s["frame_pixels_processed"])
            wall = float(s["timings_s"]["scans_s"])
            workers = int(s["scheduler"]["workers"])
            st = s["timings_s"]["stages"]
            blocks, analyse = float(st["convert_s"]) + float(st["correlate_s"]), float(st["analyse_s"])
            n = int(s["n_scans"]) - int(s.get("n_resumed", 0)) - len(s.get("failed_scans", []))
            in_flight = int(s["parameters"].get("max_in_flight", 1))
            ttcf_s = float(s.get("ttcf_bytes_written", 0)) / DEFAULT_TTCF_RATE
            if fp > 0 and wall > 0 and workers > 0 and blocks > 0 and n > 0:
                frac = blocks / (blocks + analyse)
                block_ws = wall * frac * workers  # worker-seconds of conversion + correlation
                linear = block_ws - ttcf_s  # less what the TTCF term accounts for
                thr = fp / (linear if linear > 0.1 * block_ws else block_ws)
                c0 = wall * (1 - frac) * min(workers, in_flight) / n
                return thr, c0, f"measured by the earlier run in {p}"
        except (OSError, KeyError, TypeError, ValueError, ZeroDivisionError):
            pass
    return DEFAULT_THROUGHPUT, DEFAULT_SCAN_OVERHEAD_S, "defaults from benchmarks/bench_archive.py (2-core machine)"


def _read_array(spec: str) -> np.ndarray:
    from daskxpcs.campaign.manifest import split_array_spec

    file, ds = split_array_spec(spec)
    if ds is None:
        return np.load(file, mmap_mode="r")
    import h5py

    with h5py.File(file, "r") as f:
        return f[ds][()]


def _in_bins(man: Manifest) -> dict[str, np.ndarray | None]:
    """Per geometry: the pixels inside the q-range and not masked (what the correlator handles)."""
    out: dict[str, np.ndarray | None] = {}
    for name, g in man.geometries.items():
        if g.qmap is None:
            out[name] = None
            continue
        q = np.asarray(_read_array(g.qmap))
        inside = (q >= g.q_edges[0]) & (q < g.q_edges[-1])
        if g.mask is not None:
            inside &= np.asarray(_read_array(g.mask)) == 0
        out[name] = inside
    return out


def _density(man: Manifest, in_bins: dict) -> tuple[float, str]:
    """Photons / pixel / frame from two frames in the middle of the first readable scan."""
    from conversions.formats import open_raw

    for s in man.scans:
        if s.n_frames is None:
            continue
        try:
            raw = open_raw(s.raw, s.raw_entry)
            mid = s.n_frames // 2
            frames = np.asarray(raw.read_frames(mid, min(s.n_frames, mid + 2)), dtype=np.float64)
        except Exception:  # unreadable data: the run reports it; the plan falls back
            break
        sel = in_bins.get(s.geometry)
        vals = frames[:, sel] if sel is not None and sel.any() else frames.reshape(frames.shape[0], -1)
        dt = np.dtype(raw.dtype)
        if dt.kind in "ui":  # saturated / hot pixels hold the dtype maximum: not photons
            vals = vals[vals < np.iinfo(dt).max]
        d = float(vals.mean()) if vals.size else 0.0
        if d > 0:
            return d, f"sampled from 2 frames of {s.name}"
        break
    return DEFAULT_DENSITY, "default (no photons found in the sampled frames)"


def _scan_blocks(n_frames: int, shape, itemsize: int, P: int, n_q: int, density: float,
                 ttcf_bin: int) -> tuple[int, int]:
    """(tasks, working-set bytes) of one scan from the block sizes of conversion and correlation.

    The working set is the larger of a conversion task's and the correlation's live data
    (its shared loads and waiting partial numerators included)."""
    import conversions.store as cs
    import daskxpcs.graph.correlate as gc
    from conversions.convert import BATCH_FRAMES
    from daskxpcs.kernels.events import INT32_PAIR_BOUND

    ny, nx = shape
    layout = "events" if density < cs.DENSITY_THRESHOLD else "dense"
    ctb, _ = cs.default_blocks(n_frames, P, layout, itemsize, None, None)
    conv_tasks = math.ceil(n_frames / ctb)
    block_bytes = cs.EVENTS_BLOCK_BYTES if layout == "events" else cs.DENSE_BLOCK_BYTES
    conv_bytes = 3 * BATCH_FRAMES * ny * nx * itemsize + block_bytes
    sparse, tb, p_tile = gc.choose_blocks(n_frames, P, density, ttcf_bin=ttcf_bin)
    n_t = math.ceil(n_frames / tb)
    pairs = n_t * (n_t + 1) // 2
    n_p = math.ceil(P / p_tile)
    if sparse:
        # a tile's time-block loads stay alive while their rows and columns of pairs run
        # (4 bytes an event, 4 a pixel offset), two tiles' at a change of tile, beside one
        # lag-statistics read of a pixel chunk; with several tiles, one tile's partial
        # numerators of every block pair (its bins only) wait for the next tile's, int32
        # while a frame's photons times the largest count (assumed <= 255, with a 4x
        # margin on the mean frame sum) stay below the kernel's bound, else float64
        px = min(p_tile, P)
        loads = density * n_frames * px * 4 + n_t * px * 4
        item = 4 if 4 * density * px * 255 < INT32_PAIR_BOUND else 8
        waiting = pairs * min(n_q, math.ceil(n_q / n_p) + 1) * tb * tb * item if n_p > 1 else 0
        tile_bytes = int(min(2, n_p) * loads + waiting + min(gc.EVENTS_PER_CHUNK, density * n_frames * P) * 24)
    else:
        tile_bytes = 2 * tb * p_tile * 4
    corr_tasks = n_p * (pairs + 1) + pairs + n_t + 8
    corr_bytes = tile_bytes + 2 * (n_q + 1) * tb * tb * 8
    return conv_tasks + corr_tasks + 4, max(conv_bytes, corr_bytes)


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
    thr, c0, src = _calibration(Path(calibration) if calibration else None)
    in_bins = _in_bins(man)
    density, dsrc = _density(man, in_bins)
    scans, unreadable = [], []
    for s in man.scans:
        if s.n_frames is None or s.frame_shape is None:
            unreadable.append(f"{s.label}: {s.header_error or 'header not read'}")
            continue
        g = man.geometry_of(s)
        ny, nx = s.frame_shape
        itemsize = np.dtype(s.dtype or "uint32").itemsize
        sel = in_bins.get(g.name)
        P = int(np.count_nonzero(sel)) if sel is not None else ny * nx
        n_q = len(g.q_edges) - 1
        tasks, task_bytes = _scan_blocks(s.n_frames, (ny, nx), itemsize, max(P, 1), n_q, density, int(ttcf_bin))
        scans.append(ScanPlan(s.name, s.n_frames, (ny, nx), itemsize, _bytes(file_stat(s.raw)), P, n_q, tasks,
                              task_bytes))
    plan = Plan(str(man.path), scans, unreadable, int(ttcf_bin), int(max_in_flight), thr, c0, src, density, dsrc,
                len(man.isobars()))
    plan.times_s = {w: plan.time_s(w) for w in WORKERS}
    return plan


def _bytes(stat) -> int:
    if stat is None:
        return 0
    if stat and isinstance(stat[0], (list, tuple)):
        return sum(int(s[1]) for s in stat)
    return int(stat[0])


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
        f"  tasks            ~{plan.n_tasks:,}",
        f"  raw on disk      {_size(plan.raw_bytes)}",
        f"  raw uncompressed {_size(plan.uncompressed_bytes)} ({plan.frame_pixels:.3e} frames x pixels)",
        f"  photon density   {plan.density:.3g} per pixel per frame ({plan.density_source})",
        f"  TTCF to write    {_size(plan.ttcf_bytes)} (ttcf_bin {plan.ttcf_bin}, float32, before compression)",
        f"  peak memory      {_size(plan.peak_worker_bytes)} per worker thread "
        f"({_size(plan.peak_task_bytes)} largest scan's working set + {_size(WORKER_BASE_BYTES)} worker)",
        f"  throughput       {plan.throughput:.3g} frame-pixels/s per worker + {plan.scan_overhead_s:.2g} s "
        f"per scan ({plan.calibration_source})",
    ]
    for w, t in plan.times_s.items():
        lines.append(f"  expected time    {_duration(t):>10} on {w:>2} worker{'s' if w > 1 else ''}")
    for u in plan.unreadable:
        lines.append(f"  unreadable       {u}")
    return "\n".join(lines)
