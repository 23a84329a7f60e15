"""Numba kernels of the conversion: one pass over decoded frames (no Dask here).

``scan_frames`` gathers everything a time block needs from a batch of frames in a
single pass over memory: per-pixel sums, saturated pixels, per-frame sums over
the stored pixels, and either the photon events or the dense stored columns.
``scatter_block`` and ``compact_events`` serve the store's event reads.
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
def scatter_block(ptr: np.ndarray, frame: np.ndarray, count: np.ndarray, fill: np.ndarray,
                  out_frame: np.ndarray, out_count: np.ndarray) -> None:
    """Append one time block's CSR events to a pre-sized CSR of the same pixels.

    Parameters
    ----------
    ptr : (n + 1,) the block's offsets, counted from 0
    frame, count : the block's events
    fill : (n,) int64 next free position of each pixel in ``out_*``; advanced in place
    out_frame, out_count : the joined events (any integer dtypes holding the values)
    """
    for j in range(ptr.shape[0] - 1):
        k = fill[j]
        for e in range(ptr[j], ptr[j + 1]):
            out_frame[k] = frame[e]
            out_count[k] = count[e]
            k += 1
        fill[j] = k


def compact_events(ev: tuple, n_frames: int) -> tuple:
    """The same CSR events in the smallest exact dtypes: 4 bytes an event instead of 8.

    A time block's events stay in memory while every pair task of its row and column
    runs, so their size sets the sparse engine's peak memory.

    Parameters
    ----------
    ev : (ptr int64, frame int32 absolute, count int32)
    n_frames : frames of the scan (frames fit uint16 when it is at most 65536)

    Returns
    -------
    (ptr int32 or int64, frame uint16 or int32, count uint16 or int32), equal values
    """
    ptr, frame, count = ev
    if len(ptr) and ptr[-1] < 2**31:
        ptr = ptr.astype(np.int32)
    if n_frames <= 2**16:
        frame = frame.astype(np.uint16)
    if not len(count) or count.max() < 2**16:
        count = count.astype(np.uint16)
    return ptr, frame, count
