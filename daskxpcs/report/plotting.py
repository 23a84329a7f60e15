"""Plot helpers shared by the figures: atomic saving, pressure colours, KWW curves, decimation."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from daskxpcs.atomic import atomic_open

DPI = 110
STAGE_FILL = {"compression": True, "decompression": False}
SAMPLE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure: rendered by Agg on save, whatever backend the session uses (headless)."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig: Figure, path: Path) -> Path:
    """Write FIG as PNG to PATH atomically (temp file in the same folder, then os.replace)."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI)
    return path


def slug(*parts: Any) -> str:
    """A file-name-safe join of PARTS (pressures printed with 2 decimals)."""
    out = []
    for p in parts:
        if isinstance(p, float):
            p = f"{p:.2f}GPa"
        out.append(re.sub(r"[^A-Za-z0-9.+-]+", "-", str(p)).strip("-"))
    return "_".join(out)


class PressureColours:
    """One colour scale for pressure shared by every figure of a campaign."""

    def __init__(self, pressures: list[float], cmap: str = "viridis"):
        ps = [p for p in pressures if np.isfinite(p)] or [0.0, 1.0]
        lo, hi = min(ps), max(ps)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        self.norm = Normalize(lo, hi)
        self.cmap = colormaps[cmap]

    def __call__(self, p: float):
        return self.cmap(self.norm(p))

    def colorbar(self, fig: Figure, ax, label: str = "pressure (GPa)"):
        sm = ScalarMappable(norm=self.norm, cmap=self.cmap)
        return fig.colorbar(sm, ax=ax, label=label)


def value_colours(values: list[float], cmap: str = "plasma") -> tuple[Normalize, Any]:
    """A Normalize and colormap spanning VALUES (e.g. t_w within one isobar)."""
    v = [x for x in values if np.isfinite(x)] or [0.0, 1.0]
    lo, hi = min(v), max(v)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    return Normalize(lo, hi), colormaps[cmap]


def kww(dt: np.ndarray, tau: float, beta: float, contrast: float, baseline: float) -> np.ndarray:
    """g2 = baseline + contrast * exp(-2 (dt/tau)^beta) (DESIGN.md KWW model)."""
    dt = np.asarray(dt, dtype=float)
    return baseline + contrast * np.exp(-2.0 * (dt / tau) ** beta)


def finite(*values: float) -> bool:
    return all(v is not None and isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def block_mean(y: np.ndarray, max_points: int) -> tuple[np.ndarray, int]:
    """Average Y over consecutive blocks so at most MAX_POINTS remain; returns (values, block)."""
    y = np.asarray(y, dtype=float)
    block = max(1, math.ceil(y.size / max_points))
    n = (y.size // block) * block
    if block == 1:
        return y, 1
    return y[:n].reshape(-1, block).mean(axis=1), block


def fmt(v: Any, digits: int = 4) -> str:
    """Short text for a number (NaN as an en dash)."""
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return np.format_float_positional(v, precision=digits, unique=True, fractional=False, trim="-")
        return f"{v:.{max(1, digits - 1)}e}"
    return str(v)


def tidy_log_axis(ax, which: str = "y") -> None:
    """Plain-number ticks (1, 2, 5, 10, ...) on a log axis spanning less than two decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.yaxis if which == "y" else ax.xaxis
    lo, hi = (ax.get_ylim() if which == "y" else ax.get_xlim())
    if not (lo > 0 and hi > 0) or hi / lo >= 100:
        return
    subs = (1.0, 2.0, 3.0, 5.0) if hi / lo < 12 else (1.0, 2.0, 5.0)
    if hi / lo < 1.5:
        subs = tuple(float(x) for x in range(1, 10))
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
