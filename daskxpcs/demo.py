"""``daskxpcs demo``: simulate a small two-sample campaign, run it, and write its report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def run_demo(out: Path | str, *, scheduler: Any = "threads", preset: str = "demo", seed: int = 0) -> int:
    """Simulate a campaign under ``OUT/campaign``, process it into ``OUT/results`` and report.

    Parameters
    ----------
    out : Path
        Demo folder (created).
    scheduler : str
        Any ``--scheduler`` value (threads by default).
    preset : str
        Simulator preset: ``"demo"`` (two samples through a pressure cycle, about two minutes
        on two cores) or ``"tiny"`` (seconds; tests).
    seed : int
        Simulator seed.

    Returns
    -------
    int
        The exit status of the run: 0 when every scan succeeded.
    """
    from daskxpcs.campaign import run_campaign
    from daskxpcs.simulate import simulate_campaign

    out = Path(out)
    t0 = time.perf_counter()
    print(f"daskxpcs demo: simulating the {preset!r} campaign in {out / 'campaign'} ...", flush=True)
    manifest = simulate_campaign(out / "campaign", preset=preset, seed=seed)
    t1 = time.perf_counter()
    print(f"daskxpcs demo: simulated in {t1 - t0:.1f} s; running {manifest} ...", flush=True)
    results = out / "results"
    rc = run_campaign(manifest, out=results, scheduler=scheduler, report=True)
    report = results / "report.html"
    if not report.is_file():  # the run could not write it (e.g. it stopped early): try once more here
        from daskxpcs.report import write_report

        report = write_report(results)
    print(f"daskxpcs demo: done in {time.perf_counter() - t0:.1f} s (exit status {rc})")
    print(f"daskxpcs demo: report: {report.resolve()}")
    print(f"daskxpcs demo: open it with a browser, e.g. file://{report.resolve()}")
    return rc
