"""Lag ladder, q-bin labels, block normalisation, diagonal statistics, g2 (no Dask).

Everything here works on one block of a two-time matrix, or on the small per-bin
sums that the graph reduces, so memory is bounded by the block size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "lag_ladder",
    "lag_index",
    "window_edges",
    "pixel_labels",
    "TileLayout",
    "tile_layout",
    "lag_range",
    "normalise_block",
    "normalise_bins",
    "c_diag_stats",
    "bin_block",
    "g2_from_sums",
]


def lag_ladder(n_frames: int) -> np.ndarray:
    """Multi-tau lag ladder in frames: 1..8, then 4 lags per octave, up to ``n_frames // 2``.

    Returns
    -------
    (n_lag,) int64, e.g. 1, 2, ..., 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, ...
    """
    top = int(n_frames) // 2
    lags = [k for k in range(1, 9) if k <= top]
    k, step = 8, 2
    while True:
        for _ in range(4):
            k += step
            if k > top:
                return np.asarray(lags, np.int64)
            lags.append(k)
        step *= 2


def lag_index(n_frames: int, lags: np.ndarray) -> np.ndarray:
    """Lookup ``(n_frames,) int32``: position of lag k in ``lags``, -1 when k is not on it."""
    out = np.full(max(int(n_frames), 1), -1, np.int32)
    out[np.asarray(lags, np.int64)] = np.arange(len(lags), dtype=np.int32)
    return out


def window_edges(n_frames: int, n_windows: int) -> np.ndarray:
    """Frame edges ``(n_win + 1,) int64`` of ``n_windows`` equal age windows covering the scan."""
    n_win = max(1, min(int(n_windows), int(n_frames)))
    return (np.arange(n_win + 1, dtype=np.int64) * int(n_frames)) // n_win


def pixel_labels(q: np.ndarray, valid: np.ndarray, q_edges: Sequence[float] | None) -> np.ndarray:
    """q-bin of each pixel: b when ``q_edges[b] <= q < q_edges[b+1]``, -1 outside or invalid.

    Parameters
    ----------
    q : (P,) q in 1/A (ignored when ``q_edges`` is None: every valid pixel is bin 0)
    valid : (P,) bool
    q_edges : (n_q + 1,) increasing, or None

    Returns
    -------
    (P,) int32
    """
    valid = np.asarray(valid, bool)
    if q_edges is None:
        return np.where(valid, 0, -1).astype(np.int32)
    edges = np.asarray(q_edges, np.float64)
    q = np.asarray(q, np.float64)
    with np.errstate(invalid="ignore"):
        b = np.searchsorted(edges, q, side="right") - 1
        ok = valid & np.isfinite(q) & (b >= 0) & (b < len(edges) - 1)
    return np.where(ok, b, -1).astype(np.int32)


class TileLayout:
    """Valid pixels of one pixel tile, grouped by q-bin.

    Attributes
    ----------
    labels : (pt,) int32 bin per tile pixel, -1 when not used
    perm : (nv,) int64 tile-local indices of used pixels, sorted by bin (stable)
    row : (pt,) int64 position of each tile pixel in ``perm``, -1 when not used
    bin_start : (n_q + 1,) int64, bin b's pixels are ``perm[bin_start[b]:bin_start[b+1]]``
    slot : (pt,) int32 position of each pixel's bin in :attr:`bins`, -1 when not used
    """

    __slots__ = ("labels", "perm", "row", "bin_start", "slot")

    def __init__(self, labels: np.ndarray, n_q: int):
        self.labels = np.asarray(labels, np.int32)
        used = np.flatnonzero(self.labels >= 0)
        self.perm = used[np.argsort(self.labels[used], kind="stable")].astype(np.int64)
        self.row = np.full(len(self.labels), -1, np.int64)
        self.row[self.perm] = np.arange(len(self.perm))
        counts = np.bincount(self.labels[used], minlength=n_q)[:n_q]
        self.bin_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        slot_of_bin = np.full(max(n_q, 1), -1, np.int32)
        slot_of_bin[self.bins] = np.arange(len(self.bins), dtype=np.int32)
        self.slot = np.where(self.labels >= 0, slot_of_bin[np.maximum(self.labels, 0)], -1).astype(np.int32)

    @property
    def bins(self) -> np.ndarray:
        """Bins with at least one pixel in the tile."""
        return np.flatnonzero(np.diff(self.bin_start) > 0)

    def __getstate__(self):
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state):
        for k, v in zip(self.__slots__, state):
            setattr(self, k, v)


def tile_layout(labels: np.ndarray, n_q: int) -> TileLayout:
    """Build the :class:`TileLayout` of one tile from its pixel labels."""
    return TileLayout(labels, n_q)


def lag_range(lags: np.ndarray, a0: int, a1: int, b0: int, b1: int) -> tuple[int, int]:
    """Ladder positions [lo, hi) of lags k that join some t in [a0, a1) to t + k in [b0, b1)."""
    kmin = max(1, b0 - (a1 - 1))
    kmax = (b1 - 1) - a0
    lo = int(np.searchsorted(lags, kmin, side="left"))
    hi = int(np.searchsorted(lags, kmax, side="right"))
    return lo, max(lo, hi)


def normalise_block(num: dict, s_i: np.ndarray, s_j: np.ndarray, n_pix: np.ndarray,
                    shape: tuple[int, int]) -> np.ndarray:
    """Two-time correlation of one block, C = N / (S1 S2), every bin plus the union.

    Parameters
    ----------
    num : {bin: (ni, nj)} numerator sums over the bin's pixels, any numeric dtype (missing = 0)
    s_i, s_j : (n_q, ni), (n_q, nj) frame sums over each bin's valid pixels
    n_pix : (n_q,) valid pixels per bin
    shape : (ni, nj)

    Returns
    -------
    (n_q + 1, ni, nj) float64; index n_q is the union of all bins. NaN where S = 0
    or a bin is empty.
    """
    n_q = len(n_pix)
    ni, nj = shape
    out = np.zeros((n_q + 1, ni, nj), np.float64)
    for b, arr in num.items():
        out[b] = arr
    out[n_q] = out[:n_q].sum(axis=0)
    n = np.append(np.asarray(n_pix, np.float64), float(np.sum(n_pix)))
    si = np.vstack([s_i, s_i.sum(axis=0, keepdims=True)])
    sj = np.vstack([s_j, s_j.sum(axis=0, keepdims=True)])
    with np.errstate(invalid="ignore", divide="ignore"):
        mi = si / n[:, None]
        mj = sj / n[:, None]
        out /= n[:, None, None]
        out /= mi[:, :, None]
        out /= mj[:, None, :]
    return out


def normalise_bins(num: dict, s_i: np.ndarray, s_j: np.ndarray, n_pix: np.ndarray, shape: tuple[int, int]):
    """Like :func:`normalise_block`, one bin at a time: yields ``(b, (1, ni, nj) float64)``.

    Holds one bin's block (plus the union's numerator) at a time instead of all n_q + 1.
    """
    n_q = len(n_pix)
    union = np.zeros(shape, np.float64)
    zero = np.zeros(shape, np.float64)
    for b in range(n_q + 1):
        if b < n_q:
            nb = np.asarray(num.get(b, zero), np.float64)
            union += nb
            sib, sjb, n = s_i[b], s_j[b], float(n_pix[b])
        else:
            nb, sib, sjb, n = union, s_i.sum(axis=0), s_j.sum(axis=0), float(np.sum(n_pix))
        with np.errstate(invalid="ignore", divide="ignore"):
            c = nb / n
            c /= (sib / n)[:, None]
            c /= (sjb / n)[None, :]
        yield b, c[None]


def c_diag_stats(c: np.ndarray, a0: int, b0: int, lags: np.ndarray) -> np.ndarray:
    """Sums over t of C(t, t+k) for ladder lags inside one block (finite values only).

    Parameters
    ----------
    c : (nb, ni, nj) block of C for frames [a0, a0+ni) x [b0, b0+nj)
    lags : (n_lag,) ladder

    Returns
    -------
    (3, nb, n_lag) float64: count, sum and sum of squares of finite C(t, t+k).
    """
    nb, ni, nj = c.shape
    out = np.zeros((3, nb, len(lags)), np.float64)
    lo, hi = lag_range(lags, a0, a0 + ni, b0, b0 + nj)
    for li in range(lo, hi):
        d = np.diagonal(c, offset=int(lags[li]) - (b0 - a0), axis1=1, axis2=2)
        ok = np.isfinite(d)
        v = np.where(ok, d, 0.0)
        out[0, :, li] = ok.sum(axis=1)
        out[1, :, li] = v.sum(axis=1)
        out[2, :, li] = (v * v).sum(axis=1)
    return out


def bin_block(c: np.ndarray, rows: int, cols: int, factor: int) -> np.ndarray:
    """Average ``factor x factor`` frame cells of a block: (nb, ni, nj) -> (nb, rows, cols)."""
    if factor == 1:
        return c[:, :rows, :cols]
    nb = c.shape[0]
    sub = c[:, : rows * factor, : cols * factor]
    return sub.reshape(nb, rows, factor, cols, factor).mean(axis=(2, 4))


def _window_means(cs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Means of a series over [lo, hi) from its cumulative sum ``cs`` (leading 0)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (cs[..., hi] - cs[..., lo]) / (hi - lo)


def g2_from_sums(s_sum: np.ndarray, n_pix: np.ndarray, lag_sum: np.ndarray, lag_sumsq: np.ndarray,
                 lags: np.ndarray, edges: np.ndarray) -> dict[str, np.ndarray]:
    """g2 and its standard error over pixels, for the whole scan and each age window.

    Parameters
    ----------
    s_sum : (n_q, T) frame sums over each bin's valid pixels
    n_pix : (n_q,) valid pixels per bin
    lag_sum, lag_sumsq : (n_win + 1, n_q, n_lag) over the bin's pixels p of
        A_p(k) = sum_t I_p(t) I_p(t+k) and of A_p(k)**2; index 0 is the whole scan,
        1 + w the window w (t and t + k both inside it)
    lags : (n_lag,) ladder in frames
    edges : (n_win + 1,) window edges in frames

    Returns
    -------
    dict with ``intensity`` (n_q+1, T), ``g2``, ``g2_err`` (n_q+1, n_lag), ``g2_age``,
    ``g2_age_err`` (n_win, n_q+1, n_lag). The last bin is the union. g2 is
    mean_t N(t,t+k) / (mean_{t<T-k} S * mean_{t>=k} S); the error is
    std_p(g2_p, ddof=1) / sqrt(n) with g2_p the same ratio on pixel p's own numerator.
    """
    n_q, T = s_sum.shape
    n = np.append(np.asarray(n_pix, np.float64), float(np.sum(n_pix)))
    s_all = np.vstack([s_sum, s_sum.sum(axis=0, keepdims=True)])
    with np.errstate(invalid="ignore", divide="ignore"):
        intensity = s_all / n[:, None]
    a_all = np.concatenate([lag_sum, lag_sum.sum(axis=1, keepdims=True)], axis=1)
    q_all = np.concatenate([lag_sumsq, lag_sumsq.sum(axis=1, keepdims=True)], axis=1)
    cs = np.concatenate([np.zeros((n_q + 1, 1)), np.cumsum(intensity, axis=1)], axis=1)
    lags = np.asarray(lags, np.int64)

    def one(w0: int, w1: int, a: np.ndarray, q: np.ndarray, cut: bool):
        length = w1 - w0
        m = w1 - lags  # number of t with t, t+k inside [w0, w1) is w1 - w0 - k
        good = (lags < length) if not cut else (2 * lags < length)
        kk = np.where(good, lags, 0)
        den = (_window_means(cs, np.full_like(kk, w0), w1 - kk)
               * _window_means(cs, w0 + kk, np.full_like(kk, w1)))
        cnt = (m - w0).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = 1.0 / (cnt[None, :] * den)  # g2_p = A_p * f
            g2 = a * f / n[:, None]
            var = (q * f * f - (a * f) ** 2 / n[:, None]) / (n[:, None] - 1)
            err = np.sqrt(np.maximum(var, 0.0) / n[:, None])
        err[n <= 1] = np.nan
        g2[:, ~good] = np.nan
        err[:, ~good] = np.nan
        return g2, err

    g2, g2_err = one(0, T, a_all[0], q_all[0], cut=False)
    n_win = len(edges) - 1
    g2_age = np.full((n_win, n_q + 1, len(lags)), np.nan)
    g2_age_err = np.full_like(g2_age, np.nan)
    for w in range(n_win):
        g2_age[w], g2_age_err[w] = one(int(edges[w]), int(edges[w + 1]), a_all[1 + w], q_all[1 + w], cut=True)
    return {"intensity": intensity, "g2": g2, "g2_err": g2_err, "g2_age": g2_age, "g2_age_err": g2_age_err}
