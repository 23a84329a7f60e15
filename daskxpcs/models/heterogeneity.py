"""Dynamical heterogeneity: the smallest-interval width Delta C and chi4."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DEFAULT_FRACTIONS = (0.9, 0.8, 0.7, 0.6)


def _count_for(fraction: float, n: int) -> int:
    """Smallest integer m with m >= fraction * n (tolerant to 0.7 * 10 = 7.000000000000001)."""
    return max(1, math.ceil(fraction * n - 1e-9 * max(1, n)))


def smallest_interval_width(values, fraction: float) -> float:
    """Width of the smallest interval holding a fraction of the values.

    Parameters
    ----------
    values : array_like
        Any shape; pooled, non-finite values dropped.
    fraction : float
        In (0, 1]. The interval must hold at least ``ceil(fraction * n)`` values.

    Returns
    -------
    float
        ``min_i x[i + m - 1] - x[i]`` over the sorted values, NaN when there are none.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    x = np.asarray(values, dtype=float).ravel()
    x = np.sort(x[np.isfinite(x)])
    n = x.size
    if n == 0:
        return math.nan
    m = _count_for(fraction, n)
    return float(np.min(x[m - 1 :] - x[: n - m + 1]))


def delta_c(values, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> dict[str, float]:
    """Delta C at several fractions of the pooled correlation values C(t, t + tau).

    Parameters
    ----------
    values : array_like
        Pooled C values (any shape; non-finite dropped).
    fractions : sequence of float
        Fractions f; each gives key ``delta_c_<round(100 f)>``.

    Returns
    -------
    dict
        e.g. ``{"delta_c_90": ..., "delta_c_80": ..., ...}``.
    """
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    return {f"delta_c_{round(100 * f)}": smallest_interval_width(x, f) for f in fractions}


def chi4(c_diag_var, g2_lag1, baseline) -> np.ndarray:
    """Normalised variance of C(t, t + k) over t: chi4 = var / (g2(lag 1) - baseline)^2.

    Parameters
    ----------
    c_diag_var : array_like (n_bins, n_lag) or (n_lag,)
        Variance over t of C_b(t, t + k).
    g2_lag1 : array_like (n_bins,) or scalar
        g2 at the first lag of each bin.
    baseline : array_like (n_bins,) or scalar
        Long-lag baseline of each bin (from the KWW fit).

    Returns
    -------
    ndarray, shape of `c_diag_var`
        NaN where the normalisation is not finite.
    """
    var = np.asarray(c_diag_var, dtype=float)
    amp = np.asarray(g2_lag1, dtype=float) - np.asarray(baseline, dtype=float)
    if var.ndim == 2:
        amp = np.broadcast_to(amp, (var.shape[0],))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = var / amp**2
    out[~np.isfinite(out)] = np.nan
    return out
