"""Dectris Eiger NeXus: ``*_master.h5`` with ``/entry/data/data_00000N`` external
links to the data files."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from conversions.errors import RawFormatError
from conversions.formats.base import (HC_KEV_A, RawScan, Segment, check_frames, dataset,
                                      open_h5, scalar)

DATA_GROUP = "/entry/data"
MASK = "/entry/instrument/detector/detectorSpecific/pixel_mask"
DETECTOR = "/entry/instrument/detector"
WAVELENGTH = "/entry/instrument/beam/incident_wavelength"


def is_eiger(f: h5py.File) -> bool:
    g = f.get(DATA_GROUP)
    return isinstance(g, h5py.Group) and any(k.startswith("data_") for k in g)


def open_eiger(path: str | Path) -> RawScan:
    """Open an Eiger master file; frames come from its ``data_00000N`` links in order."""
    path = Path(path)
    with open_h5(path) as f:
        g = f[DATA_GROUP]
        names = sorted(k for k in g if k.startswith("data_"))
        segments, shape, dtype, offset = [], None, None, 0
        for name in names:
            link = g.get(name, getlink=True)
            full = f"{DATA_GROUP}/{name}"
            if isinstance(link, h5py.ExternalLink):
                file = os.path.join(path.parent, link.filename)
                if not os.path.exists(file):
                    raise RawFormatError(path, full, f"links to missing file {link.filename}")
                with open_h5(file) as df:
                    d = dataset(df, file, link.path)
                    check_frames(file, link.path, d)
                    seg_file, seg_name, n = file, link.path, d.shape[0]
                    seg_shape, seg_dtype = d.shape[1:], d.dtype
            else:
                d = dataset(f, path, full)
                check_frames(path, full, d)
                seg_file, seg_name, n = str(path), full, d.shape[0]
                seg_shape, seg_dtype = d.shape[1:], d.dtype
            if shape is None:
                shape, dtype = seg_shape, seg_dtype
            elif seg_shape != shape or seg_dtype != dtype:
                raise RawFormatError(seg_file, seg_name, "frame shape or dtype differs from "
                                     f"{names[0]}")
            segments.append(Segment(seg_file, seg_name, 0, n, offset))
            offset += n
        if shape is None:
            raise RawFormatError(path, DATA_GROUP, "no data_00000N datasets")
        bad = None
        if MASK in f:
            m = dataset(f, path, MASK)[()]
            if m.shape != shape:
                raise RawFormatError(path, MASK, f"mask shape {m.shape} != frame shape {shape}")
            bad = m != 0
        ft = scalar(f, f"{DETECTOR}/frame_time") or scalar(f, f"{DETECTOR}/count_time")
        wl = scalar(f, WAVELENGTH)
    return RawScan(path=str(path), format="eiger", n_frames=offset,
                   frame_shape=tuple(int(v) for v in shape), dtype=np.dtype(dtype),
                   frame_time_s=ft, bad_mask=bad, wavelength_a=wl,
                   energy_kev=HC_KEV_A / wl if wl else None, segments=segments)
