"""The campaign report: every figure as ``figures/*.png`` and one ``report.html`` that opens from disk."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daskxpcs.atomic import atomic_write_text
from daskxpcs.report import figures as F
from daskxpcs.report.load import TABLES, Campaign, MissingInput, isobar_key, load_campaign
from daskxpcs.report.markup import cell as _cell
from daskxpcs.report.markup import esc as _e
from daskxpcs.report.markup import table_html
from daskxpcs.report.plotting import fmt
from daskxpcs.report.truth import summary_slopes, truth_comparison

log = logging.getLogger(__name__)

SECTIONS = (
    ("structure", "Structure: FSDP position (Fig. 2b)"),
    ("pressure", "Dynamics against pressure (Fig. 2d-e)"),
    ("ttcf", "Two-time correlations per isobar (Fig. 3, S2)"),
    ("g2", "g2 and KWW fits per isobar"),
    ("aging", "Aging (Fig. 4a-b)"),
    ("qdep", "Wave-vector dependence (Fig. 4c)"),
    ("heterogeneity", "Dynamical heterogeneity (Fig. 5, S9)"),
    ("hysteresis", "Hysteresis (Fig. S5)"),
    ("detector", "Beam and detector (Fig. S2, S6)"),
)


SECTION_NOTES = {
    "structure": "FSDP maximum q1 of the time-averaged intensity per scan; lines: linear fits dq1/dP per sample "
                 "and stage (filled: compression, open: decompression).",
    "pressure": "⟨τ⟩: mean of the union-bin KWW τ over the scans of each isobar, error bar the standard deviation. "
                "ISFs: one scan per isobar at similar t_w, normalised by the fitted contrast and baseline.",
    "ttcf": "C(t1, t2) of the union q bin for each scan of an isobar (read decimated), with the mean intensity "
            "per pixel and frame below; the width of the diagonal band scales with τ.",
    "g2": "g2 of the union q bin for every scan, coloured by t_w; dotted: KWW fits "
          "g2 = baseline + contrast exp(−2 (δt/τ)^β).",
    "aging": "ISFs against δt and δt/τ (master curve), and τ against time since the pressure change with the fit "
             "τ = τ0 exp(t_w/τ*).",
    "qdep": "β(q) and τ(q) per isobar (mean ± std over scans), lines: τ = 1/(c q^α).",
    "heterogeneity": "C(t, t+τ) at δt = ⟨τ⟩, pooled over the scans of each isobar; ΔC_f is the width of the "
                     "smallest interval holding a fraction f of the values.",
    "hysteresis": "g2 in compression and decompression at the nearest pressures and most similar t_w.",
    "detector": "Intensity traces of every scan against the time since the pressure change; time-averaged "
                "detector image (grey: masked) with the q-bin edges and the q-bin map.",
}


@dataclass
class FigureEntry:
    """One figure of the report: its file, or why it is not there."""

    section: str
    title: str
    path: Path | None = None
    note: str | None = None
    failed: bool = False


def _attempt(entries: list[FigureEntry], section: str, title: str, fn: Callable[..., Path], *args) -> None:
    try:
        entries.append(FigureEntry(section, title, path=fn(*args)))
    except MissingInput as exc:
        entries.append(FigureEntry(section, title, note=f"skipped: {exc}"))
    except Exception as exc:  # a bad figure must not cost the whole report; it is shown as failed
        log.exception("figure %r failed", title)
        entries.append(FigureEntry(section, title, note=f"failed: {type(exc).__name__}: {exc}", failed=True))


def make_figures(c: Campaign, figdir: Path) -> list[FigureEntry]:
    """Make every figure the campaign's outputs allow.

    Parameters
    ----------
    c : Campaign
        From :func:`daskxpcs.report.load.load_campaign`.
    figdir : Path
        Folder for the PNGs (created).

    Returns
    -------
    list of FigureEntry
        In report order; entries whose inputs are missing carry a note instead of a path.
    """
    figdir.mkdir(parents=True, exist_ok=True)
    e: list[FigureEntry] = []
    pairs = F.samples_stages(c)
    samples = F.samples(c)
    _attempt(e, "structure", "q1 against pressure", F.fig_q1_pressure, c, figdir)
    _attempt(e, "pressure", "⟨τ⟩ against pressure", F.fig_tau_pressure, c, figdir)
    for sample in samples:
        _attempt(e, "pressure", f"ISFs against pressure, {sample}", F.fig_isf_pressure, c, sample, figdir)
    for key in c.isobars():
        _attempt(e, "ttcf", f"TTCF, {key[0]} {key[1]} {key[2]:g} GPa", F.fig_ttcf_isobar, c, key, figdir)
    for sample, stage in pairs:
        _attempt(e, "g2", f"g2, {sample} {stage}", F.fig_g2_isobars, c, sample, stage, figdir)
    aging_keys = sorted({isobar_key(r) for r in c.rows("aging")})
    if not aging_keys:
        e.append(FigureEntry("aging", "Aging", note="skipped: aging.csv has no rows (no isobar with >= 3 scans)"))
    for key in aging_keys:
        _attempt(e, "aging", f"Aging, {key[0]} {key[1]} {key[2]:g} GPa", F.fig_aging, c, key, figdir)
    for sample, stage in pairs:
        _attempt(e, "qdep", f"τ(q), {sample} {stage}", F.fig_qdep, c, sample, stage, figdir)
    for sample, stage in pairs:
        _attempt(e, "heterogeneity", f"C(t, t+τ), {sample} {stage}", F.fig_c_distributions, c, sample, stage,
                 figdir)
    _attempt(e, "heterogeneity", "ΔC against pressure", F.fig_delta_c, c, figdir)
    for sample in samples:
        _attempt(e, "hysteresis", f"Hysteresis, {sample}", F.fig_hysteresis, c, sample, figdir)
    for sample, stage in pairs:
        _attempt(e, "detector", f"Intensity traces, {sample} {stage}", F.fig_intensity_traces, c, sample, stage,
                 figdir)
    for sample in samples:
        _attempt(e, "detector", f"Detector, {sample}", F.fig_detector, c, sample, figdir)
    return e


# ----------------------------------------------------------------------------- HTML pieces

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1250px;
padding:1em 2em;color:#222;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em} th,td{border:1px solid #ccc;padding:2px 6px;
text-align:right} th{background:#f0f0f0;position:sticky;top:0} td.t,th.t{text-align:left}
tr.bad td{background:#fde8e8} figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444} .note{color:#8a5300;font-size:.9em} .fail{color:#b00}
nav a{margin-right:1em} .kv td:first-child{text-align:left;font-weight:600} details{margin:.5em 0}
.scroll{max-height:480px;overflow:auto;display:inline-block} .about{color:#555;max-width:60em}
"""


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        out: list[tuple[str, Any]] = []
        for k, v in d.items():
            out.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list) and d and all(isinstance(x, (dict, list)) for x in d):
        return [(prefix, json.dumps(d))]
    return [(prefix, d if not isinstance(d, list) else ", ".join(map(str, d)))]


def kv_html(d: Any) -> str:
    rows = _flatten(d)
    if not rows:
        return '<p class="note">none recorded</p>'
    return '<table class="kv">' + "".join(f"<tr><td>{_e(k)}</td>{_cell(v)}</tr>" for k, v in rows) + "</table>"


def failed_scans(summary: dict[str, Any]) -> list[dict[str, str]]:
    """Failed scans with reasons from summary.json (a list of dicts or a {scan: reason} mapping)."""
    out: list[dict[str, str]] = []
    for key, val in summary.items():
        if "fail" not in key.lower():
            continue
        if isinstance(val, dict):
            out += [{"scan": str(k), "reason": v if isinstance(v, str) else json.dumps(v)} for k, v in val.items()]
        elif isinstance(val, list):
            for item in val:
                if isinstance(item, dict):
                    name = item.get("scan", item.get("name"))
                    if name is None and "sample" in item:  # a failed isobar analysis
                        name = f"isobar {item['sample']} {item.get('stage', '')} {item.get('pressure_gpa', '')} GPa"
                    elif name is None:
                        name = ", ".join(f"{k}={v}" for k, v in item.items() if k != "reason") or "?"
                    reason = item.get("reason", item.get("error", json.dumps(item)))
                    out.append({"scan": str(name), "reason": str(reason)})
                else:
                    out.append({"scan": str(item), "reason": ""})
    return out


def timings(summary: dict[str, Any]) -> dict[str, Any]:
    t = summary.get("timings", summary.get("timings_s"))
    return t if isinstance(t, dict) else {}


def _slopes_html(c: Campaign) -> str:
    sl = summary_slopes(c.summary)
    if not sl:
        return ""
    cols = ["fit"] + sorted({k for e in sl.values() for k in e}, key=lambda k: ("slope" not in k, k))
    rows = [{"fit": name, **e} for name, e in sl.items()]
    return "<h3>FSDP slopes dq1/dP (1/Å per GPa)</h3>" + table_html(cols, rows, table_id="slopes")


def _timings_html(c: Campaign) -> str:
    t = dict(timings(c.summary))
    per_scan = t.pop("per_scan", None)
    out = kv_html(t)
    if isinstance(per_scan, dict) and per_scan:
        cols = ["scan"] + sorted({k for v in per_scan.values() if isinstance(v, dict) for k in v})
        rows = [{"scan": k, **(v if isinstance(v, dict) else {})} for k, v in per_scan.items()]
        out += f"<details><summary>per scan ({len(rows)})</summary>{table_html(cols, rows, table_id='timings-per-scan')}</details>"
    return out


def _campaign_name(c: Campaign) -> str:
    s = c.summary
    for cand in (s.get("campaign"), s.get("name"), (s.get("parameters") or {}).get("name")):
        if isinstance(cand, str) and cand:
            return cand
        if isinstance(cand, dict) and cand.get("name"):
            return str(cand["name"])
    return c.outdir.resolve().name


def _overview(c: Campaign, entries: list[FigureEntry]) -> str:
    union = c.union_rows()
    n_ok = sum(1 for r in union if int(r.get("fit_ok", 0) or 0) == 1)
    t = timings(c.summary)
    total = next((t[k] for k in ("total_s", "total", "wall_s") if k in t), None)
    items = [
        f"samples: {_e(', '.join(F.samples(c)) or 'none')}",
        f"scans with results: {len(c.scans)}; union-bin fits converged: {n_ok} of {len(union)}",
        f"isobars: {len(c.rows('isobars'))}; aging fits: {len(c.rows('aging'))}; "
        f"q-dependence fits: {len(c.rows('qdep'))}",
        f"failed scans: {len(failed_scans(c.summary))}",
        f"figures: {sum(1 for x in entries if x.path)} made, {sum(1 for x in entries if not x.path)} skipped",
    ]
    if total is not None:
        items.append(f"total run time: {_e(fmt(total))} s")
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" + _slopes_html(c)


def _figures_html(entries: list[FigureEntry], outdir: Path) -> str:
    parts = []
    for sec, title in SECTIONS:
        mine = [x for x in entries if x.section == sec]
        if not mine:
            continue
        parts.append(f'<h2 id="fig-{sec}">{_e(title)}</h2>')
        if sec in SECTION_NOTES:
            parts.append(f'<p class="about">{_e(SECTION_NOTES[sec])}</p>')
        for x in mine:
            if x.path is not None:
                rel = os.path.relpath(x.path, outdir).replace(os.sep, "/")
                parts.append(f'<figure><img src="{_e(rel)}" alt="{_e(x.title)}" loading="lazy">'
                             f"<figcaption>{_e(x.title)}</figcaption></figure>")
            else:
                cls = "fail" if x.failed else "note"
                parts.append(f'<p class="{cls}">{_e(x.title)}: {_e(x.note)}</p>')
    return "\n".join(parts)


def _tables_html(c: Campaign) -> str:
    parts = ['<h2 id="tables">Result tables</h2>']
    for name in TABLES:
        if name not in c.tables:
            parts.append(f'<p class="note">{name}.csv: not found</p>')
            continue
        rows = c.tables[name]
        link = f'<a href="{name}.csv">{name}.csv</a>'
        tab = table_html(c.columns[name], rows, table_id=f"table-{name}",
                         bad=(lambda r: int(r.get("fit_ok", 1) or 0) != 1) if name == "scans" else None)
        if name == "scans":
            parts.append(f"<details><summary>{link} ({len(rows)} rows; red: fit flagged)</summary>{tab}</details>")
        else:
            parts.append(f"<h3>{link} ({len(rows)} rows)</h3>{tab}")
    return "\n".join(parts)


def render_html(c: Campaign, entries: list[FigureEntry]) -> str:
    """The whole report page (self-contained CSS; images and tables linked relatively)."""
    name = _campaign_name(c)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    failed = failed_scans(c.summary)
    nav = " ".join(f'<a href="#fig-{s}">{_e(t.split(" (")[0])}</a>' for s, t in SECTIONS
                   if any(x.section == s for x in entries))
    truth = truth_comparison(c)
    notes = [x for x in entries if x.path is None]
    body = [
        f"<h1>daskxpcs report: {_e(name)}</h1>",
        f"<p>Output directory <code>{_e(c.outdir.resolve())}</code>, written {now}.</p>",
        f'<nav>{nav} <a href="#tables">Tables</a> <a href="#params">Parameters</a></nav>',
        '<h2 id="summary">Campaign summary</h2>',
        _overview(c, entries),
        '<h2 id="failed">Failed scans</h2>',
        table_html(["scan", "reason"], failed, table_id="failed-scans") if failed
        else "<p>none: every scan succeeded.</p>",
    ]
    if truth:
        body += ['<h2 id="truth">Recovered values against the simulator\'s truth</h2>', truth]
    body.append(_figures_html(entries, c.outdir))
    body.append(_tables_html(c))
    body += ['<h2 id="params">Parameters</h2>', kv_html(c.summary.get("parameters") or {}),
             '<h2 id="timings">Timings (s)</h2>', _timings_html(c),
             '<h2 id="versions">Versions</h2>', kv_html(c.summary.get("versions") or {})]
    if notes or c.problems:
        body.append('<h2 id="notes">Notes</h2><ul>')
        body += [f"<li>{_e(p)}</li>" for p in c.problems]
        body += [f'<li class="{"fail" if x.failed else "note"}">{_e(x.title)}: {_e(x.note)}</li>' for x in notes]
        body.append("</ul>")
    body.append('<p><a href="summary.json">summary.json</a></p>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(name)} – daskxpcs</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(outdir: Path | str) -> Path:
    """Make every figure into ``OUTDIR/figures/*.png`` and write ``OUTDIR/report.html``.

    Parameters
    ----------
    outdir : Path
        A campaign output directory (tables, summary.json, results.zarr; DESIGN.md "Results").

    Returns
    -------
    Path
        The report page. A figure whose inputs are missing is skipped with a note in the page.
    """
    outdir = Path(outdir)
    c = load_campaign(outdir)
    entries = make_figures(c, outdir / "figures")
    return atomic_write_text(outdir / "report.html", render_html(c, entries))
