"""The HTML report: every figure made and linked, links resolve, tables and notes present."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import zarr
from matplotlib.image import imread

from daskxpcs.report import write_report
from daskxpcs.report.html import failed_scans

from _report_synthetic import COLUMNS, FAILED_SCAN, ISOBARS


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.imgs: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        if tag == "a" and "href" in a:
            self.refs.append(a["href"])
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
        if tag == "tr" and self._table:
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        if tag == "table":
            self._table = None


def _parse(report: Path) -> _Links:
    p = _Links()
    p.feed(report.read_text(encoding="utf-8"))
    return p


def _expected_figures() -> set[str]:
    keys = [(s, st, p) for s, st, p, *_ in ISOBARS]
    pairs = sorted({(s, st) for s, st, _ in keys})
    names = {"q1_pressure.png", "tau_pressure.png", "delta_c_pressure.png", "detector_S1.png"}
    names |= {f"isf_pressure_{s}.png" for s in ("S1", "S2")}
    names.add("hysteresis_S1.png")  # S2 has no decompression
    names |= {f"ttcf_{s}_{st}_{p:.2f}GPa.png" for s, st, p in keys}
    names |= {f"aging_{s}_{st}_{p:.2f}GPa.png" for s, st, p, n, _ in ISOBARS if n >= 3}
    for kind in ("g2", "qdep", "c_distributions", "intensity"):
        names |= {f"{kind}_{s}_{st}.png" for s, st in pairs}
    return names


def test_every_figure_made_and_referenced(reported_output):
    report = reported_output / "report.html"
    links = _parse(report)
    made = {p.name for p in (reported_output / "figures").glob("*.png")}
    assert made == _expected_figures()
    assert {Path(s).name for s in links.imgs} == made
    assert all(not Path(s).is_absolute() for s in links.imgs + links.refs)


def test_every_link_resolves(reported_output):
    links = _parse(reported_output / "report.html")
    for ref in links.imgs + [r for r in links.refs if not r.startswith("#")]:
        assert (reported_output / ref).is_file(), ref
    anchors = [r[1:] for r in links.refs if r.startswith("#")]
    text = (reported_output / "report.html").read_text()
    for a in anchors:
        assert f'id="{a}"' in text, a


def test_no_temporary_files_left(reported_output):
    leftovers = [p.name for p in reported_output.rglob("*.tmp")]
    assert leftovers == []


def test_tables_rendered_from_csvs(reported_output):
    links = _parse(reported_output / "report.html")
    for name, cols in COLUMNS.items():
        rows = links.tables[f"table-{name}"]
        assert rows[0] == cols
        with open(reported_output / f"{name}.csv") as fh:
            n_csv = sum(1 for _ in fh) - 1
        assert len(rows) - 1 == n_csv, name
    iso = links.tables["table-isobars"]
    tau_col = iso[0].index("tau_mean_s")
    with open(reported_output / "isobars.csv") as fh:
        first = fh.read().splitlines()[1].split(",")
    assert float(iso[1][tau_col]) == pytest.approx(float(first[COLUMNS["isobars"].index("tau_mean_s")]), rel=1e-3)


def test_failed_scans_parameters_timings_listed(reported_output):
    text = (reported_output / "report.html").read_text()
    links = _parse(reported_output / "report.html")
    failed = links.tables["failed-scans"]
    assert failed[1][0] == "S2_c6.3_s04" and "truncated" in failed[1][1]
    assert failed[2] == ["isobar S9 compression 1.0 GPa", "no scans"]
    assert "ttcf_bin" in text and "stages.correlate_s" in text
    per_scan = links.tables["timings-per-scan"]
    assert per_scan[0] == ["scan", "analyse_s", "correlate_s"] and per_scan[1] == ["S1_c0.1_s01", "0.2", "1.5"]
    slopes = links.tables["slopes"]
    assert slopes[0][:2] == ["fit", "dq1_dp_slope"] and slopes[1][:2] == ["S1/compression", "0.0049"]
    # the flagged fit is marked in the scans table
    assert f'<tr class="bad"><td class="t">{FAILED_SCAN}</td>' in text


def test_missing_detector_image_is_a_note_not_a_crash(reported_output):
    text = (reported_output / "report.html").read_text()
    assert "Detector, S2: skipped" in text
    assert "no mean_image in results and no source_store" in text


def test_truth_beside_recovered(reported_output):
    links = _parse(reported_output / "report.html")
    rows = links.tables["truth"]
    header = rows[0]
    got = {(r[header.index("item")], r[header.index("quantity")]): r for r in rows[1:]}
    # per scan: tau recovered exactly (the fixture's fits are the truth); the flagged fit shows a dash
    r = got[("S2_c6.3_s02", "tau_s")]
    assert float(r[header.index("truth")]) == pytest.approx(float(r[header.index("recovered")]), rel=1e-3)
    assert got[(FAILED_SCAN, "tau_s")][header.index("recovered")] == "–"
    # per isobar: aging tau* from the fit of tau(t_w) equals the simulated one
    r = got[("S2 compression 6.3 GPa", "tau_star_s")]
    assert float(r[header.index("recovered")]) == pytest.approx(3000.0, rel=1e-3)
    assert float(got[("S1 compression", "dq1/dP (1/Å/GPa)")][header.index("truth")]) == 0.0049
    r = got[("S1 compression 3.3 GPa", "tau_mean_s")]  # mean over the two converged scans vs all three
    assert float(r[header.index("truth")]) > float(r[header.index("recovered")])


def _keep_rows(path: Path, keep) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if keep(ln)]) + "\n")


def test_partial_campaign_still_reports(synthetic_output, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(synthetic_output, out)
    (out / "aging.csv").unlink()
    (out / "qdep.csv").write_text(",".join(COLUMNS["qdep"]) + "\n")
    (out / "summary.json").write_text("{not json")
    for g in (out / "results.zarr").iterdir():  # one scan left (keeps the test fast)
        if g.is_dir() and g.name != "S1_c3.3_s01":
            shutil.rmtree(g)
    for name in ("scans", "isobars", "structure"):
        _keep_rows(out / f"{name}.csv", lambda ln: ln.startswith("S1"))
    half = zarr.open_group(str(out / "results.zarr"), mode="a").create_group("S1_c3.3_s09")  # no arrays yet
    half.attrs.update({"sample": "S1", "stage": "compression", "pressure_gpa": 3.3, "t_w_s": 5000.0})
    report = write_report(out)
    text = report.read_text()
    assert "aging.csv not found" in text
    assert "Aging: skipped" in text
    assert "summary.json unreadable" in text
    assert 'class="fail"' not in text  # skipped with reasons, no figure crashed
    imgs = _parse(report).imgs
    assert "figures/ttcf_S1_compression_3.30GPa.png" in imgs
    for src in imgs:
        assert (out / src).is_file()


def test_empty_directory_reports(tmp_path):
    report = write_report(tmp_path)
    text = report.read_text()
    assert "results.zarr not found" in text and "scans.csv not found" in text
    assert _parse(report).imgs == []


def test_only_expected_skips(reported_output):
    text = (reported_output / "report.html").read_text()
    assert 'class="fail"' not in text
    skipped = sorted(set(re.findall(r'<p class="note">([^:<]+): skipped:', text)))
    assert skipped == ["Detector, S2", "Hysteresis, S2"]


def test_failed_scans_forms():
    assert failed_scans({"failed_scans": {"a": "bad file"}}) == [{"scan": "a", "reason": "bad file"}]
    assert failed_scans({"failed": [{"scan": "b", "reason": "r"}], "other": 1}) == [{"scan": "b", "reason": "r"}]
    assert failed_scans({}) == []


def test_figures_are_not_blank(reported_output):
    for png in sorted((reported_output / "figures").glob("*.png")):
        img = imread(png)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, png.name
        assert float(np.var(img[..., :3])) > 1e-3, png.name


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_headless_screenshot_not_blank(reported_output, tmp_path):
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", f"--screenshot={shot}",
         (reported_output / "report.html").resolve().as_uri()],
        check=True, timeout=120, capture_output=True,
    )
    img = imread(shot)
    assert float(np.var(img[..., :3])) > 0
