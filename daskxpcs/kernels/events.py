"""Event-pair correlation kernel for sparse photon data (numba, serial, no Dask).

The cost is sum over pixels of (photons in block i) x (photons in block j), instead
of pixels x frames^2 for a dense product: at 1e-2 photons / pixel / frame that is
orders of magnitude less work.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from conversions.kernels import compact_events
from daskxpcs.kernels.dense import I32_EXACT
from daskxpcs.kernels.diag import TileLayout

__all__ = ["event_pairs", "event_frame_sums", "event_tile_stats", "compact_events"]


@njit(nogil=True, cache=True)
def _event_pairs(ptr_i, frame_i, count_i, ptr_j, frame_j, count_j, slot, a0, b0, upper, num):
    # upper: i and j are the same events; only pairs e2 >= e1 (t2 >= t1) are summed.
    # Integer products, added to num's dtype (int32 only where the caller bounded the sums)
    n_px = ptr_i.shape[0] - 1
    for p in range(n_px):
        s = slot[p]
        if s < 0:
            continue
        for e1 in range(ptr_i[p], ptr_i[p + 1]):
            u = np.int64(frame_i[e1]) - a0
            c1 = np.int64(count_i[e1])
            for e2 in range(e1 if upper else ptr_j[p], ptr_j[p + 1]):
                num[s, u, np.int64(frame_j[e2]) - b0] += c1 * np.int64(count_j[e2])


@njit(nogil=True, cache=True)
def _peaks(frame, count, t0, n):
    # (largest frame sum, largest count) of events in frames [t0, t0 + n)
    sums = np.zeros(n, np.int64)
    mx = 0
    for e in range(frame.shape[0]):
        c = np.int64(count[e])
        sums[np.int64(frame[e]) - t0] += c
        mx = max(mx, c)
    return sums.max() if n else 0, mx


#: int32 numerators while a bound on every sum stays below this (a diagonal block's
#: mirror doubles its diagonal once)
INT32_PAIR_BOUND = I32_EXACT // 2


def event_pairs(ev_i: tuple, ev_j: tuple, layout: TileLayout, a: tuple[int, int],
                b: tuple[int, int]) -> dict:
    """Numerator sums of one (pixel tile, time block i, time block j) from photon events.

    For every pair of events of the same pixel with f1 in [a0, a1), f2 in [b0, b1),
    adds c1 * c2 to num[bin, f1 - a0, f2 - b0]. Cost ~ sum_p n_p,i * n_p,j.

    Parameters
    ----------
    ev_i, ev_j : (ptr (pt+1,), frame (E,) absolute, count (E,)), any integer dtypes (see
        :func:`compact_events`): events of the tile's pixels in frames [a0, a1) and
        [b0, b1), CSR by pixel.
        For a diagonal block pass the same tuple twice: only t2 >= t1 is summed, then mirrored.
    layout : the tile's :class:`TileLayout` (pixel -> bin)
    a, b : (a0, a1), (b0, b1) frame ranges

    Returns
    -------
    {bin: (a1-a0, b1-b0)} sum over the bin's pixels of I(t1) I(t2), exact: int32 where
    every sum is provably below 2**30 (half the memory of the partials that wait for
    other tiles), else float64. A sum is at most (the largest frame sum of one block) x
    (the largest count of the other).
    """
    a0, a1 = a
    b0, b1 = b
    bins = layout.bins
    ptr_i, fr_i, ct_i = ev_i
    ptr_j, fr_j, ct_j = ev_j
    s_i, m_i = _peaks(fr_i, ct_i, a0, a1 - a0)
    s_j, m_j = _peaks(fr_j, ct_j, b0, b1 - b0)
    dtype = np.int32 if min(s_i * m_j, s_j * m_i) < INT32_PAIR_BOUND else np.float64
    num = np.zeros((len(bins), a1 - a0, b1 - b0), dtype)
    upper = ev_i is ev_j and a == b
    _event_pairs(ptr_i, fr_i, ct_i, ptr_j, fr_j, ct_j, layout.slot, a0, b0, upper, num)
    if upper:  # a diagonal block is symmetric: mirror the upper triangle, count t1 == t2 once
        num += num.transpose(0, 2, 1)
        d = np.arange(a1 - a0)
        num[:, d, d] //= 2  # exact: the diagonal was doubled
    return {int(bn): num[s] for s, bn in enumerate(bins)}


@njit(nogil=True, cache=True)
def _event_frame_sums(ptr, frame, count, labels, t0, out):
    for p in range(ptr.shape[0] - 1):
        lab = labels[p]
        if lab < 0:
            continue
        for e in range(ptr[p], ptr[p + 1]):
            out[lab, np.int64(frame[e]) - t0] += count[e]


def event_frame_sums(ev: tuple, labels: np.ndarray, n_q: int, t0: int, t1: int) -> np.ndarray:
    """Photons per bin per frame of one tile's events in frames [t0, t1): (n_q, t1-t0) float64."""
    out = np.zeros((n_q, t1 - t0), np.float64)
    ptr, frame, count = ev
    _event_frame_sums(ptr, frame, count, np.asarray(labels, np.int64), t0, out)
    return out


@njit(nogil=True, cache=True)
def _event_tile_stats(ptrs, frame, count, labels, lags, lagidx, win_of, s_out, stats, acc, touched, mark, fbuf, cbuf):
    kmax = lags[lags.shape[0] - 1] if lags.shape[0] > 0 else 0
    n_lag = acc.shape[1]
    for p in range(ptrs.shape[1] - 1):
        lab = labels[p]
        if lab < 0:
            continue
        # the pixel's events of every block, in time order, into a small reused buffer
        n = 0
        for blk in range(ptrs.shape[0]):
            for e in range(ptrs[blk, p], ptrs[blk, p + 1]):
                fbuf[n] = frame[e]
                cbuf[n] = count[e]
                n += 1
        # A sparse pixel hits few (window, lag) cells: only those it touched are
        # flushed and reset, not the whole (n_win + 1, n_lag) accumulator.
        nt = 0
        for a in range(n):
            f1 = fbuf[a]
            c1 = cbuf[a]
            s_out[lab, f1] += c1
            w1 = win_of[f1]
            for b in range(a + 1, n):
                k = fbuf[b] - f1
                if k > kmax:
                    break
                li = lagidx[k]
                if li >= 0:
                    v = c1 * cbuf[b]
                    if mark[0, li] == 0:
                        mark[0, li] = 1
                        touched[nt] = li
                        nt += 1
                    acc[0, li] += v
                    if win_of[fbuf[b]] == w1:
                        w = 1 + w1
                        if mark[w, li] == 0:
                            mark[w, li] = 1
                            touched[nt] = w * n_lag + li
                            nt += 1
                        acc[w, li] += v
        for j in range(nt):
            w = touched[j] // n_lag
            li = touched[j] - w * n_lag
            v = acc[w, li]
            stats[0, w, lab, li] += v
            stats[1, w, lab, li] += v * v
            acc[w, li] = 0.0
            mark[w, li] = 0


def event_tile_stats(parts, labels: np.ndarray, n_q: int, n_frames: int, lags: np.ndarray,
                     lagidx: np.ndarray, win_of: np.ndarray, n_win: int):
    """Frame sums and per-bin lag statistics of one pixel tile from its events over the whole scan.

    Works pixel by pixel, so memory is the tile's events plus O(n_q x T).

    Parameters
    ----------
    parts : the tile's events as one CSR (ptr, frame, count), or a list of CSRs of the
        same pixels over consecutive time blocks, in time order (the graph's loads, not
        merged: each pixel's events are gathered block by block). ``ptr`` indexes its
        own ``frame`` and ``count``; frames are absolute and time-ordered within a pixel.
    labels : (pt,) bin per pixel, -1 unused
    n_q, n_frames : bins and frames T of the scan
    lags, lagidx : the lag ladder and :func:`~daskxpcs.kernels.diag.lag_index`
    win_of : (T,) int32 age window of each frame; n_win windows

    Returns
    -------
    s : (n_q, T) float64 photons per bin per frame
    stats : (2, n_win + 1, n_q, n_lag) float64 sums over pixels of A_p(k) and A_p(k)**2,
        A_p(k) = sum_t I_p(t) I_p(t+k) (index 0 whole scan, 1 + w inside window w)
    """
    if isinstance(parts[0], np.ndarray):
        parts = [parts]
    sizes = np.array([len(f) for _, f, _ in parts], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ptrs = np.stack([np.asarray(ptr, np.int64) + off for (ptr, _, _), off in zip(parts, offsets)])
    frame = np.concatenate([f for _, f, _ in parts])
    count = np.concatenate([c for _, _, c in parts])
    per_pixel = (ptrs[:, 1:] - ptrs[:, :-1]).sum(axis=0)
    s = np.zeros((n_q, n_frames), np.float64)
    stats = np.zeros((2, n_win + 1, n_q, len(lags)), np.float64)
    acc = np.zeros((n_win + 1, len(lags)), np.float64)
    touched = np.empty(acc.size, np.int64)
    mark = np.zeros(acc.shape, np.uint8)
    n_max = int(per_pixel.max()) if len(per_pixel) else 0
    fbuf = np.empty(n_max, np.int64)
    cbuf = np.empty(n_max, np.float64)
    _event_tile_stats(ptrs, frame, count, np.asarray(labels, np.int64), np.asarray(lags, np.int64), lagidx,
                      win_of, s, stats, acc, touched, mark, fbuf, cbuf)
    return s, stats
