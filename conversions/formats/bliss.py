"""ESRF Bliss master file: ``/<scan>.1/measurement/eiger4m`` (or ``eiger4m_v2``),
usually a virtual dataset over the LIMA files."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from conversions.errors import RawFormatError
from conversions.formats.base import (HC_KEV_A, RawScan, Segment, check_frames, dataset,
                                      open_h5, scalar)
from conversions.formats.lima import frame_time as lima_frame_time

DETECTORS = ("eiger4m", "eiger4m_v2")


def is_bliss(f: h5py.File) -> bool:
    creator = f.attrs.get("creator", b"")
    creator = creator.decode() if isinstance(creator, bytes) else str(creator)
    if creator.lower().startswith("bliss"):
        return True
    return any(isinstance(g, h5py.Group) and "measurement" in g and k[:1].isdigit()
               for k, g in f.items())


def scan_entries(f: h5py.File) -> list[str]:
    """Scan entries ("1.1", "2.1", ...) holding a measurement group."""
    return [k for k in f if k[:1].isdigit() and isinstance(f.get(f"{k}/measurement"), h5py.Group)]


def pick_entry(f: h5py.File, path: Path, entry: str | None) -> str:
    entries = scan_entries(f)
    if entry is None:
        if len(entries) == 1:
            return entries[0]
        raise RawFormatError(path, None, f"holds scans {entries}: choose one with raw_entry "
                             "(--entry)")
    entry = str(entry)
    for cand in (entry, f"{entry}.1"):
        if cand in entries:
            return cand
    raise RawFormatError(path, f"/{entry}", f"no such scan entry (found {entries})")


def detector_dataset(f: h5py.File, path: Path, entry: str) -> str:
    meas = f[f"{entry}/measurement"]
    for name in DETECTORS:
        if name in meas:
            return f"/{entry}/measurement/{name}"
    stacks = [k for k, v in meas.items() if isinstance(v, h5py.Dataset) and v.ndim == 3]
    if len(stacks) == 1:
        return f"/{entry}/measurement/{stacks[0]}"
    raise RawFormatError(path, f"/{entry}/measurement/{DETECTORS[0]}", "no such dataset")


def _segments(path: Path, name: str, d: h5py.Dataset) -> list[Segment]:
    """Frame pieces of a virtual dataset (one per source), or the dataset itself."""
    if not d.is_virtual:
        return [Segment(str(path), name, 0, d.shape[0], 0)]
    out = []
    for vs in d.virtual_sources():
        if not vs.vspace.is_regular_hyperslab():
            raise RawFormatError(path, name, "virtual source selection is not a frame range")
        start, _, count, block = vs.vspace.get_regular_hyperslab()
        n = count[0] * block[0]
        src_start = 0
        if vs.src_space.get_select_type() == h5py.h5s.SEL_HYPERSLABS:
            src_start = vs.src_space.get_regular_hyperslab()[0][0]
        file = vs.file_name
        if file == ".":
            file = str(path)
        elif not os.path.isabs(file):
            file = os.path.normpath(os.path.join(path.parent, file))
        if not os.path.exists(file):
            raise RawFormatError(path, name, f"virtual source file {vs.file_name} is missing")
        out.append(Segment(file, vs.dset_name, int(src_start), int(n), int(start[0])))
    return sorted(out, key=lambda s: s.offset)


def open_bliss(path: str | Path, entry: str | None = None) -> RawScan:
    """Open scan ``entry`` ("1.1" or "1") of a Bliss master file."""
    path = Path(path)
    with open_h5(path) as f:
        entry = pick_entry(f, path, entry)
        name = detector_dataset(f, path, entry)
        d = dataset(f, path, name)
        check_frames(path, name, d)
        segments = _segments(path, name, d)
        ft = None
        et = f.get(f"{entry}/measurement/elapsed_time")
        if isinstance(et, h5py.Dataset) and et.shape and et.shape[0] >= 2:
            ft = float(np.median(np.diff(et[()])))
        if ft is None and segments and segments[0].file != str(path):
            with open_h5(segments[0].file) as lf:
                ft = lima_frame_time(lf)
        det = name.rsplit("/", 1)[-1]
        energy = scalar(f, f"{entry}/instrument/metadata/{det}/xray_energy")
        wl = scalar(f, f"{entry}/instrument/metadata/{det}/wavelength")
        if energy is None and wl:
            energy = HC_KEV_A / wl
        scan = RawScan(path=str(path), format="bliss", n_frames=int(d.shape[0]),
                       frame_shape=tuple(int(v) for v in d.shape[1:]), dtype=np.dtype(d.dtype),
                       frame_time_s=ft, energy_kev=energy,
                       wavelength_a=wl or (HC_KEV_A / energy if energy else None),
                       segments=segments, entry=entry)
    covered = sum(s.n for s in segments)
    if covered != scan.n_frames:
        raise RawFormatError(path, name, f"virtual sources cover {covered} of "
                             f"{scan.n_frames} frames")
    return scan
