"""Cheap scan generator: piecewise-constant ("renewal") speckle, cost O(pieces + photons).

The exact generator (`scan.py`) draws a Gaussian field per pixel over every frame, cost
O(T x pixels x log T): about 6 h for the 66-scan archive preset.  At low count rates almost
all of that work describes frames without a photon.  This generator draws only what the
photons need.

Model (same notation as `scan.py`).  Each mode's speckle intensity |E_pm(u)|^2 is replaced
by a piecewise-constant process X_pm(u): a value X ~ Exp(1) held constant between renewal
times that form a Poisson process of rate 2 per unit of internal time u (and renewed at
each avalanche).  X is Exp(1) at any instant, like |E|^2, and

    Cov(X(u), X(u + du)) = P(no renewal in du) Var X = exp(-2 du),

which is the exact model's intensity correlation exp(-2 du^beta) for beta = 1.  The
intensity I_p(t) = r_p b(t) [(1 - f) / M sum_m X_pm(u_p(t)) + f] (u_p = s_p U, same
`time_grid`, `pixel_scale`, `pixel_rate`, `beam_factor`, static fraction f and modes M as
the exact generator) therefore has the same mean and the same two-time correlation as the
exact model with beta = 1: the ensemble g2 (`scan.expected_g2`) is the same, with the
internal time taken on the same grid positions (so `expected_g2` is exact for these data
too, also with aging).  Higher-order statistics differ (the process is not Gaussian), and
beta != 1 cannot be represented: callers must use a spec with beta = 1 and compute the
truth from it (`simulate_campaign(method="renewal")` does so).

Sampling.  Poisson counts of a sum of independent intensities are the sum of independent
Poisson counts, so each mode and the static part are drawn separately.  For each live pixel
(not gap or dead; hot pixels are generated, then overwritten like the exact generator), each
mode and each avalanche-free segment: renewal times are drawn one after the other
(exponential gaps of mean 1 / (2 s_p) in internal time at q_ref), each mapped to the first
frame at or after it (a lookup table from the internal-time grid to frames; renewals
between the same two frames merge); each piece [a, e) of frames gets X ~ Exp(1) and
n ~ Poisson(lam X) photons, lam = r_p (1 - f) / M sum_{a<=t<e} b(t), drawn in one go as the
exponential mixture of Poissons it is, a geometric law P(n >= k) = (lam / (1 + lam))^k;
each photon is put in frame t with probability proportional to b(t) (inverse of the
cumulative beam, searched from the uniform-beam guess).  The static part is one piece per
pixel over the whole scan with intensity r_p f b(t).  A serial numba kernel does this for
all pixels at once; photons are stored as (int32 frame, int32 pixel) events (8 B each),
counting-sorted by frame, and dense frame blocks are filled from them with the detector
artefacts of `scan._finish_block` (gaps and hot pixels in their hot frames at the dtype
maximum, dead pixels 0, counts clipped at the maximum - 1).

Cost: O(pieces + photons) random numbers and table look-ups, with pieces ~ 2 x (scan
duration / tau) per pixel and mode; the archive scan (4000 frames of 512 x 512 at 0.01
photon / pixel / frame, tau ~ 160 frames) has ~1e7 of each and takes one to two seconds,
plus filling and writing the dense frames.  Memory: the events of one scan (~12 B a
photon) plus one frame block.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numba import njit

from daskxpcs.simulate.geometry import Detector
from daskxpcs.simulate.scan import ScanSpec, beam_factor, hot_frames, pixel_rate, pixel_scale, time_grid

#: frame blocks default to about this many bytes
_BLOCK_BYTES = 32 << 20


def check_renewal_spec(spec: ScanSpec) -> None:
    """Raise ValueError unless `spec` can be simulated by the renewal generator (beta = 1)."""
    if spec.beta != 1.0:
        raise ValueError(
            f"the renewal generator is exact only for beta = 1 (got beta = {spec.beta}); "
            "use dataclasses.replace(spec, beta=1.0) and compute the truth from that spec"
        )


def _grid_tables(spec: ScanSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lookup from internal-time grid points to frames.

    Returns
    -------
    starts : (n_seg + 1,) int64, first frame of each segment, then T.
    h : (n_seg,) float64, grid step of each segment (units of tau at q_ref).
    offsets : (n_seg + 1,) int64, start of each segment's table in `first`.
    first : (sum n_grid,) int32, `first[offsets[s] + j]` = first frame of segment s whose
        grid index is >= j (frames sit on grid indices `time_grid(spec).index`).
    """
    g = time_grid(spec)
    offsets = np.concatenate([[0], np.cumsum(g.n_grid)]).astype(np.int64)
    first = np.empty(int(offsets[-1]), np.int32)
    for sg in range(len(g.h)):
        a, b = int(g.starts[sg]), int(g.starts[sg + 1])
        j = np.arange(int(g.n_grid[sg]))
        first[offsets[sg] : offsets[sg + 1]] = a + np.searchsorted(g.index[a:b], j, side="left")
    return g.starts.astype(np.int64), g.h.astype(np.float64), offsets, first


@njit(cache=True)
def _put_photons(n, a, e, cum_beam, p, count, ev_frame, ev_pix):
    # n photons in frames [a, e) with probability proportional to b(t); returns the new count
    cap = ev_frame.shape[0]
    lo_w = cum_beam[a]
    span = cum_beam[e] - lo_w
    for _ in range(n):
        v = np.random.random()  # drawn even past the capacity: the same stream on a second call
        if count < cap:
            w = lo_w + v * span
            # t in [a, e - 1] with cum_beam[t] <= w < cum_beam[t + 1]: start from the guess of a
            # uniform beam and walk (a step or two, the beam being nearly uniform)
            t = min(a + np.int64(v * (e - a)), e - 1)
            while t > a and cum_beam[t] > w:
                t -= 1
            while t < e - 1 and cum_beam[t + 1] <= w:
                t += 1
            ev_frame[count] = t
            ev_pix[count] = p
        count += 1
    return count


@njit(cache=True)
def _renewal_events(starts, h, offsets, first, cum_beam, pix, scale, amp_dyn, amp_static, n_modes, seed,
                    ev_frame, ev_pix):
    """Photon events of a scan (see module docstring); returns the number of photons.

    Events beyond the capacity of `ev_frame` / `ev_pix` are counted, not stored: call again
    with arrays of the returned size (same seed, same events).
    """
    np.random.seed(seed)
    count = 0
    n_seg = starts.shape[0] - 1
    T = cum_beam.shape[0] - 1
    for i in range(pix.shape[0]):
        p = pix[i]
        amp = amp_dyn[i]
        for _m in range(n_modes):
            for sg in range(n_seg):
                a = starts[sg]
                end = starts[sg + 1]
                n_grid = offsets[sg + 1] - offsets[sg]
                tab = first[offsets[sg] : offsets[sg + 1]]
                # renewals: Poisson of rate 2 s_p per unit of internal time = 2 s_p h per grid step
                inv_rate = 1.0 / (2.0 * scale[i] * h[sg])
                x = 0.0  # grid position of the last renewal (the segment starts with one)
                while a < end:
                    x -= np.log(1.0 - np.random.random()) * inv_rate
                    j = np.ceil(x)
                    e = end if j >= n_grid else tab[np.int64(j)]  # first frame at or after x
                    if e == a:  # a second renewal before the next frame: nothing sampled in between
                        continue
                    # photons of the piece: Poisson(lam X) with X ~ Exp(1) is geometric,
                    # P(n >= k) = q^k with q = lam / (1 + lam)
                    lam = amp * (cum_beam[e] - cum_beam[a])
                    q = lam / (1.0 + lam)
                    v = 1.0 - np.random.random()  # (0, 1]
                    if v <= q:
                        n = np.int64(np.floor(np.log(v) / np.log(q)))
                        count = _put_photons(n, a, e, cum_beam, p, count, ev_frame, ev_pix)
                    a = e
        lam = amp_static[i] * cum_beam[T]
        if lam > 0.0:
            count = _put_photons(np.random.poisson(lam), 0, T, cum_beam, p, count, ev_frame, ev_pix)
    return count


@njit(cache=True)
def _sort_by_frame(ev_frame, ev_pix, n, n_frames):
    # counting sort of the first n events by frame: (ptr (T + 1,), pixels (n,))
    ptr = np.zeros(n_frames + 1, np.int64)
    for k in range(n):
        ptr[ev_frame[k] + 1] += 1
    for t in range(n_frames):
        ptr[t + 1] += ptr[t]
    fill = ptr[:-1].copy()
    out = np.empty(n, np.int32)
    for k in range(n):
        t = ev_frame[k]
        out[fill[t]] = ev_pix[k]
        fill[t] += 1
    return ptr, out


def scan_events(spec: ScanSpec, detector: Detector, *, capacity: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Photon events of a scan by the renewal generator, as frame-wise CSR.

    Parameters
    ----------
    spec : ScanSpec with beta = 1 (ValueError otherwise).
    detector : Detector; gap and dead pixels get no photons.
    capacity : initial event buffer size (default: the mean photon count + 10 %); a larger
        one is allocated and the draw repeated (same result) when it overflows.

    Returns
    -------
    ptr : ndarray (T + 1,) int64
        Photons of frame t are `pixels[ptr[t]:ptr[t + 1]]`.
    pixels : ndarray (n_photons,) int32
        Flat pixel index (into the (ny, nx) frame) of each photon, one entry per photon
        (a pixel with k photons in a frame appears k times).
    """
    check_renewal_spec(spec)
    starts, h, offsets, first = _grid_tables(spec)
    beam = beam_factor(spec)
    cum_beam = np.concatenate([[0.0], np.cumsum(beam)])
    live = ~(detector.gap | detector.dead)
    pix = np.flatnonzero(live.ravel())
    if pix.size >= 2**31 or spec.n_frames >= 2**31:
        raise ValueError("too many pixels or frames for int32 events")
    rate = pixel_rate(spec, detector).ravel()[pix]
    scale = pixel_scale(spec, detector.qmap).ravel()[pix]
    f = spec.static_fraction
    amp_dyn = rate * ((1.0 - f) / spec.n_modes)
    amp_static = rate * f
    seed = int(np.random.SeedSequence([spec.seed, 300]).generate_state(1)[0])
    if capacity is None:
        mean = float(rate.sum() * cum_beam[-1])
        capacity = int(1.1 * mean + 10.0 * np.sqrt(mean) + 1024)
    args = (starts, h, offsets, first, cum_beam, pix.astype(np.int32), scale, amp_dyn, amp_static,
            int(spec.n_modes), seed)
    ev_frame = np.empty(max(int(capacity), 1), np.int32)
    ev_pix = np.empty_like(ev_frame)
    n = _renewal_events(*args, ev_frame, ev_pix)
    if n > ev_frame.size:  # rare: draw again (same seed) into buffers of the right size
        ev_frame = np.empty(n, np.int32)
        ev_pix = np.empty_like(ev_frame)
        if _renewal_events(*args, ev_frame, ev_pix) != n:
            raise RuntimeError("renewal generator: the second draw differs from the first")
    ptr, pixels = _sort_by_frame(ev_frame, ev_pix, n, spec.n_frames)
    return ptr, pixels


@njit(cache=True)
def _fill_block(out, ptr, pixels, t0, top):
    # add the photons of frames t0 .. t0 + len(out) - 1 to out (n, npix), clipped at top - 1
    for i in range(out.shape[0]):
        for k in range(ptr[t0 + i], ptr[t0 + i + 1]):
            p = pixels[k]
            if out[i, p] < top - 1:
                out[i, p] += 1


def iter_renewal_blocks(
    spec: ScanSpec, detector: Detector, *, block_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Stream a scan of the renewal generator in frame blocks (n <= block_frames, ny, nx) of spec.dtype.

    Same artefacts as the exact generator's `scan._finish_block`: counts clipped at the
    dtype maximum - 1, gap pixels at the maximum, dead pixels 0, hot pixels at the
    maximum in their hot frames (`scan.hot_frames`, the same frames as the exact
    generator for the same spec and detector).  `block_frames` defaults to about 32 MB of
    frames a block.  Peak memory: the scan's events (~12 B a photon) plus one block.
    """
    ptr, pixels = scan_events(spec, detector)
    dtype = np.dtype(spec.dtype)
    top = int(np.iinfo(dtype).max)
    ny, nx = detector.shape
    template = np.zeros(ny * nx, dtype)
    template[detector.gap.ravel()] = top  # dead pixels stay 0: they get no photons
    hot_idx = np.flatnonzero(detector.hot.ravel())
    hot_on = hot_frames(spec, detector)
    block_frames = block_frames or max(1, _BLOCK_BYTES // (ny * nx * dtype.itemsize))
    for t0 in range(0, spec.n_frames, block_frames):
        n = min(block_frames, spec.n_frames - t0)
        out = np.empty((n, ny * nx), dtype)
        out[:] = template
        _fill_block(out, ptr, pixels, t0, top)
        if hot_idx.size:
            sub = out[:, hot_idx]
            sub[hot_on[t0 : t0 + n]] = top
            out[:, hot_idx] = sub
        yield out.reshape(n, ny, nx)


__all__ = ["check_renewal_spec", "scan_events", "iter_renewal_blocks"]
