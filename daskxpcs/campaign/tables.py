"""Result tables: DESIGN.md's exact columns, written atomically as CSV."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from daskxpcs.campaign.state import atomic_write_text

__all__ = ["COLUMNS", "write_table", "read_table", "format_value"]

COLUMNS: dict[str, tuple[str, ...]] = {
    "scans": ("scan", "sample", "stage", "pressure_gpa", "t_w_s", "q_index", "q_inv_angstrom", "tau_s",
              "tau_err_s", "beta", "beta_err", "contrast", "contrast_err", "baseline", "redchi", "fit_ok"),
    "isobars": ("sample", "stage", "pressure_gpa", "n_scans", "tau_mean_s", "tau_std_s", "beta_mean",
                "delta_c_90", "delta_c_80", "delta_c_70", "delta_c_60", "q1_inv_angstrom"),
    "aging": ("sample", "stage", "pressure_gpa", "tau0_s", "tau0_err_s", "tau_star_s", "tau_star_err_s",
              "n_points"),
    "qdep": ("sample", "stage", "pressure_gpa", "alpha", "alpha_err", "c", "c_err"),
    "structure": ("scan", "sample", "stage", "pressure_gpa", "q1_inv_angstrom"),
}
INT_COLUMNS = {"q_index", "fit_ok", "n_scans", "n_points"}
STR_COLUMNS = {"scan", "sample", "stage"}


def format_value(v: Any) -> str:
    """One CSV cell: shortest round-trip repr for floats, ``nan`` for missing numbers."""
    if v is None:
        return "nan"
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return str(v)


def write_table(path: os.PathLike | str, rows: Iterable[Mapping[str, Any]], table: str | Sequence[str]) -> Path:
    """Write ``rows`` (dicts) with exactly the named table's columns, atomically.

    Keys outside the columns are left out; a missing column is written as ``nan``.
    """
    columns = COLUMNS[table] if isinstance(table, str) else tuple(table)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([format_value(r.get(c)) for c in columns])
    return atomic_write_text(path, buf.getvalue())


def read_table(path: os.PathLike | str) -> list[dict[str, Any]]:
    """Read a table written by ``write_table`` back with numbers as int/float."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        d: dict[str, Any] = {}
        for k, v in r.items():
            if k in STR_COLUMNS:
                d[k] = v
            elif k in INT_COLUMNS:
                d[k] = int(v) if v not in ("", "nan") else None
            else:
                try:
                    d[k] = float(v)
                except ValueError:
                    d[k] = v
        out.append(d)
    return out
