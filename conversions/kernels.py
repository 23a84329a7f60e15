"""Numba kernels of the conversion: one pass over decoded frames (no Dask here).

``scan_frames`` gathers everything a time block needs from a batch of frames in a
single pass over memory: per-pixel sums, saturated pixels, per-frame sums over
the stored pixels, and either the photon events or the dense stored columns.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def nonzero_positions(frame: np.ndarray, idx: np.ndarray) -> int:
    """Write the positions of nonzero values of 1-D ``frame`` into ``idx`` (at least
    ``frame.size + 1`` long); returns how many. Branch-free, so fast on sparse frames."""
    n = 0
    for p in range(frame.shape[0]):
        idx[n] = p
        n += frame[p] != 0
    return n


@numba.njit(cache=True, nogil=True)
def scan_events(frame: np.ndarray, col_of: np.ndarray, t: int, sat: int,
                pixel_sum: np.ndarray, saturated: np.ndarray, idx: np.ndarray,
                ev_col: np.ndarray, ev_frame: np.ndarray, ev_raw: np.ndarray,
                e: int):
    """One pass over one frame (1-D, npix) for the events layout.

    Parameters
    ----------
    col_of : (npix,) int32 stored column of each pixel, -1 when not stored.
    t : absolute frame index.
    sat : the saturation count (dtype maximum), or -1 for none.
    pixel_sum, saturated : (npix,) accumulated in place (every pixel).
    idx : (npix + 1,) int64 scratch.
    ev_col, ev_frame, ev_raw : event buffers with room for every stored pixel
        after position ``e``.

    Returns
    -------
    (events in the buffers now, counts of the stored pixels in this frame)
    """
    n = nonzero_positions(frame, idx)
    s = 0.0
    for k in range(n):
        p = idx[k]
        v = frame[p]
        pixel_sum[p] += v
        if v == sat:
            saturated[p] = True
        c = col_of[p]
        if c >= 0:
            s += v
            ev_col[e] = c
            ev_frame[e] = t
            ev_raw[e] = v
            e += 1
    return e, s


@numba.njit(cache=True, nogil=True)
def scan_dense(flat: np.ndarray, pixels: np.ndarray, sat: int, pixel_sum: np.ndarray,
               saturated: np.ndarray, frame_sum: np.ndarray, out: np.ndarray,
               idx: np.ndarray) -> None:
    """One pass over frames ``flat`` (n, npix) for the dense layout.

    ``out`` (n, P) receives the stored columns ``flat[:, pixels]``; ``frame_sum``
    (n,) their sums; ``pixel_sum`` and ``saturated`` (npix,) accumulate in place;
    ``idx`` (npix + 1,) int64 scratch.
    """
    for t in range(flat.shape[0]):
        frame = flat[t]
        n = nonzero_positions(frame, idx)
        for k in range(n):
            p = idx[k]
            v = frame[p]
            pixel_sum[p] += v
            if v == sat:
                saturated[p] = True
        s = 0.0
        for j in range(pixels.shape[0]):
            v = frame[pixels[j]]
            out[t, j] = v
            s += v
        frame_sum[t] = s


@numba.njit(cache=True, nogil=True)
def events_by_pixel(ev_col: np.ndarray, ev_frame: np.ndarray, ev_count: np.ndarray,
                    n_cols: int):
    """Counting sort of time-ordered events into CSR by column (stable: time order
    is kept within a column).

    Returns
    -------
    ptr (n_cols + 1,) int64, frame (E,) int32, count (E,) int32
    """
    ptr = np.zeros(n_cols + 1, np.int64)
    for i in range(ev_col.shape[0]):
        ptr[ev_col[i] + 1] += 1
    for c in range(n_cols):
        ptr[c + 1] += ptr[c]
    fill = ptr[:-1].copy()
    frame = np.empty(ev_col.shape[0], np.int32)
    count = np.empty(ev_col.shape[0], np.int32)
    for i in range(ev_col.shape[0]):
        k = fill[ev_col[i]]
        frame[k] = ev_frame[i]
        count[k] = ev_count[i]
        fill[ev_col[i]] = k + 1
    return ptr, frame, count


@numba.njit(cache=True, nogil=True)
def merge_csr_blocks(ptrs: np.ndarray, offsets: np.ndarray, frames: np.ndarray,
                     counts: np.ndarray):
    """Join per-time-block CSR events of the same pixels into one CSR, in O(events).

    Parameters
    ----------
    ptrs : (B, n + 1) int64, block b's pixel j holds events ``ptrs[b, j]:ptrs[b, j+1]``
        of that block (counted from 0)
    offsets : (B,) int64 start of block b in ``frames`` / ``counts``
    frames, counts : (E,) int32 events of every block, concatenated in time order

    Returns
    -------
    ptr (n + 1,) int64, frame (E,) int32, count (E,) int32, time-ordered within a pixel
    """
    n_b, n1 = ptrs.shape
    ptr = np.zeros(n1, np.int64)
    for j in range(n1 - 1):
        tot = 0
        for b in range(n_b):
            tot += ptrs[b, j + 1] - ptrs[b, j]
        ptr[j + 1] = ptr[j] + tot
    frame = np.empty(frames.shape[0], np.int32)
    count = np.empty(frames.shape[0], np.int32)
    for j in range(n1 - 1):
        k = ptr[j]
        for b in range(n_b):
            for e in range(offsets[b] + ptrs[b, j], offsets[b] + ptrs[b, j + 1]):
                frame[k] = frames[e]
                count[k] = counts[e]
                k += 1
    return ptr, frame, count
