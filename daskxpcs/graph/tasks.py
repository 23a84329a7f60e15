"""Task bodies of the correlation graph: read one piece of a scan store, call a kernel.

Each function is module level (picklable for process and distributed workers) and
touches only one pixel tile x one or two time blocks, or small reduced arrays.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from conversions.store import ScanStore, merge_event_blocks, open_scan_store
from daskxpcs import kernels as K

__all__ = ["open_store", "events_tile_stats", "dense_group", "read_events", "finish_lag"]


@functools.lru_cache(maxsize=8)
def _open_cached(path: str, stamp: int) -> ScanStore:
    return open_scan_store(path)


def open_store(path: str) -> ScanStore:
    """Open a scan store once per worker process (re-opened when its metadata changes)."""
    stamp = os.stat(Path(path) / "zarr.json").st_mtime_ns
    return _open_cached(str(path), stamp)


def events_tile_stats(loads: list[tuple], p0: int, chunks: list[tuple[int, int]], layout: K.TileLayout,
                      n_frames: int, lags: np.ndarray, lagidx: np.ndarray, win_of: np.ndarray,
                      n_win: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame sums (n_q, T) and lag statistics (2, n_win+1, n_q, n_lag) of one sparse tile.

    ``loads`` are the tile's events per time block, in time order (the results of
    :func:`read_events` that its pair tasks share, so nothing is read twice). The tile
    starts at stored pixel ``p0``; its pixels are joined across blocks in the pixel
    ``chunks`` [c0, c1) (planned to hold a bounded number of events each).
    """
    n_q = len(layout.bin_start) - 1
    s = np.zeros((n_q, n_frames), np.float64)
    stats = np.zeros((2, n_win + 1, n_q, len(lags)), np.float64)
    for c0, c1 in chunks:
        j0, j1 = c0 - p0, c1 - p0
        parts = [(ptr[j0:j1 + 1] - ptr[j0], fr[ptr[j0]:ptr[j1]], ct[ptr[j0]:ptr[j1]]) for ptr, fr, ct in loads]
        ev = merge_event_blocks(parts, j1 - j0)
        s_c, stats_c = K.event_tile_stats(ev, layout.labels[j0:j1], n_q, n_frames, lags, lagidx, win_of, n_win)
        s += s_c
        stats += stats_c
    return s, stats


def dense_group(path: str, p0: int, p1: int, layout: K.TileLayout, rows: list[tuple[int, int]],
                cols: list[tuple[int, int]], lags: np.ndarray, edges: np.ndarray,
                n_frames: int) -> tuple[dict, tuple, np.ndarray | None]:
    """All block pairs (a in rows, b in cols, a <= b) of one tile, each block decoded once.

    Returns
    -------
    nums : {(a, b): {bin: (na, nb) float64}} numerator sums per block pair
    lag : per-pixel lag partial (lo, (n_win + 1, n, nv)) summed over the pairs
    s : (n_q, T) frame sums of the diagonal blocks (zero elsewhere), or None off the diagonal
    """
    st = open_store(path)
    xs = {blk: K.frame_major(st.read_dense(blk[0], blk[1], p0, p1), layout) for blk in dict.fromkeys(rows + cols)}
    xts = {blk: K.pixel_major(x) for blk, x in xs.items()}
    nums, lag, s = {}, None, None
    for a in rows:
        for b in cols:
            if b[0] < a[0]:
                continue
            nums[(a, b)] = K.dense_products(xs[a], xs[b], layout)
            part = K.dense_lag_sums(xts[a], xts[b], a, b, lags, edges)
            lag = part if lag is None else K.add_lag(lag, part)
            if a == b:
                if s is None:
                    s = np.zeros((len(layout.bin_start) - 1, n_frames), np.float64)
                s[:, a[0]:a[1]] = K.dense_frame_sums(xs[a], layout)
    return nums, lag, s


def pick(mapping: dict, key):
    """``mapping[key]`` as a task (one pair's numerator out of a group's)."""
    return mapping[key]


def read_events(path: str, block: tuple[int, int], p0: int, p1: int) -> tuple:
    """Photon events (ptr, frame, count) of stored pixels [p0, p1) in frames ``block``."""
    return open_store(path).read_events(block[0], block[1], p0, p1)


def finish_lag(part: tuple, layout: K.TileLayout, n_lag: int) -> np.ndarray:
    """A dense tile's complete lag partial -> per-bin statistics (2, n_win+1, n_q, n_lag)."""
    return K.lag_bin_stats(part, layout, n_lag)


def split_tile_stats(pair: tuple, which: int):
    """Element ``which`` of an ``events_tile_stats`` result."""
    return pair[which]
