"""Task bodies of the correlation graph: read one piece of a scan store, call a kernel.

Each function is module level (picklable for process and distributed workers) and
touches only one pixel tile x one or two time blocks, or small reduced arrays.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import numpy as np

from conversions.store import ScanStore, open_scan_store
from daskxpcs import kernels as K

__all__ = ["open_store", "events_tile_stats", "event_block_sums", "join_blocks", "dense_group", "read_events",
           "finish_lag"]


@functools.lru_cache(maxsize=8)
def _open_cached(path: str, stamp: int) -> ScanStore:
    return open_scan_store(path)


def open_store(path: str) -> ScanStore:
    """Open a scan store once per worker process (re-opened when its metadata changes)."""
    stamp = os.stat(Path(path) / "zarr.json").st_mtime_ns
    return _open_cached(str(path), stamp)


def events_tile_stats(loads: list[tuple], p0: int, c0: int, c1: int, layout: K.TileLayout, n_frames: int,
                      lags: np.ndarray, lagidx: np.ndarray, win_of: np.ndarray, n_win: int) -> np.ndarray:
    """Lag statistics (2, n_win+1, n_q, n_lag) of stored pixels [c0, c1) over the whole scan.

    ``loads`` are the events of the tile (which starts at stored pixel ``p0``) in every
    time block, in time order: the results of :func:`read_events` that its pair tasks
    share and keep anyway, so nothing is read twice.
    """
    j0, j1 = c0 - p0, c1 - p0
    parts = [(ptr[j0:j1 + 1] - ptr[j0], fr[ptr[j0]:ptr[j1]], ct[ptr[j0]:ptr[j1]]) for ptr, fr, ct in loads]
    _, stats = K.event_tile_stats(parts, layout.labels[j0:j1], len(layout.bin_start) - 1, n_frames, lags, lagidx,
                                  win_of, n_win)
    return stats


def event_block_sums(ev: tuple, layout: K.TileLayout, block: tuple[int, int]) -> np.ndarray:
    """Frame sums (n_q, t1 - t0) of one sparse tile's events of frames ``block``."""
    return K.event_frame_sums(ev, layout.labels, len(layout.bin_start) - 1, block[0], block[1])


def join_blocks(parts: list[np.ndarray]) -> np.ndarray:
    """Per-block frame sums (n_q, tb_i) -> (n_q, T)."""
    return np.concatenate(parts, axis=1)


_local = threading.local()


def _scratch(slot: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A C-contiguous array of ``shape`` reused by the tasks of this thread (contents undefined).

    A dense tile's blocks are tens of MB each; fresh ones are page-faulted in on every
    task (3-4 % of the dense engine's time on this VM). Only for arrays that no result
    keeps: each thread runs one task at a time, so a slot is never shared.
    """
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    size = int(np.prod(shape))
    buf = pool.get(slot)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = pool[slot] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def dense_group(path: str, p0: int, p1: int, layout: K.TileLayout, rows: list[tuple[int, int]],
                cols: list[tuple[int, int]], lags: np.ndarray, edges: np.ndarray) -> tuple[dict, tuple, dict]:
    """All block pairs (a in rows, b in cols, a <= b) of one tile, each block decoded once.

    Returns
    -------
    nums : {(a, b): {bin: (na, nb)}} numerator sums per block pair: exact int32 products
        (:func:`~daskxpcs.kernels.int8.int8_products`) or BLAS ones (float32, float64 where
        float32 could round)
    lag : per-pixel lag partial (lo, (n_win + 1, n, nv)) summed over the pairs
    sums : {a: (n_q, na) float64} frame sums of the diagonal blocks a (a == b), else empty
    """
    st = open_store(path)
    # exact int32 products from bytes where the CPU has a byte kernel and every count fits
    isa = K.int8_isa()
    if isa:
        col, koff = K.slab_columns(layout)
        if np.diff(koff).max(initial=0) > K.MAX_BIN_COLUMNS:  # int32 sums could wrap
            isa = None
    blocks = list(dict.fromkeys(rows + cols))
    raw, fms, peak, fsum = {}, {}, {}, {}
    for n, blk in enumerate(blocks):
        x = raw[blk] = st.read_dense(blk[0], blk[1], p0, p1, dtype=None)
        if isa and x.dtype.kind == "u":
            out = _scratch(-1 - n, K.frame_major_shape(blk[1] - blk[0], koff), np.uint8)
            fm, peak[blk], fsum[blk] = K.frame_major_u8(x, layout, col, koff, out=out)
            if peak[blk] <= K.MAX_COUNT:
                fms[blk] = fm
        else:
            peak[blk] = int(x.max(initial=0))
    # per-pixel rows for the lag sums: bytes when the whole group fits them, else float32
    dtype = np.uint8 if len(fms) == len(blocks) else np.float32
    xts = {blk: K.pixel_major(raw.pop(blk), layout, dtype=dtype,
                              out=_scratch(n, (len(layout.perm), blk[1] - blk[0]), dtype))
           for n, blk in enumerate(blocks)}
    pairs = [(a, b) for a in rows for b in cols if b[0] >= a[0]]
    # one lag partial for the whole group, covering every pair's ladder range
    ranges = [K.lag_range(lags, a[0], a[1], b[0], b[1]) for a, b in pairs]
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    lag = (lo, np.zeros((len(edges), hi - lo, len(layout.perm)), np.float64))
    nums, sums = {}, {}
    for a, b in pairs:
        mx = max(peak[a], peak[b])
        if a in fms and b in fms:
            nums[(a, b)] = K.int8_products(fms[a], fms[b], a[1] - a[0], b[1] - b[0], layout, koff, isa)
        else:
            nums[(a, b)] = K.dense_products(xts[a], xts[b], layout, max_count=mx)
        K.dense_lag_sums(xts[a], xts[b], a, b, lags, edges, out=lag, max_count=mx)
        if a == b:
            sums[a] = fsum[a] if a in fsum else K.dense_frame_sums(xts[a], layout)
    return nums, lag, sums


def pick(mapping: dict, key):
    """``mapping[key]`` as a task (one pair's numerator out of a group's)."""
    return mapping[key]


def read_events(path: str, block: tuple[int, int], p0: int, p1: int) -> tuple:
    """Photon events (ptr, frame, count) of stored pixels [p0, p1) in frames ``block``, compacted."""
    st = open_store(path)
    return st.read_events(block[0], block[1], p0, p1, compact=True)


def finish_lag(part: tuple, layout: K.TileLayout, n_lag: int) -> np.ndarray:
    """A dense tile's complete lag partial -> per-bin statistics (2, n_win+1, n_q, n_lag)."""
    return K.lag_bin_stats(part, layout, n_lag)


