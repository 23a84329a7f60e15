"""End to end: `daskxpcs demo` on the tiny preset simulates, runs and reports a campaign."""

from __future__ import annotations

import math
from html.parser import HTMLParser



class _Srcs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a["src"])
        elif tag == "a" and not a.get("href", "#").startswith("#"):
            self.srcs.append(a["href"])


def test_demo_tiny_end_to_end(tmp_path, capsys):
    from daskxpcs.demo import run_demo
    from daskxpcs.report.load import load_campaign
    from daskxpcs.report.truth import compare

    rc = run_demo(tmp_path / "demo", preset="tiny")
    assert rc == 0
    results = tmp_path / "demo" / "results"
    report = results / "report.html"
    assert f"report: {report.resolve()}" in capsys.readouterr().out

    p = _Srcs()
    p.feed(report.read_text(encoding="utf-8"))
    figures = [s for s in p.srcs if s.startswith("figures/")]
    assert len(figures) >= 10
    for src in p.srcs:
        assert (results / src).is_file(), src
    for kind in ("ttcf_", "g2_", "tau_pressure", "aging_", "qdep_", "c_distributions_", "delta_c_pressure",
                 "q1_pressure", "intensity_", "detector_"):
        assert any(kind in s for s in figures), kind

    # the report sets every simulated scan's union tau beside the recovered one, and they agree
    c = load_campaign(results)
    rows = [r for r in compare(c) if r["level"] == "scan" and r["quantity"] == "tau_s"]
    assert {r["item"] for r in rows} == set(c.truth["scans"])
    good = [r for r in rows if math.isfinite(r["recovered"])]
    assert len(good) >= len(rows) - 1
    for r in good:
        assert abs(r["rel_diff"]) < 0.25, r
