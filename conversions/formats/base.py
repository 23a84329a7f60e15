"""RawScan, the read-only view every format reader returns, and shared HDF5 helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle/LZ4/zstd HDF5 filters)
import numpy as np

from conversions.errors import RawFormatError

SUPPORTED_KINDS = "u"  # unsigned integer counts
HC_KEV_A = 12.398419843320026  # h c in keV * Angstrom


@dataclass(frozen=True)
class Segment:
    """Frames ``[src_start, src_start + n)`` of dataset ``dataset`` in ``file``,
    which are frames ``[offset, offset + n)`` of the scan."""

    file: str
    dataset: str
    src_start: int
    n: int
    offset: int


@dataclass
class RawScan:
    """A raw scan, opened read-only. Frames are read with h5py + hdf5plugin.

    Attributes
    ----------
    path : the file or folder given by the user.
    format : "lima", "bliss", "eiger" or "lima2".
    n_frames, frame_shape (ny, nx), dtype : the counts.
    frame_time_s : frame period in s from the file, or None.
    bad_mask : (ny, nx) bool, True = bad (the file's own mask), or None.
    energy_kev, wavelength_a : beam, where the file records them.
    sparse : True for LIMA2 CSR frames.
    segments : dense frames as (file, dataset, frame range) pieces (empty when sparse).
    sparse_files : LIMA2 files with their frame counts (empty when dense).
    entry : the Bliss scan entry used, if any.
    """

    path: str
    format: str
    n_frames: int
    frame_shape: tuple[int, int]
    dtype: np.dtype
    frame_time_s: float | None = None
    bad_mask: np.ndarray | None = None
    energy_kev: float | None = None
    wavelength_a: float | None = None
    sparse: bool = False
    segments: list[Segment] = field(default_factory=list)
    sparse_files: list[tuple[str, int]] = field(default_factory=list)
    entry: str | None = None

    def read_frames(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as (n, ny, nx) of ``dtype`` (reference h5py path)."""
        start, stop = max(0, int(start)), min(self.n_frames, int(stop))
        out = np.zeros((max(0, stop - start),) + tuple(self.frame_shape), self.dtype)
        if self.sparse:
            from conversions.formats.lima2 import read_sparse_frames

            read_sparse_frames(self, start, stop, out)
            return out
        for seg in self.segments:
            a, b = max(start, seg.offset), min(stop, seg.offset + seg.n)
            if a >= b:
                continue
            s0 = seg.src_start + a - seg.offset
            with open_h5(seg.file) as f:
                d = dataset(f, seg.file, seg.dataset)
                try:
                    d.read_direct(out, np.s_[s0:s0 + b - a], np.s_[a - start:b - start])
                except (OSError, ValueError) as exc:
                    raise RawFormatError(seg.file, seg.dataset,
                                         f"cannot read frames {s0}..{s0 + b - a}: {exc}") from exc
        return out

    def describe(self) -> dict[str, Any]:
        """Attributes recorded in the store about the source."""
        return {"source_path": str(Path(self.path).resolve()), "source_format": self.format,
                "source_entry": self.entry, "source_size": source_size(self),
                "source_mtime": source_mtime(self), "energy_kev": self.energy_kev,
                "wavelength_a": self.wavelength_a}


def source_files(raw: RawScan) -> list[str]:
    """Every file holding the scan (the given file plus the ones it links)."""
    files = {s.file for s in raw.segments} | {f for f, _ in raw.sparse_files}
    if Path(raw.path).is_file():
        files.add(str(raw.path))
    return sorted(files)


def source_size(raw: RawScan) -> int:
    """Bytes of every file holding the scan."""
    return int(sum(os.path.getsize(f) for f in source_files(raw)))


def source_mtime(raw: RawScan) -> float:
    """Latest modification time (s since the epoch) of the files holding the scan."""
    return float(max(os.path.getmtime(f) for f in source_files(raw)))


def open_h5(path: str | Path) -> h5py.File:
    """Open an HDF5 file read-only; a RawFormatError names it when that fails."""
    path = str(path)
    if not os.path.exists(path):
        raise RawFormatError(path, None, "no such file")
    if os.path.isdir(path):
        raise RawFormatError(path, None, "is a folder, expected an HDF5 file")
    try:
        if not h5py.is_hdf5(path):
            raise RawFormatError(path, None, "not an HDF5 file")
        return h5py.File(path, "r")
    except RawFormatError:
        raise
    except (OSError, ValueError) as exc:
        raise RawFormatError(path, None,
                             f"cannot open HDF5 file (truncated or corrupt?): {exc}") from exc


def dataset(f: h5py.File, path: str | Path, name: str) -> h5py.Dataset:
    """The dataset ``name`` of ``f``; RawFormatError naming file and dataset if absent."""
    try:
        obj = f[name]
    except KeyError as exc:
        raise RawFormatError(path, name, "no such dataset") from exc
    except (OSError, ValueError) as exc:  # broken external/virtual link, truncated file
        raise RawFormatError(path, name, f"cannot open dataset: {exc}") from exc
    if not isinstance(obj, h5py.Dataset):
        raise RawFormatError(path, name, "is a group, expected a dataset")
    return obj


def scalar(f: h5py.File, name: str) -> float | None:
    """A numeric scalar dataset (or first element) as float, None when absent."""
    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        return None
    try:
        v = np.asarray(obj[()]).ravel()
        return float(v[0]) if v.size else None
    except (TypeError, ValueError, OSError):
        return None


def check_frames(path: str | Path, name: str, d: h5py.Dataset) -> None:
    """Frames must be a 3-D stack of unsigned integer counts."""
    if d.ndim != 3:
        raise RawFormatError(path, name, f"expected (frames, ny, nx), got shape {d.shape}")
    check_dtype(path, name, d.dtype)


def check_dtype(path: str | Path, name: str, dtype: np.dtype) -> None:
    dtype = np.dtype(dtype)
    if dtype.kind not in SUPPORTED_KINDS or dtype.itemsize > 4:
        raise RawFormatError(path, name, f"unsupported dtype {dtype} "
                             "(expected uint8, uint16 or uint32 counts)")
