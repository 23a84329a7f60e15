"""Wave-vector dependence of the relaxation time: tau(q) = 1 / (c q^alpha)."""

from __future__ import annotations

import math

import numpy as np

from daskxpcs.models._linear import line_fit, relative_sigma


def fit_qdep(q, tau_s, tau_err_s=None) -> dict:
    """Fit tau(q) = 1 / (c q^alpha).

    Fitted (lmfit) as the line ln tau = -ln c - alpha ln q, weighted by the relative
    errors tau_err / tau; covariance scaled by the reduced chi-square.

    Parameters
    ----------
    q : array_like (n,)
        Bin centres, 1/A.
    tau_s, tau_err_s : array_like (n,)
        Relaxation times and their errors, s; non-finite or <= 0 taus are dropped.

    Returns
    -------
    dict
        ``alpha, alpha_err, c, c_err, n_points, fit_ok, reason``; c in
        1 / (s * A^-alpha). Flagged (NaN numbers) with fewer than 3 points.
    """
    q = np.asarray(q, dtype=float).ravel()
    tau = np.asarray(tau_s, dtype=float).ravel()
    err = None if tau_err_s is None else np.asarray(tau_err_s, dtype=float).ravel()
    keep = np.isfinite(q) & (q > 0) & np.isfinite(tau) & (tau > 0)
    q, tau = q[keep], tau[keep]
    if err is not None:
        err = err[keep]
    out = {"alpha": math.nan, "alpha_err": math.nan, "c": math.nan, "c_err": math.nan,
           "n_points": int(q.size), "fit_ok": 0, "reason": ""}
    if q.size < 3:
        out["reason"] = f"need >= 3 q-bins with a fitted tau, got {q.size}"
        return out
    fit = line_fit(np.log(q), np.log(tau), relative_sigma(tau, err))
    if not fit["fit_ok"]:
        out["reason"] = fit["reason"]
        return out
    c = math.exp(-fit["intercept"])
    out.update(alpha=-fit["slope"], alpha_err=fit["slope_err"], c=c,
               c_err=c * fit["intercept_err"], fit_ok=1)
    return out
