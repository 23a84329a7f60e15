"""``daskxpcs run MANIFEST``: every scan converted, correlated and analysed, then the
isobar, aging, q-dependence and structure analyses, the tables, summary.json and the report.

Scans go through a bounded pool (``max_in_flight`` at a time) so that no giant graph is
built for a campaign of hundreds of scans; each scan's own work is a Dask graph run on
the chosen scheduler. A scan that fails is named with its reason; the others finish.
"""

from __future__ import annotations

import importlib
import math
import platform
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conversions.errors import InputError
from conversions.scheduling import local_get
from daskxpcs.campaign.manifest import Geometry, Manifest, ScanSpec, load_manifest
from daskxpcs.campaign.plan import ttcf_nbytes
from daskxpcs.campaign.state import (
    atomic_write_json, conversion_fingerprint, mark_done, mark_store, read_done, remove_tree, scan_fingerprint,
    store_is_fresh,
)
from daskxpcs.campaign.tables import write_table
from daskxpcs.cluster import parse_spec, scheduler_context, single_blas_thread

__all__ = ["run_campaign", "ScanOutcome", "versions"]

VERSIONED = ("daskxpcs", "dask", "distributed", "numpy", "zarr", "numcodecs", "numba", "scipy", "lmfit", "h5py",
             "hdf5plugin")


@dataclass
class ScanOutcome:
    """What one scan gave: its table rows, or the reason it failed."""

    scan: ScanSpec
    rows: list[dict] = field(default_factory=list)
    structure: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    resumed: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def versions() -> dict[str, str]:
    """Versions of Python and the packages the numbers depend on."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = str(getattr(importlib.import_module(name), "__version__", "?"))
        except ImportError:
            out[name] = "not installed"
    return out


class _Geometries:
    """Q-maps and masks loaded once per geometry, shared by the scan threads."""

    def __init__(self, manifest: Manifest):
        self.manifest = manifest
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    def get(self, geom: Geometry, frame_shape) -> tuple[np.ndarray, np.ndarray | None]:
        with self._lock:
            if geom.name not in self._cache:
                self._cache[geom.name] = (self._qmap(geom, frame_shape), self._mask(geom))
            return self._cache[geom.name]

    @staticmethod
    def _qmap(geom: Geometry, frame_shape) -> np.ndarray:
        if geom.qmap is not None:
            from conversions.arrays import load_array

            return np.asarray(load_array(geom.qmap, key=f'geometry "{geom.name}" qmap'), dtype=np.float32)
        try:  # poni: a pyFAI geometry; pyFAI gives q in 1/nm
            import pyFAI
        except ImportError:
            raise InputError(f'geometry "{geom.name}": poni needs pyFAI, which is not installed') from None
        ai = pyFAI.load(geom.poni)
        return (np.asarray(ai.qArray(tuple(frame_shape)), dtype=np.float64) / 10.0).astype(np.float32)

    @staticmethod
    def _mask(geom: Geometry) -> np.ndarray | None:
        if geom.mask is None:
            return None
        from conversions.arrays import load_array

        return np.asarray(load_array(geom.mask, key=f'geometry "{geom.name}" mask')) != 0


def _process_scan(scan: ScanSpec, manifest: Manifest, out: Path, handle, params: dict,
                  geoms: _Geometries) -> ScanOutcome:
    """Convert (when the store is missing or stale), correlate, analyse, then mark the group done."""
    geom = manifest.geometry_of(scan)
    group = out / "results.zarr" / scan.name
    fp = scan_fingerprint(scan, geom, params)
    done = read_done(group, fp)
    if done is not None:
        return ScanOutcome(scan, rows=done.get("rows", []), structure=done.get("structure"),
                           timings=done.get("timings", {}), resumed=True)
    if scan.header_error:
        raise InputError(scan.header_error)
    from conversions.convert import convert
    from daskxpcs.correlate import correlate_scan

    timings: dict[str, float] = {}
    qmap, mask = geoms.get(geom, scan.frame_shape)
    store = out / "stores" / f"{scan.name}.zarr"
    cfp = conversion_fingerprint(scan, geom)
    t = time.perf_counter()
    if not store_is_fresh(store, cfp):
        # convert reuses, resumes (after a kill) or rewrites the store by its own key
        convert(scan.raw, store, qmap=qmap, q_edges=list(geom.q_edges), mask=mask, frame_time_s=scan.frame_time_s,
                entry=scan.raw_entry, layout="auto", scheduler=handle.scheduler)
        mark_store(store, cfp)
    timings["convert_s"] = time.perf_counter() - t
    from conversions.store import open_scan_store

    st = open_scan_store(store)
    if not np.asarray(st.valid).any():
        raise InputError(f"{scan.raw}: every pixel is masked (manifest mask, file mask or saturated pixels)")

    t = time.perf_counter()
    remove_tree(group)
    ctim = correlate_scan(store, group, qmap=qmap, q_edges=list(geom.q_edges), engine=params["engine"],
                          ttcf_bin=params["ttcf_bin"], scheduler=handle.scheduler)
    timings["correlate_s"] = time.perf_counter() - t
    if isinstance(ctim, dict):
        timings.update({f"correlate.{k}": v for k, v in ctim.items() if isinstance(v, (int, float))})

    t = time.perf_counter()
    import zarr

    from daskxpcs.analysis import analyse_scan, scan_structure

    q1 = scan_structure(st.pixel_sum(), st.n_frames, st.qmap, st.valid)
    meta = scan.meta()
    structure = {k: meta[k] for k in ("scan", "sample", "stage", "pressure_gpa", "temperature_k")}
    structure.update(q1)
    g = zarr.open_group(str(group), mode="r+")
    g.attrs.update({k: v for k, v in {**meta, **q1}.items() if v is not None})
    rows = analyse_scan(g, meta)
    timings["analyse_s"] = time.perf_counter() - t
    outcome = ScanOutcome(scan, rows=list(rows), structure=structure, timings=timings)
    mark_done(group, fp, {"rows": outcome.rows, "structure": structure, "timings": timings})
    return outcome


def _run_scans(manifest: Manifest, out: Path, handle, params: dict, max_in_flight: int,
               progress: bool) -> list[ScanOutcome]:
    geoms = _Geometries(manifest)
    scans = list(manifest.scans)
    results: dict[str, ScanOutcome] = {}
    bar = _Progress(len(scans), enabled=progress)
    with ThreadPoolExecutor(max_workers=max(1, int(max_in_flight)), thread_name_prefix="scan") as pool:
        pending: dict[Any, ScanSpec] = {}
        it = iter(scans)

        def submit_next() -> None:
            s = next(it, None)
            if s is not None:
                pending[pool.submit(_process_scan, s, manifest, out, handle, params, geoms)] = s

        for _ in range(max(1, int(max_in_flight))):
            submit_next()
        while pending:
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in finished:
                s = pending.pop(fut)
                try:
                    results[s.name] = fut.result()
                except Exception as exc:  # one scan's failure is reported, the others go on
                    reason = _reason(exc)
                    results[s.name] = ScanOutcome(s, error=reason)
                    bar.message(f'daskxpcs run: {s.label} failed: {reason}')
                    if _debug() and not isinstance(exc, InputError):
                        traceback.print_exception(exc, file=sys.stderr)
                bar.update(results[s.name])
                submit_next()
    bar.close()
    return [results[s.name] for s in scans]


def _reason(exc: BaseException) -> str:
    msg = str(exc).strip().replace("\n", " ")
    return msg if isinstance(exc, InputError) else f"{type(exc).__name__}: {msg}"


def _debug() -> bool:
    import os

    return bool(os.environ.get("DASKXPCS_DEBUG"))


def _safe(fn, *args, **kwargs):
    """Run ``fn`` and return ("ok", value) or ("error", reason): one isobar's failure stays its own."""
    try:
        return "ok", fn(*args, **kwargs)
    except Exception as exc:
        return "error", _reason(exc)


def _q1(structure: dict | None) -> dict:
    v = (structure or {}).get("q1_inv_angstrom")
    return {"q1_inv_angstrom": math.nan if v is None else float(v)}


def _isobar_parts(value) -> tuple[dict, dict | None, dict | None]:
    """``analyse_isobar``'s (isobar, aging, qdep) from its tuple (or a dict with those keys)."""
    if isinstance(value, dict):
        return value["isobar"], value.get("aging"), value.get("qdep")
    iso, age, qd = value
    return iso, age, qd


def _run_isobars(manifest: Manifest, out: Path, outcomes: list[ScanOutcome], handle,
                 max_tw_s: float | None) -> dict[str, Any]:
    """Isobar, aging and q-dependence rows for every isobar, and the structure slopes, as delayed tasks."""
    import dask

    from daskxpcs.analysis import analyse_isobar, structure_slopes

    ok = [o for o in outcomes if o.ok]
    by_isobar: dict[tuple, list[ScanOutcome]] = {}
    for o in ok:
        by_isobar.setdefault(o.scan.isobar, []).append(o)
    keys = sorted(by_isobar, key=lambda k: (k[0], k[1], k[2]))
    tasks = []
    for k in keys:
        group = by_isobar[k]
        tasks.append(dask.delayed(_safe)(
            analyse_isobar,
            [str(out / "results.zarr" / o.scan.name) for o in group],
            [{**o.scan.meta(), **_q1(o.structure)} for o in group],
            [r for o in group for r in o.rows],
            max_tw_s=max_tw_s,
            dask_key_name=f"isobar-{k[0]}-{k[1]}-{k[2]}",
        ))
    srows = [o.structure for o in ok if o.structure]
    tasks.append(dask.delayed(_safe)(structure_slopes, srows, dask_key_name="structure-slopes"))
    results = dask.compute(*tasks, scheduler=local_get(handle.scheduler))
    isobars, aging, qdep, failed = [], [], [], []
    for k, (status, value) in zip(keys, results[:-1]):
        if status == "error":
            failed.append({"sample": k[0], "stage": k[1], "pressure_gpa": k[2], "reason": value})
            continue
        iso, age, qd = _isobar_parts(value)
        isobars.append(iso)
        if age is not None:
            aging.append(age)
        if qd is not None:
            qdep.append(qd)
    status, slopes = results[-1]
    if status == "error":
        failed.append({"structure": True, "reason": slopes})
        slopes = {}
    return {"isobars": isobars, "aging": aging, "qdep": qdep, "structure": srows, "slopes": slopes,
            "failed": failed}


def run_campaign(manifest: str | Path, *, out: str | Path | None = None, scheduler: Any = "threads",
                 plan: bool = False, engine: str = "auto", ttcf_bin: int = 1, max_tw_s: float | None = None,
                 max_in_flight: int = 2, report: bool = True, progress: bool = True) -> int:
    """Process a campaign manifest end to end.

    Parameters
    ----------
    manifest : path
        The campaign TOML (DESIGN.md); validated in full before anything is created.
    out : path, optional
        Output folder; default the manifest's ``[campaign] output``.
    scheduler : str
        A ``--scheduler`` spec (see ``daskxpcs.cluster``).
    plan : bool
        Print the dry-run plan (sizes, memory, time) and return without computing.
    engine, ttcf_bin : correlator options (``ttcf_bin`` frames averaged per TTCF pixel).
    max_tw_s : float, optional
        Scans with t_w beyond this (s) are left out of the aging fits.
    max_in_flight : int
        Scans processed at once.
    report, progress : bool
        Write figures + report.html; show a progress bar on a terminal.

    Returns
    -------
    int
        0 when every scan (and every isobar analysis) succeeded, else 1.
    """
    t_start = time.perf_counter()
    man = load_manifest(manifest)
    if isinstance(scheduler, str):
        parse_spec(scheduler)  # a bad spec is an input error before anything is created
    if engine not in ("auto", "events", "dense"):
        raise InputError(f"--engine: expected auto, events or dense, got {engine!r}")
    if int(ttcf_bin) < 1:
        raise InputError(f"--ttcf-bin must be >= 1, got {ttcf_bin}")
    if int(max_in_flight) < 1:
        raise InputError(f"--max-in-flight must be >= 1, got {max_in_flight}")
    out = Path(out) if out is not None else man.output
    if plan:
        from daskxpcs.campaign.plan import format_plan, plan_campaign

        print(format_plan(plan_campaign(man, ttcf_bin=ttcf_bin, max_in_flight=max_in_flight, calibration=out)))
        return 0

    params = {"engine": engine, "ttcf_bin": int(ttcf_bin)}
    (out / "stores").mkdir(parents=True, exist_ok=True)
    import zarr

    zarr.open_group(str(out / "results.zarr"), mode="a")
    timings: dict[str, Any] = {}
    with scheduler_context(scheduler) as handle, single_blas_thread(handle.scheduler):
        link = handle.dashboard_link
        if link:
            print(f"daskxpcs run: Dask dashboard at {link}", file=sys.stderr)
        sched_info = {"spec": str(scheduler), "kind": handle.kind, "workers": handle.n_workers(),
                      "dashboard": link}
        t = time.perf_counter()
        outcomes = _run_scans(man, out, handle, params, max_in_flight, progress)
        timings["scans_s"] = time.perf_counter() - t
        t = time.perf_counter()
        camp = _run_isobars(man, out, outcomes, handle, max_tw_s)
        timings["isobars_s"] = time.perf_counter() - t

    t = time.perf_counter()
    ok = [o for o in outcomes if o.ok]
    write_table(out / "scans.csv", [r for o in ok for r in o.rows], "scans")
    write_table(out / "isobars.csv", camp["isobars"], "isobars")
    write_table(out / "aging.csv", camp["aging"], "aging")
    write_table(out / "qdep.csv", camp["qdep"], "qdep")
    write_table(out / "structure.csv", camp["structure"], "structure")
    timings["tables_s"] = time.perf_counter() - t

    failed = [{"scan": o.scan.name, "raw": str(o.scan.raw), "reason": o.error} for o in outcomes if not o.ok]
    summary = _summary(man, out, outcomes, camp, failed, timings, sched_info, scheduler=scheduler, engine=engine,
                       ttcf_bin=ttcf_bin, max_tw_s=max_tw_s, max_in_flight=max_in_flight)
    timings["total_s"] = time.perf_counter() - t_start
    summary["timings_s"].update(timings)
    atomic_write_json(out / "summary.json", summary)

    report_error = None
    if report:
        from daskxpcs.report import write_report

        t = time.perf_counter()
        try:
            summary["report"] = str(write_report(out))
        except Exception as exc:  # the tables stand without the report
            report_error = _reason(exc)
            summary["report_error"] = report_error
            print(f"daskxpcs run: report failed: {report_error}", file=sys.stderr)
        timings["report_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t_start
        summary["timings_s"].update(timings)
        atomic_write_json(out / "summary.json", summary)

    for f in camp["failed"]:
        print(f"daskxpcs run: isobar analysis failed: {f}", file=sys.stderr)
    if failed:
        names = ", ".join(f'"{f["scan"]}"' for f in failed)
        print(f"daskxpcs run: {len(failed)} of {len(outcomes)} scans failed: {names}", file=sys.stderr)
    return 0 if not failed and not camp["failed"] and report_error is None else 1


def _summary(man: Manifest, out: Path, outcomes: list[ScanOutcome], camp: dict, failed: list, timings: dict,
             sched_info: dict, **params) -> dict[str, Any]:
    per_scan = {o.scan.name: o.timings for o in outcomes if o.ok}
    stage_totals: dict[str, float] = {}
    for o in outcomes:
        if o.ok and not o.resumed:
            for k, v in o.timings.items():
                if k.endswith("_s") and "." not in k:
                    stage_totals[k] = stage_totals.get(k, 0.0) + float(v)
    done = [o for o in outcomes if o.ok and not o.resumed]
    frame_pixels = sum((o.scan.n_frames or 0) * math.prod(o.scan.frame_shape or (0,)) for o in done)
    ttcf_bytes = sum(ttcf_nbytes(len(man.geometry_of(o.scan).q_edges) - 1, o.scan.n_frames or 0, params["ttcf_bin"])
                     for o in done)
    reasons = {}
    for o in outcomes:
        for r in o.rows:
            if r.get("reason"):
                reasons.setdefault(o.scan.name, {})[str(r.get("q_index"))] = r["reason"]
    slopes = camp["slopes"] if isinstance(camp["slopes"], dict) else {"structure_slopes": camp["slopes"]}
    return {
        "campaign": man.name,
        "manifest": str(man.path),
        "output": str(out.resolve()),
        "versions": versions(),
        "parameters": {"manifest": str(man.path), **{k: (str(v) if k == "scheduler" else v) for k, v in params.items()}},
        "scheduler": sched_info,
        "n_scans": len(outcomes),
        "n_succeeded": sum(o.ok for o in outcomes),
        "n_resumed": sum(o.resumed for o in outcomes),
        "failed_scans": failed,
        "failed_isobars": camp["failed"],
        "timings_s": {**timings, "stages": stage_totals, "per_scan": per_scan},
        "frame_pixels_processed": frame_pixels,
        "ttcf_bytes_written": ttcf_bytes,
        "fit_reasons": reasons,
        "structure_slopes": slopes,
    }


class _Progress:
    """A one-line scan progress bar on a terminal; plain lines for messages."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.failed, self.resumed = total, 0, 0, 0
        self.tty = enabled and sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self._draw()

    def update(self, o: ScanOutcome) -> None:
        self.done += 1
        self.failed += not o.ok
        self.resumed += o.resumed
        self._draw()

    def message(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        print(text, file=sys.stderr)
        self._draw()

    def _draw(self) -> None:
        if not self.tty:
            return
        width = 30
        n = int(width * self.done / max(1, self.total))
        el = time.perf_counter() - self.t0
        sys.stderr.write(f"\r[{'#' * n}{'.' * (width - n)}] {self.done}/{self.total} scans "
                         f"({self.resumed} resumed, {self.failed} failed) {el:6.1f} s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
