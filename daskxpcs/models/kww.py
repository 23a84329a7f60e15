"""Kohlrausch-Williams-Watts fits of g2: g2 = baseline + contrast * exp(-2 (dt/tau)^beta).

Pure numpy + lmfit on one curve (or a few). A fit that cannot be trusted is flagged
(`fit_ok = 0`, every number NaN, `reason` says why) rather than reported.
"""

from __future__ import annotations

import math

import lmfit
import numpy as np

BETA_MIN = 0.2
BETA_MAX = 2.5
# A decay is only reported when its amplitude stands this many standard errors
# above zero; a flat curve plus noise never reaches it (the fit can only chase noise).
MIN_CONTRAST_SIGNIFICANCE = 5.0
# ... and when tau is known to better than this relative error.
MAX_TAU_REL_ERR = 0.5

FIT_KEYS = (
    "tau_s",
    "tau_err_s",
    "beta",
    "beta_err",
    "contrast",
    "contrast_err",
    "baseline",
    "redchi",
    "fit_ok",
    "reason",
)


def kww_model(lag_s, tau_s: float, beta: float, contrast: float, baseline: float) -> np.ndarray:
    """Evaluate the KWW g2 model.

    Parameters
    ----------
    lag_s : array_like
        Lag times in seconds, any shape.
    tau_s, beta, contrast, baseline : float
        Relaxation time (s), shape exponent, contrast and long-lag baseline.

    Returns
    -------
    ndarray
        ``baseline + contrast * exp(-2 (lag/tau)^beta)``, same shape as `lag_s`.
    """
    lag = np.asarray(lag_s, dtype=float)
    return baseline + contrast * np.exp(-2.0 * (np.abs(lag) / tau_s) ** beta)


def _kww(x, tau, beta, contrast, baseline):
    return baseline + contrast * np.exp(-2.0 * (x / tau) ** beta)


_MODEL = lmfit.Model(_kww, independent_vars=["x"])


def failed_fit(reason: str) -> dict:
    """The result dict of a flagged fit: every number (redchi too) NaN, ``fit_ok = 0``."""
    out: dict = {k: math.nan for k in FIT_KEYS}
    out["fit_ok"] = 0
    out["reason"] = reason
    return out


def initial_guess(lag_s: np.ndarray, g2: np.ndarray) -> dict:
    """Starting values from the curve itself.

    baseline: median of the last quarter of lags; contrast: mean of the first
    three points minus the baseline; tau: where the normalised decay first falls
    below 1/e, interpolated linearly in log lag (the largest lag when it never does,
    the smallest when it starts below).

    Parameters
    ----------
    lag_s, g2 : ndarray (n,)
        Finite, lag-sorted curve.
    """
    n = lag_s.size
    tail = g2[-max(2, n // 4) :]
    baseline = float(np.median(tail))
    contrast = float(np.mean(g2[: min(3, n)]) - baseline)
    if not contrast > 0:
        contrast = float(max(np.max(g2) - baseline, 1e-4))
    f = (g2 - baseline) / contrast
    target = math.exp(-1.0)
    below = np.nonzero(f < target)[0]
    if below.size == 0:
        tau = float(lag_s[-1])
    elif below[0] == 0:
        tau = float(lag_s[0])
    else:
        i = below[0]
        x0, x1 = math.log(lag_s[i - 1]), math.log(lag_s[i])
        y0, y1 = f[i - 1], f[i]
        w = (y0 - target) / (y0 - y1) if y0 != y1 else 0.5
        tau = math.exp(x0 + w * (x1 - x0))
    return {"tau": tau, "beta": 1.0, "contrast": contrast, "baseline": baseline}


def _weights(g2_err) -> np.ndarray | None:
    if g2_err is None:
        return None
    err = np.asarray(g2_err, dtype=float)
    good = np.isfinite(err) & (err > 0)
    if not good.any():
        return None
    # Points without a usable error get the largest error of the curve (never more weight).
    err = np.where(good, err, err[good].max())
    return 1.0 / err


def fit_kww(lag_s, g2, g2_err=None, *, lag_range: tuple[float, float] | None = None) -> dict:
    """Fit one g2 curve with the KWW model.

    Parameters
    ----------
    lag_s : array_like (n_lag,)
        Lag times in seconds (> 0).
    g2 : array_like (n_lag,)
        Intensity autocorrelation at those lags; NaN points are ignored.
    g2_err : array_like (n_lag,), optional
        Standard errors of g2; used as weights (1/err) where finite and > 0
        (other points get the curve's largest error). Unweighted when absent.
        Weighted uncertainties are multiplied by sqrt(max(1, redchi)): a scatter
        beyond the errors widens them, a redchi below 1 (neighbouring lags share
        frames, so their noise is correlated) does not shrink them. Unweighted fits
        take the scale from the residuals.
    lag_range : (float, float), optional
        Only lags with ``lo <= lag <= hi`` (seconds) are fitted.

    Returns
    -------
    dict
        ``tau_s, tau_err_s, beta, beta_err, contrast, contrast_err, baseline, redchi,
        fit_ok, reason``. ``fit_ok = 0`` (numbers NaN, ``reason`` set) when there are
        too few points, the fit does not converge, uncertainties could not be
        estimated, tau lies outside the fitted lags, the contrast is not significant
        (pure noise) or tau is undetermined.
    """
    lag = np.asarray(lag_s, dtype=float).ravel()
    y = np.asarray(g2, dtype=float).ravel()
    if lag.shape != y.shape:
        raise ValueError(f"lag_s {lag.shape} and g2 {y.shape} differ in shape")
    w = _weights(g2_err)
    if w is not None and w.shape != y.shape:
        raise ValueError(f"g2_err {w.shape} and g2 {y.shape} differ in shape")
    keep = np.isfinite(lag) & np.isfinite(y) & (lag > 0)
    if lag_range is not None:
        keep &= (lag >= lag_range[0]) & (lag <= lag_range[1])
    lag, y = lag[keep], y[keep]
    if w is not None:
        w = w[keep]
    order = np.argsort(lag)
    lag, y = lag[order], y[order]
    if w is not None:
        w = w[order]
    if lag.size < 6:
        return failed_fit(f"too few finite points ({lag.size} < 6)")

    guess = initial_guess(lag, y)
    lo, hi = float(lag[0]), float(lag[-1])
    span = float(np.ptp(y)) or 1.0
    best = None
    last_error = ""
    # Two shapes to start from: stretched/simple and compressed (metallic glasses: 1.5-2).
    for beta0 in (1.0, 1.7):
        params = _MODEL.make_params()
        params["tau"].set(value=min(max(guess["tau"], lo), hi), min=lo * 1e-3, max=hi * 1e3)
        params["beta"].set(value=beta0, min=BETA_MIN, max=BETA_MAX)
        params["contrast"].set(value=max(guess["contrast"], 1e-6), min=0.0, max=max(2.0, 10 * span))
        params["baseline"].set(value=guess["baseline"], min=guess["baseline"] - 0.5, max=guess["baseline"] + 0.5)
        try:
            res = _MODEL.fit(y, params, x=lag, weights=w, nan_policy="raise", scale_covar=w is None)
        except (ValueError, FloatingPointError) as exc:  # pragma: no cover - defensive
            last_error = str(exc)
            continue
        if best is None or (res.success and res.chisqr < best.chisqr) or not best.success:
            best = res
    if best is None:
        return failed_fit(f"fit raised: {last_error}")
    return _judge(best, lo, hi, 1.0 if w is None else math.sqrt(max(1.0, best.redchi)))


def _judge(res: lmfit.model.ModelResult, lo: float, hi: float, err_scale: float) -> dict:
    p = res.params
    redchi = float(res.redchi) if np.isfinite(res.redchi) else math.nan
    if not res.success:
        return failed_fit(f"fit did not converge: {res.message}")
    errs = [p[k].stderr for k in ("tau", "beta", "contrast")]
    if not res.errorbars or any(e is None or not np.isfinite(e) for e in errs):
        return failed_fit("uncertainties could not be estimated")
    tau, tau_err = float(p["tau"].value), err_scale * float(p["tau"].stderr)
    contrast, contrast_err = float(p["contrast"].value), err_scale * float(p["contrast"].stderr)
    if not lo <= tau <= hi:
        return failed_fit(f"tau {tau:.4g} s outside the measured lags [{lo:.4g}, {hi:.4g}] s")
    if not contrast > MIN_CONTRAST_SIGNIFICANCE * contrast_err:
        return failed_fit(
            f"no significant decay (contrast {contrast:.3g} +- {contrast_err:.2g})"
        )
    if not tau_err < MAX_TAU_REL_ERR * tau:
        return failed_fit(f"tau undetermined ({tau:.4g} +- {tau_err:.2g} s)")
    return {
        "tau_s": tau,
        "tau_err_s": tau_err,
        "beta": float(p["beta"].value),
        "beta_err": err_scale * float(p["beta"].stderr),
        "contrast": contrast,
        "contrast_err": contrast_err,
        "baseline": float(p["baseline"].value),
        "redchi": redchi,
        "fit_ok": 1,
        "reason": "",
    }


def fit_scan(lag_s, g2, g2_err=None, *, lag_range: tuple[float, float] | None = None) -> list[dict]:
    """Fit every q-bin of a scan in one call.

    Parameters
    ----------
    lag_s : array_like (n_lag,)
        Lag times in seconds.
    g2, g2_err : array_like (n_bins, n_lag)
        One curve per bin (``n_bins = n_q + 1`` with the union last); `g2_err` optional.
    lag_range : (float, float), optional
        Passed to :func:`fit_kww`.

    Returns
    -------
    list of dict
        One :func:`fit_kww` result per bin, in bin order.
    """
    g2 = np.atleast_2d(np.asarray(g2, dtype=float))
    errs = None if g2_err is None else np.atleast_2d(np.asarray(g2_err, dtype=float))
    if errs is not None and errs.shape != g2.shape:
        raise ValueError(f"g2_err {errs.shape} and g2 {g2.shape} differ in shape")
    return [
        fit_kww(lag_s, g2[b], None if errs is None else errs[b], lag_range=lag_range)
        for b in range(g2.shape[0])
    ]
