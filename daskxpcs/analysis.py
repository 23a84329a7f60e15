"""Analysis glue: correlation outputs (zarr groups) -> result-table rows.

Plain functions (numpy, zarr, lmfit through :mod:`daskxpcs.models`); the campaign
wraps them in ``dask.delayed``. Nothing here builds a graph or loads a whole TTCF.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr

from daskxpcs.jsonsafe import json_safe
from daskxpcs.models import (
    chi4,
    delta_c,
    fine_profile,
    fit_aging,
    fit_kww,
    fit_linear,
    fit_q1,
    fit_qdep,
    fit_scan,
    thermal_expansion,
)

__all__ = [
    "SCAN_COLUMNS",
    "analyse_isobar",
    "analyse_scan",
    "pooled_c_at_tau",
    "scan_structure",
    "structure_slopes",
]

SCAN_COLUMNS = (
    "scan", "sample", "stage", "pressure_gpa", "t_w_s", "q_index", "q_inv_angstrom",
    "tau_s", "tau_err_s", "beta", "beta_err", "contrast", "contrast_err", "baseline",
    "redchi", "fit_ok", "reason",
)
# With aging_points="windows", a scan gives its age-window points when it has at least
# this many windows and every one fits; otherwise its scan-level point.
MIN_WINDOWS = 2


def _open(group, mode: str) -> zarr.Group:
    if isinstance(group, (str, os.PathLike)):
        return zarr.open_group(str(group), mode=mode)
    return group


def _num(v) -> float:
    """A table value as float (None / '' / 'nan' -> NaN)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _union_q(group: zarr.Group, n_q: int) -> float:
    """q of the union bin: the pixel-weighted mean of the bin centres (the mean q of its
    pixels to within a bin width), else the centre of all edges."""
    centres = np.asarray(group["q_centres"][...], dtype=float)
    if "n_pixels" in group:
        npix = np.asarray(group["n_pixels"][...], dtype=float)[:n_q]
        if np.isfinite(npix).all() and npix.sum() > 0:
            return float(np.sum(npix * centres) / npix.sum())
    edges = np.asarray(group["q_edges"][...], dtype=float)
    return float(0.5 * (edges[0] + edges[-1]))


def _window_lengths_s(group: zarr.Group, t0: np.ndarray) -> np.ndarray:
    """Duration of each age window (s): gaps between starts, the last up to the scan end."""
    attrs = group.attrs
    if t0.size == 0:
        return t0
    end = math.nan
    if attrs.get("n_frames") is not None and attrs.get("frame_time_s") is not None:
        end = float(attrs["n_frames"]) * float(attrs["frame_time_s"])
    gaps = np.diff(t0)
    last = end - t0[-1] if math.isfinite(end) else (gaps[-1] if gaps.size else math.nan)
    return np.append(gaps, last)


def analyse_scan(group, meta: Mapping[str, Any], *, lag_range: tuple[float, float] | None = None) -> list[dict]:
    """KWW fits of one scan's g2 (every q-bin and the union) and of its age windows.

    Parameters
    ----------
    group : zarr.Group or path
        Correlation outputs of one scan (docs/internals.md), opened writable: the fits
        are stored back as attributes ``fits`` (one dict per bin, union last) and
        ``age_fits`` (union bin, one dict per window, ``t_w_s`` = scan t_w + window
        start, ``t_mid_s`` = its middle), and the array ``chi4`` (n_q + 1, n_lag).
    meta : mapping
        ``scan, sample, stage, pressure_gpa, t_w_s`` (other keys ignored).
    lag_range : (float, float), optional
        Lag interval (s) fitted.

    Returns
    -------
    list of dict
        scans.csv rows in DESIGN.md column order plus ``reason``; ``q_index`` 0..n_q-1
        then -1 for the union, whose ``q_inv_angstrom`` is the pixel-weighted mean of
        the bin centres. Failed fits: ``fit_ok = 0``, NaN numbers.
    """
    g = _open(group, "r+")
    g2 = np.asarray(g["g2"][...], dtype=float)
    g2_err = np.asarray(g["g2_err"][...], dtype=float) if "g2_err" in g else None
    lag_s = np.asarray(g["lag_s"][...], dtype=float)
    n_q = g2.shape[0] - 1
    q = np.append(np.asarray(g["q_centres"][...], dtype=float)[:n_q], _union_q(g, n_q))
    fits = fit_scan(lag_s, g2, g2_err, lag_range=lag_range)

    t_w = _num(meta.get("t_w_s"))
    rows, stored = [], []
    for b, fit in enumerate(fits):
        q_index = -1 if b == n_q else b
        row = {
            "scan": meta["scan"], "sample": meta["sample"], "stage": meta["stage"],
            "pressure_gpa": _num(meta["pressure_gpa"]), "t_w_s": t_w,
            "q_index": q_index, "q_inv_angstrom": float(q[b]),
        }
        row.update(fit)
        rows.append({k: row[k] for k in SCAN_COLUMNS})
        stored.append({"q_index": q_index, "q_inv_angstrom": float(q[b]), **fit})

    age_fits = []
    if "g2_age" in g and "age_t0_s" in g:
        g2_age = np.asarray(g["g2_age"][...], dtype=float)
        err_age = np.asarray(g["g2_age_err"][...], dtype=float) if "g2_age_err" in g else None
        t0 = np.asarray(g["age_t0_s"][...], dtype=float)
        length = _window_lengths_s(g, t0)
        for w in range(g2_age.shape[0]):
            fit = fit_kww(lag_s, g2_age[w, n_q], None if err_age is None else err_age[w, n_q],
                          lag_range=lag_range)
            age_fits.append({
                "window": w, "age_t0_s": float(t0[w]), "t_w_s": t_w + float(t0[w]),
                "t_mid_s": t_w + float(t0[w]) + 0.5 * float(length[w]), **fit,
            })

    baseline = np.array([f["baseline"] if f["fit_ok"] else math.nan for f in fits])
    if "c_diag_var" in g:
        c4 = chi4(np.asarray(g["c_diag_var"][...], dtype=float), g2[:, 0], baseline)
    else:
        c4 = np.full(g2.shape, np.nan)
    g.create_array("chi4", data=c4, overwrite=True)
    g.attrs.update({"fits": json_safe(stored), "age_fits": json_safe(age_fits)})
    return rows


def pooled_c_at_tau(group, tau_s: float, frame_time_s: float, ttcf_bin: int = 1) -> np.ndarray:
    """Union-bin C(t, t + k) for every t along one TTCF diagonal.

    k = round(tau / frame_time) frames, k' = round(k / ttcf_bin) in binned-TTCF steps.
    Only the chunks that the diagonal crosses are read (one row of chunks at a time),
    never the whole T' x T'.

    Parameters
    ----------
    group : zarr.Group or path
        Holds ``ttcf`` (n_q + 1, T', T').
    tau_s, frame_time_s : float
        Delay and frame period, s.
    ttcf_bin : int
        Frames averaged per TTCF step.

    Returns
    -------
    ndarray (T' - k',) float64
        ``np.diagonal(ttcf[n_q], k')``, non-finite values included; empty when k' < 1
        (tau shorter than one TTCF step) or k' >= T'.
    """
    if not (math.isfinite(tau_s) and math.isfinite(frame_time_s) and frame_time_s > 0):
        return np.empty(0)
    arr = _open(group, "r")["ttcf"]
    b, n = arr.shape[0] - 1, arr.shape[1]
    k = int(round(tau_s / frame_time_s))
    if ttcf_bin > 1:
        k = int(round(k / ttcf_bin))
    if k < 1 or k >= n:
        return np.empty(0)
    step = int(arr.chunks[1])
    out = np.empty(n - k)
    for r0 in range(0, n - k, step):
        r1 = min(r0 + step, n - k)
        # rows r0..r1-1 meet the diagonal in columns r0+k..r1+k-1: at most two chunks
        slab = np.asarray(arr[b, r0:r1, r0 + k : r1 + k], dtype=float)
        out[r0:r1] = np.diagonal(slab)
    return out


def analyse_isobar(
    groups: Sequence, metas: Sequence[Mapping[str, Any]], scan_rows: Sequence[Mapping[str, Any]],
    *, max_tw_s: float | None = None, aging_points: str = "scans",
) -> tuple[dict, dict | None, dict]:
    """Isobar-level results from its scans' groups and scans.csv rows.

    Parameters
    ----------
    groups : sequence of zarr.Group or path
        The isobar's results groups (same order as `metas`), after :func:`analyse_scan`.
    metas : sequence of mapping
        Scan metadata (``scan, sample, stage, pressure_gpa, t_w_s``; optional
        ``q1_inv_angstrom``, else the group attribute of that name).
    scan_rows : sequence of mapping
        scans.csv rows; those of other scans are ignored.
    max_tw_s : float, optional
        Scans with t_w beyond this are left out of the aging fit.
    aging_points : {"scans", "windows", "both"}
        What the aging fit pools. "scans" (default, as the paper's Fig. 4): one point
        per scan, its union tau. "windows": a scan's age-window union taus when all its
        windows (>= 2) fit, else its scan-level tau (keeping only the windows that fit
        would select short taus when tau nears a window's lags). "both": scan and
        window points together. On the simulator's small preset (800-frame scans,
        200-frame windows) window taus scatter and bias tau* by 10-15 %, scan points
        recover it within 2 %, hence the default.

    Returns
    -------
    isobar_row : dict
        isobars.csv row. ``n_scans`` = scans of the isobar; tau/beta statistics over the
        union fits with ``fit_ok = 1`` (``tau_std_s`` NaN below 2); Delta C from
        C(t, t + tau_scan) pooled over those scans (each with its own union tau);
        ``q1_inv_angstrom`` the mean of the scans' finite q1.
    aging_row : dict or None
        aging.csv row (+ ``fit_ok``, ``reason``), None with fewer than 3 scans. Points
        (see `aging_points`) with ``fit_ok = 1`` only, each placed at the middle of the
        time it averages (t_w + half the scan; t_w + window start + half the window):
        tau0 is then tau at the pressure change itself, not at the first scan's
        mid-point, and scan- and window-level points agree.
    qdep_row : dict
        qdep.csv row (+ ``n_points``, ``fit_ok``, ``reason``): tau(q) fitted to every
        successful q-bin fit of the isobar's scans at once, alpha shared and one c per
        scan (aging changes tau by a factor at all q); c = geometric mean of those.
    """
    if len(groups) != len(metas):
        raise ValueError(f"{len(groups)} groups but {len(metas)} metas")
    if not metas:
        raise ValueError("an isobar needs at least one scan")
    first = metas[0]
    key = {"sample": first["sample"], "stage": first["stage"], "pressure_gpa": _num(first["pressure_gpa"])}
    names = [m["scan"] for m in metas]
    by_scan: dict[str, list[Mapping[str, Any]]] = {n: [] for n in names}
    for r in scan_rows:
        if r.get("scan") in by_scan:
            by_scan[r["scan"]].append(r)
    union = {n: next((r for r in by_scan[n] if int(_num(r.get("q_index"))) == -1), None) for n in names}

    def ok(r) -> bool:
        return r is not None and _num(r.get("fit_ok")) == 1 and math.isfinite(_num(r.get("tau_s")))

    opened = [_open(g, "r") for g in groups]
    taus = np.array([_num(union[n]["tau_s"]) for n in names if ok(union[n])])
    betas = np.array([_num(union[n]["beta"]) for n in names if ok(union[n])])

    pooled = []
    for n, g in zip(names, opened):
        if ok(union[n]):
            ft = _num(g.attrs.get("frame_time_s"))
            pooled.append(pooled_c_at_tau(g, _num(union[n]["tau_s"]), ft, int(g.attrs.get("ttcf_bin", 1) or 1)))
    pooled_values = np.concatenate(pooled) if pooled else np.empty(0)

    q1s = []
    for m, g in zip(metas, opened):
        q1s.append(_num(m.get("q1_inv_angstrom", g.attrs.get("q1_inv_angstrom"))))
    q1s = np.array(q1s)
    q1s = q1s[np.isfinite(q1s)]

    isobar_row = {
        **key,
        "n_scans": len(metas),
        "tau_mean_s": float(taus.mean()) if taus.size else math.nan,
        "tau_std_s": float(taus.std(ddof=1)) if taus.size > 1 else math.nan,
        "beta_mean": float(betas.mean()) if betas.size else math.nan,
        **delta_c(pooled_values),
        "q1_inv_angstrom": float(q1s.mean()) if q1s.size else math.nan,
    }

    aging_row = None
    if len(metas) >= 3:
        t, tau, err = _aging_points(names, metas, opened, union, ok, max_tw_s, aging_points)
        a = fit_aging(t, tau, err)
        aging_row = {**key, **{k: a[k] for k in ("tau0_s", "tau0_err_s", "tau_star_s", "tau_star_err_s",
                                                 "n_points", "fit_ok", "reason")}}

    qdep_row = {**key, **_qdep(names, by_scan)}
    return isobar_row, aging_row, qdep_row


def _aging_points(names, metas, groups, union, ok, max_tw_s, which: str):
    if which not in ("scans", "windows", "both"):
        raise ValueError(f"aging_points must be 'scans', 'windows' or 'both', got {which!r}")
    t, tau, err = [], [], []
    for n, m, g in zip(names, metas, groups):
        t_w = _num(m.get("t_w_s"))
        if not math.isfinite(t_w) or (max_tw_s is not None and t_w > max_tw_s):
            continue
        windows = list(g.attrs.get("age_fits") or [])
        use_windows = which != "scans" and len(windows) >= MIN_WINDOWS and all(
            f.get("fit_ok") == 1 and f.get("tau_s") for f in windows)
        if use_windows:
            for f in windows:
                t.append(_num(f.get("t_mid_s")))
                tau.append(_num(f["tau_s"]))
                err.append(_num(f.get("tau_err_s")))
        if (which == "both" or not use_windows) and ok(union[n]):
            dur = _num(g.attrs.get("n_frames")) * _num(g.attrs.get("frame_time_s"))
            t.append(t_w + 0.5 * dur if math.isfinite(dur) else t_w)
            tau.append(_num(union[n]["tau_s"]))
            err.append(_num(union[n].get("tau_err_s")))
    return np.array(t), np.array(tau), np.array(err)


def _qdep(names, by_scan) -> dict:
    q, tau, err, scan = [], [], [], []
    for i, n in enumerate(names):
        for r in by_scan[n]:
            if int(_num(r.get("q_index"))) >= 0 and _num(r.get("fit_ok")) == 1 and _num(r.get("tau_s")) > 0:
                q.append(_num(r["q_inv_angstrom"]))
                tau.append(_num(r["tau_s"]))
                err.append(_num(r.get("tau_err_s")))
                scan.append(i)
    fit = fit_qdep(q, tau, err, groups=scan)
    return {k: fit[k] for k in ("alpha", "alpha_err", "c", "c_err", "n_points", "fit_ok", "reason")}


def scan_structure(pixel_sum, n_frames: int, qmap, valid, *, n_bins: int = 200) -> dict:
    """FSDP position of one scan from its time-averaged valid intensity.

    Parameters
    ----------
    pixel_sum : array_like (ny, nx)
        Counts summed over frames (store array ``pixel_sum``).
    n_frames : int
        Frames summed.
    qmap : array_like (ny, nx)
        q per pixel, 1/A.
    valid : array_like (ny, nx) bool
        True = valid.
    n_bins : int
        Fine q bins across the valid pixels' q range.

    Returns
    -------
    dict
        ``q1_inv_angstrom, q1_err_inv_angstrom, q1_fit_ok, q1_reason``.
    """
    q = np.asarray(qmap, dtype=float)
    if not np.isfinite(q[np.asarray(valid, dtype=bool)]).any():
        return {"q1_inv_angstrom": math.nan, "q1_err_inv_angstrom": math.nan, "q1_fit_ok": 0,
                "q1_reason": "no q-map"}
    qc, intensity = fine_profile(pixel_sum, n_frames, q, valid, n_bins=n_bins)
    r = fit_q1(qc, intensity)
    return {"q1_inv_angstrom": r["q1"], "q1_err_inv_angstrom": r["q1_err"], "q1_fit_ok": r["fit_ok"],
            "q1_reason": r["reason"]}


def structure_slopes(rows: Sequence[Mapping[str, Any]]) -> dict:
    """dq1/dP per sample and stage (and the thermal expansion where temperatures vary).

    Parameters
    ----------
    rows : sequence of mapping
        structure.csv rows (``sample, stage, pressure_gpa, q1_inv_angstrom``; optional
        ``temperature_k`` and ``q1_err_inv_angstrom``, used as weights when all finite).

    Returns
    -------
    dict
        ``{"S1/compression": {"dq1_dp_slope", "dq1_dp_slope_err", "dq1_dp_intercept",
        "n_points"[, "alpha_T", "alpha_T_err", "T0_k"]}, ...}``; slopes in 1/A per GPa,
        NaN with fewer than 2 distinct pressures (errors NaN with 2 points).
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if math.isfinite(_num(r.get("q1_inv_angstrom"))):
            groups.setdefault(f"{r['sample']}/{r['stage']}", []).append(r)
    out = {}
    for name, rs in sorted(groups.items()):
        p = np.array([_num(r["pressure_gpa"]) for r in rs])
        q1 = np.array([_num(r["q1_inv_angstrom"]) for r in rs])
        err = np.array([_num(r.get("q1_err_inv_angstrom")) for r in rs])
        use_err = err if (np.isfinite(err) & (err > 0)).all() else None
        fit = fit_linear(p, q1, use_err)
        entry = {"dq1_dp_slope": fit["slope"], "dq1_dp_slope_err": fit["slope_err"],
                 "dq1_dp_intercept": fit["intercept"], "n_points": fit["n_points"]}
        temps = np.array([_num(r.get("temperature_k")) for r in rs])
        if np.unique(temps[np.isfinite(temps)]).size >= 2:
            te = thermal_expansion(temps, q1)
            entry.update(alpha_T=te["alpha_T"], alpha_T_err=te["alpha_T_err"], T0_k=te["T0"])
        out[name] = entry
    return out
