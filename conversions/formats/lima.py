"""ESRF LIMA v1: ``/entry_0000/measurement/data`` (frames, ny, nx), one file or a
folder of files (name order) making one scan."""

from __future__ import annotations

import posixpath
from pathlib import Path

import h5py
import numpy as np

from conversions.errors import RawFormatError
from conversions.formats.base import RawScan, Segment, check_frames, dataset, open_h5, scalar

DATA = "/entry_0000/measurement/data"


def is_lima(f: h5py.File) -> bool:
    """True when ``f`` holds a dense LIMA frame stack."""
    return isinstance(f.get(DATA), h5py.Dataset)


def list_files(folder: Path) -> list[Path]:
    """HDF5 files of a folder in name order."""
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in (".h5", ".hdf5", ".nxs"))
    if not files:
        raise RawFormatError(folder, None, "folder holds no .h5 files")
    return files


def detector_group(f: h5py.File) -> str | None:
    """Path of the detector group the data link points into, where it can be found."""
    link = f.get(DATA, getlink=True)
    if isinstance(link, h5py.SoftLink):
        return posixpath.dirname(link.path)
    for inst in f["/entry_0000"].values():  # /entry_0000/<instrument>/<detector>/data
        if isinstance(inst, h5py.Group):
            for det in inst.values():
                if isinstance(det, h5py.Group) and "acquisition" in det:
                    return det.name
    return None


def frame_time(f: h5py.File) -> float | None:
    """exposure_time + latency_time of ``<detector>/acquisition``, in s."""
    det = detector_group(f)
    if det is None:
        return None
    exposure = scalar(f, f"{det}/acquisition/exposure_time")
    if exposure is None:
        return None
    return exposure + (scalar(f, f"{det}/acquisition/latency_time") or 0.0)


def open_lima(path: str | Path) -> RawScan:
    """Open a LIMA file or a folder of LIMA files as one scan."""
    path = Path(path)
    files = list_files(path) if path.is_dir() else [path]
    segments, shape, dtype, ft = [], None, None, None
    offset = 0
    for file in files:
        with open_h5(file) as f:
            d = dataset(f, file, DATA)
            check_frames(file, DATA, d)
            if shape is None:
                shape, dtype, ft = d.shape[1:], d.dtype, frame_time(f)
            elif d.shape[1:] != shape or d.dtype != dtype:
                raise RawFormatError(file, DATA, f"frames {d.shape[1:]} {d.dtype} differ from "
                                     f"{shape} {dtype} of {files[0].name}")
            segments.append(Segment(str(file), DATA, 0, d.shape[0], offset))
            offset += d.shape[0]
    return RawScan(path=str(path), format="lima", n_frames=offset,
                   frame_shape=tuple(int(v) for v in shape), dtype=np.dtype(dtype),
                   frame_time_s=ft, segments=segments)
