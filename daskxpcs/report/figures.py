"""The report's figures, one function per figure, each returning the PNG it saved.

Figures follow the paper (Cornet et al.): TTCF maps per isobar (Fig. 3, with the S2
intensity trace), g2 with KWW fits (Fig. 2d), <tau>(P) (Fig. 2e), aging (Fig. 4a-b),
tau(q) (Fig. 4c), C(t, t+tau) distributions and Delta C(P) (Fig. 5, S9), q1(P) (Fig. 2b),
intensity traces (S2), the detector image with mask and q-bins (S6) and the
compression/decompression hysteresis of g2 (S5). Each raises ``MissingInput`` when the
campaign lacks what it needs; the HTML report turns that into a note.

Large arrays are never read whole: TTCF maps are read with a step, C(t, t+k) along one
diagonal only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm
from matplotlib.transforms import blended_transform_factory

from daskxpcs.report.load import Campaign, MissingInput, ScanResult, fit_ok, fit_value, isobar_key
from daskxpcs.report.truth import summary_slopes
from daskxpcs.report.plotting import (
    SAMPLE_MARKERS,
    PressureColours,
    block_mean,
    finite,
    fmt,
    kww,
    new_figure,
    save,
    tidy_log_axis,
    slug,
    value_colours,
)

Key = tuple[str, str, float]
MAX_TTCF_PX = 600  # decimated TTCF side in pixels
MAX_PANELS = 6  # TTCF panels per isobar figure (evenly chosen in t_w when more scans)
DELTA_C_FRACTIONS = (90, 80, 70, 60)


# ----------------------------------------------------------------------------- helpers


def pressure_colours(c: Campaign) -> PressureColours:
    return PressureColours(c.pressures())


def union_fit(c: Campaign, s: ScanResult) -> dict[str, Any] | None:
    """The scan's union-bin KWW fit: group attribute ``fits`` (last), else its scans.csv row."""
    fit = s.union_fit()
    if fit is None:
        for r in c.union_rows():
            if r["scan"] == s.name:
                return r
    return fit


def kww_params(fit: dict[str, Any] | None) -> tuple[float, float, float, float] | None:
    """(tau_s, beta, contrast, baseline) of a usable fit, else None."""
    if not fit_ok(fit):
        return None
    p = tuple(fit_value(fit, k) for k in ("tau_s", "beta", "contrast", "baseline"))
    return p if finite(*p) and p[0] > 0 and p[2] != 0 else None


def has_g2(s: ScanResult) -> bool:
    return s.has("g2") and s.has("lag_s")


def g2_union(s: ScanResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lag_s, g2, g2_err) of the union bin."""
    lag = s.array("lag_s")
    g2 = np.asarray(s.group["g2"][-1, :], dtype=float)
    err = np.asarray(s.group["g2_err"][-1, :], dtype=float) if s.has("g2_err") else np.zeros_like(g2)
    return lag, g2, err


def _isobar_label(key: Key) -> str:
    sample, stage, p = key
    return f"{sample} {stage} {p:g} GPa"


def _scans_of(c: Campaign, sample: str, stage: str | None = None) -> dict[Key, list[ScanResult]]:
    return {k: v for k, v in c.isobars().items() if k[0] == sample and (stage is None or k[1] == stage)}


def samples_stages(c: Campaign) -> list[tuple[str, str]]:
    """(sample, stage) pairs present in the results groups or isobars.csv, compression first."""
    pairs = {(k[0], k[1]) for k in c.isobars()} | {isobar_key(r)[:2] for r in c.rows("isobars")}
    return sorted(pairs, key=lambda p: (p[0], p[1] != "compression", p[1]))


def samples(c: Campaign) -> list[str]:
    return sorted({p[0] for p in samples_stages(c)})


def _evenly(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, n)).astype(int))
    return [items[i] for i in idx]


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _isobar_row(c: Campaign, key: Key) -> dict[str, Any] | None:
    for r in c.rows("isobars"):
        if isobar_key(r) == key:
            return r
    return None


def _stage_style(stage: str) -> dict[str, Any]:
    return {"linestyle": "-" if stage == "compression" else "--"}


def _marker_face(stage: str, colour) -> Any:
    return colour if stage == "compression" else "white"


# ----------------------------------------------------------------------------- Fig. 3 / S2


def read_ttcf_decimated(s: ScanResult, max_px: int = MAX_TTCF_PX, q: int = -1) -> tuple[np.ndarray, float]:
    """Union-bin (or bin Q) TTCF read with a step so at most MAX_PX x MAX_PX values are loaded.

    Returns
    -------
    image : ndarray (n, n) float
        C(t1, t2) at every step-th binned frame; index [t2, t1] for ``imshow(origin="lower")``
        is the same because C is symmetric.
    step_s : float
        Time between retained samples in seconds.
    """
    if not s.has("ttcf"):
        raise MissingInput(f"scan {s.name}: no ttcf array")
    arr = s.group["ttcf"]
    n = int(arr.shape[1])
    step = max(1, math.ceil(n / max_px))
    b = q if q >= 0 else arr.shape[0] + q
    img = np.asarray(arr[b, ::step, ::step], dtype=float)
    return img, step * s.ttcf_bin * s.frame_time_s


def fig_ttcf_isobar(c: Campaign, key: Key, figdir: Path) -> Path:
    """Fig. 3 (with the S2 trace): union-bin TTCF of each scan of one isobar, intensity below.

    Axes t1, t2 in seconds since the scan start; the panel title gives t_w.
    """
    scans = [s for s in c.isobars().get(key, []) if s.has("ttcf")]
    if not scans:
        raise MissingInput(f"{_isobar_label(key)}: no TTCF in results.zarr")
    scans = _evenly(scans, MAX_PANELS)
    images = [read_ttcf_decimated(s) for s in scans]
    pooled = np.concatenate([im[np.isfinite(im)].ravel() for im, _ in images] or [np.array([1.0])])
    lo, hi = (np.percentile(pooled, [1, 99.5]) if pooled.size else (1.0, 1.3))
    n = len(scans)
    fig = new_figure(3.0 * n + 1.2, 4.6)
    gs = fig.add_gridspec(2, n, height_ratios=[3, 1])
    im_handle = None
    for i, (s, (img, dt)) in enumerate(zip(scans, images)):
        ax = fig.add_subplot(gs[0, i])
        extent = (0, img.shape[1] * dt, 0, img.shape[0] * dt)
        im_handle = ax.imshow(img, origin="lower", extent=extent, cmap="turbo", vmin=lo, vmax=hi,
                              interpolation="nearest", aspect="equal")
        ax.set_title(f"t_w = {fmt(float(s.meta.get('t_w_s', math.nan)))} s", fontsize=9)
        ax.set_xlabel("t1 (s)")
        if i == 0:
            ax.set_ylabel("t2 (s)")
        tax = fig.add_subplot(gs[1, i])
        if s.has("intensity"):
            y, block = block_mean(np.asarray(s.group["intensity"][-1, :], dtype=float), 2000)
            t = (np.arange(y.size) + 0.5) * block * s.frame_time_s
            tax.plot(t, y, lw=0.7, color="0.2")
            tax.set_xlim(0, extent[1])
        tax.set_xlabel("t (s)")
        if i == 0:
            tax.set_ylabel("I (ph/px/frame)")
    fig.colorbar(im_handle, ax=fig.axes, label="C(t1, t2)", shrink=0.8)
    fig.suptitle(f"Two-time correlation, {_isobar_label(key)} (union q bin)")
    return save(fig, figdir / f"ttcf_{slug(*key)}.png")


# ----------------------------------------------------------------------------- Fig. 2d / 4a


def _plot_g2(ax, s: ScanResult, fit, colour, label: str | None, normalise: bool) -> bool:
    lag, g2, err = g2_union(s)
    p = kww_params(fit)
    ok = np.isfinite(g2) & (lag > 0)
    if normalise:
        if p is None:
            return False
        tau, beta, contrast, baseline = p
        g2, err = (g2 - baseline) / contrast, err / abs(contrast)
    ax.errorbar(lag[ok], g2[ok], yerr=err[ok], fmt="o", ms=3, color=colour, ecolor=colour,
                elinewidth=0.6, alpha=0.9, label=label)
    if p is not None:
        t = np.geomspace(lag[ok].min(), lag[ok].max(), 200)
        model = kww(t, *p)
        if normalise:
            model = (model - p[3]) / p[2]
        ax.plot(t, model, ":", color="k", lw=1.0)
    return True


def fig_g2_isobars(c: Campaign, sample: str, stage: str, figdir: Path) -> Path:
    """g2 of every scan (union bin) with its KWW fit, one panel per isobar, coloured by t_w."""
    groups = _scans_of(c, sample, stage)
    groups = {k: [s for s in v if has_g2(s)] for k, v in groups.items()}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        raise MissingInput(f"{sample} {stage}: no g2 in results.zarr")
    rows, cols = _grid(len(groups))
    fig = new_figure(3.2 * cols + 1.0, 2.7 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    tws = [float(s.meta.get("t_w_s", math.nan)) for v in groups.values() for s in v]
    norm, cmap = value_colours(tws)
    for ax, (key, scans) in zip(axes.flat, groups.items()):
        for s in scans:
            _plot_g2(ax, s, union_fit(c, s), cmap(norm(float(s.meta.get("t_w_s", math.nan)))), None, False)
        ax.set_xscale("log")
        ax.set_title(f"{key[2]:g} GPa", fontsize=10)
        ax.set_xlabel("lag time δt (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("g2(δt)")
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, label="t_w (s)", shrink=0.8)
    fig.suptitle(f"g2 and KWW fits (dotted), {sample} {stage}")
    return save(fig, figdir / f"g2_{slug(sample, stage)}.png")


def _closest_tw(scans: list[ScanResult], target: float, c: Campaign) -> ScanResult | None:
    usable = [s for s in scans if has_g2(s) and kww_params(union_fit(c, s)) is not None]
    if not usable:
        return None
    return min(usable, key=lambda s: abs(float(s.meta.get("t_w_s", 0.0)) - target))


def fig_isf_pressure(c: Campaign, sample: str, figdir: Path) -> Path:
    """Fig. 2d: normalised ISF |F|^2 = (g2 - baseline)/contrast at similar t_w, coloured by P."""
    pc = pressure_colours(c)
    stages = [st for sm, st in samples_stages(c) if sm == sample]
    all_tw = [float(s.meta.get("t_w_s", 0.0)) for v in _scans_of(c, sample).values() for s in v]
    if not all_tw:
        raise MissingInput(f"{sample}: no scans in results.zarr")
    target = float(np.median(all_tw))
    fig = new_figure(4.2 * max(1, len(stages)) + 1.2, 3.6)
    axes = fig.subplots(1, max(1, len(stages)), squeeze=False, sharey=True)[0]
    drawn = 0
    for ax, stage in zip(axes, stages):
        for key, scans in _scans_of(c, sample, stage).items():
            s = _closest_tw(scans, target, c)
            if s is not None:
                drawn += _plot_g2(ax, s, union_fit(c, s), pc(key[2]), f"{key[2]:g} GPa", True)
        ax.set_xscale("log")
        ax.set_xlabel("lag time δt (s)")
        ax.set_title(f"{stage}", fontsize=10)
        ax.axhline(0, color="0.7", lw=0.5)
    if not drawn:
        raise MissingInput(f"{sample}: no scan with a converged KWW fit")
    axes[0].set_ylabel("|F(δt)|² = (g2 − baseline)/contrast")
    pc.colorbar(fig, axes)
    fig.suptitle(f"ISFs at t_w ≈ {target:.0f} s, {sample} (KWW fits dotted)")
    return save(fig, figdir / f"isf_pressure_{slug(sample)}.png")


# ----------------------------------------------------------------------------- Fig. 2e


def fig_tau_pressure(c: Campaign, figdir: Path) -> Path:
    """Fig. 2e: <tau> per isobar against pressure; filled compression, open decompression."""
    rows = [r for r in c.rows("isobars") if finite(r.get("tau_mean_s", math.nan)) and r["tau_mean_s"] > 0]
    if not rows:
        raise MissingInput("isobars.csv has no finite tau_mean_s")
    fig = new_figure(5.6, 4.0)
    ax = fig.subplots()
    sample_list = sorted({r["sample"] for r in rows})
    for i, sample in enumerate(sample_list):
        colour = f"C{i}"
        for stage in ("compression", "decompression"):
            sel = sorted((r for r in rows if r["sample"] == sample and r["stage"] == stage),
                         key=lambda r: r["pressure_gpa"])
            if not sel:
                continue
            p = np.array([r["pressure_gpa"] for r in sel])
            tau = np.array([r["tau_mean_s"] for r in sel])
            err = np.nan_to_num(np.array([r.get("tau_std_s", math.nan) for r in sel], dtype=float))
            lower = np.minimum(err, tau * 0.999)  # keep log-axis error bars positive
            ax.errorbar(p, tau, yerr=[lower, err], marker=SAMPLE_MARKERS[i % len(SAMPLE_MARKERS)],
                        color=colour, mfc=_marker_face(stage, colour), capsize=3,
                        label=f"{sample} {stage}", **_stage_style(stage))
    ax.set_yscale("log")
    tidy_log_axis(ax)
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("⟨τ⟩ (s)")
    ax.legend(fontsize=8)
    ax.set_title("Mean relaxation time per isobar (± std over scans)")
    return save(fig, figdir / "tau_pressure.png")


# ----------------------------------------------------------------------------- Fig. 4a-b


def _scan_duration_s(c: Campaign, name: str) -> float:
    s = c.scans.get(name)
    if s is None:
        return 0.0
    d = float(s.meta.get("n_frames", math.nan)) * s.frame_time_s
    return d if math.isfinite(d) else 0.0


def _aging_points(c: Campaign, key: Key) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t, tau, tau_err) of the isobar's scans with a usable union fit, t = t_w + half the scan."""
    pts = []
    for r in c.union_rows():
        if isobar_key(r) == key and int(r.get("fit_ok", 0) or 0) == 1 and finite(r.get("tau_s")):
            pts.append((r["t_w_s"] + 0.5 * _scan_duration_s(c, r["scan"]), r["tau_s"], r.get("tau_err_s", math.nan)))
    pts.sort()
    a = np.array(pts, dtype=float).reshape(-1, 3)
    return a[:, 0], a[:, 1], a[:, 2]


def _age_window_points(c: Campaign, key: Key) -> tuple[np.ndarray, np.ndarray]:
    """(t, tau) of the converged age-window fits (attribute ``age_fits``), t at the window middle."""
    tw, tau = [], []
    for s in c.isobars().get(key, []):
        fits = s.meta.get("age_fits") or []
        t0 = s.array("age_t0_s") if s.has("age_t0_s") else None
        for i, f in enumerate(fits):
            if isinstance(f, list):  # per q bin: take the union (last)
                f = f[-1] if f else None
            if not isinstance(f, dict) or kww_params(f) is None:
                continue
            start = f.get("t_mid_s", f.get("t_w_s"))
            if start is None and t0 is not None and i < len(t0):
                start = float(s.meta.get("t_w_s", 0.0)) + float(t0[i])
            if start is not None:
                tw.append(float(start))
                tau.append(fit_value(f, "tau_s"))
    return np.array(tw), np.array(tau)


def fig_aging(c: Campaign, key: Key, figdir: Path) -> Path:
    """Fig. 4a-b: ISFs against δt and δt/τ (master curve) coloured by t_w; τ(t_w) with its fit."""
    arow = next((r for r in c.rows("aging") if isobar_key(r) == key), None)
    if arow is None:
        raise MissingInput(f"{_isobar_label(key)}: no aging.csv row")
    scans = [s for s in c.isobars().get(key, []) if has_g2(s) and kww_params(union_fit(c, s))]
    tw, tau, tau_err = _aging_points(c, key)
    if not scans and tw.size == 0:
        raise MissingInput(f"{_isobar_label(key)}: no scan with a converged fit")
    norm, cmap = value_colours([float(s.meta.get("t_w_s", math.nan)) for s in scans] or list(tw))
    fig = new_figure(13.0, 3.8)
    ax_a, ax_b, ax_c = fig.subplots(1, 3)
    for s in scans:
        col = cmap(norm(float(s.meta.get("t_w_s", math.nan))))
        fit = union_fit(c, s)
        _plot_g2(ax_a, s, fit, col, None, True)
        lag, g2, err = g2_union(s)
        tau_s, beta, contrast, baseline = kww_params(fit)
        ok = np.isfinite(g2) & (lag > 0)
        ax_b.plot(lag[ok] / tau_s, (g2[ok] - baseline) / contrast, "o", ms=3, color=col)
    x = np.geomspace(1e-2, 1e2, 200)
    betas = [kww_params(union_fit(c, s))[1] for s in scans]
    if betas:
        ax_b.plot(x, np.exp(-2 * x ** float(np.mean(betas))), "k:", label=f"KWW, ⟨β⟩ = {np.mean(betas):.2f}")
        ax_b.legend(fontsize=8)
    for ax, xl in ((ax_a, "lag time δt (s)"), (ax_b, "δt / τ")):
        ax.set_xscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("|F|² = (g2 − baseline)/contrast")
    ax_b.set_xlim(1e-2, 1e2)
    cax = ax_b.inset_axes([0.07, 0.1, 0.035, 0.45])
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, label="t_w (s)")
    ax_c.errorbar(tw, tau, yerr=np.nan_to_num(tau_err), fmt="o", color="C0", capsize=3,
                  label="scans (at mid-scan)")
    wtw, wtau = _age_window_points(c, key)
    if wtw.size:
        ax_c.plot(wtw, wtau, "s", ms=4, color="C1", alpha=0.7, label="age windows (at mid-window)")
    tau0, tstar = arow.get("tau0_s", math.nan), arow.get("tau_star_s", math.nan)
    if finite(tau0, tstar) and tw.size:
        t = np.linspace(0.0, max(tw.max(), wtw.max() if wtw.size else 0) * 1.05, 200)
        ax_c.plot(t, tau0 * np.exp(t / tstar), "-", color="goldenrod",
                  label=f"τ0 = {fmt(tau0, 3)} s, τ* = {fmt(tstar, 3)} s")
    ax_c.set_yscale("log")
    tidy_log_axis(ax_c)
    ax_c.set_xlabel("time since pressure change (s)")
    ax_c.set_ylabel("τ (s)")
    ax_c.legend(fontsize=8)
    ax_c.set_title("τ(t_w) = τ0 exp(t_w/τ*)", fontsize=10)
    fig.suptitle(f"Aging, {_isobar_label(key)}")
    return save(fig, figdir / f"aging_{slug(*key)}.png")


# ----------------------------------------------------------------------------- Fig. 4c


def _tau_q(c: Campaign, key: Key) -> dict[int, tuple[float, list[float], list[float]]]:
    """q_index -> (q, taus, betas) over the isobar's scans with fit_ok."""
    out: dict[int, tuple[float, list[float], list[float]]] = {}
    for r in c.rows("scans"):
        qi = int(r.get("q_index", -1))
        if qi < 0 or isobar_key(r) != key or int(r.get("fit_ok", 0) or 0) != 1 or not finite(r.get("tau_s")):
            continue
        q, taus, betas = out.setdefault(qi, (r["q_inv_angstrom"], [], []))
        taus.append(r["tau_s"])
        betas.append(r.get("beta", math.nan))
    return dict(sorted(out.items()))


def fig_qdep(c: Campaign, sample: str, stage: str, figdir: Path) -> Path:
    """Fig. 4c: β(q) (top) and τ(q) with the fit τ = 1/(c q^α) (bottom, log-log), per isobar."""
    rows = [r for r in c.rows("qdep") if r["sample"] == sample and r["stage"] == stage]
    keys = sorted({isobar_key(r) for r in rows} | {isobar_key(r) for r in c.rows("scans")
                                                    if r["sample"] == sample and r["stage"] == stage})
    data = {k: _tau_q(c, k) for k in keys}
    data = {k: v for k, v in data.items() if len(v) >= 2}
    if not data:
        raise MissingInput(f"{sample} {stage}: fewer than two fitted q bins per isobar")
    pc = pressure_colours(c)
    fig = new_figure(6.2, 6.0)
    ax_b, ax_t = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2])
    for key, per_q in data.items():
        col = pc(key[2])
        q = np.array([v[0] for v in per_q.values()])
        taus = [np.array(v[1]) for v in per_q.values()]
        betas = [np.array(v[2], dtype=float) for v in per_q.values()]
        ax_t.errorbar(q, [t.mean() for t in taus], yerr=[t.std() for t in taus], fmt="o", color=col,
                      capsize=2)
        ax_b.errorbar(q, [np.nanmean(b) for b in betas], yerr=[np.nanstd(b) for b in betas], fmt="s",
                      ms=4, color=col, capsize=2)
        qrow = next((r for r in rows if isobar_key(r) == key), None)
        if qrow is not None and finite(qrow.get("alpha"), qrow.get("c")) and qrow["c"] > 0:
            qq = np.geomspace(q.min() * 0.99, q.max() * 1.01, 50)
            ax_t.plot(qq, 1.0 / (qrow["c"] * qq ** qrow["alpha"]), "-", color=col,
                      label=f"{key[2]:g} GPa: α = {fmt(qrow['alpha'], 3)} ± {fmt(qrow.get('alpha_err'), 2)}")
    ax_t.set_xscale("log")
    ax_t.set_yscale("log")
    tidy_log_axis(ax_t, "x")
    tidy_log_axis(ax_t, "y")
    ax_t.set_xlabel("q (1/Å)")
    ax_t.set_ylabel("τ (s)")
    ax_b.set_ylabel("β")
    if ax_t.get_legend_handles_labels()[0]:
        ax_t.legend(fontsize=7)
    pc.colorbar(fig, [ax_b, ax_t])
    fig.suptitle(f"Wave-vector dependence, {sample} {stage}: τ(q) = 1/(c q^α)")
    return save(fig, figdir / f"qdep_{slug(sample, stage)}.png")


# ----------------------------------------------------------------------------- Fig. 5 / S9


def lag_for_tau(s: ScanResult, tau_s: float) -> int:
    """Diagonal offset k' (in binned frames) nearest to TAU_S; 0 when out of the TTCF."""
    dt = s.frame_time_s * s.ttcf_bin
    if not finite(tau_s, dt) or dt <= 0:
        return 0
    return int(round(tau_s / dt))


def c_at_tau(s: ScanResult, k: int) -> np.ndarray:
    """Union-bin C(t, t+k) for every t, read along one TTCF diagonal (chunks on it only)."""
    arr = s.group["ttcf"]
    n = int(arr.shape[1])
    if k < 1 or k >= n:
        return np.empty(0)
    t = np.arange(n - k)
    vals = arr.vindex[np.full(t.size, arr.shape[0] - 1), t, t + k]
    vals = np.asarray(vals, dtype=float)
    return vals[np.isfinite(vals)]


def pooled_c_at_tau(c: Campaign, key: Key) -> tuple[np.ndarray, list[tuple[ScanResult, np.ndarray]]]:
    """C(t, t+τ) pooled over the isobar's scans, τ = isobar ⟨τ⟩ (else each scan's own τ)."""
    irow = _isobar_row(c, key)
    tau_iso = irow.get("tau_mean_s", math.nan) if irow else math.nan
    per_scan = []
    for s in c.isobars().get(key, []):
        if not s.has("ttcf"):
            continue
        tau = tau_iso if finite(tau_iso) else fit_value(union_fit(c, s), "tau_s")
        v = c_at_tau(s, lag_for_tau(s, tau))
        if v.size:
            per_scan.append((s, v))
    pooled = np.concatenate([v for _, v in per_scan]) if per_scan else np.empty(0)
    return pooled, per_scan


def fig_c_distributions(c: Campaign, sample: str, stage: str, figdir: Path) -> Path:
    """Fig. 5a-b: C(t, t+τ) against time in a scan, and its distribution per isobar (offset)."""
    pc = pressure_colours(c)
    data = {k: pooled_c_at_tau(c, k) for k in _scans_of(c, sample, stage)}
    data = {k: v for k, v in data.items() if v[0].size >= 5}
    if not data:
        raise MissingInput(f"{sample} {stage}: no TTCF diagonal at δt = τ (τ unknown or beyond the scan)")
    fig = new_figure(12.0, 4.2 + 0.15 * len(data))
    ax_a, ax_b = fig.subplots(1, 2, width_ratios=[1.3, 1])
    lo = min(np.percentile(v[0], 0.5) for v in data.values())
    hi = max(np.percentile(v[0], 99.5) for v in data.values())
    bins = np.linspace(lo, hi, 60)
    offset = 0.0
    label_at = blended_transform_factory(ax_b.transAxes, ax_b.transData)
    for key, (pooled, per_scan) in data.items():
        col = pc(key[2])
        tws = [float(s.meta.get("t_w_s", 0.0)) for s, _ in per_scan]
        s, v = per_scan[int(np.argmin(np.abs(np.array(tws) - np.median(tws))))]
        y, block = block_mean(v, 1500)
        t = (np.arange(y.size) + 0.5) * block * s.frame_time_s * s.ttcf_bin
        ax_a.plot(t, y, lw=0.7, color=col, label=f"{key[2]:g} GPa, t_w = {fmt(tws[per_scan.index((s, v))], 3)} s")
        hist, edges = np.histogram(pooled, bins=bins, density=True)
        centres = 0.5 * (edges[1:] + edges[:-1])
        ax_b.fill_between(centres, offset, offset + hist, color=col, alpha=0.5, lw=0)
        ax_b.plot(centres, offset + hist, color=col, lw=1)
        irow = _isobar_row(c, key)
        dc = irow.get("delta_c_90", math.nan) if irow else math.nan
        ax_b.text(1.02, offset, f"{key[2]:g} GPa\nΔC90 = {fmt(dc, 3)}", transform=label_at, fontsize=7,
                  ha="left", va="bottom", clip_on=False)
        offset += hist.max() * 1.1
    ax_a.set_xlabel("time in scan t (s)")
    ax_a.set_ylabel("C(t, t + τ)")
    ax_a.set_title("one scan per isobar (t_w nearest the median)", fontsize=9)
    ax_a.legend(fontsize=7)
    ax_b.set_xlabel("C(t, t + τ)")
    ax_b.set_ylabel("probability density (offset)")
    ax_b.set_yticks([])
    pc.colorbar(fig, [ax_a, ax_b])
    fig.suptitle(f"Dynamical heterogeneity, {sample} {stage}: C at δt = ⟨τ⟩ (union q bin)")
    return save(fig, figdir / f"c_distributions_{slug(sample, stage)}.png")


def fig_delta_c(c: Campaign, figdir: Path) -> Path:
    """Fig. 5c and S9: ΔC_f against pressure for f = 90, 80, 70, 60 %."""
    rows = c.rows("isobars")
    cols = [f"delta_c_{f}" for f in DELTA_C_FRACTIONS]
    if not any(finite(r.get(k, math.nan)) for r in rows for k in cols):
        raise MissingInput("isobars.csv has no finite delta_c values")
    fig = new_figure(9.0, 6.4)
    axes = fig.subplots(2, 2, sharex=True).ravel()
    sample_list = sorted({r["sample"] for r in rows})
    for ax, f, col_name in zip(axes, DELTA_C_FRACTIONS, cols):
        for i, sample in enumerate(sample_list):
            colour = f"C{i}"
            for stage in ("compression", "decompression"):
                sel = sorted((r for r in rows if r["sample"] == sample and r["stage"] == stage
                              and finite(r.get(col_name, math.nan))), key=lambda r: r["pressure_gpa"])
                if sel:
                    ax.plot([r["pressure_gpa"] for r in sel], [r[col_name] for r in sel],
                            marker=SAMPLE_MARKERS[i % len(SAMPLE_MARKERS)], color=colour,
                            mfc=_marker_face(stage, colour), label=f"{sample} {stage}", **_stage_style(stage))
        ax.set_title(f"{f} % of C values", fontsize=10)
        ax.set_ylabel(f"ΔC_{f}")
    for ax in axes[2:]:
        ax.set_xlabel("pressure (GPa)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Dynamical heterogeneity ΔC against pressure (smallest interval holding f of C(t, t+τ))")
    return save(fig, figdir / "delta_c_pressure.png")


# ----------------------------------------------------------------------------- Fig. 2b


def fig_q1_pressure(c: Campaign, figdir: Path) -> Path:
    """Fig. 2b: FSDP position q1 against pressure with a linear fit per sample and stage."""
    rows = [r for r in c.rows("structure") if finite(r.get("q1_inv_angstrom", math.nan))]
    if not rows:
        rows = [r for r in c.rows("isobars") if finite(r.get("q1_inv_angstrom", math.nan))]
    if not rows:
        raise MissingInput("structure.csv and isobars.csv have no finite q1")
    fig = new_figure(5.8, 4.0)
    ax = fig.subplots()
    sample_list = sorted({r["sample"] for r in rows})
    for i, sample in enumerate(sample_list):
        colour = f"C{i}"
        for stage in ("compression", "decompression"):
            sel = [r for r in rows if r["sample"] == sample and r["stage"] == stage]
            if not sel:
                continue
            p = np.array([r["pressure_gpa"] for r in sel])
            q1 = np.array([r["q1_inv_angstrom"] for r in sel])
            ax.plot(p, q1, SAMPLE_MARKERS[i % len(SAMPLE_MARKERS)], color=colour, mfc=_marker_face(stage, colour),
                    label=f"{sample} {stage}")
            fit = summary_slopes(c.summary).get(f"{sample}/{stage}", {})
            slope, icpt = fit.get("dq1_dp_slope", math.nan), fit.get("dq1_dp_intercept", math.nan)
            if not finite(slope, icpt) and np.unique(p).size >= 2:
                slope, icpt = np.polyfit(p, q1, 1)  # no pipeline fit recorded: draw a least-squares line
            if finite(slope, icpt):
                pp = np.linspace(p.min(), p.max(), 2)
                ax.plot(pp, icpt + slope * pp, color=colour, lw=1,
                        label=f"  dq1/dP = {slope * 1e3:.2f}e-3 Å⁻¹/GPa", **_stage_style(stage))
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("q1 (1/Å)")
    ax.legend(fontsize=7)
    ax.set_title("FSDP position against pressure")
    return save(fig, figdir / "q1_pressure.png")


# ----------------------------------------------------------------------------- Fig. S2


def fig_intensity_traces(c: Campaign, sample: str, stage: str, figdir: Path) -> Path:
    """Fig. S2: union-bin mean intensity of each scan against elapsed time, one row per isobar."""
    groups = {k: [s for s in v if s.has("intensity")] for k, v in _scans_of(c, sample, stage).items()}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        raise MissingInput(f"{sample} {stage}: no intensity traces")
    fig = new_figure(9.0, 1.5 * len(groups) + 1.0)
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, (key, scans) in zip(axes, groups.items()):
        for j, s in enumerate(scans):
            y, block = block_mean(np.asarray(s.group["intensity"][-1, :], dtype=float), 1500)
            t = float(s.meta.get("t_w_s", 0.0)) + (np.arange(y.size) + 0.5) * block * s.frame_time_s
            ax.plot(t, y, lw=0.7, color=f"C{j % 10}")
        ax.set_ylabel("I (ph/px/fr)")
        ax.text(0.01, 0.85, f"{key[2]:g} GPa", transform=ax.transAxes, fontsize=8)
    axes[-1].set_xlabel("elapsed time since pressure change t_w + t (s)")
    fig.suptitle(f"Intensity traces (union q bin), {sample} {stage}")
    return save(fig, figdir / f"intensity_{slug(sample, stage)}.png")


# ----------------------------------------------------------------------------- Fig. S6


def detector_images(s: ScanResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean_image, valid, qmap) of a scan: from its results group, else from its scan store."""
    if all(s.has(n) for n in ("mean_image", "valid", "qmap")):
        return s.array("mean_image"), s.array("valid").astype(bool), s.array("qmap")
    src = s.meta.get("source_store")
    if not src:
        raise MissingInput(f"scan {s.name}: no mean_image in results and no source_store attribute")
    try:
        from conversions.store import open_scan_store

        store = open_scan_store(src)
        return np.asarray(store.mean_image()), np.asarray(store.valid, dtype=bool), np.asarray(store.qmap)
    except (ImportError, OSError, KeyError, ValueError) as exc:
        raise MissingInput(f"scan {s.name}: scan store {src} unreadable ({type(exc).__name__}: {exc})")
    except Exception as exc:  # conversions.errors.StoreError and zarr errors
        raise MissingInput(f"scan {s.name}: scan store {src} unreadable ({type(exc).__name__}: {exc})")


def fig_detector(c: Campaign, sample: str, figdir: Path) -> Path:
    """Fig. S6: time-averaged detector image (log), mask in grey, q-bin edges; q-bin map beside."""
    scans = [s for v in _scans_of(c, sample).values() for s in v]
    if not scans:
        raise MissingInput(f"{sample}: no scans in results.zarr")
    last: MissingInput | None = None
    for s in scans:
        try:
            image, valid, qmap = detector_images(s)
            break
        except MissingInput as exc:
            last = exc
    else:
        raise last  # type: ignore[misc]
    edges = s.array("q_edges") if s.has("q_edges") else np.asarray(s.meta.get("q_edges") or [], dtype=float)
    fig = new_figure(11.0, 4.6)
    ax_i, ax_q = fig.subplots(1, 2)
    img = np.where(valid & np.isfinite(image), image, np.nan)
    pos = img[np.isfinite(img) & (img > 0)]
    vmin = np.percentile(pos, 1) if pos.size else 1e-4
    vmax = np.percentile(pos, 99.9) if pos.size else 1.0
    cmap = colormaps["inferno"].with_extremes(bad="0.6")
    him = ax_i.imshow(np.where(img > 0, img, vmin), origin="upper", cmap=cmap,
                      norm=LogNorm(vmin=vmin, vmax=max(vmax, vmin * 1.01)), interpolation="nearest")
    ax_i.imshow(np.ma.masked_where(valid, np.ones_like(image)), origin="upper", cmap=ListedColormap(["0.6"]),
                interpolation="nearest")
    fig.colorbar(him, ax=ax_i, label="counts / pixel / frame", shrink=0.85)
    if edges.size and np.isfinite(qmap).any():
        ax_i.contour(np.where(np.isfinite(qmap), qmap, np.nan), levels=np.sort(edges), colors="cyan",
                     linewidths=0.6)
    ax_i.set_title(f"Mean intensity, {s.name} (grey: masked)", fontsize=10)
    if edges.size >= 2 and np.isfinite(qmap).any():
        bins = np.digitize(qmap, edges) - 1
        inside = valid & (bins >= 0) & (bins < edges.size - 1) & np.isfinite(qmap)
        nb = edges.size - 1
        cmap_q = ListedColormap([colormaps["tab10"](i % 10) for i in range(nb)]).with_extremes(bad="0.6")
        hq = ax_q.imshow(np.ma.masked_where(~inside, bins), origin="upper", cmap=cmap_q,
                         norm=BoundaryNorm(np.arange(-0.5, nb + 0.5), nb), interpolation="nearest")
        cb = fig.colorbar(hq, ax=ax_q, ticks=np.arange(nb), shrink=0.85, label="q bin")
        cb.ax.set_yticklabels([f"{edges[i]:.3f}–{edges[i + 1]:.3f} Å⁻¹" for i in range(nb)], fontsize=7)
        ax_q.set_title("q bins used for g2 / TTCF", fontsize=10)
    else:
        ax_q.text(0.5, 0.5, "no q-map / q edges", ha="center", transform=ax_q.transAxes)
    for ax in (ax_i, ax_q):
        ax.set_xlabel("pixel x")
        ax.set_ylabel("pixel y")
    fig.suptitle(f"Detector, {sample}")
    return save(fig, figdir / f"detector_{slug(sample)}.png")


# ----------------------------------------------------------------------------- Fig. S5


def hysteresis_pairs(c: Campaign, sample: str, tol_gpa: float = 0.35) -> list[tuple[ScanResult, ScanResult]]:
    """(compression, decompression) scans at matching pressure (within TOL_GPA) and closest t_w."""
    comp = _scans_of(c, sample, "compression")
    decomp = _scans_of(c, sample, "decompression")
    pairs = []
    for dk, dscans in decomp.items():
        near = [ck for ck in comp if abs(ck[2] - dk[2]) <= tol_gpa]
        if not near:
            continue
        ck = min(near, key=lambda k: abs(k[2] - dk[2]))
        cands = [(abs(float(a.meta.get("t_w_s", 0)) - float(b.meta.get("t_w_s", 0))), a, b)
                 for a in comp[ck] for b in dscans if has_g2(a) and has_g2(b)]
        if cands:
            _, a, b = min(cands, key=lambda x: x[0])
            pairs.append((a, b))
    return sorted(pairs, key=lambda ab: float(ab[1].meta["pressure_gpa"]))


def fig_hysteresis(c: Campaign, sample: str, figdir: Path) -> Path:
    """Fig. S5: g2 in compression beside decompression at similar pressure and t_w, with fits."""
    pairs = hysteresis_pairs(c, sample)
    if not pairs:
        raise MissingInput(f"{sample}: no pressure measured in both compression and decompression")
    pairs = _evenly(pairs, 4)
    fig = new_figure(max(6.0, 4.5 * len(pairs)), 4.0)
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    for ax, (a, b) in zip(axes, pairs):
        for s, colour in ((a, "C0"), (b, "C3")):
            fit = union_fit(c, s)
            tau = fit_value(fit, "tau_s") if kww_params(fit) else math.nan
            label = (f"{s.meta.get('stage')} {float(s.meta['pressure_gpa']):g} GPa, "
                     f"t_w={fmt(float(s.meta.get('t_w_s', math.nan)), 3)} s, τ={fmt(tau, 3)} s")
            _plot_g2(ax, s, fit, colour, label, False)
        ax.set_xscale("log")
        ax.set_xlabel("lag time δt (s)")
        ax.set_ylabel("g2(δt)")
        ax.legend(fontsize=7)
    fig.suptitle(f"Hysteresis, {sample}: compression (blue) vs decompression (red)\nat similar t_w; KWW fits dotted")
    return save(fig, figdir / f"hysteresis_{slug(sample)}.png")
