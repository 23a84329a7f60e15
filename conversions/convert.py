"""Raw scan -> Zarr scan store, as a Dask graph with one task per time block.

Each task decodes its frames (lock-free where possible, see ``decode.py``), writes
its own arrays or shards, and leaves a done marker; a rerun after a crash or a kill
skips finished blocks. The store is marked ``complete`` only after every block is
written and the photon total and frame count agree with the source.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import zarr

from conversions.decode import FrameReader
from conversions.errors import InputError, RawFormatError
from conversions.formats import RawScan, open_raw
from conversions.scheduling import LOCAL_SCHEDULERS, local_get, progress_bar
from conversions.store import (WORK, ScanStore, block_range, choose_layout, create_store,
                               done_blocks, finalise_store, open_scan_store,
                               saturation_value, write_block)

#: Frames decoded at once inside a block task (bounds a task's memory).
BATCH_FRAMES = 16
#: Frames sampled to measure the photon density for layout="auto".
DENSITY_SAMPLE = 16


def measure_raw_density(reader: FrameReader, base_valid: np.ndarray,
                        n_sample: int = DENSITY_SAMPLE) -> float:
    """Photons per valid, unsaturated pixel per frame on frames spread over the scan."""
    raw = reader.raw
    n = raw.n_frames
    picks = np.unique(np.linspace(0, n - 1, min(n, n_sample)).astype(int)) if n else []
    total, count = 0.0, 0
    sat = saturation_value(raw.dtype)
    for t in picks:
        f = reader.read(t, t + 1)[0]
        ok = base_valid if sat is None else base_valid & (f != sat)
        total += float(f[ok].sum(dtype=np.float64))
        count += int(ok.sum())
    return total / count if count else 0.0


def _block_task(reader: FrameReader, store_path: str, i: int, t0: int,
                t1: int) -> dict[str, float]:
    """Decode frames [t0, t1) in batches and write them as time block ``i``."""
    return write_block(store_path, i, reader.iter_frames(t0, t1, BATCH_FRAMES, reuse=True))


def _params_key(raw: RawScan, base_valid: np.ndarray, qmap: np.ndarray | None,
                q_edges: Sequence[float] | None, layout: str, frame_time_s: float,
                t_block: int | None, p_tile: int | None) -> str:
    """Hash of everything that decides a store's content, to match a resumed store."""
    h = hashlib.sha256()
    h.update(json.dumps([raw.describe(), list(q_edges) if q_edges is not None else None,
                         layout, frame_time_s, t_block, p_tile], default=str).encode())
    h.update(np.packbits(base_valid).tobytes())
    if qmap is not None:
        h.update(np.ascontiguousarray(qmap, np.float32).tobytes())
    return h.hexdigest()


def _existing_attrs(path: Path) -> dict[str, Any] | None:
    """Root attributes of an existing store, or None when absent or unreadable."""
    if not (path / "zarr.json").exists():
        return None
    try:
        return zarr.open_group(str(path), mode="r").attrs.asdict()
    except Exception:  # corrupt metadata after a kill: start again
        return None


def _scheduler(scheduler: Any) -> Any:
    """Check a scheduler argument for ``dask.compute(scheduler=...)``.

    Cluster specs (``local:N``, ``tcp://...``) are opened by ``daskxpcs.cluster``, which
    hands its Client here: conversions knows nothing of clusters.
    """
    if scheduler is None or not isinstance(scheduler, str) or scheduler in LOCAL_SCHEDULERS:
        return local_get(scheduler)
    raise InputError(f"scheduler {scheduler!r}: convert() takes threads, processes, synchronous "
                     "or a distributed Client (the CLI opens cluster specs with daskxpcs.cluster)")


def convert(raw: str | Path | RawScan, store_path: str | Path, *,
            qmap: np.ndarray | None = None, q_edges: Sequence[float] | None = None,
            mask: np.ndarray | None = None, frame_time_s: float | None = None,
            entry: str | None = None, layout: str = "auto", scheduler: Any = None,
            progress: bool = False, t_block: int | None = None,
            p_tile: int | None = None, lock_free: bool = True) -> ScanStore:
    """Convert a raw scan into a Zarr scan store (resumable).

    Parameters
    ----------
    raw : path of a file or folder of files, or an opened RawScan.
    store_path : the store directory to write.
    qmap : (ny, nx) q in 1/A per pixel; with ``q_edges`` pixels are grouped by bin.
    q_edges : bin edges in 1/A.
    mask : (ny, nx), True / nonzero = bad (added to the file's own mask).
    frame_time_s : frame period in s; else the file's; else InputError.
    entry : scan entry of a Bliss master file ("3.1").
    layout : "auto" (events below ``store.DENSITY_THRESHOLD`` photons / pixel /
        frame measured on a sample of frames, else dense), "dense" or "events".
    scheduler : None (Dask's default, or an active distributed Client), a Dask
        scheduler name ("threads", "processes", "synchronous") or a distributed Client.
    progress : show a progress bar on a terminal.
    t_block, p_tile : storage block sizes (frames, pixels); defaults bound memory.
    lock_free : decode bitshuffle chunks outside h5py (False: h5py for everything).

    Returns
    -------
    ScanStore of the complete store.

    Raises
    ------
    RawFormatError : unreadable raw data, naming file and dataset.
    InputError : bad q-map / mask / options, or no frame time anywhere.
    """
    if layout not in ("auto", "dense", "events"):
        raise InputError(f"layout must be auto, dense or events, got {layout!r}")
    if not isinstance(raw, RawScan):
        raw = open_raw(raw, entry=entry)
    shape = tuple(raw.frame_shape)
    if qmap is not None:
        qmap = np.asarray(qmap, dtype=np.float64)
        if qmap.shape != shape:
            raise RawFormatError(raw.path, None, f"q-map shape {qmap.shape} != frame shape "
                                 f"{shape}")
    if q_edges is not None and qmap is None:
        raise InputError("q_edges given without a q-map")
    bad = np.zeros(shape, bool) if raw.bad_mask is None else raw.bad_mask.copy()
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise RawFormatError(raw.path, None, f"mask shape {mask.shape} != frame shape "
                                 f"{shape}")
        bad |= mask != 0
    if frame_time_s is None:
        frame_time_s = raw.frame_time_s
    if frame_time_s is None or not frame_time_s > 0:
        raise InputError(f"{raw.path}: the file records no frame time; give frame_time_s "
                         "in the manifest or --frame-time")
    base_valid = ~bad
    reader = FrameReader(raw, lock_free=lock_free)
    if layout == "auto":
        layout = choose_layout(measure_raw_density(reader, base_valid))

    store_path = Path(store_path)
    key = _params_key(raw, base_valid, qmap, q_edges, layout, frame_time_s, t_block, p_tile)
    old = _existing_attrs(store_path)
    if old is not None and old.get("params_key") == key and old.get("complete"):
        return open_scan_store(store_path)
    if old is None or old.get("params_key") != key or not _layout_written(store_path, layout):
        create_store(store_path, n_frames=raw.n_frames, frame_shape=shape, dtype=raw.dtype,
                     base_valid=base_valid, qmap=qmap, q_edges=q_edges,
                     frame_time_s=frame_time_s, layout=layout, t_block=t_block,
                     p_tile=p_tile, source={**raw.describe(), "params_key": key})
        done: set[int] = set()
    else:
        done = _resume_blocks(store_path)
    attrs = zarr.open_group(str(store_path), mode="r").attrs.asdict()
    todo = [i for i in range(attrs["n_blocks"]) if i not in done]
    shared = dask.delayed(reader, traverse=False)  # one key, not a copy per task
    tasks = [dask.delayed(_block_task, pure=False)(shared, str(store_path), i,
                                                    *block_range(attrs, i))
             for i in todo]
    sched = _scheduler(scheduler)
    with progress_bar(progress):
        dask.compute(*tasks, scheduler=sched)
    return finalise_store(store_path, expected_frames=raw.n_frames,
                          extra_attrs={"blocks_reused": len(done),
                                       "lock_free": reader.lock_free})


def _layout_written(path: Path, layout: str) -> bool:
    """Whether the counts arrays of an incomplete store exist (a resume writes into them)."""
    node = path / ("dense" if layout == "dense" else "events")
    return (node / "zarr.json").is_file()


def _resume_blocks(path: Path) -> set[int]:
    """Done blocks of an incomplete store; unfinished blocks' groups are reset."""
    g = zarr.open_group(str(path), mode="r+")
    done = done_blocks(path)
    (path / WORK).mkdir(exist_ok=True)
    if g.attrs["layout"] == "events":
        for i in set(range(g.attrs["n_blocks"])) - done:
            g.create_group(f"events/b{i}", overwrite=True)  # drop half-written arrays
    return done


__all__ = ["convert", "measure_raw_density"]
