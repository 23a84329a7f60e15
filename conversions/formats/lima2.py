"""LIMA2 sparse frames: per-frame CSR ``frame_ptr``, ``index``, ``intensity`` (+ ``mask``)
under ``/entry_0000/measurement/data/``; one file or a folder of files (name order)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from conversions.errors import RawFormatError
from conversions.formats.base import RawScan, check_dtype, dataset, open_h5, scalar
from conversions.formats.lima import list_files

GROUP = "/entry_0000/measurement/data"


def is_lima2(f: h5py.File) -> bool:
    g = f.get(GROUP)
    return isinstance(g, h5py.Group) and "frame_ptr" in g


def _shape(f: h5py.File, file: Path) -> tuple[int, int]:
    g = f[GROUP]
    if "mask" in g:
        return tuple(int(v) for v in g["mask"].shape)
    for key in ("frame_shape", "shape", "dims"):
        if key in g.attrs:
            return tuple(int(v) for v in np.asarray(g.attrs[key]).ravel()[-2:])
    raise RawFormatError(file, f"{GROUP}/mask", "no mask or frame_shape to give the frame size")


def open_lima2(path: str | Path) -> RawScan:
    """Open a LIMA2 sparse file or folder of files as one scan."""
    path = Path(path)
    files = list_files(path) if path.is_dir() else [path]
    sparse_files, shape, dtype, bad, ft, total = [], None, None, None, None, 0
    for file in files:
        with open_h5(file) as f:
            ptr = dataset(f, file, f"{GROUP}/frame_ptr")
            idx = dataset(f, file, f"{GROUP}/index")
            val = dataset(f, file, f"{GROUP}/intensity")
            check_dtype(file, f"{GROUP}/intensity", val.dtype)
            if idx.dtype.kind not in "ui":
                raise RawFormatError(file, f"{GROUP}/index", f"unsupported dtype {idx.dtype}")
            if idx.shape != val.shape:
                raise RawFormatError(file, f"{GROUP}/intensity",
                                     f"{val.shape} values for {idx.shape} indices")
            s = _shape(f, file)
            if shape is None:
                shape, dtype = s, val.dtype
                ft = scalar(f, "/entry_0000/instrument/detector/acquisition/exposure_time")
            elif s != shape:
                raise RawFormatError(file, GROUP, f"frame shape {s} differs from {shape}")
            if "mask" in f[GROUP]:
                m = f[f"{GROUP}/mask"][()] != 0
                bad = m if bad is None else bad | m
            n = int(ptr.shape[0]) - 1
            if n < 0:
                raise RawFormatError(file, f"{GROUP}/frame_ptr", "empty frame_ptr")
            sparse_files.append((str(file), n))
            total += n
    return RawScan(path=str(path), format="lima2", n_frames=total, frame_shape=shape,
                   dtype=np.dtype(dtype), frame_time_s=ft, bad_mask=bad, sparse=True,
                   sparse_files=sparse_files)


def read_sparse_frames(raw: RawScan, start: int, stop: int, out: np.ndarray) -> None:
    """Fill ``out`` (stop - start, ny, nx), zeroed, with frames [start, stop)."""
    npix = out.shape[1] * out.shape[2]
    flat = out.reshape(out.shape[0], npix)
    offset = 0
    for file, n in raw.sparse_files:
        a, b = max(start, offset), min(stop, offset + n)
        if a < b:
            with open_h5(file) as f:
                try:
                    ptr = f[f"{GROUP}/frame_ptr"][a - offset:b - offset + 1].astype(np.int64)
                    idx = f[f"{GROUP}/index"][ptr[0]:ptr[-1]].astype(np.int64)
                    val = f[f"{GROUP}/intensity"][ptr[0]:ptr[-1]]
                except (OSError, ValueError) as exc:
                    raise RawFormatError(file, GROUP, f"cannot read sparse frames: {exc}") from exc
            if len(idx) and (idx.min() < 0 or idx.max() >= npix):
                raise RawFormatError(file, f"{GROUP}/index", f"pixel index outside 0..{npix - 1}")
            rows = np.repeat(np.arange(a - start, b - start), np.diff(ptr))
            flat[rows, idx] = val
        offset += n
