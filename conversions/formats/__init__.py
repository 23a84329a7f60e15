"""Raw scan readers: one module per layout, and format detection."""

from __future__ import annotations

from pathlib import Path

from conversions.errors import RawFormatError
from conversions.formats.base import RawScan, Segment, open_h5
from conversions.formats.bliss import is_bliss, open_bliss
from conversions.formats.eiger import is_eiger, open_eiger
from conversions.formats.lima import is_lima, list_files, open_lima
from conversions.formats.lima2 import is_lima2, open_lima2

FORMATS = ("lima", "bliss", "eiger", "lima2")

__all__ = ["FORMATS", "RawScan", "Segment", "detect_format", "open_raw"]


def detect_format(path: str | Path) -> str:
    """The layout of a raw scan: "lima", "bliss", "eiger" or "lima2".

    A folder is read as a series of LIMA or LIMA2 files (its first file decides).
    """
    path = Path(path)
    if not path.exists():
        raise RawFormatError(path, None, "no such file or folder")
    first = list_files(path)[0] if path.is_dir() else path
    with open_h5(first) as f:
        if is_lima2(f):
            return "lima2"
        if is_lima(f):
            return "lima"
        if path.is_dir():
            raise RawFormatError(first, "/entry_0000/measurement/data",
                                 "not a LIMA or LIMA2 file (no such dataset)")
        if is_eiger(f):
            return "eiger"
        if is_bliss(f):
            return "bliss"
    raise RawFormatError(path, None, "unknown layout: no /entry_0000/measurement/data (LIMA), "
                         "/entry/data/data_000001 (Eiger) or /<scan>.1/measurement (Bliss)")


def open_raw(path: str | Path, entry: str | None = None) -> RawScan:
    """Open a raw scan of any supported layout.

    Parameters
    ----------
    path : a file, or a folder of LIMA / LIMA2 files (name order).
    entry : the scan of a Bliss master file ("3.1" or "3").
    """
    fmt = detect_format(path)
    if fmt == "lima":
        return open_lima(path)
    if fmt == "lima2":
        return open_lima2(path)
    if fmt == "eiger":
        return open_eiger(path)
    return open_bliss(path, entry)
