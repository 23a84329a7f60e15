"""Resume state: atomic writes, input fingerprints, and the ``complete`` marks.

A scan's results group counts as done only when its attributes hold
``campaign_complete = True`` and a ``campaign_fingerprint`` equal to the one computed
from its inputs now (raw size + mtime, manifest entry, geometry files, parameters).
The mark is written last, so a run killed at any point leaves nothing that looks done.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from daskxpcs.atomic import atomic_write_text
from daskxpcs.jsonsafe import json_safe

__all__ = [
    "atomic_write_text", "atomic_write_json", "file_stat", "fingerprint", "conversion_fingerprint",
    "scan_fingerprint", "read_done", "mark_done", "store_is_fresh", "mark_store", "remove_tree",
]

STATE_VERSION = 1


def atomic_write_json(path: os.PathLike | str, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=False) + "\n")


def file_stat(path: os.PathLike | str | None) -> Any:
    """(size, mtime_ns) of a file; for a folder, that of every file in it by name; None if absent."""
    if path is None:
        return None
    from daskxpcs.campaign.manifest import split_array_spec

    p = Path(split_array_spec(str(path))[0])
    if p.is_dir():
        return sorted((str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns)
                      for f in p.rglob("*") if f.is_file())
    if p.exists():
        st = p.stat()
        return [st.st_size, st.st_mtime_ns]
    return None


def fingerprint(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    text = json.dumps(json_safe(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def conversion_fingerprint(scan, geometry) -> str:
    """What the scan store depends on: the raw file(s), entry, frame period and geometry files."""
    return fingerprint({
        "v": STATE_VERSION,
        "raw": str(scan.raw), "raw_stat": file_stat(scan.raw), "raw_entry": scan.raw_entry,
        "files": [[f, file_stat(f)] for f in scan.source_files],
        "frame_time_s": scan.frame_time_s,
        "geometry": geometry.entry,
        "qmap": file_stat(geometry.qmap), "mask": file_stat(geometry.mask), "poni": file_stat(geometry.poni),
    })


def scan_fingerprint(scan, geometry, params: dict) -> str:
    """What a scan's results depend on: its store's inputs, its manifest entry and the parameters."""
    return fingerprint({"conv": conversion_fingerprint(scan, geometry), "entry": scan.entry, "params": params})


def _open_group(path: Path, mode: str):
    import zarr

    return zarr.open_group(str(path), mode=mode)


def read_done(group_path: os.PathLike | str, fp: str) -> dict | None:
    """The saved per-scan outcome if the group at ``group_path`` is complete for ``fp``, else None."""
    p = Path(group_path)
    if not (p / "zarr.json").is_file():
        return None
    try:
        attrs = dict(_open_group(p, "r").attrs)
    except Exception:  # a corrupt or half-written group is simply not done
        return None
    if attrs.get("campaign_complete") is not True or attrs.get("campaign_fingerprint") != fp:
        return None
    return attrs.get("campaign_outcome")


def mark_done(group_path: os.PathLike | str, fp: str, outcome: dict) -> None:
    """Record ``outcome`` (rows, timings) and the fingerprint; ``campaign_complete`` goes in the same write."""
    g = _open_group(Path(group_path), "r+")
    g.attrs.update({"campaign_outcome": json_safe(outcome), "campaign_fingerprint": fp, "campaign_complete": True})


def store_is_fresh(store_path: os.PathLike | str, fp: str) -> bool:
    """True when the scan store is complete and was converted from the inputs named by ``fp``."""
    p = Path(store_path)
    if not (p / "zarr.json").is_file():
        return False
    try:
        attrs = dict(_open_group(p, "r").attrs)
    except Exception:
        return False
    return attrs.get("complete") is True and attrs.get("campaign_fingerprint") == fp


def mark_store(store_path: os.PathLike | str, fp: str) -> None:
    _open_group(Path(store_path), "r+").attrs["campaign_fingerprint"] = fp


def remove_tree(path: os.PathLike | str) -> None:
    """Remove a stale store or group: renamed aside first so a crash never leaves half of one in place."""
    p = Path(path)
    if not p.exists():
        return
    aside = p.with_name(f".{p.name}.old-{os.getpid()}")
    os.replace(p, aside)
    shutil.rmtree(aside, ignore_errors=True)
