"""Synthetic detector geometry: a q-map around the FSDP, module gaps, dead and hot pixels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Detector:
    """A detector set-up (one manifest `[[geometry]]`).

    Attributes
    ----------
    name : str
    qmap : ndarray (ny, nx) float64
        q in 1/A per pixel.
    gap, dead, hot : ndarray (ny, nx) bool
        Module gaps (dtype maximum in every frame of the dense formats), dead pixels
        (always 0) and hot pixels (dtype maximum in some frames).  Gaps and dead pixels
        are in the manifest mask; hot pixels are left to the dtype-maximum rule.
    q_edges : tuple of float
        Bin edges in 1/A.
    """

    name: str
    qmap: np.ndarray
    gap: np.ndarray
    dead: np.ndarray
    hot: np.ndarray
    q_edges: tuple[float, ...]
    wavelength_a: float = 0.5904
    pixel_size_m: float = 75e-6
    distance_m: float = 5.0
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.qmap.shape)  # type: ignore[return-value]

    @property
    def mask(self) -> np.ndarray:
        """Manifest mask (ny, nx) uint8, nonzero = bad: 1 gap, 2 dead."""
        m = np.zeros(self.shape, np.uint8)
        m[self.gap] = 1
        m[self.dead] = 2
        return m

    @property
    def pixel_mask(self) -> np.ndarray:
        """Dectris-style pixel mask (ny, nx) uint32: bit 0 gap, bit 1 dead, bit 3 hot."""
        m = np.zeros(self.shape, np.uint32)
        m[self.gap] |= 1
        m[self.dead] |= 2
        m[self.hot] |= 8
        return m

    @property
    def valid(self) -> np.ndarray:
        """Pixels a correct pipeline keeps (ny, nx) bool: not gap, dead or hot."""
        return ~(self.gap | self.dead | self.hot)


def make_detector(
    name: str = "run1",
    shape: tuple[int, int] = (64, 64),
    *,
    q_range: tuple[float, float] = (2.70, 3.05),
    centre: tuple[float, float] = (0.5, -2.0),
    gap_rows: tuple[int, ...] = (),
    gap_cols: tuple[int, ...] = (),
    n_dead: int = 0,
    n_hot: int = 0,
    q_edges: tuple[float, ...] | None = None,
    seed: int = 0,
) -> Detector:
    """Build a detector whose q runs across it from q_range[0] to q_range[1].

    The rings are arcs about a beam centre off the detector (`centre` in units of the
    detector height and width, from pixel (0, 0)); q is linear in the distance to it and
    spans `q_range` exactly over the pixels.

    Parameters
    ----------
    name : geometry name.
    shape : (ny, nx) pixels.
    q_range : (q_min, q_max) in 1/A.
    centre : beam centre (row, col) in units of (ny, nx).
    gap_rows, gap_cols : rows / columns of module gaps.
    n_dead, n_hot : number of dead / hot pixels, drawn among the others.
    q_edges : bin edges in 1/A; default 4 equal bins inside q_range.
    seed : random seed for dead/hot positions.

    Returns
    -------
    Detector
    """
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    r = np.hypot(yy - centre[0] * ny, xx - centre[1] * nx)
    q = q_range[0] + (r - r.min()) / (r.max() - r.min()) * (q_range[1] - q_range[0])
    gap = np.zeros(shape, bool)
    gap[list(gap_rows), :] = True
    gap[:, list(gap_cols)] = True
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    free = np.flatnonzero(~gap.ravel())
    picks = rng.choice(free, size=n_dead + n_hot, replace=False)
    dead = np.zeros(ny * nx, bool)
    hot = np.zeros(ny * nx, bool)
    dead[picks[:n_dead]] = True
    hot[picks[n_dead:]] = True
    if q_edges is None:
        lo, hi = q_range
        q_edges = tuple(np.round(np.linspace(lo + 0.01, hi - 0.02, 5), 4))
    return Detector(
        name=name,
        qmap=q,
        gap=gap,
        dead=dead.reshape(shape),
        hot=hot.reshape(shape),
        q_edges=tuple(float(e) for e in q_edges),
        meta={"centre": list(centre), "q_range": list(q_range)},
    )
