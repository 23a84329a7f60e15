"""The campaign manifest (TOML): parse and validate everything before any work starts.

Every problem is collected and reported at once in one ``ManifestError``; nothing is
created on disk. Paths are relative to the manifest file.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conversions.errors import InputError

__all__ = ["Geometry", "Manifest", "ManifestError", "ScanSpec", "load_manifest", "split_array_spec"]

STAGES = ("compression", "decompression")
TOP_KEYS = {"campaign", "geometry", "scan"}
CAMPAIGN_KEYS = {"name", "output"}
GEOMETRY_KEYS = {"name", "qmap", "mask", "q_edges", "poni"}
SCAN_KEYS = {
    "name", "sample", "geometry", "stage", "pressure_gpa", "t_w_s", "raw", "raw_entry",
    "frame_time_s", "temperature_k",
}
H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5")


class ManifestError(InputError):
    """A manifest with one or more problems; ``problems`` lists each, naming key and scan."""

    def __init__(self, path: os.PathLike | str, problems: list[str]):
        self.path = Path(path)
        self.problems = list(problems)
        n = len(self.problems)
        lines = "\n  ".join(self.problems)
        super().__init__(f"{self.path}: {n} problem{'s' if n != 1 else ''} in the manifest:\n  {lines}")


@dataclass(frozen=True)
class Geometry:
    """One detector set-up.

    ``qmap``/``mask`` are array specs (absolute ``path`` or ``path.h5:/dataset``);
    ``q_edges`` in 1/A, increasing.
    """

    name: str
    q_edges: tuple[float, ...]
    qmap: str | None = None
    mask: str | None = None
    poni: str | None = None
    entry: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def shape(self) -> tuple[int, int] | None:
        """Shape of the q-map (or mask) as read from its header, when known."""
        return self._shape

    _shape: tuple[int, int] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ScanSpec:
    """One ``[[scan]]`` entry, with what the raw file's header says.

    Times in s, pressure in GPa, temperature in K.
    """

    index: int
    name: str
    sample: str
    geometry: str
    stage: str
    pressure_gpa: float
    t_w_s: float
    raw: Path
    raw_entry: str | None = None
    frame_time_s: float | None = None
    temperature_k: float | None = None
    entry: dict = field(default_factory=dict, compare=False, repr=False)
    n_frames: int | None = None
    frame_shape: tuple[int, int] | None = None
    dtype: str | None = None
    header_frame_time_s: float | None = None
    header_error: str | None = None
    source_files: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f'scan[{self.index}] "{self.name}"'

    @property
    def frame_period_s(self) -> float | None:
        """The frame period: the manifest's, else the raw file's."""
        return self.frame_time_s if self.frame_time_s is not None else self.header_frame_time_s

    @property
    def isobar(self) -> tuple[str, str, float]:
        return (self.sample, self.stage, self.pressure_gpa)

    def meta(self) -> dict[str, Any]:
        """The scan's metadata as handed to the analysis (``analyse_scan(group, meta)``)."""
        return {
            "scan": self.name,
            "sample": self.sample,
            "stage": self.stage,
            "pressure_gpa": self.pressure_gpa,
            "t_w_s": self.t_w_s,
            "temperature_k": self.temperature_k,
            "frame_time_s": self.frame_period_s,
            "raw": str(self.raw),
        }


@dataclass(frozen=True)
class Manifest:
    path: Path
    name: str
    output: Path
    geometries: dict[str, Geometry]
    scans: list[ScanSpec]

    def geometry_of(self, scan: ScanSpec) -> Geometry:
        return self.geometries[scan.geometry]

    def isobars(self) -> dict[tuple[str, str, float], list[ScanSpec]]:
        """Scans grouped by (sample, stage, pressure), in manifest order."""
        out: dict[tuple[str, str, float], list[ScanSpec]] = {}
        for s in self.scans:
            out.setdefault(s.isobar, []).append(s)
        return out


def split_array_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"file.h5:/path"`` into (file, dataset); a plain path gives (path, None)."""
    for suf in H5_SUFFIXES:
        marker = suf + ":"
        i = spec.find(marker)
        if i >= 0:
            return spec[: i + len(suf)], spec[i + len(marker):] or None
    return spec, None


def _resolve(base: Path, spec: str) -> str:
    file, dataset = split_array_spec(spec)
    p = Path(file).expanduser()
    p = p if p.is_absolute() else base / p
    return f"{p}:{dataset}" if dataset else str(p)


def _array_shape(spec: str) -> tuple[int, ...]:
    """Shape of an array spec from its header only (.npy memory-mapped, HDF5 dataset shape)."""
    file, dataset = split_array_spec(spec)
    if dataset is not None or file.endswith(H5_SUFFIXES):
        import h5py

        with h5py.File(file, "r") as f:
            if dataset is None:
                raise InputError(f"{file}: name the dataset as FILE.h5:/path")
            if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
                raise InputError(f"{file}: no dataset {dataset}")
            return tuple(f[dataset].shape)
    if file.endswith(".npy"):
        return tuple(np.load(file, mmap_mode="r").shape)
    raise InputError(f"{file}: expected a .npy file or FILE.h5:/dataset")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Checker:
    """Collects problems; typed getters name the table and key."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, where: str, msg: str) -> None:
        self.problems.append(f"{where}: {msg}")

    def unknown(self, where: str, table: dict, allowed: set[str]) -> None:
        for k in table:
            if k not in allowed:
                self.add(where, f"unknown key {k!r} (allowed: {', '.join(sorted(allowed))})")

    def string(self, where: str, table: dict, key: str, required: bool = True) -> str | None:
        if key not in table:
            if required:
                self.add(where, f"{key} is required")
            return None
        v = table[key]
        if not isinstance(v, str) or not v.strip():
            self.add(where, f"{key} must be a non-empty string, got {v!r}")
            return None
        return v

    def number(self, where: str, table: dict, key: str, required: bool = True, minimum: float | None = None,
               strict: bool = False) -> float | None:
        if key not in table:
            if required:
                self.add(where, f"{key} is required")
            return None
        v = table[key]
        if not _is_number(v):
            got = f'"{v}"' if isinstance(v, str) else repr(v)
            self.add(where, f"{key} must be a number, got {got}")
            return None
        v = float(v)
        if not math.isfinite(v):
            self.add(where, f"{key} must be finite, got {v}")
            return None
        if minimum is not None and (v < minimum or (strict and v == minimum)):
            self.add(where, f"{key} must be {'>' if strict else '>='} {minimum:g}, got {v:g}")
            return None
        return v


def _fmt_shape(shape) -> str:
    return "x".join(str(int(v)) for v in shape)


def load_manifest(path: os.PathLike | str, *, read_headers: bool = True) -> Manifest:
    """Parse and validate a campaign manifest.

    Parameters
    ----------
    path : path-like
        The TOML file. Relative paths inside it are taken relative to its folder.
    read_headers : bool
        Open each raw scan's header (``conversions.formats.open_raw``) to check frame
        shapes against the q-map and learn frame counts and periods. Off only for tests
        of the TOML checks themselves.

    Returns
    -------
    Manifest

    Raises
    ------
    ManifestError
        Listing every problem found (unknown keys, missing files, duplicate names,
        unknown geometries, shape mismatches, bad values), each naming its key and scan.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, [f"manifest file not found: {path}"])
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(path, [f"not valid TOML: {exc}"]) from None
    base = path.resolve().parent
    ck = _Checker()
    ck.unknown("manifest", doc, TOP_KEYS)

    # [campaign]
    camp = doc.get("campaign", {})
    if not isinstance(camp, dict):
        ck.add("campaign", "must be a table [campaign]")
        camp = {}
    ck.unknown("[campaign]", camp, CAMPAIGN_KEYS)
    name = ck.string("[campaign]", camp, "name", required=False) or path.stem
    output = ck.string("[campaign]", camp, "output", required=False) or "results"
    out_path = Path(output).expanduser()
    out_path = out_path if out_path.is_absolute() else base / out_path

    # [[geometry]]
    geoms_raw = doc.get("geometry", [])
    if not isinstance(geoms_raw, list):
        ck.add("geometry", "must be an array of tables [[geometry]]")
        geoms_raw = []
    geometries: dict[str, Geometry] = {}
    for i, g in enumerate(geoms_raw):
        where = f"geometry[{i}]" + (f' "{g.get("name")}"' if isinstance(g, dict) and isinstance(g.get("name"), str) else "")
        if not isinstance(g, dict):
            ck.add(where, "must be a table")
            continue
        geometries_entry = _geometry(ck, where, g, base)
        if geometries_entry is None:
            continue
        if geometries_entry.name in geometries:
            ck.add(where, f'duplicate geometry name "{geometries_entry.name}"')
            continue
        geometries[geometries_entry.name] = geometries_entry
    if not geoms_raw:
        ck.add("manifest", "no [[geometry]] table")

    # [[scan]]
    scans_raw = doc.get("scan", [])
    if not isinstance(scans_raw, list):
        ck.add("scan", "must be an array of tables [[scan]]")
        scans_raw = []
    if not scans_raw:
        ck.add("manifest", "no [[scan]] table")
    scans: list[ScanSpec] = []
    seen: dict[str, int] = {}
    headers: dict[tuple[str, str | None], Any] = {}
    for i, s in enumerate(scans_raw):
        nm = s.get("name") if isinstance(s, dict) else None
        where = f"scan[{i}]" + (f' "{nm}"' if isinstance(nm, str) else "")
        if not isinstance(s, dict):
            ck.add(where, "must be a table")
            continue
        spec = _scan(ck, where, i, s, base, geometries, geoms_raw)
        if isinstance(nm, str):
            if nm in seen:
                ck.add(where, f'duplicate scan name "{nm}" (also scan[{seen[nm]}])')
            else:
                seen[nm] = i
        if spec is None:
            continue
        if read_headers and spec.raw.exists():
            spec = _with_header(ck, where, spec, geometries.get(spec.geometry), headers)
        scans.append(spec)

    if ck.problems:
        raise ManifestError(path, ck.problems)
    return Manifest(path=path.resolve(), name=name, output=out_path, geometries=geometries, scans=scans)


def _geometry(ck: _Checker, where: str, g: dict, base: Path) -> Geometry | None:
    ck.unknown(where, g, GEOMETRY_KEYS)
    name = ck.string(where, g, "name")
    qmap = ck.string(where, g, "qmap", required=False)
    poni = ck.string(where, g, "poni", required=False)
    mask = ck.string(where, g, "mask", required=False)
    edges = g.get("q_edges")
    q_edges: tuple[float, ...] | None = None
    if edges is None:
        ck.add(where, "q_edges is required")
    elif not isinstance(edges, list) or not all(_is_number(e) for e in edges):
        ck.add(where, f"q_edges must be a list of numbers (1/A), got {edges!r}")
    elif len(edges) < 2:
        ck.add(where, f"q_edges needs at least 2 edges, got {len(edges)}")
    elif not all(b > a for a, b in zip(edges, edges[1:])):
        ck.add(where, f"q_edges must be strictly increasing, got {edges!r}")
    elif any(e < 0 or not math.isfinite(e) for e in edges):
        ck.add(where, f"q_edges must be finite and >= 0, got {edges!r}")
    else:
        q_edges = tuple(float(e) for e in edges)
    if qmap is None and poni is None and "qmap" not in g and "poni" not in g:
        ck.add(where, "needs qmap (q per pixel, 1/A) or poni (a pyFAI geometry)")
    if qmap is not None and poni is not None:
        ck.add(where, "give qmap or poni, not both")
    shape = None
    qspec = mspec = pspec = None
    if qmap is not None:
        qspec = _resolve(base, qmap)
        shape = _check_array(ck, where, "qmap", qspec)
    if poni is not None:
        pspec = _resolve(base, poni)
        if not Path(pspec).is_file():
            ck.add(where, f"poni file not found: {pspec}")
        else:
            try:
                import pyFAI  # noqa: F401
            except ImportError:
                ck.add(where, "poni needs pyFAI, which is not installed (pip install pyFAI), or give qmap instead")
    if mask is not None:
        mspec = _resolve(base, mask)
        mshape = _check_array(ck, where, "mask", mspec)
        if mshape is not None and shape is not None and mshape != shape:
            ck.add(where, f"mask shape {_fmt_shape(mshape)} differs from the qmap shape {_fmt_shape(shape)}")
        shape = shape or mshape
    if name is None or q_edges is None:
        return None
    return Geometry(name=name, q_edges=q_edges, qmap=qspec, mask=mspec, poni=pspec, entry=dict(g), _shape=shape)


def _check_array(ck: _Checker, where: str, key: str, spec: str) -> tuple[int, int] | None:
    file, _ = split_array_spec(spec)
    if not Path(file).is_file():
        ck.add(where, f"{key} file not found: {file}")
        return None
    try:
        shape = _array_shape(spec)
    except InputError as exc:
        ck.add(where, f"{key}: {exc}")
        return None
    except (OSError, ValueError) as exc:
        ck.add(where, f"{key}: cannot read {spec}: {exc}")
        return None
    if len(shape) != 2:
        ck.add(where, f"{key} must be a 2-d image, got shape {shape}")
        return None
    return (int(shape[0]), int(shape[1]))


def _scan(ck: _Checker, where: str, i: int, s: dict, base: Path, geometries: dict[str, Geometry],
          geoms_raw: list) -> ScanSpec | None:
    n0 = len(ck.problems)
    ck.unknown(where, s, SCAN_KEYS)
    name = ck.string(where, s, "name")
    sample = ck.string(where, s, "sample")
    geom = ck.string(where, s, "geometry")
    stage = ck.string(where, s, "stage")
    if stage is not None and stage not in STAGES:
        ck.add(where, f"stage must be \"compression\" or \"decompression\", got {stage!r}")
    pressure = ck.number(where, s, "pressure_gpa", minimum=0.0)
    t_w = ck.number(where, s, "t_w_s", minimum=0.0)
    frame_time = ck.number(where, s, "frame_time_s", required=False, minimum=0.0, strict=True)
    temperature = ck.number(where, s, "temperature_k", required=False, minimum=0.0, strict=True)
    raw_entry = s.get("raw_entry")
    if raw_entry is not None and not isinstance(raw_entry, str):
        ck.add(where, f'raw_entry must be a string such as "3.1", got {raw_entry!r}')
    raw = ck.string(where, s, "raw")
    raw_path = None
    if raw is not None:
        raw_path = Path(raw).expanduser()
        raw_path = raw_path if raw_path.is_absolute() else base / raw_path
        if not raw_path.exists():
            ck.add(where, f"raw not found: {raw_path}")
    if geom is not None and geom not in geometries:
        known = [g.get("name") for g in geoms_raw if isinstance(g, dict)]
        if geom not in known:
            ck.add(where, f'unknown geometry "{geom}" (defined: {", ".join(map(str, known)) or "none"})')
    if len(ck.problems) > n0 or geom not in geometries:
        return None
    return ScanSpec(
        index=i, name=name, sample=sample, geometry=geom, stage=stage, pressure_gpa=pressure, t_w_s=t_w,
        raw=raw_path, raw_entry=raw_entry, frame_time_s=frame_time, temperature_k=temperature, entry=dict(s),
    )


def _with_header(ck: _Checker, where: str, spec: ScanSpec, geom: Geometry | None, cache: dict) -> ScanSpec:
    from dataclasses import replace

    from conversions.formats import open_raw

    key = (str(spec.raw), spec.raw_entry)
    if key not in cache:
        try:
            cache[key] = open_raw(spec.raw, spec.raw_entry)
        except InputError as exc:
            cache[key] = exc
        except (OSError, ValueError, KeyError) as exc:
            cache[key] = InputError(f"{spec.raw}: cannot read the raw header: {exc}")
    head = cache[key]
    if isinstance(head, Exception):
        # An unreadable raw file fails that scan at run time; the others still run.
        return replace(spec, header_error=str(head))
    shape = tuple(int(v) for v in head.frame_shape)
    try:  # every file holding the frames (a Bliss master links others): resume watches them all
        from conversions.formats.base import source_files

        files = tuple(source_files(head))
    except (ImportError, AttributeError):
        files = ()
    spec = replace(
        spec, n_frames=int(head.n_frames), frame_shape=shape, dtype=str(np.dtype(head.dtype)),
        header_frame_time_s=head.frame_time_s, source_files=files,
    )
    if geom is not None and geom.shape is not None and geom.shape != shape:
        what = "qmap" if geom.qmap else "mask"
        ck.add(where, f'geometry "{geom.name}" {what} shape {_fmt_shape(geom.shape)} differs from the frame '
                      f"shape {_fmt_shape(shape)} of raw {spec.raw}")
    if spec.frame_period_s is None:
        ck.add(where, "frame_time_s is required: the raw file records no frame period")
    if spec.n_frames is not None and spec.n_frames < 2:
        ck.add(where, f"raw {spec.raw} holds {spec.n_frames} frame(s); correlation needs at least 2")
    return spec
