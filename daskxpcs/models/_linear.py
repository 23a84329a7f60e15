"""Weighted straight-line fits with lmfit, shared by the aging, tau(q) and structure models."""

from __future__ import annotations

import math

import lmfit
import numpy as np

_LINE = lmfit.models.LinearModel()


def relative_sigma(values: np.ndarray, errors) -> np.ndarray | None:
    """Errors of ln(values) = errors / values; missing ones get the median. None if none usable."""
    if errors is None:
        return None
    rel = np.asarray(errors, dtype=float) / values
    good = np.isfinite(rel) & (rel > 0)
    if not good.any():
        return None
    return np.where(good, rel, np.median(rel[good]))


def line_fit(x, y, sigma=None) -> dict:
    """Fit y = slope * x + intercept with lmfit.

    Weights 1/sigma when given, errors then multiplied by sqrt(max(1, redchi));
    unweighted, the covariance is scaled by redchi.

    Returns ``slope, slope_err, intercept, intercept_err, n_points, fit_ok, reason``; errors are NaN with 2 points (no degrees of freedom left).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    w = None
    if sigma is not None:
        s = np.asarray(sigma, dtype=float)
        keep &= np.isfinite(s) & (s > 0)
        w = 1.0 / s[keep]
    x, y = x[keep], y[keep]
    out = {
        "slope": math.nan,
        "slope_err": math.nan,
        "intercept": math.nan,
        "intercept_err": math.nan,
        "n_points": int(x.size),
        "fit_ok": 0,
        "reason": "",
    }
    if x.size < 2 or np.ptp(x) == 0:
        out["reason"] = f"need >= 2 distinct x values, got {np.unique(x).size}"
        return out
    params = _LINE.make_params(slope=0.0, intercept=float(np.mean(y)))
    res = _LINE.fit(y, params, x=x, weights=w, scale_covar=w is None)
    # Weighted: trust the errors unless the scatter exceeds them (never shrink them).
    scale = 1.0 if w is None else math.sqrt(max(1.0, res.redchi))
    out["slope"] = float(res.params["slope"].value)
    out["intercept"] = float(res.params["intercept"].value)
    if x.size > 2 and res.errorbars:
        out["slope_err"] = scale * float(res.params["slope"].stderr)
        out["intercept_err"] = scale * float(res.params["intercept"].stderr)
    if not res.success:
        out["reason"] = f"fit did not converge: {res.message}"
        return out
    out["fit_ok"] = 1
    return out
