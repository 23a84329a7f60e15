"""Dense correlation kernels: float32 BLAS block products per q-bin, per-pixel lag sums.

Every kernel takes a block pixel-major: ``(nv, t)`` float32 (or uint8 for the lag sums),
the tile's used pixels as rows grouped by bin, made by one cache-blocked pass over the
stored ``(t, pt)`` counts (conversion, gather and transpose at once). A bin's rows are then one contiguous slab:
BLAS reads it in place (``A.T @ A`` is a syrk), and every per-pixel sum over t is a
contiguous dot product. ``numpy.matmul`` releases the GIL, so Dask threads run block
products in parallel. Counts are integers, so float32 products are exact while a
block's sums stay below 2**24; given the block's largest count, the kernels switch to
float64 where a sum could reach it. The reductions over tiles sum exactly (see
:func:`~daskxpcs.kernels.partials.add_num`).

Where the CPU has a byte kernel (AVX2 or better) and the counts fit a byte, the graph
takes the block products from :mod:`.int8` instead (exact int32, 2-3.3x faster) and the
lag sums from byte rows in int32 (a quarter of the memory traffic, about 25 % faster).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

from daskxpcs.kernels.diag import TileLayout, lag_range

__all__ = ["pixel_major", "dense_products", "dense_lag_sums", "dense_frame_sums"]

#: float32 sums of integers are exact below this
F32_EXACT = 2**24
#: int32 sums are exact below this
I32_EXACT = 2**31


@njit(nogil=True, cache=True)
def _gather_transpose(x, perm, out):
    # out[r, t] = x[t, perm[r]] in (8 frames x 256 pixels) tiles: reads and writes stay in
    # cache (15 % faster than 16 x 64 inside a dense run)
    n = x.shape[0]
    m = perm.shape[0]
    for r0 in range(0, m, 256):
        r1 = min(m, r0 + 256)
        for t0 in range(0, n, 8):
            t1 = min(n, t0 + 8)
            for r in range(r0, r1):
                c = perm[r]
                for t in range(t0, t1):
                    out[r, t] = x[t, c]


def pixel_major(x: np.ndarray, layout: TileLayout, out: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
    """(t, pt) counts of a tile, any numeric dtype -> C-contiguous (nv, t) ``dtype``.

    Row r is used pixel ``layout.perm[r]``, so each bin's pixels are one contiguous slab
    of rows. float32 keeps counts exact up to 2**24; uint8 (for the byte lag sums) wraps
    above 255, so the caller checks the counts first.

    Parameters
    ----------
    x : (t, pt) counts
    layout : the tile's :class:`~daskxpcs.kernels.diag.TileLayout`
    out : C-contiguous (nv, t) array of ``dtype`` to fill (a reused buffer), or None for a new one
    dtype : float32 (default) or uint8
    """
    shape = (len(layout.perm), x.shape[0])
    if out is None:
        out = np.empty(shape, dtype)
    elif out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"pixel_major: out must be C-contiguous {np.dtype(dtype)} {shape}, "
                         f"got {out.dtype} {out.shape}")
    _gather_transpose(np.ascontiguousarray(x), layout.perm, out)
    return out


def dense_products(xt_i: np.ndarray, xt_j: np.ndarray, layout: TileLayout, max_count: int | None = None) -> dict:
    """Numerator sums of one (tile, block i, block j): {bin: X_i^T X_j (ni, nj)}.

    float32 as BLAS returns them (exact integers below 2**24), float64 per bin where
    ``max_count`` says float32 could round; the reduction over tiles sums them in float64
    (:func:`~daskxpcs.kernels.partials.add_num`).

    Parameters
    ----------
    xt_i, xt_j : (nv, ni), (nv, nj) float32 from :func:`pixel_major`; pass the same
        array twice for a diagonal block (BLAS then computes one triangle only)
    max_count : the largest count in either block, if known: a bin whose sums could
        reach 2**24 (pixels * max_count**2) is then multiplied in float64, exactly
    """
    out = {}
    for b in layout.bins:
        s0, s1 = layout.bin_start[b], layout.bin_start[b + 1]
        wide = max_count is not None and (s1 - s0) * int(max_count)**2 >= F32_EXACT
        a = xt_i[s0:s1].astype(np.float64) if wide else xt_i[s0:s1]
        c = a if xt_j is xt_i else (xt_j[s0:s1].astype(np.float64) if wide else xt_j[s0:s1])
        out[int(b)] = a.T @ c
    return out


def _dot(x, y, zero):
    """sum_t x[t] y[t], accumulated in the type of ``zero`` (numba only)."""
    raise NotImplementedError


@overload(_dot, jit_options={"fastmath": True})
def _dot_impl(x, y, zero):
    if isinstance(zero, types.Integer):
        # int32 lanes on byte rows (VNNI or PMADDWD dots; 25 % faster than float32 rows)
        def dot_i32(x, y, zero):
            s = np.int32(0)
            for t in range(x.shape[0]):
                s = np.int32(s + np.int32(x[t]) * np.int32(y[t]))
            return s
        return dot_i32

    def dot(x, y, zero):
        s = zero
        for t in range(x.shape[0]):
            s += x[t] * y[t]
        return s
    return dot


@njit(nogil=True, cache=True, fastmath=True)
def _dense_lag_sums(xi, xj, a0, b0, lags, lo, hi, base, edges, acc, zero):
    # Pixel-outermost so that both rows stay in L1 across every lag and window. Inner
    # sums take zero's type: int32 on bytes, float32, or float64 where those could lose.
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
                # slices indexed from 0 (no negative-index wraparound) let the loops vectorise
                xa = x[slo - a0:mid - a0]
                ya = y[slo + k - b0:mid + k - b0]
                s_in = _dot(xa, ya, zero)
                s_x = _dot(x[mid - a0:shi - a0], y[mid + k - b0:shi + k - b0], zero)
                acc[1 + w, li - base, r] += s_in
                tot += np.float64(s_in) + np.float64(s_x)
            acc[0, li - base, r] += tot


def dense_lag_sums(xt_i: np.ndarray, xt_j: np.ndarray, a: tuple[int, int], b: tuple[int, int],
                   lags: np.ndarray, edges: np.ndarray, out: tuple | None = None,
                   max_count: int | None = None) -> tuple:
    """Per-pixel sums over t of I_p(t) I_p(t+k) with t in block a, t+k in block b.

    Parameters
    ----------
    xt_i, xt_j : (nv, a1-a0), (nv, b1-b0) pixel-major counts (:func:`pixel_major`), both
        float32 or both uint8
    a, b : frame ranges (a0, a1), (b0, b1)
    lags : (n_lag,) ladder; edges : (n_win + 1,) age-window edges
    out : a partial (lo, acc) whose ladder range covers this pair's (see
        :func:`~daskxpcs.kernels.diag.lag_range`): the sums are added to it in place
    max_count : the largest count in either block (default: the dtype's limit for
        bytes, none for float32): inner sums are int32 on bytes, float32 on float32, each
        while frames * max_count**2 stays below its exact limit, float64 beyond

    Returns
    -------
    (lo, (n_win + 1, hi - lo, nv) float64): ladder positions lo..hi-1 that the block
    pair joins (``out`` itself when given); index 0 sums the whole scan, 1 + w only
    t, t + k both in window w.
    """
    a0, a1 = a
    b0, b1 = b
    lo, hi = lag_range(lags, a0, a1, b0, b1)
    if out is None:
        out = (lo, np.zeros((len(edges), hi - lo, xt_i.shape[0]), np.float64))
    base, acc = out
    if lo < base or hi > base + acc.shape[1] or acc.shape[2] != xt_i.shape[0]:
        raise ValueError(f"lag partial covers ladder [{base}, {base + acc.shape[1]}) x {acc.shape[2]} pixels, "
                         f"block pair needs [{lo}, {hi}) x {xt_i.shape[0]}")
    if xt_i.dtype != xt_j.dtype or xt_i.dtype not in (np.float32, np.uint8):
        raise ValueError(f"dense_lag_sums: blocks must both be float32 or both uint8, got {xt_i.dtype}, {xt_j.dtype}")
    exact_below, zero = (I32_EXACT, np.int32(0)) if xt_i.dtype == np.uint8 else (F32_EXACT, np.float32(0.0))
    if max_count is None and xt_i.dtype == np.uint8:
        max_count = 255
    if max_count is not None and min(a1 - a0, b1 - b0) * int(max_count)**2 >= exact_below:
        zero = np.float64(0.0)
    _dense_lag_sums(xt_i, xt_j, a0, b0, np.asarray(lags, np.int64), lo, hi, base, np.asarray(edges, np.int64),
                    acc, zero)
    return out


def dense_frame_sums(xt: np.ndarray, layout: TileLayout) -> np.ndarray:
    """Counts per bin per frame: (n_q, t) float64 from pixel-major (nv, t) counts."""
    n_q = len(layout.bin_start) - 1
    out = np.zeros((n_q, xt.shape[1]), np.float64)
    for b in layout.bins:
        out[b] = xt[layout.bin_start[b]:layout.bin_start[b + 1]].sum(axis=0, dtype=np.float64)
    return out
