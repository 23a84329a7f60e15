"""The Zarr v3 scan store: create, write per time block, finalise, open and read.

Layout of one store (a Zarr v3 group; see docs/internals.md)::

    zarr.json            attributes (``complete`` written last)
    valid   (ny, nx)     bool, True = valid (masks and saturated pixels removed)
    qmap    (ny, nx)     float32, NaN when none was given
    pixels  (P,)         int64 flat indices of the stored pixels (grouped by q-bin)
    pixel_sum (ny, nx)   float64 counts summed over frames
    frame_sum (T,)       float64 counts of valid pixels per frame
    dense   (T, P)       counts, chunks (t_block, p_tile), one shard per time block
    events/b{i}/ptr      (P+1,) int64   CSR by pixel for time block i
    events/b{i}/frame    (E,) int32     absolute frame index, time-ordered in a pixel
    events/b{i}/count    (E,) int32

Every time block is written by one task into arrays (or whole shards) that no
other task touches, then leaves its partial sums in ``_work/b{i}.npz`` (renamed into
place last: the block's done marker); :func:`finalise_store`
reduces the per-block partial sums, verifies the totals and writes ``complete``.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec

from conversions import kernels
from conversions.errors import InputError, StoreError

FORMAT_VERSION = 1
WORK = "_work"  # per-block scratch (not a Zarr node), removed once complete
#: Photons per valid pixel per frame above which "auto" stores dense counts.
#: Below it, photon events are smaller on disk and the event-pair correlator
#: does less work than a dense product (its cost grows as density squared).
DENSITY_THRESHOLD = 0.05
#: Frames per stored time block for the events layout.
EVENTS_T_BLOCK = 256
#: Bytes of uncompressed counts one dense time block may hold in memory (at most 256
#: frames). A time block is one shard, and a correlation task reads one chunk of each
#: shard its frames cross, paying an index read per shard: 256-frame shards read a
#: 1024^2 tile in half the time of 64-frame ones (22 vs 43 ms), and the dense engine
#: ran 9-12 % faster.
DENSE_BLOCK_BYTES = 512 * 2**20
EVENTS_BLOCK_BYTES = 256 * 2**20
DENSE_P_TILE = 8192
EVENTS_CHUNK = 1 << 20
PTR_CHUNK = 1 << 16
INT32_MAX = np.iinfo(np.int32).max


def codec() -> BloscCodec:
    """Blosc LZ4 with bitshuffle, the compressor of every store array.

    Counts are read far more often than written: on Poisson counts LZ4 decodes 2-3x
    faster than zstd-1 (3.1 vs 1.0 GB/s for dense uint16 at 1 photon/px/frame, 3.1 vs
    1.7 GB/s for event frames) for 0-12 % more bytes. Stores written with zstd stay
    readable: the codec is in each array's metadata.
    """
    return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


def saturation_value(dtype: np.dtype) -> int | None:
    """The count that flags a saturated/bad pixel (the dtype maximum), or None."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        return int(np.iinfo(dtype).max)
    return None


def storage_dtype(dtype: np.dtype) -> np.dtype:
    """Dense storage dtype for source counts of ``dtype`` (unsigned, <= 32 bit)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u" and dtype.itemsize <= 4:
        return dtype
    return np.dtype(np.uint32)


def default_blocks(n_frames: int, n_pixels: int, layout: str, itemsize: int,
                   t_block: int | None, p_tile: int | None) -> tuple[int, int]:
    """Block sizes (t_block, p_tile) bounded in memory whatever the scan size."""
    if p_tile is None:
        p_tile = DENSE_P_TILE
    p_tile = int(max(1, min(p_tile, max(n_pixels, 1))))
    if t_block is None:
        if layout == "dense":
            fit = DENSE_BLOCK_BYTES // max(1, n_pixels * itemsize)
            t_block = 2 ** int(math.log2(max(1, min(256, fit))))
        else:  # events of one block at the threshold density fit the budget
            fit = EVENTS_BLOCK_BYTES // max(1, int(n_pixels * DENSITY_THRESHOLD * 12))
            t_block = 2 ** int(math.log2(max(8, min(EVENTS_T_BLOCK, fit))))
    t_block = int(max(1, min(t_block, max(n_frames, 1))))
    return t_block, p_tile


def order_pixels(base_valid: np.ndarray, qmap: np.ndarray | None,
                 q_edges: Sequence[float] | None) -> tuple[np.ndarray, list[int] | None]:
    """Flat indices of the pixels to store, grouped by q-bin when edges are given.

    Returns
    -------
    pixels : (P,) int64
    bin_ptr : list of n_q + 1 offsets into ``pixels`` (bin b is
        ``pixels[bin_ptr[b]:bin_ptr[b+1]]``), or None without q-bins.
    """
    flat_valid = base_valid.ravel()
    if qmap is None or q_edges is None:
        return np.flatnonzero(flat_valid).astype(np.int64), None
    edges = np.asarray(q_edges, dtype=np.float64)
    q = qmap.ravel().astype(np.float64)
    with np.errstate(invalid="ignore"):
        b = np.searchsorted(edges, q, side="right") - 1
        inside = flat_valid & np.isfinite(q) & (b >= 0) & (b < len(edges) - 1)
    idx = np.flatnonzero(inside)
    bins = b[idx]
    order = np.argsort(bins, kind="stable")
    pixels = idx[order].astype(np.int64)
    counts = np.bincount(bins, minlength=len(edges) - 1)
    bin_ptr = [0] + np.cumsum(counts).tolist()
    return pixels, [int(v) for v in bin_ptr]


# ----------------------------------------------------------------------------- write

def create_store(path: str | Path, *, n_frames: int, frame_shape: tuple[int, int],
                 dtype: np.dtype, base_valid: np.ndarray, qmap: np.ndarray | None = None,
                 q_edges: Sequence[float] | None = None, frame_time_s: float,
                 layout: str, t_block: int | None = None, p_tile: int | None = None,
                 source: dict[str, Any] | None = None) -> zarr.Group:
    """Create an empty (incomplete) store; overwrites whatever is at ``path``.

    Parameters
    ----------
    base_valid : (ny, nx) bool
        Pixels valid before saturation is known (masks applied); only these are stored.
    layout : "dense" or "events"
    source : extra attributes (``source_path``, ``source_format``, ...).
    """
    if layout not in ("dense", "events"):
        raise InputError(f"layout must be 'dense' or 'events', got {layout!r}")
    ny, nx = (int(v) for v in frame_shape)
    if base_valid.shape != (ny, nx):
        raise InputError(f"valid mask shape {base_valid.shape} != frame shape {(ny, nx)}")
    if qmap is not None and qmap.shape != (ny, nx):
        raise InputError(f"q-map shape {qmap.shape} != frame shape {(ny, nx)}")
    if q_edges is not None:
        q_edges = [float(v) for v in q_edges]
        if len(q_edges) < 2 or np.any(np.diff(q_edges) <= 0):
            raise InputError(f"q_edges must be at least two increasing values, got {q_edges}")
    pixels, bin_ptr = order_pixels(base_valid, qmap, q_edges)
    sdtype = storage_dtype(dtype)
    t_block, p_tile = default_blocks(n_frames, len(pixels), layout, sdtype.itemsize,
                                     t_block, p_tile)
    n_blocks = max(1, -(-n_frames // t_block))
    path = Path(path)
    if path.exists():
        _check_overwritable(path)
    # Built beside its place and renamed into it, the old one renamed aside first: a kill
    # at any moment leaves the old store, nothing, or a whole empty store at ``path``
    # (never a half-made or half-deleted folder that a rerun must refuse to overwrite).
    path.parent.mkdir(parents=True, exist_ok=True)
    building, aside = (path.with_name(f".{path.name}.{tag}") for tag in ("creating", "deleting"))
    for leftover in (building, aside):
        shutil.rmtree(leftover, ignore_errors=True)
    g = zarr.open_group(str(building), mode="w", zarr_format=3)
    attrs = {
        "format_version": FORMAT_VERSION, "complete": False,
        "frame_time_s": float(frame_time_s), "n_frames": int(n_frames),
        "frame_shape": [ny, nx], "dtype": np.dtype(dtype).str,
        "storage_dtype": sdtype.str, "source_path": None, "source_format": None,
        "source_entry": None, "source_size": None, "source_mtime": None,
        "photon_total": None, "density": None, "layout": layout,
        "t_block": t_block, "p_tile": p_tile, "n_blocks": n_blocks,
        "q_edges": q_edges, "q_bin_ptr": bin_ptr,
    }
    attrs.update(source or {})
    (building / WORK).mkdir()
    c = codec()
    g.create_array("valid", data=base_valid.astype(bool), compressors=c)
    q = np.full((ny, nx), np.nan, np.float32) if qmap is None else qmap.astype(np.float32)
    g.create_array("qmap", data=q, compressors=c)
    g.create_array("pixels", data=pixels, chunks=(max(1, min(len(pixels), 1 << 20)),),
                   compressors=c)
    g.create_array("frame_sum", shape=(n_frames,), dtype="float64",
                   chunks=(t_block,), compressors=c, fill_value=0.0)
    P = max(len(pixels), 0)
    if layout == "dense":
        g.create_array("dense", shape=(n_frames, P), dtype=sdtype,
                       chunks=(t_block, p_tile),
                       shards=(t_block, max(p_tile, -(-P // p_tile) * p_tile)),
                       compressors=c, fill_value=0)
    else:
        ev = g.create_group("events")
        for i in range(n_blocks):
            ev.create_group(f"b{i}")
    g.attrs.update(attrs)
    if path.exists():
        os.replace(path, aside)
    os.replace(building, path)
    shutil.rmtree(aside, ignore_errors=True)
    return zarr.open_group(str(path), mode="r+")


def _check_overwritable(path: Path) -> None:
    """Refuse to delete anything but an empty folder or a (possibly broken) scan store."""
    if path.is_dir() and not any(path.iterdir()):
        return
    if (path / WORK).is_dir():
        return
    try:
        attrs = zarr.open_group(str(path), mode="r").attrs
        # a store, or the bare group of one killed while created before creation was atomic
        if "format_version" in attrs or (not attrs and [e.name for e in path.iterdir()] == ["zarr.json"]):
            return
    except Exception:
        pass
    raise StoreError(f"{path}: exists and is not a scan store; not overwriting it")


def block_range(attrs: dict, i: int) -> tuple[int, int]:
    """Frames [t0, t1) of time block ``i``."""
    t0 = i * attrs["t_block"]
    return t0, min(attrs["n_frames"], t0 + attrs["t_block"])


def _work_file(path: str | Path, i: int) -> Path:
    return Path(path) / WORK / f"b{i}.npz"


def done_blocks(path: str | Path) -> set[int]:
    """Indices of the time blocks already written and marked done."""
    n_blocks = zarr.open_group(str(path), mode="r").attrs["n_blocks"]
    return {i for i in range(n_blocks) if _work_file(path, i).exists()}


def _save_partial(path: str | Path, i: int, pixel_sum: np.ndarray, saturated: np.ndarray,
                  frame_sum: np.ndarray, source_sum: float, stored_sum: float) -> None:
    """Write block i's partial results atomically (temporary file, then rename)."""
    c = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.BITSHUFFLE)
    final = _work_file(path, i)
    tmp = final.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, pixel_sum=np.frombuffer(c.encode(pixel_sum.astype(np.int64)), np.uint8),
                 saturated=saturated.astype(np.int64), frame_sum=frame_sum,
                 sums=np.array([source_sum, stored_sum], np.float64))
    os.replace(tmp, final)


def _load_partial(path: str | Path, i: int, npix: int):
    """(pixel_sum (npix,) int64, saturated flat indices, frame_sum, source_sum, stored_sum)
    of block i."""
    c = numcodecs.Blosc()
    with np.load(_work_file(path, i)) as z:
        pix = np.frombuffer(c.decode(z["pixel_sum"].tobytes()), np.int64)
        if pix.size != npix:
            raise StoreError(f"{path}: partial sums of block {i} are damaged")
        return (pix, z["saturated"], z["frame_sum"], float(z["sums"][0]),
                float(z["sums"][1]))


def _batches(frames: np.ndarray | Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    if isinstance(frames, np.ndarray):
        yield frames
    else:
        yield from frames


def write_block(path: str | Path, i: int,
                frames: np.ndarray | Iterable[np.ndarray]) -> dict[str, float]:
    """Write time block ``i`` of a store created by :func:`create_store`.

    Parameters
    ----------
    frames : (n, ny, nx) integer counts of the block's frames, or an iterable of
        such arrays in time order (bounds memory for the events layout).

    Returns
    -------
    dict with ``source_sum`` (counts of valid-so-far stored pixels as read) and
    ``stored_sum`` (the same read back from the store), both float.
    """
    g = zarr.open_group(str(path), mode="r+")
    a = g.attrs.asdict()
    t0, t1 = block_range(a, i)
    ny, nx = a["frame_shape"]
    npix = ny * nx
    pixels = g["pixels"][:]
    P = len(pixels)
    col_of = np.full(npix, -1, np.int32)
    col_of[pixels] = np.arange(P)
    sat = saturation_value(np.dtype(a["dtype"]))
    sat = -1 if sat is None else sat
    pixel_sum = np.zeros(npix, np.float64)
    saturated = np.zeros(npix, bool)
    frame_sum = np.zeros(t1 - t0, np.float64)
    dense = a["layout"] == "dense"
    idx = np.empty(npix + 1, np.int64)  # kernel scratch
    rows = np.empty((t1 - t0, P), a["storage_dtype"]) if dense else None
    ev_col = ev_fr = ev_raw = None  # event buffers (grown as needed), e used
    e = 0
    t = t0
    for batch in _batches(frames):
        batch = np.asarray(batch)
        n = batch.shape[0]
        if batch.shape[1:] != (ny, nx) or t + n > t1:
            raise StoreError(f"{path}: block {i} got frames {batch.shape} at {t}, "
                             f"expected frames {t0}..{t1} of {(ny, nx)}")
        flat = np.ascontiguousarray(batch).reshape(n, npix)
        fs = frame_sum[t - t0:t - t0 + n]
        if dense:
            kernels.scan_dense(flat, pixels, sat, pixel_sum, saturated, fs,
                               rows[t - t0:t - t0 + n], idx)
        else:
            if ev_raw is None:
                cap = 2 * P + (1 << 16)
                ev_col, ev_fr = np.empty(cap, np.int32), np.empty(cap, np.int32)
                ev_raw = np.empty(cap, flat.dtype)
            for k in range(n):  # one frame at a time: room for a full frame suffices
                if len(ev_col) - e < P:
                    cap = 2 * len(ev_col) + P
                    ev_col, ev_fr, ev_raw = (np.resize(x, cap) for x in (ev_col, ev_fr, ev_raw))
                e, fs[k] = kernels.scan_events(flat[k], col_of, t + k, sat, pixel_sum,
                                               saturated, idx, ev_col, ev_fr, ev_raw, e)
        t += n
    if t != t1:
        raise StoreError(f"{path}: block {i} got frames {t0}..{t}, expected {t0}..{t1}")
    # frame sums leave out the pixels saturated in this block (finalise_store takes
    # out their counts from the other blocks)
    bad_cols = np.flatnonzero(saturated[pixels])
    if dense:
        if len(bad_cols):
            frame_sum -= rows[:, bad_cols].sum(axis=1, dtype=np.float64)
        source_sum = float(frame_sum.sum())
        g["dense"][t0:t1] = rows
        back = g["dense"][t0:t1]
        if len(bad_cols):
            back[:, bad_cols] = 0
        stored_sum = float(back.sum(dtype=np.float64))
        del back, rows
    else:
        if ev_raw is None:
            ev_col, ev_fr, ev_raw = np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0)
        col, fr, raw = ev_col[:e], ev_fr[:e], ev_raw[:e]
        if len(bad_cols):
            hit = saturated[pixels][col]
            frame_sum -= np.bincount(fr[hit] - t0, weights=raw[hit].astype(np.float64),
                                     minlength=t1 - t0)
        source_sum = float(frame_sum.sum())
        # int32 counts: only saturated (invalid) pixels can exceed it; they clip
        count = np.minimum(raw.astype(np.int64), INT32_MAX).astype(np.int32)
        ptr, frame, count = kernels.events_by_pixel(col, fr, count, P)
        del col, fr, raw, ev_col, ev_fr, ev_raw
        b = g[f"events/b{i}"]
        c = codec()
        chunk = (max(1, min(len(frame), EVENTS_CHUNK)),)
        # ptr is read per pixel tile: small chunks spare a tile decoding every pixel's offsets
        b.create_array("ptr", data=ptr, chunks=(max(1, min(len(ptr), PTR_CHUNK)),),
                       compressors=c, overwrite=True)
        b.create_array("frame", data=frame, chunks=chunk, compressors=c, overwrite=True)
        b.create_array("count", data=count, chunks=chunk, compressors=c, overwrite=True)
        back = b["count"][:]
        keep = ~np.repeat(saturated[pixels], np.diff(ptr))
        stored_sum = float(back[keep].sum(dtype=np.float64))
    result = {"source_sum": source_sum, "stored_sum": stored_sum}
    if source_sum != stored_sum:
        raise StoreError(f"{path}: block {i} stored {stored_sum} photons, "
                         f"source has {source_sum}")
    # the block's done marker, written last
    _save_partial(path, i, pixel_sum, np.flatnonzero(saturated), frame_sum, source_sum,
                  stored_sum)
    return result


def finalise_store(path: str | Path, *, expected_frames: int | None = None,
                   expected_total: float | None = None,
                   extra_attrs: dict[str, Any] | None = None) -> "ScanStore":
    """Reduce the per-block results, verify, write ``complete`` and open the store.

    Parameters
    ----------
    expected_frames : frame count of the source; checked against the store.
    expected_total : photon total of the valid stored pixels in the source, where
        known; in any case each block's counts read back from the store must equal
        what its task read from the source.
    extra_attrs : attributes written together with ``complete``.
    """
    g = zarr.open_group(str(path), mode="r+")
    a = g.attrs.asdict()
    n_blocks = a["n_blocks"]
    missing = sorted(set(range(n_blocks)) - done_blocks(path))
    if missing:
        raise StoreError(f"{path}: time blocks {missing} were not written")
    if expected_frames is not None and expected_frames != a["n_frames"]:
        raise StoreError(f"{path}: store holds {a['n_frames']} frames, source "
                         f"{expected_frames}")
    ny, nx = a["frame_shape"]
    pixel_sum = np.zeros(ny * nx, np.int64)
    saturated: list[np.ndarray] = []
    frame_sum = np.zeros(a["n_frames"], np.float64)
    stored, source = 0.0, 0.0
    for i in range(n_blocks):
        pix, sat_i, fs_i, source_i, stored_i = _load_partial(path, i, ny * nx)
        pixel_sum += pix
        saturated.append(sat_i)
        t0, t1 = block_range(a, i)
        frame_sum[t0:t1] = fs_i
        stored += stored_i
        source += source_i
    pixel_sum = pixel_sum.astype(np.float64).reshape(ny, nx)
    if source != stored:
        raise StoreError(f"{path}: store holds {stored} photons, source {source}")
    sat = np.unique(np.concatenate(saturated)) if saturated else np.zeros(0, np.int64)
    valid = g["valid"][:]
    valid.ravel()[sat] = False
    g["valid"][:] = valid
    g.create_array("pixel_sum", data=pixel_sum, compressors=codec(), overwrite=True)
    pixels = g["pixels"][:]
    # each block left out its own saturated pixels; take out the others here (this
    # works from the partials, so a finalise interrupted and run again gives the same)
    for i in range(n_blocks):
        cols = np.flatnonzero(np.isin(pixels, np.setdiff1d(sat, saturated[i])))
        if len(cols):
            t0, t1 = block_range(a, i)
            frame_sum[t0:t1] -= _column_sums(g, a, i, cols)
    g["frame_sum"][:] = frame_sum
    n_valid_pixels = int(valid.ravel()[pixels].sum())
    total = float(frame_sum.sum())
    if expected_total is not None and float(expected_total) != total:
        raise StoreError(f"{path}: store holds {total} photons, source {expected_total}")
    density = total / max(1, n_valid_pixels * a["n_frames"])
    # one metadata write: complete appears together with the totals, last
    g.attrs.update(photon_total=total, density=density, **(extra_attrs or {}), complete=True)
    shutil.rmtree(Path(path) / WORK, ignore_errors=True)  # scratch, not needed now
    return open_scan_store(path)


def _column_sums(g: zarr.Group, attrs: dict, i: int, cols: np.ndarray) -> np.ndarray:
    """Exact per-frame sums (float64) of stored columns ``cols`` in time block ``i``."""
    t0, t1 = block_range(attrs, i)
    if attrs["layout"] == "dense":
        x = g["dense"].get_orthogonal_selection((slice(t0, t1), cols))
        return x.sum(axis=1, dtype=np.float64)
    b = g[f"events/b{i}"]
    ptr = b["ptr"][:]
    idx = np.concatenate([np.arange(ptr[c], ptr[c + 1]) for c in cols])
    frame, count = b["frame"][:][idx], b["count"][:][idx]
    return np.bincount(frame - t0, weights=count.astype(np.float64), minlength=t1 - t0)


def write_store_from_array(path: str | Path, frames: np.ndarray, *,
                           valid: np.ndarray | None = None, qmap: np.ndarray | None = None,
                           q_edges: Sequence[float] | None = None,
                           frame_time_s: float = 0.1, layout: str = "auto",
                           t_block: int | None = None,
                           p_tile: int | None = None) -> "ScanStore":
    """Write an in-memory frame stack as a complete scan store.

    Parameters
    ----------
    path : store directory (overwritten).
    frames : (T, ny, nx) non-negative integer counts (integer-valued floats accepted).
    valid : (ny, nx) bool, True = valid; pixels holding the dtype maximum in any
        frame are removed as well.
    qmap : (ny, nx) q in 1/A; with ``q_edges`` the stored pixels are those inside
        the bins, grouped by bin.
    frame_time_s : frame period in s.
    layout : "auto" (by measured density, see DENSITY_THRESHOLD), "dense" or "events".
    t_block, p_tile : storage block sizes (frames, pixels); defaults bound memory.

    Returns
    -------
    ScanStore
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise InputError(f"frames must be (T, ny, nx), got shape {frames.shape}")
    if frames.dtype.kind == "f":
        if not (np.all(frames >= 0) and np.all(frames == np.round(frames))):
            raise InputError("frames must hold non-negative integer counts")
        frames = frames.astype(np.uint32)
    elif frames.dtype.kind not in "ui":
        raise InputError(f"unsupported frame dtype {frames.dtype}")
    elif frames.dtype.kind == "i" and frames.size and frames.min() < 0:
        raise InputError("frames must hold non-negative counts")
    T, ny, nx = frames.shape
    base = np.ones((ny, nx), bool) if valid is None else np.asarray(valid, bool)
    if base.shape != (ny, nx):
        raise InputError(f"valid mask shape {base.shape} != frame shape {(ny, nx)}")
    if layout == "auto":
        layout = choose_layout(measure_density(frames, base))
    create_store(path, n_frames=T, frame_shape=(ny, nx), dtype=frames.dtype,
                 base_valid=base, qmap=None if qmap is None else np.asarray(qmap),
                 q_edges=q_edges, frame_time_s=frame_time_s, layout=layout,
                 t_block=t_block, p_tile=p_tile,
                 source={"source_format": "array"})
    attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    for i in range(attrs["n_blocks"]):
        t0, t1 = block_range(attrs, i)
        write_block(path, i, frames[t0:t1])
    return finalise_store(path, expected_frames=T)


def measure_density(frames: np.ndarray, base_valid: np.ndarray) -> float:
    """Mean counts per valid, unsaturated pixel per frame of a sample of frames."""
    frames = np.asarray(frames)
    ok = np.asarray(base_valid, bool).copy()
    sat = saturation_value(frames.dtype)
    if sat is not None:
        ok &= ~(frames == sat).any(axis=0)
    n = int(ok.sum()) * frames.shape[0]
    return float(frames[:, ok].sum(dtype=np.float64)) / n if n else 0.0


def choose_layout(density: float) -> str:
    """"events" below DENSITY_THRESHOLD photons / pixel / frame, else "dense"."""
    return "events" if density < DENSITY_THRESHOLD else "dense"


# ----------------------------------------------------------------------------- read

class ScanStore:
    """Read-only view of a complete scan store (see :func:`open_scan_store`).

    Attributes
    ----------
    n_frames, frame_shape (ny, nx), frame_time_s (s), pixels (P,) int64,
    valid (ny, nx) bool, pixel_valid (P,) bool, qmap (ny, nx) float32,
    q_edges (list or None), layout, density (photons / valid px / frame), attrs.
    """

    def __init__(self, path: str | Path, group: zarr.Group, check_complete: bool = True):
        self.path = Path(path)
        self._g = group
        self.attrs = dict(group.attrs.asdict())
        if check_complete and not self.attrs.get("complete"):
            raise StoreError(f"{self.path}: scan store is incomplete (conversion did not "
                             "finish); run the conversion again")
        self.n_frames = int(self.attrs["n_frames"])
        self.frame_shape = tuple(int(v) for v in self.attrs["frame_shape"])
        self.frame_time_s = float(self.attrs["frame_time_s"])
        self.layout = self.attrs["layout"]
        self.density = self.attrs.get("density")
        self.q_edges = self.attrs.get("q_edges")
        self.t_block = int(self.attrs["t_block"])
        self.p_tile = int(self.attrs["p_tile"])
        self.n_pixels = int(group["pixels"].shape[0])
        self._arrays: dict[str, zarr.Array] = {}

    def _array(self, name: str) -> zarr.Array:
        """A stored array by path, its metadata read once (many tile reads hit the same arrays)."""
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = self._g[name]
        return arr

    # image-sized arrays load on first use: a store sent to many tasks stays cheap
    @functools.cached_property
    def pixels(self) -> np.ndarray:
        return self._g["pixels"][:]

    @functools.cached_property
    def valid(self) -> np.ndarray:
        return self._g["valid"][:]

    @functools.cached_property
    def qmap(self) -> np.ndarray:
        return self._g["qmap"][:]

    @functools.cached_property
    def pixel_valid(self) -> np.ndarray:
        return self.valid.ravel()[self.pixels]

    def __repr__(self) -> str:
        return f"ScanStore({str(self.path)!r})"

    def __reduce__(self):  # travel to worker processes as a path, reopened there
        return _reopen, (str(self.path),)

    # -- helpers
    def _check(self, t0: int, t1: int, p0: int, p1: int) -> None:
        if not (0 <= t0 <= t1 <= self.n_frames and 0 <= p0 <= p1 <= self.n_pixels):
            raise IndexError(f"{self.path}: range t[{t0}:{t1}] p[{p0}:{p1}] outside "
                             f"({self.n_frames}, {self.n_pixels})")

    def _blocks(self, t0: int, t1: int) -> range:
        if t1 <= t0:
            return range(0)
        return range(t0 // self.t_block, (t1 - 1) // self.t_block + 1)

    # -- public reads
    def read_dense(self, t0: int, t1: int, p0: int, p1: int,
                   dtype: np.dtype | type | None = np.float32) -> np.ndarray:
        """Counts of frames [t0, t1) and stored pixels [p0, p1).

        Parameters
        ----------
        dtype : of the result; None keeps the stored integer dtype of a dense store
            (no conversion pass; an event store gives float32)

        Returns
        -------
        (t1 - t0, p1 - p0) array of ``dtype``
        """
        t0, t1, p0, p1 = int(t0), int(t1), int(p0), int(p1)
        self._check(t0, t1, p0, p1)
        if self.layout == "dense":
            x = self._array("dense")[t0:t1, p0:p1]
            return x if dtype is None else x.astype(dtype)
        out = np.zeros((t1 - t0, p1 - p0), np.float32 if dtype is None else dtype)
        ptr, frame, count = self.read_events(t0, t1, p0, p1)
        pix = np.repeat(np.arange(p1 - p0), np.diff(ptr))
        out[frame - t0, pix] = count
        return out

    def read_events(self, t0: int, t1: int, p0: int, p1: int,
                    compact: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Photon events of frames [t0, t1) and stored pixels [p0, p1).

        Stored time blocks are joined one at a time into arrays sized beforehand from
        their offsets, so a read holds the result plus one stored block.

        Parameters
        ----------
        compact : the smallest exact dtypes instead: int32 offsets (while they fit), uint16
            frames (scans of at most 65536 frames) and uint16 counts (unless one is larger),
            4 bytes an event instead of 8

        Returns
        -------
        ptr : (p1 - p0 + 1,) int64, events of pixel p0 + j are ``ptr[j]:ptr[j+1]``
        frame : (E,) int32 absolute frame index, increasing within a pixel
        count : (E,) int32 photons
        """
        t0, t1, p0, p1 = int(t0), int(t1), int(p0), int(p1)
        self._check(t0, t1, p0, p1)
        n = p1 - p0
        if self.layout == "dense":
            x = self._g["dense"][t0:t1, p0:p1]
            px, fr = np.nonzero(x.T)  # pixel-major, time-ordered within a pixel
            count = np.minimum(x[fr, px].astype(np.int64), INT32_MAX).astype(np.int32)
            frame = (fr + t0).astype(np.int32)
            ptr = np.zeros(n + 1, np.int64)
            np.cumsum(np.bincount(px, minlength=n), out=ptr[1:])
            return kernels.compact_events((ptr, frame, count), self.n_frames) if compact else (ptr, frame, count)
        blocks = list(self._blocks(t0, t1))
        # pass 1: events per pixel of every block, from the offsets (at most t_block each:
        # uint16); a block cut by [t0, t1), at most the first and the last, is read and kept
        sizes = np.empty((len(blocks), n), np.uint16 if self.t_block < 2**16 else np.int64)
        cut = {}
        for b, i in enumerate(blocks):
            if t0 > i * self.t_block or t1 < (i + 1) * self.t_block:
                cut[b] = self._cut_block(i, p0, p1, t0, t1)
                sizes[b] = np.diff(cut[b][0])
            else:
                sizes[b] = np.diff(self._array(f"events/b{i}/ptr")[p0:p1 + 1])
        ptr = np.zeros(n + 1, np.int64)
        np.cumsum(sizes.sum(axis=0, dtype=np.int64), out=ptr[1:])
        n_events = int(ptr[-1])
        if compact:
            frame = np.empty(n_events, np.uint16 if self.n_frames <= 2**16 else np.int32)
            count = np.empty(n_events, np.uint16)
        else:
            frame = np.empty(n_events, np.int32)
            count = np.empty(n_events, np.int32)
        # pass 2: each block's events into place, one block in memory at a time
        fill = ptr[:-1].copy()
        for b, i in enumerate(blocks):
            if b in cut:
                bptr, fr, cn = cut.pop(b)
            else:
                bptr, fr, cn = self._block_events(i, p0, p1, sizes[b])
            if count.dtype == np.uint16 and len(cn) and cn.max() >= 2**16:
                count = count.astype(np.int32)
            kernels.scatter_block(bptr, fr, cn, fill, frame, count)
        if compact and n_events < 2**31:
            ptr = ptr.astype(np.int32)
        return ptr, frame, count

    def _block_events(self, i: int, p0: int, p1: int, sizes: np.ndarray | None = None):
        """Stored block i's events of pixels [p0, p1): (ptr from 0, frame int32, count int32).

        ``sizes``: the events of each pixel when already known; the offsets are then
        rebuilt from them instead of read again.
        """
        if sizes is None:
            ptr = self._array(f"events/b{i}/ptr")[p0:p1 + 1]
            e0 = int(ptr[0])
            ptr = ptr - e0
        else:
            ptr = np.zeros(p1 - p0 + 1, np.int64)
            np.cumsum(sizes, out=ptr[1:])
            e0 = int(self._array(f"events/b{i}/ptr")[p0]) if ptr[-1] else 0
        e1 = e0 + int(ptr[-1])
        if e1 == e0:
            return ptr, np.zeros(0, np.int32), np.zeros(0, np.int32)
        return ptr, self._array(f"events/b{i}/frame")[e0:e1], self._array(f"events/b{i}/count")[e0:e1]

    def _cut_block(self, i: int, p0: int, p1: int, t0: int, t1: int):
        """Stored block i's events of pixels [p0, p1) in frames [t0, t1): (ptr from 0, frame, count)."""
        ptr, fr, cn = self._block_events(i, p0, p1)
        keep = (fr >= t0) & (fr < t1)
        kept = np.zeros(len(keep) + 1, np.int64)
        np.cumsum(keep, out=kept[1:])
        return kept[ptr], fr[keep], cn[keep]

    def mean_image(self) -> np.ndarray:
        """Counts per frame, (ny, nx) float64, NaN where invalid."""
        img = self._g["pixel_sum"][:] / max(1, self.n_frames)
        img[~self.valid] = np.nan
        return img

    def pixel_sum(self) -> np.ndarray:
        """Counts summed over frames, (ny, nx) float64 (every pixel)."""
        return self._g["pixel_sum"][:]

    def frame_sum(self) -> np.ndarray:
        """Counts of valid pixels per frame, (T,) float64."""
        return self._g["frame_sum"][:]

    def q_bin_ptr(self) -> list[int] | None:
        """Offsets of each q-bin's pixels in ``pixels`` (n_q + 1), or None."""
        return self.attrs.get("q_bin_ptr")

    def summary(self) -> str:
        """One line describing the store (for the command line)."""
        ny, nx = self.frame_shape
        src = self.attrs.get("source_path")
        return (f"{self.path}: {self.n_frames} frames of {ny}x{nx} "
                f"({np.dtype(self.attrs['dtype']).name}), {self.n_pixels} stored pixels, "
                f"{int(self.pixel_valid.sum())} valid, layout {self.layout}, "
                f"density {self.density:.4g} ph/px/frame, "
                f"{self.attrs['photon_total']:.0f} photons, frame time "
                f"{self.frame_time_s:g} s"
                + (f", from {self.attrs.get('source_format')} {src}" if src else ""))


def _reopen(path: str) -> ScanStore:
    return ScanStore(path, zarr.open_group(path, mode="r"), check_complete=False)


def open_scan_store(path: str | Path) -> ScanStore:
    """Open a complete scan store.

    Raises
    ------
    StoreError
        When ``path`` is missing, not a scan store, or incomplete.
    """
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise StoreError(f"{path}: no scan store there")
    try:
        g = zarr.open_group(str(path), mode="r")
        attrs = g.attrs.asdict()
    except Exception as exc:  # a corrupt zarr.json, e.g. after a kill mid-write
        raise StoreError(f"{path}: unreadable scan store ({exc})") from exc
    if "format_version" not in attrs:
        raise StoreError(f"{path}: not a scan store (no format_version attribute)")
    return ScanStore(path, g)
