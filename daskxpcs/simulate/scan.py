"""One synthetic XPCS scan: speckle intensity with an exact KWW correlation, then photon counts.

Model, per valid pixel p and frame t (frame period dt):

    I_p(t) = r_p b(t) [ (1 - f) / M sum_m |E_pm(u_p(t))|^2 + f ],   n_p(t) ~ Poisson(I_p(t))

* E_pm: M independent unit circular complex Gaussian fields (see `field.py`), so that
  g2 - 1 = (1 - f)^2 / M * exp(-2 (dt / tau)^beta): the contrast c sets the static
  (non-interfering) fraction f = 1 - sqrt(c M).
* u_p(t) = s_p U(t): internal time.  U(t) = integral of speed(t) / tau(t) with
  tau(t) = tau_s exp(t / tau_star) (aging inside the scan; none when tau_star is None),
  speed(t) a piecewise-constant rate factor (heterogeneous dynamics), and
  s_p = (q_p / q_ref)^alpha so that tau_p = tau / s_p.  An avalanche at frame a starts an
  independent field: correlations across it vanish.
* r_p: the FSDP profile, a Lorentzian of q centred on q1 over a flat background,
  normalised so that the mean over valid pixels is `rate` photons / pixel / frame.
* b(t) = 1 + beam_rms * N(0, 1): frame-wise beam intensity.

Sampling in internal time.  Within an avalanche-free segment the field lives on a uniform
grid u = j h.  When the frame increments of U are integer multiples of their minimum
(constant tau, rate factors in {1/2, 1, 2, ...}) h is that minimum and every frame sits on
the grid: the sampled covariance is exact.  With aging inside the scan the increments
shrink smoothly; h is then the smallest increment / `oversample` and each frame takes the
nearest grid point (internal-time error <= h / 2).  The truth (`expected_g2`) is computed
from the grid positions actually used, so it is exact for the data either way.

Memory.  The time process is exact only over the whole scan, so fields are generated per
detector row over all frames and written into a frame-major counts array; above
`memmap_bytes` that array is a temporary file (np.memmap), streamed out in frame blocks
by `iter_scan_blocks`.  Peak memory is then one row's fields (complex64 for big rows),
a few hundred MB for 10 000 frames of 1024 px, whatever the number of rows.

Cost O(T x pixels x log T) whatever the count rate.  `iter_scan_blocks(..., method="renewal")`
selects the generator of `renewal.py` instead: piecewise-constant speckle renewed as a
Poisson process in the same internal time, cost O(pieces + photons), whose g2 equals this
model's for beta = 1 only (it requires spec.beta = 1, and the truth is then that of beta = 1).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import curve_fit

from daskxpcs.kernels.diag import lag_ladder
from daskxpcs.simulate.field import circulant_eigenvalues, embedding_size, kww_field
from daskxpcs.simulate.geometry import Detector, make_detector

#: log(s_p) is quantised on this step so that eigenvalues are shared between pixels
#: (tau error <= 5e-5 relative).
_LOG_S_STEP = 1e-4
#: complex64 field generated at once per worker thread (columns of a row are chunked to fit)
_FIELD_BYTES = 32 << 20
#: memory allowed to the generator threads together (workers are capped to fit)
_WORKER_BYTES = 1536 << 20


@dataclass(frozen=True)
class ScanSpec:
    """Parameters of one synthetic scan (times in s, q in 1/A).

    Attributes
    ----------
    n_frames, frame_time_s : frames and frame period.
    tau_s : relaxation time at q_ref at the first frame, before rate factors.
    beta : KWW exponent, 0 < beta <= 2.
    contrast : g2(0+) - 1 of a single pixel; contrast * n_modes <= 1.
    n_modes : independent coherent modes summed per pixel.
    rate : mean photons per valid pixel per frame.
    alpha, q_ref : tau_p = tau (q_p / q_ref)^-alpha.
    q1, fsdp_hwhm, fsdp_background : intensity profile vs q (Lorentzian + flat).
    tau_star_s : aging inside the scan, tau(t) = tau_s exp(t / tau_star_s); None = none.
    rate_segments : ((start_frame, speed), ...) piecewise speed factors (speed 2 halves tau).
    avalanches : frames at which the field is replaced by an independent one.
    beam_rms : relative rms of the frame-wise beam intensity.
    hot_frame_fraction : fraction of frames in which hot pixels hold the dtype maximum.
    oversample : internal-time grid refinement when frames are not on a common grid.
    dtype : dense counts dtype, "uint32" or "uint16".
    seed : random seed.
    """

    n_frames: int
    frame_time_s: float = 0.1
    tau_s: float = 2.0
    beta: float = 1.0
    contrast: float = 0.2
    n_modes: int = 1
    rate: float = 0.1
    alpha: float = 1.0
    q_ref: float = 2.87
    q1: float = 2.87
    fsdp_hwhm: float = 0.15
    fsdp_background: float = 0.5
    tau_star_s: float | None = None
    rate_segments: tuple[tuple[int, float], ...] = ()
    avalanches: tuple[int, ...] = ()
    beam_rms: float = 0.0
    hot_frame_fraction: float = 0.05
    oversample: int = 2
    dtype: str = "uint32"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.beta <= 2.0:
            raise ValueError(f"beta must be in (0, 2], got {self.beta}")
        if not 0.0 < self.contrast * self.n_modes <= 1.0:
            raise ValueError(f"need 0 < contrast * n_modes <= 1, got {self.contrast} * {self.n_modes}")
        if self.n_frames < 2 or self.tau_s <= 0 or self.frame_time_s <= 0 or self.rate <= 0:
            raise ValueError("n_frames >= 2, tau_s, frame_time_s and rate > 0 required")
        if np.dtype(self.dtype) not in (np.dtype(np.uint16), np.dtype(np.uint32)):
            raise ValueError(f"dtype must be uint16 or uint32, got {self.dtype}")

    @property
    def static_fraction(self) -> float:
        return 1.0 - float(np.sqrt(self.contrast * self.n_modes))

    @property
    def duration_s(self) -> float:
        return self.n_frames * self.frame_time_s


# --------------------------------------------------------------------------- time


@dataclass(frozen=True)
class TimeGrid:
    """Frames placed on internal-time grids (one per avalanche-free segment).

    Attributes
    ----------
    segment : ndarray (T,) int, segment of each frame.
    index : ndarray (T,) int64, grid index of each frame inside its segment.
    h : ndarray (n_seg,) grid step per segment, in units of tau at q_ref.
    n_grid : ndarray (n_seg,) grid points per segment.
    starts : ndarray (n_seg + 1,) first frame of each segment, then T.
    exact : bool, True when every frame is on the grid without rounding.
    """

    segment: np.ndarray
    index: np.ndarray
    h: np.ndarray
    n_grid: np.ndarray
    starts: np.ndarray
    exact: bool


def frame_speed(spec: ScanSpec) -> np.ndarray:
    """Rate factor per frame interval (T - 1,), from `rate_segments`."""
    speed = np.ones(spec.n_frames - 1)
    for start, factor in sorted(spec.rate_segments):
        if factor <= 0:
            raise ValueError(f"rate factor must be > 0, got {factor}")
        speed[max(int(start), 0) :] = factor
    return speed


def internal_increments(spec: ScanSpec) -> np.ndarray:
    """Internal-time increments U(t_{k+1}) - U(t_k) at q_ref, (T - 1,), in units of tau."""
    t = np.arange(spec.n_frames, dtype=np.float64) * spec.frame_time_s
    if spec.tau_star_s is None:
        inc = np.full(spec.n_frames - 1, spec.frame_time_s / spec.tau_s)
    else:
        ts = spec.tau_star_s
        # exact integral of dt / (tau_s exp(t / tau*)) over each frame interval
        inc = (ts / spec.tau_s) * (np.exp(-t[:-1] / ts) - np.exp(-t[1:] / ts))
    return inc * frame_speed(spec)


def time_grid(spec: ScanSpec) -> TimeGrid:
    """Place the frames on internal-time grids (see module docstring)."""
    T = spec.n_frames
    inc = internal_increments(spec)
    cuts = sorted({int(a) for a in spec.avalanches if 0 < int(a) < T})
    starts = np.array([0, *cuts, T], dtype=np.int64)
    segment = np.zeros(T, np.int64)
    index = np.zeros(T, np.int64)
    hs, ns, exact = [], [], True
    for s, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
        segment[a:b] = s
        local = inc[a : b - 1]
        if local.size == 0:
            hs.append(1.0)
            ns.append(1)
            continue
        base = local.min()
        ratio = local / base
        if np.allclose(ratio, np.round(ratio), rtol=0, atol=1e-9):
            h = base
            idx = np.concatenate([[0], np.cumsum(np.round(ratio).astype(np.int64))])
        else:
            exact = False
            h = base / spec.oversample
            idx = np.round(np.concatenate([[0], np.cumsum(local)]) / h).astype(np.int64)
        index[a:b] = idx
        hs.append(h)
        ns.append(int(idx[-1]) + 1)
    return TimeGrid(segment, index, np.array(hs), np.array(ns, np.int64), starts, exact)


# ----------------------------------------------------------------------- pixels


def pixel_scale(spec: ScanSpec, qmap: np.ndarray) -> np.ndarray:
    """s_p = (q_p / q_ref)^alpha, quantised in log on a 1e-4 grid; tau_p = tau / s_p."""
    logs = spec.alpha * np.log(np.asarray(qmap, np.float64) / spec.q_ref)
    return np.exp(np.round(logs / _LOG_S_STEP) * _LOG_S_STEP)


def pixel_rate(spec: ScanSpec, detector: Detector) -> np.ndarray:
    """Mean photons per frame per pixel (ny, nx); mean over valid pixels = spec.rate."""
    x = (detector.qmap - spec.q1) / spec.fsdp_hwhm
    prof = spec.fsdp_background + 1.0 / (1.0 + x * x)
    valid = detector.valid
    return spec.rate * prof / prof[valid].mean()


def beam_factor(spec: ScanSpec) -> np.ndarray:
    """Frame-wise beam intensity b(t) (T,), mean 1 in expectation, never below 0.5."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 1]))
    b = 1.0 + spec.beam_rms * rng.standard_normal(spec.n_frames)
    return np.clip(b, 0.5, None)


def hot_frames(spec: ScanSpec, detector: Detector) -> np.ndarray:
    """(T, n_hot) bool: frames where each hot pixel holds the dtype maximum (>= 1 each)."""
    n_hot = int(detector.hot.sum())
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 2]))
    on = rng.random((spec.n_frames, n_hot)) < spec.hot_frame_fraction
    if n_hot:
        on[rng.integers(0, spec.n_frames, n_hot), np.arange(n_hot)] = True
    return on


# ------------------------------------------------------------------- generation


class _RowGenerator:
    """Generates the counts of one detector row over all frames (eigenvalues cached)."""

    def __init__(self, spec: ScanSpec, detector: Detector):
        self.spec = spec
        self.det = detector
        self.grid = time_grid(spec)
        self.scale = pixel_scale(spec, detector.qmap)
        self.rate = pixel_rate(spec, detector)
        self.beam = beam_factor(spec)
        self.live = ~(detector.gap | detector.dead)
        # the slowest pixel (smallest s) decays last and sets the embedding padding
        s_min = float(self.scale[self.live].min()) if self.live.any() else 1.0
        self.sizes = [
            embedding_size(int(n), float(h) * s_min, spec.beta) for n, h in zip(self.grid.n_grid, self.grid.h)
        ]
        self.cache: list[dict[float, np.ndarray]] = [{} for _ in self.sizes]

    def _eig(self, seg: int, s: np.ndarray) -> np.ndarray:
        cache = self.cache[seg]
        keys = np.unique(s)
        missing = [k for k in keys if k not in cache]
        if missing:
            lam = circulant_eigenvalues(np.array(missing) * self.grid.h[seg], self.spec.beta, self.sizes[seg])
            lam = np.sqrt(lam * (0.5 / self.sizes[seg])).astype(np.float32)  # stored as field amplitudes
            for k, row in zip(missing, lam):
                cache[k] = row
        return np.stack([cache[k] for k in s])

    def intensity(self, row: int, rng: np.random.Generator) -> np.ndarray:
        """Noise-free intensity (nx, T) float64 of one row, pixel-major (0 at gaps and dead pixels)."""
        spec, g = self.spec, self.grid
        cols = np.flatnonzero(self.live[row])
        T, nx = spec.n_frames, self.det.shape[1]
        out = np.zeros((nx, T))
        if cols.size == 0:
            return out
        speckle = np.zeros((cols.size, T), np.float32)
        s = self.scale[row, cols]
        for seg in range(len(g.h)):
            a, b = g.starts[seg], g.starts[seg + 1]
            idx = g.index[a:b]
            # column chunks of ~_FIELD_BYTES of complex64 field bound the memory whatever T is
            step = max(1, _FIELD_BYTES // (8 * self.sizes[seg]))
            for c0 in range(0, cols.size, step):
                eig = self._eig(seg, s[c0 : c0 + step])
                for _ in range(spec.n_modes):
                    z = kww_field(eig, int(g.n_grid[seg]), rng, amplitudes=True)[:, idx]
                    speckle[c0 : c0 + step, a:b] += z.real * z.real + z.imag * z.imag
        f = spec.static_fraction
        amp = (self.rate[row, cols] * ((1.0 - f) / spec.n_modes))[:, None]
        out[cols] = (speckle * amp + (self.rate[row, cols] * f)[:, None]) * self.beam[None, :]
        return out

    def counts(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(counts (nx, T) uint32, intensity (nx, T)) of one row, reproducible per row."""
        rng = np.random.default_rng(np.random.SeedSequence([self.spec.seed, 100, row]))
        inten = self.intensity(row, rng)
        c = rng.poisson(inten)
        return np.minimum(c, 0xFFFFFFFE).astype(np.uint32), inten


class _TileFile:
    """Counts (T, ny, nx) uint32 kept in an unlinked temporary file, one region per row tile.

    Region k holds rows [k R, (k + 1) R) frame-major, (T, R, nx), so that writing a tile
    and reading a frame block are both contiguous I/O (pread/pwrite, thread-safe), and
    the data stay out of the process's resident memory.
    """

    def __init__(self, shape: tuple[int, int, int], tile_rows: int, workdir=None):
        self.T, self.ny, self.nx = shape
        self.R = tile_rows
        fd, name = tempfile.mkstemp(prefix="daskxpcs-sim-", suffix=".u32", dir=workdir)
        os.unlink(name)  # nothing is left on disk whatever happens
        self.fd = fd

    def _offset(self, r0: int, t0: int, r: int) -> int:
        # region of the tile starting at row r0, then frame t0 inside it ((T, r, nx) layout)
        return ((r0 // self.R) * self.T * self.R + t0 * r) * self.nx * 4

    def write(self, r0: int, tile: np.ndarray) -> None:
        tile = np.ascontiguousarray(tile, np.uint32)
        os.pwrite(self.fd, tile.data, self._offset(r0, 0, tile.shape[1]))

    def read(self, t0: int, t1: int) -> np.ndarray:
        out = np.empty((t1 - t0, self.ny, self.nx), np.uint32)
        for r0 in range(0, self.ny, self.R):
            r = min(self.R, self.ny - r0)
            buf = os.pread(self.fd, (t1 - t0) * r * self.nx * 4, self._offset(r0, t0, r))
            out[:, r0 : r0 + r] = np.frombuffer(buf, np.uint32).reshape(t1 - t0, r, self.nx)
        return out

    def __getitem__(self, sl: slice) -> np.ndarray:
        t0, t1, _ = sl.indices(self.T)
        return self.read(t0, t1)

    def close(self) -> None:
        os.close(self.fd)


def generate_counts(
    spec: ScanSpec,
    detector: Detector,
    *,
    memmap_bytes: int = 512 << 20,
    workdir: str | os.PathLike | None = None,
    with_intensity: bool = False,
    workers: int | None = None,
    tile_rows: int | None = None,
):
    """Raw Poisson counts (T, ny, nx) before artefacts; a temporary tile file when large.

    Rows are generated in tiles by `workers` threads (numpy's generators and FFTs release
    the GIL; each row has its own seed, so the result does not depend on threads or tiles).

    Parameters
    ----------
    memmap_bytes : above this size the counts go to an unlinked temporary file in
        `workdir` instead of RAM.
    with_intensity : also return the noise-free intensity (T, ny, nx) float64 (in RAM).
    workers : threads (default min(cpu count, 8)).
    tile_rows : rows per tile (default: about 32 MB of counts a tile).

    Returns
    -------
    (counts, intensity) : counts is an ndarray (T, ny, nx) uint32 or a `_TileFile`
        supporting `counts[t0:t1]` and `close()`; intensity float64 or None.
    """
    from concurrent.futures import ThreadPoolExecutor

    ny, nx = detector.shape
    T = spec.n_frames
    gen = _RowGenerator(spec, detector)
    # per thread: a field chunk with its weights and FFT (~4x _FIELD_BYTES) plus the row's
    # speckle, intensity and counts (~24 B per pixel-frame); cap the threads to fit
    per_worker = 4 * _FIELD_BYTES + 24 * T * nx
    workers = workers or max(1, min(os.cpu_count() or 1, 8, _WORKER_BYTES // per_worker))
    on_disk = T * ny * nx * 4 > memmap_bytes and not with_intensity
    # tiles of rows: ~32 MB of counts each, so workers x tile stays small
    tile_rows = tile_rows or max(1, min(ny, (32 << 20) // max(T * nx * 4, 1)))
    if on_disk:
        counts = _TileFile((T, ny, nx), tile_rows, workdir)
    else:
        counts = np.zeros((T, ny, nx), np.uint32)
    inten = np.zeros((T, ny, nx)) if with_intensity else None

    def tile(r0: int) -> None:
        rows = range(r0, min(r0 + tile_rows, ny))
        buf = np.empty((T, len(rows), nx), np.uint32)
        for j, row in enumerate(rows):
            c, i = gen.counts(row)
            buf[:, j, :] = c.T
            if inten is not None:
                inten[:, row, :] = i.T
        if on_disk:
            counts.write(r0, buf)
        else:
            counts[:, r0 : r0 + len(rows)] = buf

    starts = range(0, ny, tile_rows)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(tile, starts))
    else:
        for r0 in starts:
            tile(r0)
    return counts, inten


#: scan generators: "exact" (Gaussian fields, any beta) and "renewal" (beta = 1, cheap)
METHODS = ("exact", "renewal")


def check_method(spec: ScanSpec | None, method: str) -> None:
    """Raise ValueError for an unknown generator, or "renewal" with spec.beta != 1.

    With ``spec=None`` only the name is checked (a campaign, before any scan exists).
    """
    if method not in METHODS:
        raise ValueError(f"unknown generator method {method!r}; choose from {METHODS}")
    if method == "renewal" and spec is not None:
        from daskxpcs.simulate.renewal import check_renewal_spec

        check_renewal_spec(spec)


def iter_scan_blocks(
    spec: ScanSpec,
    detector: Detector,
    *,
    block_frames: int | None = None,
    workdir: str | os.PathLike | None = None,
    memmap_bytes: int = 512 << 20,
    workers: int | None = None,
    tile_rows: int | None = None,
    method: str = "exact",
) -> Iterator[np.ndarray]:
    """Stream a scan's frames in blocks (n <= block_frames, ny, nx) of spec.dtype.

    `block_frames` defaults to about 32 MB of frames a block.

    method="exact" (default): the time process is generated per row over the whole scan
    (exact), into RAM or an unlinked temporary file above `memmap_bytes` (see module
    docstring), then read out frame block by frame block with detector artefacts applied
    (gap and hot pixels at the dtype maximum, dead = 0).  Peak memory: a few row tiles and
    one frame block.  Cost O(T x pixels x log T).

    method="renewal": the piecewise-constant speckle generator of `renewal.py`, cost
    O(pieces + photons) (`workdir`, `memmap_bytes`, `workers`, `tile_rows` unused), same
    artefacts.  Its g2 equals the exact model's only for beta = 1, so `spec.beta` must be
    1.0 (ValueError otherwise; use ``dataclasses.replace(spec, beta=1.0)``) and the truth
    (`scan_truth`, `expected_g2`) is then computed from that same spec.
    """
    check_method(spec, method)  # here, not at the first block
    if method == "renewal":
        from daskxpcs.simulate.renewal import iter_renewal_blocks

        return iter_renewal_blocks(spec, detector, block_frames=block_frames)
    return _iter_exact_blocks(spec, detector, block_frames=block_frames, workdir=workdir,
                              memmap_bytes=memmap_bytes, workers=workers, tile_rows=tile_rows)


def _iter_exact_blocks(spec, detector, *, block_frames, workdir, memmap_bytes, workers, tile_rows):
    # the exact generator's block stream (see iter_scan_blocks)
    counts, _ = generate_counts(
        spec, detector, memmap_bytes=memmap_bytes, workdir=workdir, workers=workers, tile_rows=tile_rows
    )
    hot_on = hot_frames(spec, detector)
    ny, nx = detector.shape
    block_frames = block_frames or max(1, (32 << 20) // (ny * nx * 4))
    try:
        for t0 in range(0, spec.n_frames, block_frames):
            blk = counts[t0 : t0 + block_frames]
            blk = blk.copy() if isinstance(counts, np.ndarray) else blk  # _finish_block works in place
            yield _finish_block(blk, t0, spec, detector, hot_on)
    finally:
        if isinstance(counts, _TileFile):
            counts.close()


def _finish_block(block: np.ndarray, t0: int, spec: ScanSpec, det: Detector, hot_on: np.ndarray) -> np.ndarray:
    """Apply detector artefacts to a counts block (n, ny, nx) (modified in place) and cast to spec.dtype."""
    dtype = np.dtype(spec.dtype)
    top = np.iinfo(dtype).max
    np.minimum(block, top - 1, out=block)
    out = block.astype(dtype, copy=False)
    out[:, det.gap] = top
    out[:, det.dead] = 0
    hy, hx = np.nonzero(det.hot)
    on = hot_on[t0 : t0 + block.shape[0]]
    sub = out[:, hy, hx]
    sub[on] = top
    out[:, hy, hx] = sub
    return out


def simulate_scan(
    spec: ScanSpec,
    detector: Detector | None = None,
    *,
    shape: tuple[int, int] = (64, 64),
    q_edges: tuple[float, ...] | None = None,
    with_intensity: bool = False,
    truth: bool = True,
    method: str = "exact",
):
    """Simulate one scan in memory.

    Parameters
    ----------
    spec : ScanSpec
    detector : Detector, default `make_detector(shape=shape)` (no artefacts).
    shape : (ny, nx) when no detector is given.
    q_edges : bins for the truth; default the detector's.
    with_intensity : also return the noise-free intensity (T, ny, nx) float64.
    truth : compute the truth dict (expected g2 and its KWW fit per bin).
    method : "exact" (default) or "renewal" (needs spec.beta = 1 and no `with_intensity`;
        see `iter_scan_blocks`).

    Returns
    -------
    frames : ndarray (T, ny, nx) spec.dtype, with artefacts.
    truth : dict (see `scan_truth`), or None.
    intensity : ndarray, only when `with_intensity`.
    """
    det = detector if detector is not None else make_detector(shape=shape)
    check_method(spec, method)
    if method == "renewal":
        if with_intensity:
            raise ValueError("with_intensity is not available with method='renewal'")
        frames = next(iter_scan_blocks(spec, det, block_frames=spec.n_frames, method=method))
        inten = None
    else:
        counts, inten = generate_counts(spec, det, with_intensity=with_intensity, memmap_bytes=1 << 62)
        frames = _finish_block(counts, 0, spec, det, hot_frames(spec, det))
    tr = scan_truth(spec, det, q_edges=q_edges) if truth else None
    return (frames, tr, inten) if with_intensity else (frames, tr)


# ------------------------------------------------------------------------ truth


def kww(t: np.ndarray, baseline: float, contrast: float, tau: float, beta: float) -> np.ndarray:
    """g2 = baseline + contrast exp(-2 (t / tau)^beta)."""
    return baseline + contrast * np.exp(-2.0 * (t / tau) ** beta)


def expected_g2(
    spec: ScanSpec,
    detector: Detector,
    pixels: np.ndarray,
    lags: np.ndarray,
) -> np.ndarray:
    # pixels: flat indices into the (ny, nx) frame; lags in frames
    """Ensemble mean of the DESIGN.md g2 of a pixel set (infinite statistics), (n_lag,).

    g2(k) = A (1 + c sum_p w_p mean_t |F_p(t, t + k)|^2) with w_p = r_p^2 / sum r^2 and
    A = mean r^2 / (mean r)^2 (the ratio-of-sums estimator carries the spread of the
    mean intensity across the pixels of a bin); F = 0 across an avalanche.
    """
    g = time_grid(spec)
    r = pixel_rate(spec, detector).ravel()[pixels]
    logs = np.log(pixel_scale(spec, detector.qmap).ravel()[pixels])
    # coarser groups (1e-3 in log s) keep the sum cheap: tau error <= 5e-4 relative
    key = np.round(logs / 1e-3)
    ukey, inv = np.unique(key, return_inverse=True)
    w = np.bincount(inv, weights=r * r)
    w /= w.sum()
    s = np.exp(ukey * 1e-3)
    amp = np.mean(r * r) / np.mean(r) ** 2
    out = np.empty(len(lags))
    for i, k in enumerate(lags):
        same = g.segment[k:] == g.segment[:-k]
        d = (g.index[k:] - g.index[:-k])[same] * g.h[g.segment[k:][same]]
        dv, cnt = np.unique(np.round(d, 12), return_counts=True)
        f2 = np.exp(-2.0 * (np.outer(s, dv)) ** spec.beta) @ cnt / (spec.n_frames - k)
        out[i] = amp * (1.0 + spec.contrast * float(w @ f2))
    return out


def fit_kww(lag_s: np.ndarray, g2: np.ndarray, tau_guess: float, beta_guess: float) -> dict:
    """Least-squares KWW fit of a noise-free g2 curve: baseline, contrast, tau_s, beta."""
    p0 = (g2[-1], g2[0] - g2[-1], tau_guess, beta_guess)
    bounds = ([0.0, 0.0, lag_s[0] * 1e-3, 0.05], [np.inf, np.inf, lag_s[-1] * 1e3, 3.0])
    p, _ = curve_fit(kww, lag_s, g2, p0=p0, bounds=bounds, maxfev=20000)
    return {"baseline": float(p[0]), "contrast": float(p[1]), "tau_s": float(p[2]), "beta": float(p[3])}


def scan_truth(spec: ScanSpec, detector: Detector, *, q_edges: tuple[float, ...] | None = None) -> dict:
    """Ground truth of a scan (JSON-able).

    Keys: nominal parameters (`tau_ref_s` at q_ref at mid-scan, `tau_q_centre_s` per
    bin centre, beta, contrast, rate, q1, alpha, q_ref, frame grid exactness,
    avalanches, rate segments) and `expected`: per q-bin then the union (last entry),
    `tau_s`, `beta`, `contrast`, `baseline` of a KWW fit to `expected_g2` on the
    multi-tau ladder; `tau_union_s` is the union's entry.
    """
    edges = np.asarray(q_edges if q_edges is not None else detector.q_edges, np.float64)
    centres = 0.5 * (edges[:-1] + edges[1:])
    mid = 0.5 * spec.duration_s
    aging = 1.0 if spec.tau_star_s is None else float(np.exp(mid / spec.tau_star_s))
    tau_mid = spec.tau_s * aging
    lags = lag_ladder(spec.n_frames)
    lag_s = lags * spec.frame_time_s
    valid = detector.valid.ravel()
    q = detector.qmap.ravel()
    fits = {"tau_s": [], "beta": [], "contrast": [], "baseline": [], "n_pixels": []}
    bins = [np.flatnonzero(valid & (q >= lo) & (q < hi)) for lo, hi in zip(edges[:-1], edges[1:])]
    bins.append(np.flatnonzero(valid & (q >= edges[0]) & (q < edges[-1])))
    for pix in bins:
        if pix.size == 0:
            for key in ("tau_s", "beta", "contrast", "baseline"):
                fits[key].append(None)
            fits["n_pixels"].append(0)
            continue
        fit = fit_kww(lag_s, expected_g2(spec, detector, pix, lags), tau_mid, spec.beta)
        for key, val in fit.items():
            fits[key].append(val)
        fits["n_pixels"].append(int(pix.size))
    u_total = float(internal_increments(spec).sum())
    return {
        "n_frames": spec.n_frames,
        "frame_time_s": spec.frame_time_s,
        "tau_ref_s": tau_mid,
        "tau_start_s": spec.tau_s,
        "tau_end_s": spec.tau_s * (aging**2),
        "tau_rate_mean_s": (spec.n_frames - 1) * spec.frame_time_s / u_total,
        "tau_q_centre_s": [tau_mid * (c / spec.q_ref) ** -spec.alpha for c in centres],
        "tau_union_s": fits["tau_s"][-1],
        "q_centres": centres.tolist(),
        "q_edges": edges.tolist(),
        "beta": spec.beta,
        "contrast": spec.contrast,
        "n_modes": spec.n_modes,
        "static_fraction": spec.static_fraction,
        "rate": spec.rate,
        "q1": spec.q1,
        "alpha": spec.alpha,
        "q_ref": spec.q_ref,
        "beam_rms": spec.beam_rms,
        "tau_star_within_scan_s": spec.tau_star_s,
        "avalanche_frames": sorted(int(a) for a in spec.avalanches),
        "rate_segments": [[int(a), float(f)] for a, f in spec.rate_segments],
        "heterogeneous": bool(len(np.unique(frame_speed(spec))) > 1 or time_grid(spec).h.size > 1),
        "grid_exact": time_grid(spec).exact,
        "dtype": spec.dtype,
        "expected": fits,
        "lag_frames": lags.tolist(),
    }


def spec_dict(spec: ScanSpec) -> dict:
    """ScanSpec as a JSON-able dict."""
    d = asdict(spec)
    d["rate_segments"] = [list(x) for x in spec.rate_segments]
    d["avalanches"] = list(spec.avalanches)
    return d


__all__ = [
    "ScanSpec",
    "TimeGrid",
    "time_grid",
    "internal_increments",
    "pixel_scale",
    "pixel_rate",
    "generate_counts",
    "iter_scan_blocks",
    "METHODS",
    "check_method",
    "simulate_scan",
    "expected_g2",
    "kww",
    "fit_kww",
    "scan_truth",
    "spec_dict",
]
