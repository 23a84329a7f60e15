"""Zarr output of one scan's correlation (I/O only; see docs/internals.md for the arrays).

Tasks write disjoint, chunk-aligned regions, so no two tasks touch the same chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from daskxpcs import kernels as K

__all__ = ["out_spec", "open_out", "init_output", "normalise_and_write", "finalise_output"]

SMALL_ARRAYS = ("g2", "g2_err", "lag_frames", "lag_s", "g2_age", "g2_age_err", "age_t0_s",
                "c_diag_mean", "c_diag_var", "intensity", "n_pixels", "q_edges", "q_centres")


def out_spec(out: Any) -> tuple:
    """A picklable handle on the output group: ("path", str) or ("group", store, path)."""
    if isinstance(out, zarr.Group):
        return ("group", out.store, out.path)
    return ("path", str(out))


def open_out(spec: tuple, mode: str = "r+") -> zarr.Group:
    """Open the output group named by :func:`out_spec`."""
    if spec[0] == "path":
        return zarr.open_group(spec[1], mode=mode)
    return zarr.open_group(store=spec[1], path=spec[2], mode="r+" if mode == "w" else mode)


def init_output(spec: tuple, n_arrays: int, n_binned: int, tb_binned: int, attrs: dict) -> bool:
    """Create the group and the empty ``ttcf`` array; mark the group incomplete first."""
    g = open_out(spec, mode="w")
    g.attrs.update({"complete": False})
    for name in ("ttcf", *SMALL_ARRAYS):
        if name in g:
            del g[name]
    # Blosc LZ4 with byte shuffle: 2.4 x faster than zstd-1 on C blocks of a 0.01 ph/px/frame
    # scan and smaller (ratio 1.33 vs 1.20); far smaller on sparser scans (C mostly 0)
    g.create_array("ttcf", shape=(n_arrays, n_binned, n_binned), chunks=(1, tb_binned, tb_binned),
                   dtype="float32", fill_value=np.nan,
                   compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")])
    g.attrs.update(attrs)
    return True


def normalise_and_write(num: dict, s_a: np.ndarray, s_b: np.ndarray, n_pix: np.ndarray, a: tuple[int, int],
                        b: tuple[int, int], lags: np.ndarray, spec: tuple, ttcf_bin: int, n_binned: int,
                        ready: bool) -> np.ndarray:
    """Normalise one reduced numerator block, write it (and its mirror) into ``ttcf``.

    ``s_a``, ``s_b`` are the frame sums (n_q, a1 - a0), (n_q, b1 - b0) of blocks a and b.

    Returns
    -------
    (3, n_q + 1, n_lag) diagonal statistics of C (count, sum, sum of squares).
    """
    assert ready
    a0, a1 = a
    b0, b1 = b
    usable = n_binned * ttcf_bin
    rows = (min(a1, usable) - a0) // ttcf_bin
    cols = (min(b1, usable) - b0) // ttcf_bin
    r0, c0 = a0 // ttcf_bin, b0 // ttcf_bin
    write = rows > 0 and cols > 0
    stats = np.zeros((3, len(n_pix) + 1, len(lags)), np.float64)
    # float32 block of every bin (n_q + 1 blocks of tb x tb): written in one call, so
    # that zarr encodes and stores its chunks together
    out = np.empty((len(n_pix) + 1, rows, cols), np.float32) if write else None
    for bn, c in K.normalise_bins(num, s_a, s_b, n_pix, (a1 - a0, b1 - b0)):
        stats[:, bn:bn + 1] = K.c_diag_stats(c, a0, b0, lags)
        if write:
            out[bn:bn + 1] = K.bin_block(c, rows, cols, ttcf_bin)
    if write:
        arr = open_out(spec)["ttcf"]
        arr[:, r0:r0 + rows, c0:c0 + cols] = out
        if a != b:
            arr[:, c0:c0 + cols, r0:r0 + rows] = out.transpose(0, 2, 1)
    return stats


def finalise_output(spec: tuple, s_full: np.ndarray, lag_stats: np.ndarray, c_stats: np.ndarray, n_pix: np.ndarray,
                    lags: np.ndarray, edges: np.ndarray, frame_time_s: float, q_edges: np.ndarray,
                    mark_complete: bool) -> dict:
    """Compute g2 and friends from the reduced sums and write every small array.

    Returns the small arrays as a dict (also handy for callers of the graph).
    """
    res = K.g2_from_sums(s_full, n_pix, lag_stats[0], lag_stats[1], lags, edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = c_stats[1] / c_stats[0]
        var = c_stats[2] / c_stats[0] - mean * mean
    res.update({
        "lag_frames": np.asarray(lags, np.int64),
        "lag_s": np.asarray(lags, np.float64) * frame_time_s,
        "age_t0_s": np.asarray(edges[:-1], np.float64) * frame_time_s,
        "c_diag_mean": mean,
        "c_diag_var": np.maximum(var, 0.0),
        "n_pixels": np.append(n_pix, np.sum(n_pix)).astype(np.int64),
        "q_edges": np.asarray(q_edges, np.float64),
        "q_centres": 0.5 * (np.asarray(q_edges, np.float64)[1:] + np.asarray(q_edges, np.float64)[:-1]),
    })
    g = open_out(spec)
    for name in SMALL_ARRAYS:
        data = np.ascontiguousarray(res[name])
        if name in g:
            del g[name]
        arr = g.create_array(name, shape=data.shape, dtype=data.dtype, chunks=tuple(max(1, n) for n in data.shape))
        if data.size:
            arr[...] = data
    if mark_complete:
        g.attrs.update({"complete": True})
    return res

