"""Dense correlation kernels: float32 BLAS block products per q-bin, per-pixel lag sums.

Products use blocks frame-major, as the store holds them: ``(t, nv)`` float32 with the
tile's used pixels as columns, grouped by bin; a bin's columns are a strided view that
BLAS reads in place. The per-pixel lag sums use one pixel-major copy of each block, so
every sum over t is a contiguous dot product. ``numpy.matmul`` releases the GIL, so Dask
threads run block products in parallel. Counts are integers, so float32 products are
exact while a block's sums stay below 2**24; results are returned as float64 for the
reductions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from daskxpcs.kernels.diag import TileLayout, lag_range

__all__ = ["frame_major", "pixel_major", "dense_products", "dense_lag_sums", "dense_frame_sums"]


def frame_major(x: np.ndarray, layout: TileLayout) -> np.ndarray:
    """(t, pt) counts -> C-contiguous (t, nv) float32, the used pixels only, grouped by bin.

    When the used pixels are already one contiguous, bin-sorted run of the tile (the
    store's own order) this is a column slice, converted without a gather.
    """
    perm = layout.perm
    n = len(perm)
    if n and perm[0] + n - 1 == perm[-1] and np.all(np.diff(perm) == 1):
        return np.ascontiguousarray(x[:, perm[0]:perm[0] + n], np.float32)
    return np.asarray(x, np.float32)[:, perm]


def dense_products(x_i: np.ndarray, x_j: np.ndarray, layout: TileLayout) -> dict:
    """Numerator sums of one (tile, block i, block j): {bin: X_i X_j^T (ni, nj) float64}.

    Parameters
    ----------
    x_i, x_j : (ni, nv), (nj, nv) float32 from :func:`frame_major`; pass the same
        array twice for a diagonal block (BLAS then computes one triangle only)
    """
    out = {}
    for b in layout.bins:
        s0, s1 = layout.bin_start[b], layout.bin_start[b + 1]
        a = x_i[:, s0:s1]
        c = a @ (a.T if x_j is x_i else x_j[:, s0:s1].T)
        out[int(b)] = c.astype(np.float64)
    return out


@njit(nogil=True, cache=True)
def _transpose(x, out):
    # out[c, t] = x[t, c] in (16 frames x 64 pixels) tiles: reads and writes both stay in cache
    n, m = x.shape
    for c0 in range(0, m, 64):
        c1 = min(m, c0 + 64)
        for t0 in range(0, n, 16):
            t1 = min(n, t0 + 16)
            for c in range(c0, c1):
                for t in range(t0, t1):
                    out[c, t] = x[t, c]


def pixel_major(x: np.ndarray) -> np.ndarray:
    """(t, nv) frame-major counts -> C-contiguous (nv, t) float32 (one cache-blocked transpose)."""
    out = np.empty((x.shape[1], x.shape[0]), np.float32)
    _transpose(np.ascontiguousarray(x, np.float32), out)
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
                # float32 sums of integer products are exact below 2**24; slices indexed
                # from 0 (no negative-index wraparound) let the loops vectorise
                xa = x[slo - a0:mid - a0]
                ya = y[slo + k - b0:mid + k - b0]
                s_in = np.float32(0.0)
                for t in range(xa.shape[0]):
                    s_in += xa[t] * ya[t]
                xb = x[mid - a0:shi - a0]
                yb = y[mid + k - b0:shi + k - b0]
                s_x = np.float32(0.0)
                for t in range(xb.shape[0]):
                    s_x += xb[t] * yb[t]
                acc[1 + w, li - lo, r] += s_in
                tot += np.float64(s_in) + np.float64(s_x)
            acc[0, li - lo, r] += tot


def dense_lag_sums(xt_i: np.ndarray, xt_j: np.ndarray, a: tuple[int, int], b: tuple[int, int],
                   lags: np.ndarray, edges: np.ndarray):
    """Per-pixel sums over t of I_p(t) I_p(t+k) with t in block a, t+k in block b.

    Parameters
    ----------
    xt_i, xt_j : (nv, a1-a0), (nv, b1-b0) float32 pixel-major counts (:func:`pixel_major`)
    a, b : frame ranges (a0, a1), (b0, b1)
    lags : (n_lag,) ladder; edges : (n_win + 1,) age-window edges

    Returns
    -------
    (lo, (n_win + 1, hi - lo, nv) float64): ladder positions lo..hi-1 that the block
    pair joins; index 0 sums the whole scan, 1 + w only t, t + k both in window w.
    """
    a0, a1 = a
    b0, b1 = b
    lo, hi = lag_range(lags, a0, a1, b0, b1)
    acc = np.zeros((len(edges), hi - lo, xt_i.shape[0]), np.float64)
    _dense_lag_sums(xt_i, xt_j, a0, b0, np.asarray(lags, np.int64), lo, hi, np.asarray(edges, np.int64), acc)
    return lo, acc


def dense_frame_sums(x: np.ndarray, layout: TileLayout) -> np.ndarray:
    """Counts per bin per frame: (n_q, t) float64 from frame-major (t, nv) counts."""
    n_q = len(layout.bin_start) - 1
    out = np.zeros((n_q, x.shape[0]), np.float64)
    for b in layout.bins:
        out[b] = x[:, layout.bin_start[b]:layout.bin_start[b + 1]].sum(axis=1, dtype=np.float64)
    return out
