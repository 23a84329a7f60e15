"""Physical aging: tau(t_w) = tau0 exp(t_w / tau*)."""

from __future__ import annotations

import math

import numpy as np

from daskxpcs.models._linear import line_fit, relative_sigma

MIN_AGING_POINTS = 3


def _failed(reason: str, n: int) -> dict:
    return {
        "tau0_s": math.nan,
        "tau0_err_s": math.nan,
        "tau_star_s": math.nan,
        "tau_star_err_s": math.nan,
        "n_points": n,
        "fit_ok": 0,
        "reason": reason,
    }


def fit_aging(t_w_s, tau_s, tau_err_s=None, *, max_tw_s: float | None = None) -> dict:
    """Fit tau(t_w) = tau0 exp(t_w / tau*).

    The fit is the straight line ln tau = ln tau0 + t_w / tau* (lmfit), weighted by the
    relative errors tau_err / tau (the errors of ln tau). Log space because tau spans
    decades over an isobar and KWW errors are roughly relative: a linear fit of ln tau
    is well conditioned, needs no starting values, and does not let the longest times
    dominate. Uncertainties are multiplied by sqrt(max(1, redchi)): scatter beyond
    the fit errors (intermittent dynamics) widens them, and with three points (one
    degree of freedom) a lucky small redchi cannot shrink them.

    Parameters
    ----------
    t_w_s : array_like (n,)
        Waiting times since the pressure change, s.
    tau_s : array_like (n,)
        Relaxation times, s; non-finite or <= 0 points are dropped.
    tau_err_s : array_like (n,), optional
        Their standard errors, s (points lacking one get the median relative error).
    max_tw_s : float, optional
        Points with t_w > max_tw_s are left out (the plateau after fast aging).

    Returns
    -------
    dict
        ``tau0_s, tau0_err_s, tau_star_s, tau_star_err_s, n_points, fit_ok, reason``.
        Flagged (NaN numbers) with fewer than 3 points, or when tau does not grow
        with t_w (tau* would be negative or infinite: no aging).
    """
    t = np.asarray(t_w_s, dtype=float).ravel()
    tau = np.asarray(tau_s, dtype=float).ravel()
    err = None if tau_err_s is None else np.asarray(tau_err_s, dtype=float).ravel()
    keep = np.isfinite(t) & np.isfinite(tau) & (tau > 0)
    if max_tw_s is not None:
        keep &= t <= max_tw_s
    t, tau = t[keep], tau[keep]
    if err is not None:
        err = err[keep]
    n = int(t.size)
    if n < MIN_AGING_POINTS:
        return _failed(f"need >= {MIN_AGING_POINTS} points, got {n}", n)
    fit = line_fit(t, np.log(tau), relative_sigma(tau, err))
    if not fit["fit_ok"]:
        return _failed(fit["reason"], n)
    rate, rate_err = fit["slope"], fit["slope_err"]
    if not rate > 0:
        return _failed(f"tau does not grow with t_w (1/tau* = {rate:.3g} 1/s)", n)
    tau0 = math.exp(fit["intercept"])
    return {
        "tau0_s": tau0,
        "tau0_err_s": tau0 * fit["intercept_err"],
        "tau_star_s": 1.0 / rate,
        "tau_star_err_s": rate_err / rate**2,
        "n_points": n,
        "fit_ok": 1,
        "reason": "",
    }
