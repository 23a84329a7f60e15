"""daskxpcs: XPCS campaign analysis on Dask.

The public entry points, loaded on first use so that ``daskxpcs --version`` stays light:
``simulate_campaign``, ``correlate_scan``, ``correlate_graph``, ``run_campaign``,
``load_manifest``, ``write_report``, ``scheduler_context``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "simulate_campaign": "daskxpcs.simulate",
    "correlate_scan": "daskxpcs.correlate",
    "correlate_graph": "daskxpcs.correlate",
    "run_campaign": "daskxpcs.campaign",
    "load_manifest": "daskxpcs.campaign",
    "write_report": "daskxpcs.report",
    "scheduler_context": "daskxpcs.cluster",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'daskxpcs' has no attribute {name!r}")
