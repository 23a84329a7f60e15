"""Recovered values beside the simulator's ground truth (``truth.json``), where keys match.

The comparison is by name: a per-scan truth entry is matched to the scan's union-bin row of
scans.csv (and structure.csv), a per-isobar entry to isobars.csv / aging.csv / qdep.csv by
(sample, stage, pressure). Keys without a recovered counterpart are not shown; the whole
truth file is always linked.
"""

from __future__ import annotations

import html
import json
import math
import os
from typing import Any

import numpy as np

from daskxpcs.report.load import Campaign, isobar_key
from daskxpcs.report.markup import table_html

# Truth keys (simulator spellings first) for each recovered column.
SCAN_KEYS = {
    "tau_s": ("expected.tau_s", "tau_union_s", "tau_s", "tau"),
    "beta": ("expected.beta", "beta"),
    "contrast": ("expected.contrast", "contrast"),
    "baseline": ("expected.baseline", "baseline"),
    "q1_inv_angstrom": ("q1_inv_angstrom", "q1"),
}
ISOBAR_KEYS = {
    "tau0_s": ("tau0_scan_fit_s", "tau0_s"),  # the simulator's tau0 as a fit on scan start t_w sees it
    "tau_star_s": ("tau_star_s",),
    "beta_mean": ("beta",),
    "q1_inv_angstrom": ("q1_inv_angstrom", "q1"),
    "alpha": ("alpha", "global.alpha"),
}


def _num(v: Any) -> float | None:
    if isinstance(v, list) and v:  # per q bin, union last
        v = v[-1]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _get(entry: dict[str, Any], dotted: str, root: dict[str, Any]) -> Any:
    obj: Any = root if dotted.startswith("global.") else entry
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _lookup(entry: dict[str, Any], keys: tuple[str, ...], root: dict[str, Any]) -> float | None:
    for k in keys:
        v = _num(_get(entry, k, root))
        if v is not None:
            return v
    return None


def _entries(obj: Any, id_key: str) -> list[dict[str, Any]]:
    """A list of dicts from a list, or from a {id: dict} mapping (id stored under ID_KEY)."""
    if isinstance(obj, list):
        return [x for x in obj if isinstance(x, dict)]
    if isinstance(obj, dict):
        return [{id_key: k, **v} for k, v in obj.items() if isinstance(v, dict)]
    return []


def summary_slopes(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"S1/compression": {"dq1_dp_slope": ...}}`` from any summary.json key containing ``slope``."""
    out: dict[str, dict[str, Any]] = {}
    for k, v in summary.items():
        if "slope" in k.lower() and isinstance(v, dict):
            for name, entry in v.items():
                if isinstance(entry, dict):
                    out[str(name)] = entry
                elif _num(entry) is not None:
                    out[str(name)] = {"dq1_dp_slope": entry}
    return out


def slope_value(entry: dict[str, Any]) -> float | None:
    for k, v in entry.items():
        if "slope" in k and not k.endswith("err"):
            return _num(v)
    return None


def compare(c: Campaign) -> list[dict[str, Any]]:
    """Rows ``{level, item, quantity, truth, recovered, rel_diff}`` for every matching key."""
    t = c.truth
    if not isinstance(t, dict):
        return []
    rows: list[dict[str, Any]] = []

    def add(level: str, item: str, quantity: str, tv: float | None, rv: Any) -> None:
        rv = _num(rv)
        if tv is not None and rv is not None:
            rows.append({"level": level, "item": item, "quantity": quantity, "truth": tv, "recovered": rv})

    union = {r["scan"]: r for r in c.union_rows()}
    struct = {r["scan"]: r for r in c.rows("structure")}
    scan_truth = {str(e.get("scan")): e for e in _entries(t.get("scans"), "scan")}
    for name, e in scan_truth.items():
        rec = {**union.get(name, {}), **struct.get(name, {})}
        for col, keys in SCAN_KEYS.items():
            if col in rec:
                add("scan", name, col, _lookup(e, keys, t), rec[col])

    tables = [c.rows("isobars"), c.rows("aging"), c.rows("qdep")]
    for e in _entries(t.get("isobars"), "isobar"):
        try:
            key = isobar_key(e)
        except (KeyError, TypeError, ValueError):
            continue
        item = f"{key[0]} {key[1]} {key[2]:g} GPa"
        taus = [_lookup(scan_truth.get(n, {}), SCAN_KEYS["tau_s"], t) for n in e.get("scans") or []]
        taus = [x for x in taus if x is not None]
        for table in tables:
            rec = next((r for r in table if isobar_key(r) == key), None)
            if rec is None:
                continue
            if "tau_mean_s" in rec and taus:
                add("isobar", item, "tau_mean_s", sum(taus) / len(taus), rec["tau_mean_s"])
            for col, keys in ISOBAR_KEYS.items():
                if col in rec:
                    add("isobar", item, col, _lookup(e, keys, t), rec[col])

    rec_slopes = summary_slopes(c.summary)
    for sample, e in (t.get("samples") or {}).items():
        for stage, tv in ((e.get("dq1_dP") or {}) if isinstance(e, dict) else {}).items():
            entry = rec_slopes.get(f"{sample}/{stage}")
            if entry is not None:
                add("sample", f"{sample} {stage}", "dq1/dP (1/Å/GPa)", _num(tv), slope_value(entry))
    for r in rows:
        tv, rv = r["truth"], r["recovered"]
        r["rel_diff"] = (rv - tv) / abs(tv) if tv and math.isfinite(tv) and math.isfinite(rv) else math.nan
    return rows


def truth_comparison(c: Campaign) -> str:
    """HTML for the truth section ('' when the campaign has no truth.json)."""
    if c.truth is None:
        return ""
    rows = compare(c)
    rel = os.path.relpath(c.truth_path, c.outdir).replace(os.sep, "/") if c.truth_path else "truth.json"
    link = f'<p>Ground truth: <a href="{html.escape(rel)}">{html.escape(rel)}</a></p>'
    if not rows:
        raw = html.escape(json.dumps(c.truth, indent=1)[:20000])
        return (link + '<p class="note">No truth key matched a recovered column; the truth file:</p>'
                f"<details><summary>truth.json</summary><pre>{raw}</pre></details>")
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["level"], r["quantity"]), []).append(r["rel_diff"])
    summary = []
    for (level, quantity), diffs in groups.items():
        d = [abs(x) for x in diffs if math.isfinite(x)]
        summary.append({"level": level, "quantity": quantity, "n": len(diffs), "n_recovered": len(d),
                        "median_abs_rel_diff": float(np.median(d)) if d else math.nan,
                        "max_abs_rel_diff": max(d) if d else math.nan})
    cols = ["level", "item", "quantity", "truth", "recovered", "rel_diff"]
    full = table_html(cols, rows, table_id="truth",
                      bad=lambda r: math.isfinite(r["rel_diff"]) and abs(r["rel_diff"]) > 0.25)
    return (link + "<p>Relative difference (recovered − truth)/|truth| by quantity:</p>"
            + table_html(list(summary[0]), summary, table_id="truth-summary")
            + f"<details><summary>every value ({len(rows)} rows; red: off by more than 25 %)</summary>{full}</details>")
