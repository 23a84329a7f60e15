"""Wave-vector dependence of the relaxation time: tau(q) = 1 / (c q^alpha)."""

from __future__ import annotations

import math

import lmfit
import numpy as np

from daskxpcs.models._linear import relative_sigma


def _failed(reason: str, n: int) -> dict:
    return {"alpha": math.nan, "alpha_err": math.nan, "c": math.nan, "c_err": math.nan,
            "n_points": n, "fit_ok": 0, "reason": reason}


def fit_qdep(q, tau_s, tau_err_s=None, *, groups=None) -> dict:
    """Fit tau(q) = 1 / (c q^alpha), optionally over several scans with a shared alpha.

    Fitted with lmfit in log space, ln tau = -ln c_g - alpha ln q, weighted by the
    relative errors tau_err / tau (the errors of ln tau); the uncertainties are
    multiplied by sqrt(max(1, redchi)) (scaled by redchi when unweighted). With `groups` (one label per point, e.g. the scan), every
    group has its own c_g and alpha is common: the scans of an aging isobar differ by
    a factor in tau at every q, which must not leak into alpha. The c reported is
    exp of minus the mean of the groups' ln c_g (its error from their covariance).

    Parameters
    ----------
    q : array_like (n,)
        Bin centres, 1/A.
    tau_s, tau_err_s : array_like (n,)
        Relaxation times and their errors, s; non-finite or <= 0 taus are dropped.
    groups : array_like (n,), optional
        Group label per point; groups with fewer than 2 distinct q are dropped.

    Returns
    -------
    dict
        ``alpha, alpha_err, c, c_err, n_points, fit_ok, reason``; c in
        1 / (s * A^-alpha). Flagged (NaN numbers) without at least one degree of
        freedom (3 points for a single group).
    """
    q = np.asarray(q, dtype=float).ravel()
    tau = np.asarray(tau_s, dtype=float).ravel()
    err = None if tau_err_s is None else np.asarray(tau_err_s, dtype=float).ravel()
    lab = np.zeros(q.size, dtype=int) if groups is None else np.unique(np.asarray(groups).ravel(),
                                                                        return_inverse=True)[1]
    keep = np.isfinite(q) & (q > 0) & np.isfinite(tau) & (tau > 0)
    for g in np.unique(lab[keep]):
        if np.unique(q[keep & (lab == g)]).size < 2:
            keep &= lab != g
    q, tau, lab = q[keep], tau[keep], np.unique(lab[keep], return_inverse=True)[1]
    if err is not None:
        err = err[keep]
    n, n_groups = int(q.size), int(lab.max() + 1) if q.size else 0
    if n < n_groups + 2 or n_groups == 0:
        return _failed(f"need >= 3 q-bins with a fitted tau per scan, got {n} points", n)
    sigma = relative_sigma(tau, err)
    weighted = sigma is not None
    sigma = sigma if weighted else np.ones(n)
    x, y = np.log(q), np.log(tau)

    params = lmfit.Parameters()
    params.add("alpha", value=0.0)
    for g in range(n_groups):
        params.add(f"lnc_{g}", value=float(np.mean(-y[lab == g])))

    def residual(p):
        lnc = np.array([p[f"lnc_{g}"].value for g in range(n_groups)])
        return (y - (-lnc[lab] - p["alpha"].value * x)) / sigma

    res = lmfit.minimize(residual, params, method="leastsq", scale_covar=not weighted)
    if not res.success:
        return _failed(f"fit did not converge: {res.message}", n)
    if not res.errorbars or res.covar is None:
        return _failed("uncertainties could not be estimated", n)
    names = list(res.var_names)
    idx = [names.index(f"lnc_{g}") for g in range(n_groups)]
    lnc = np.mean([res.params[f"lnc_{g}"].value for g in range(n_groups)])
    scale2 = 1.0 if not weighted else max(1.0, float(res.redchi))
    var = scale2 * float(np.sum(res.covar[np.ix_(idx, idx)])) / n_groups**2
    c = math.exp(lnc)
    alpha_err = math.sqrt(scale2) * float(res.params["alpha"].stderr)
    return {"alpha": float(res.params["alpha"].value), "alpha_err": alpha_err,
            "c": c, "c_err": c * math.sqrt(max(var, 0.0)), "n_points": n, "fit_ok": 1, "reason": ""}
