"""In-place sums of partial results, used by the graph's binary reduction trees.

Partials are consumed exactly once by the tree, so the left operand is updated in
place and returned: no concatenation, no extra copies.
"""

from __future__ import annotations

import numpy as np

from daskxpcs.kernels.dense import I32_EXACT
from daskxpcs.kernels.diag import TileLayout

__all__ = ["add_num", "add_lag", "add_arrays", "lag_bin_stats"]


def add_num(a: dict, b: dict) -> dict:
    """Sum two numerator partials {bin: (ni, nj)}; updates and returns ``a``.

    Partials are exact integers, non-negative: int32 (event pairs, byte products), float32
    (BLAS products) or float64. Two int32 partials are summed in int32 while their maxima
    add up below 2**31 (half the memory of the sums that wait for other tiles); every other
    sum is kept in float64, converting the left operand once.
    """
    for k, v in b.items():
        if k not in a:
            a[k] = v
            continue
        x = a[k]
        if not (x.dtype == v.dtype == np.int32 and int(x.max(initial=0)) + int(v.max(initial=0)) < I32_EXACT):
            if x.dtype != np.float64:
                a[k] = x = x.astype(np.float64)
        x += v
    return a


def add_lag(a: tuple, b: tuple) -> tuple:
    """Sum two per-pixel lag partials (lo, (n_win+1, n, nv)) covering ladder ranges."""
    lo_a, xa = a
    lo_b, xb = b
    hi_a, hi_b = lo_a + xa.shape[1], lo_b + xb.shape[1]
    if lo_a <= lo_b and hi_b <= hi_a:
        xa[:, lo_b - lo_a:hi_b - lo_a] += xb
        return a
    if lo_b <= lo_a and hi_a <= hi_b:
        xb[:, lo_a - lo_b:hi_a - lo_b] += xa
        return b
    lo, hi = min(lo_a, lo_b), max(hi_a, hi_b)
    out = np.zeros((xa.shape[0], hi - lo, xa.shape[2]), np.float64)
    out[:, lo_a - lo:hi_a - lo] += xa
    out[:, lo_b - lo:hi_b - lo] += xb
    return lo, out


def add_arrays(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a += b``; returns ``a``."""
    a += b
    return a


def lag_bin_stats(part: tuple, layout: TileLayout, n_lag: int) -> np.ndarray:
    """Per-bin sums over pixels of A_p(k) and A_p(k)**2 from one tile's complete lag partial.

    Returns
    -------
    (2, n_win + 1, n_q, n_lag) float64
    """
    lo, x = part
    n_q = len(layout.bin_start) - 1
    out = np.zeros((2, x.shape[0], n_q, n_lag), np.float64)
    for b in layout.bins:
        seg = x[:, :, layout.bin_start[b]:layout.bin_start[b + 1]]
        out[0, :, b, lo:lo + x.shape[1]] = seg.sum(axis=2)
        out[1, :, b, lo:lo + x.shape[1]] = (seg * seg).sum(axis=2)
    return out
