"""Dense correlation kernels: float32 BLAS block products per q-bin, per-pixel lag sums.

``numpy.matmul`` releases the GIL, so Dask threads run block products in parallel.
Counts are integers, so float32 products are exact while a block's sums stay
below 2**24; results are returned as float64 for the reductions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from daskxpcs.kernels.diag import TileLayout, lag_range

__all__ = ["pixel_major", "dense_products", "dense_lag_sums", "dense_frame_sums"]


def pixel_major(x: np.ndarray, layout: TileLayout) -> np.ndarray:
    """(t, pt) counts -> (nv, t) float32, used pixels only, grouped by bin, contiguous in t."""
    return np.ascontiguousarray(np.asarray(x, np.float32).T[layout.perm])


def dense_products(xt_i: np.ndarray, xt_j: np.ndarray, layout: TileLayout) -> dict:
    """Numerator sums of one (tile, block i, block j): {bin: X_i^T X_j (ni, nj) float64}.

    Parameters
    ----------
    xt_i, xt_j : (nv, ni), (nv, nj) float32 from :func:`pixel_major`
    """
    out = {}
    for b in layout.bins:
        s0, s1 = layout.bin_start[b], layout.bin_start[b + 1]
        a = xt_i[s0:s1]
        c = a.T @ (a if xt_j is xt_i else xt_j[s0:s1])
        out[int(b)] = c.astype(np.float64)
    return out


@njit(nogil=True, cache=True, fastmath=True)
def _dense_lag_sums(xi, xj, a0, b0, lags, lo, hi, edges, acc):
    # Pixel-outermost so that both rows stay in L1 across every lag and window.
    nv, ni = xi.shape
    nj = xj.shape[1]
    n_win = edges.shape[0] - 1
    for r in range(nv):
        x = xi[r]
        y = xj[r]
        for li in range(lo, hi):
            k = lags[li]
            tlo = max(a0, b0 - k)
            thi = min(a0 + ni, b0 + nj - k)
            if tlo >= thi:
                continue
            tot = 0.0
            for w in range(n_win):
                slo = max(tlo, edges[w])
                shi = min(thi, edges[w + 1])
                if slo >= shi:
                    continue
                mid = max(slo, min(shi, edges[w + 1] - k))  # t < mid: t + k in the same window
                # float32 sums of integer products are exact below 2**24 and vectorise
                xa = x[slo - a0:mid - a0]
                ya = y[slo + k - b0:mid + k - b0]
                sin = np.float32(0.0)
                for t in range(xa.shape[0]):
                    sin += xa[t] * ya[t]
                xb = x[mid - a0:shi - a0]
                yb = y[mid + k - b0:shi + k - b0]
                sx = np.float32(0.0)
                for t in range(xb.shape[0]):
                    sx += xb[t] * yb[t]
                acc[1 + w, li - lo, r] += sin
                tot += np.float64(sin) + np.float64(sx)
            acc[0, li - lo, r] += tot


def dense_lag_sums(xt_i: np.ndarray, xt_j: np.ndarray, a: tuple[int, int], b: tuple[int, int],
                   lags: np.ndarray, edges: np.ndarray):
    """Per-pixel sums over t of I_p(t) I_p(t+k) with t in block a, t+k in block b.

    Parameters
    ----------
    xt_i, xt_j : (nv, a1-a0), (nv, b1-b0) float32 pixel-major counts
    a, b : frame ranges (a0, a1), (b0, b1)
    lags : (n_lag,) ladder; edges : (n_win + 1,) age-window edges

    Returns
    -------
    (lo, (n_win + 1, hi - lo, nv) float64) as :func:`daskxpcs.kernels.events.event_pairs`.
    """
    a0, a1 = a
    b0, b1 = b
    lo, hi = lag_range(lags, a0, a1, b0, b1)
    acc = np.zeros((len(edges), hi - lo, xt_i.shape[0]), np.float64)
    _dense_lag_sums(xt_i, xt_j, a0, b0, np.asarray(lags, np.int64), lo, hi, np.asarray(edges, np.int64), acc)
    return lo, acc


def dense_frame_sums(xt: np.ndarray, layout: TileLayout) -> np.ndarray:
    """Counts per bin per frame: (n_q, t) float64 from pixel-major (nv, t) counts."""
    n_q = len(layout.bin_start) - 1
    out = np.zeros((n_q, xt.shape[1]), np.float64)
    for b in layout.bins:
        out[b] = xt[layout.bin_start[b]:layout.bin_start[b + 1]].sum(axis=0, dtype=np.float64)
    return out
