"""Read a campaign output directory for the report: tables, summary, results groups, truth.

Nothing here computes physics; it only reads what the campaign wrote, tolerating parts
that are missing (a report must still be written for a partial campaign).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

TABLES = ("scans", "isobars", "aging", "qdep", "structure")
# Columns that stay text; every other column is parsed as a float (NaN when empty).
TEXT_COLUMNS = {"scan", "sample", "stage", "reason", "geometry"}


class MissingInput(Exception):
    """Inputs a figure needs are absent; the figure is skipped with this message."""


def _parse(value: str, column: str) -> Any:
    if column in TEXT_COLUMNS:
        return value
    if value is None or value.strip() == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        return value


def read_table(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Read one result CSV.

    Parameters
    ----------
    path : Path
        A CSV written by the campaign (DESIGN.md columns).

    Returns
    -------
    columns : list of str
        Header in file order.
    rows : list of dict
        One dict per row; numeric columns as float (NaN when empty), text columns as str.
    """
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        rows = [{k: _parse(v, k) for k, v in row.items() if k is not None} for row in reader]
    return columns, rows


def isobar_key(row: dict[str, Any]) -> tuple[str, str, float]:
    """(sample, stage, pressure_gpa) of a table row or scan metadata; pressure rounded to 1e-3."""
    return (str(row["sample"]), str(row["stage"]), round(float(row["pressure_gpa"]), 3))


@dataclass
class ScanResult:
    """Lazy view of one scan's results group (arrays are read on demand)."""

    name: str
    group: Any  # zarr.Group
    meta: dict[str, Any]
    _arrays: frozenset[str] | None = field(default=None, repr=False, compare=False)

    def has(self, name: str) -> bool:
        if self._arrays is None:  # list the group once; figures ask often
            self._arrays = frozenset(self.group.array_keys())
        return name in self._arrays

    def array(self, name: str) -> np.ndarray:
        if not self.has(name):
            raise MissingInput(f"scan {self.name}: results group has no array {name!r}")
        return np.asarray(self.group[name][...])

    def fits(self) -> list[dict[str, Any]]:
        """KWW fit dicts per q bin, union last (attribute ``fits``); [] when absent."""
        return list(self.meta.get("fits") or [])

    def union_fit(self) -> dict[str, Any] | None:
        fits = self.fits()
        return fits[-1] if fits else None

    @property
    def frame_time_s(self) -> float:
        return float(self.meta.get("frame_time_s", math.nan))

    @property
    def ttcf_bin(self) -> int:
        return int(self.meta.get("ttcf_bin", 1) or 1)


@dataclass
class Campaign:
    """Everything the report reads from one output directory."""

    outdir: Path
    columns: dict[str, list[str]] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    scans: dict[str, ScanResult] = field(default_factory=dict)
    truth: dict[str, Any] | None = None
    truth_path: Path | None = None
    problems: list[str] = field(default_factory=list)

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.tables.get(table, [])

    def union_rows(self) -> list[dict[str, Any]]:
        """scans.csv rows of the union bin (q_index = -1)."""
        return [r for r in self.rows("scans") if r.get("q_index") == -1]

    def scan_meta(self, name: str) -> dict[str, Any]:
        if name in self.scans:
            return self.scans[name].meta
        for r in self.union_rows():
            if r["scan"] == name:
                return r
        return {}

    def isobars(self) -> dict[tuple[str, str, float], list[ScanResult]]:
        """Results groups grouped by (sample, stage, pressure), each list sorted by t_w."""
        out: dict[tuple[str, str, float], list[ScanResult]] = {}
        for s in self.scans.values():
            try:
                key = isobar_key(s.meta)
            except (KeyError, TypeError, ValueError):
                continue
            out.setdefault(key, []).append(s)
        for v in out.values():
            v.sort(key=lambda s: float(s.meta.get("t_w_s", 0.0)))
        return dict(sorted(out.items()))

    def pressures(self) -> list[float]:
        ps = {isobar_key(r)[2] for t in ("isobars", "scans") for r in self.rows(t)}
        ps |= {k[2] for k in self.isobars()}
        return sorted(ps)


def _read_json(path: Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


def _scan_meta(name: str, group: Any, union_rows: dict[str, dict]) -> dict[str, Any]:
    meta = dict(union_rows.get(name, {}))
    meta.update(dict(group.attrs))
    meta.setdefault("scan", name)
    return meta


def find_truth(outdir: Path, summary: dict[str, Any]) -> Path | None:
    """The simulator's truth.json: next to the manifest named in summary.json, else in outdir."""
    candidates = []
    params = summary.get("parameters") or {}
    manifest = params.get("manifest") or summary.get("manifest")
    if manifest:
        m = Path(manifest)
        if not m.is_absolute():
            m = (outdir / m).resolve()
        candidates.append(m.parent / "truth.json")
    candidates.append(outdir / "truth.json")
    for c in candidates:
        if c.is_file():
            return c
    return None


def load_campaign(outdir: Path | str) -> Campaign:
    """Read the tables, summary.json, results.zarr groups and the simulator truth of OUTDIR.

    Parameters
    ----------
    outdir : Path
        A campaign output directory (DESIGN.md "Results").

    Returns
    -------
    Campaign
        Missing or unreadable parts are left empty and listed in ``problems``.
    """
    outdir = Path(outdir)
    c = Campaign(outdir=outdir)
    for name in TABLES:
        path = outdir / f"{name}.csv"
        if not path.is_file():
            c.problems.append(f"{path.name} not found")
            continue
        try:
            c.columns[name], c.tables[name] = read_table(path)
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            c.problems.append(f"{path.name} unreadable: {exc}")
    spath = outdir / "summary.json"
    if spath.is_file():
        try:
            c.summary = _read_json(spath)
        except (OSError, json.JSONDecodeError) as exc:
            c.problems.append(f"summary.json unreadable: {exc}")
    else:
        c.problems.append("summary.json not found")

    union = {r["scan"]: r for r in c.union_rows()}
    rpath = outdir / "results.zarr"
    if rpath.exists():
        try:
            root = zarr.open_group(str(rpath), mode="r")
            for name, group in sorted(root.groups()):
                c.scans[name] = ScanResult(name, group, _scan_meta(name, group, union))
        except Exception as exc:  # zarr raises several types for a damaged store
            c.problems.append(f"results.zarr unreadable: {type(exc).__name__}: {exc}")
    else:
        c.problems.append("results.zarr not found")

    tpath = find_truth(outdir, c.summary)
    if tpath is not None:
        try:
            c.truth, c.truth_path = _read_json(tpath), tpath
        except (OSError, json.JSONDecodeError) as exc:
            c.problems.append(f"{tpath} unreadable: {exc}")
    return c


def fit_value(fit: dict[str, Any] | None, name: str) -> float:
    """A KWW parameter from a fit dict, accepting ``tau_s`` or ``tau`` spellings; NaN if absent."""
    if not fit:
        return math.nan
    for key in (name, f"{name}_s", name.removesuffix("_s")):
        if key in fit and fit[key] is not None:
            try:
                return float(fit[key])
            except (TypeError, ValueError):
                return math.nan
    return math.nan


def fit_ok(fit: dict[str, Any] | None) -> bool:
    if not fit:
        return False
    ok = fit.get("fit_ok", fit.get("ok", 1))
    return bool(int(ok)) if ok is not None and not (isinstance(ok, float) and math.isnan(ok)) else False
