"""Structure: the FSDP position q1 from the time-averaged intensity, dq1/dP and thermal expansion."""

from __future__ import annotations

import math

import lmfit
import numpy as np

from daskxpcs.models._linear import line_fit

DEFAULT_FINE_BINS = 200


def fine_profile(pixel_sum, n_frames: int, qmap, valid, n_bins: int = DEFAULT_FINE_BINS,
                 q_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Time-averaged intensity of the valid pixels in fine q bins.

    Parameters
    ----------
    pixel_sum : array_like (ny, nx)
        Counts summed over the scan's frames.
    n_frames : int
        Number of frames summed.
    qmap : array_like (ny, nx)
        q per pixel, 1/A (NaN where unknown).
    valid : array_like (ny, nx) bool
        True for valid pixels.
    n_bins : int
        Number of equal-width bins between the smallest and largest valid q.
    q_range : (float, float), optional
        Bin range instead of the valid pixels' q range.

    Returns
    -------
    q_centres : ndarray (n_bins,)
        1/A.
    intensity : ndarray (n_bins,)
        Mean counts per pixel per frame; NaN in bins without valid pixels.
    """
    q = np.asarray(qmap, dtype=float).ravel()
    s = np.asarray(pixel_sum, dtype=float).ravel()
    ok = np.asarray(valid, dtype=bool).ravel() & np.isfinite(q) & np.isfinite(s)
    if n_frames <= 0:
        raise ValueError(f"n_frames must be > 0, got {n_frames}")
    if not ok.any():
        raise ValueError("no valid pixel with a finite q")
    q, s = q[ok], s[ok]
    lo, hi = q_range if q_range is not None else (q.min(), q.max())
    edges = np.linspace(lo, hi, n_bins + 1)
    total, _ = np.histogram(q, bins=edges, weights=s)
    npix, _ = np.histogram(q, bins=edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / (npix * float(n_frames))
    mean[npix == 0] = np.nan
    return 0.5 * (edges[:-1] + edges[1:]), mean


def _top(x, q1, height, curv, cubic, quartic):
    # Polynomial in (x - q1) with no linear term: q1 is its stationary point by
    # construction, so lmfit reports the maximum and its error directly; the odd term
    # absorbs the peak's asymmetry (a sloping background), the quartic its flattening.
    d = x - q1
    return height + d * d * (curv + d * (cubic + d * quartic))


_PEAK = lmfit.Model(_top)


def fit_q1(q, intensity, *, top_fraction: float = 0.5) -> dict:
    """Position of the maximum of the FSDP from a model fitted around the top.

    Tries windows of depth `top_fraction`, then 0.8x and 0.6x that, and keeps the first
    determined fit (noise can leave a wide window's polynomial without a covariance).
    See :func:`fit_q1_window` for the model and the returned dict.
    """
    out = {}
    for f in (top_fraction, 0.8 * top_fraction, 0.6 * top_fraction):
        out = fit_q1_window(q, intensity, top_fraction=f)
        if out["fit_ok"] or "edge" in out["reason"] or "too few q points" in out["reason"]:
            return out
    return out


def fit_q1_window(q, intensity, *, top_fraction: float = 0.5) -> dict:
    """One window of :func:`fit_q1`: the FSDP maximum from a model fitted around the top.

    The points kept are the contiguous run around the (lightly smoothed) maximum whose
    intensity lies above ``max - top_fraction * (max - min)``. Their log intensity is
    fitted (lmfit, unweighted, covariance scaled by the reduced chi-square) with
    ``h + c2 d^2 + c3 d^3 + c4 d^4``, d = q - q1: a Gaussian top when c3 = c4 = 0, the
    cubic term taking up asymmetry. q1 is the maximum of the measured profile,
    background included.

    Parameters
    ----------
    q : array_like (n,)
        Fine bin centres, 1/A.
    intensity : array_like (n,)
        Mean intensity per bin; NaN or non-positive bins ignored.
    top_fraction : float
        Depth of the window below the maximum, as a fraction of the profile's range.

    Returns
    -------
    dict
        ``q1, q1_err, fit_ok, reason``; flagged (NaN) when the maximum sits at the edge
        of the q range (fewer than 3 points on one side: the peak is not covered), too
        few points, no uncertainty or one beyond half the window, or
        the fitted stationary point is not a maximum inside the window.
    """
    q = np.asarray(q, dtype=float).ravel()
    y = np.asarray(intensity, dtype=float).ravel()
    keep = np.isfinite(q) & np.isfinite(y) & (y > 0)
    q, y = q[keep], y[keep]
    order = np.argsort(q)
    q, y = q[order], y[order]
    out = {"q1": math.nan, "q1_err": math.nan, "fit_ok": 0, "reason": ""}
    if q.size < 7:
        out["reason"] = f"too few q points ({q.size})"
        return out
    # Locate the top on a smoothed copy (about a tenth of the profile): single noisy
    # bins must neither pick the maximum nor cut the window short.
    h = max(2, q.size // 20)
    smooth = np.convolve(np.pad(y, h, mode="edge"), np.ones(2 * h + 1) / (2 * h + 1), mode="valid")
    top = int(np.argmax(smooth))
    level = smooth[top] - top_fraction * (smooth[top] - smooth.min())
    below = smooth < level
    lo = top
    while lo > 0 and not below[lo - 1]:
        lo -= 1
    hi = top
    while hi < q.size - 1 and not below[hi + 1]:
        hi += 1
    if top - lo < 3 or hi - top < 3:
        out["reason"] = "the intensity maximum lies at the edge of the q range"
        return out
    qs, ys = q[lo : hi + 1], np.log(y[lo : hi + 1])
    if qs.size < 7:
        out["reason"] = f"too few points around the top ({qs.size} < 7)"
        return out
    half = 0.5 * (qs[-1] - qs[0])
    params = _PEAK.make_params(q1=float(q[top]), height=float(np.log(smooth[top])),
                               curv=-float(np.ptp(ys)) / half**2, cubic=0.0, quartic=0.0)
    params["q1"].set(min=float(qs[0]), max=float(qs[-1]))
    res = _PEAK.fit(ys, params, x=qs)
    p = res.params
    if not res.success:
        out["reason"] = f"peak fit did not converge: {res.message}"
    elif not res.errorbars or p["q1"].stderr is None or not np.isfinite(p["q1"].stderr):
        out["reason"] = "q1 uncertainty could not be estimated"
    elif not p["curv"].value < 0:
        out["reason"] = "the fitted stationary point is not a maximum"
    elif not p["q1"].stderr < 0.5 * (qs[-1] - qs[0]):
        out["reason"] = f"q1 undetermined ({p['q1'].value:.4f} +- {p['q1'].stderr:.2g})"
    elif not qs[0] < p["q1"].value < qs[-1]:
        out["reason"] = f"fitted q1 {p['q1'].value:.4f} outside the top window"
    else:
        out.update(q1=float(p["q1"].value), q1_err=float(p["q1"].stderr), fit_ok=1)
    return out


def fit_linear(x, y, yerr=None) -> dict:
    """Straight-line fit y = slope * x + intercept with lmfit (e.g. q1 against pressure).

    Parameters
    ----------
    x, y : array_like (n,)
        Non-finite pairs dropped.
    yerr : array_like (n,), optional
        Standard errors of y (weights 1/yerr); covariance scaled by the reduced chi-square.

    Returns
    -------
    dict
        ``slope, slope_err, intercept, intercept_err, n_points, fit_ok, reason``; errors
        NaN with only 2 points.
    """
    return line_fit(x, y, yerr)


def thermal_expansion(T_k, q1, T0_k: float | None = None) -> dict:
    """Linear thermal expansion coefficient from the FSDP shift.

    Density scales as q1^3, so (q1(T0) / q1(T))^3 - 1 = 3 alpha_T (T - T0). The
    reference q1(T0) is the measured point at T0 (default: the lowest temperature);
    the line is fitted with a free intercept so the noise of that one point does not
    bias the slope.

    Parameters
    ----------
    T_k : array_like (n,)
        Temperatures, K.
    q1 : array_like (n,)
        FSDP positions, 1/A.
    T0_k : float, optional
        Reference temperature; must be one of `T_k` (nearest is used).

    Returns
    -------
    dict
        ``alpha_T`` (1/K), ``alpha_T_err``, ``T0`` (K), ``n_points``, ``fit_ok``, ``reason``.
    """
    T = np.asarray(T_k, dtype=float).ravel()
    q = np.asarray(q1, dtype=float).ravel()
    keep = np.isfinite(T) & np.isfinite(q) & (q > 0)
    T, q = T[keep], q[keep]
    out = {"alpha_T": math.nan, "alpha_T_err": math.nan, "T0": math.nan,
           "n_points": int(T.size), "fit_ok": 0, "reason": ""}
    if np.unique(T).size < 2:
        out["reason"] = f"need >= 2 distinct temperatures, got {np.unique(T).size}"
        return out
    i0 = int(np.argmin(T)) if T0_k is None else int(np.argmin(np.abs(T - T0_k)))
    T0 = float(T[i0])
    fit = line_fit(T - T0, (q[i0] / q) ** 3 - 1.0)
    out.update(alpha_T=fit["slope"] / 3.0, alpha_T_err=fit["slope_err"] / 3.0, T0=T0,
               fit_ok=fit["fit_ok"], reason=fit["reason"])
    return out
