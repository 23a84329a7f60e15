"""The correlation graph of one scan (Dask only; numerics live in daskxpcs.kernels).

Tasks run over (pixel tile x time-block pair), upper triangle only::

    loads          per sparse (tile, time block): its photon events, read once, and the
                   block's frame sums S (n_q, tb) from them
    tile stats     per pixel chunk of a sparse tile: lag statistics, its events over the
                   whole scan joined from the tile's loads (EVENTS_PER_CHUNK at most)
    pairs          per (tile, ti <= tj): numerator {bin: (tb, tb)}; dense tiles also give
                   a per-pixel lag partial and, on the diagonal, the frame sums of block ti
    numerators     per (ti, tj): binary tree of in-place adds over tiles
    frame sums     per time block: binary tree over tiles
    write          per (ti, tj), once its numerator and the sums of ti and tj are done:
                   C = N / (S1 S2), ttcf block and its mirror -> zarr, diagonal statistics of C
    lag stats      per dense tile: tree over its pairs -> per-bin sums; tree over tiles
    finalise       g2, g2_err, g2_age, c_diag_*, intensity -> zarr, ``complete``

No task allocates more than one (n_q+1, tb, tb) block, a tile's events of two time blocks,
or EVENTS_PER_CHUNK events of a tile over the scan. The loads of a tile stay alive while its
rows and columns of pairs run, so a scan's peak memory grows with its events (compacted to
4 bytes each); sparse tiles are as large as EVENTS_PER_PAIR allows, so that few tiles'
partial numerators wait for each other.
"""

from __future__ import annotations

import math
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from dask.delayed import Delayed, delayed

from conversions.errors import InputError
from conversions.store import ScanStore, open_scan_store
from daskxpcs import kernels as K
from daskxpcs.graph import output, tasks
from daskxpcs.graph.reduce import tree_reduce

__all__ = ["CorrelationPlan", "plan_correlation", "build_graph", "EVENTS_MAX_DENSITY"]

#: Photons / pixel / frame below which a tile uses the event-pair kernel. The event cost
#: grows as density squared, the dense product's does not; they cross near 0.1 on a
#: modern CPU, the margin keeps the BLAS path for anything not clearly sparse.
EVENTS_MAX_DENSITY = 0.05
DEFAULT_T_BLOCK = 512
#: BLAS runs several times faster on (1024, 1024) products than on (512, 512) ones.
DENSE_T_BLOCK = 1024
DENSE_P_TILE = 8192
#: Events one sparse pair task may hold (two time blocks of one tile).
EVENTS_PER_PAIR = 16_000_000
#: Events of the whole scan one lag-statistics task joins (a pixel chunk of a tile).
EVENTS_PER_CHUNK = 8_000_000


@dataclass
class CorrelationPlan:
    """Sizes and per-tile choices of one scan's correlation, fixed before any task runs."""

    store_path: str
    n_frames: int
    frame_time_s: float
    t_block: int
    p_tile: int
    ttcf_bin: int
    n_q: int
    q_edges: np.ndarray
    labels: np.ndarray
    n_pix: np.ndarray
    tiles: list[tuple[int, int]]
    engines: list[str]
    lags: np.ndarray
    edges: np.ndarray
    density: float
    rate: np.ndarray
    dense_group: int = 2
    warnings: list[str] = field(default_factory=list)

    @property
    def blocks(self) -> list[tuple[int, int]]:
        return [(t0, min(self.n_frames, t0 + self.t_block)) for t0 in range(0, self.n_frames, self.t_block)]

    @property
    def engine(self) -> str:
        """"events" or "dense" when every tile uses it, else "mixed"."""
        kinds = set(self.engines)
        return kinds.pop() if len(kinds) == 1 else "mixed"


def _resolve_q(store: ScanStore, qmap, q_edges) -> tuple[np.ndarray | None, np.ndarray | None]:
    if qmap is not None:
        qmap = np.asarray(qmap, np.float64)
        if qmap.shape != tuple(store.frame_shape):
            raise InputError(f"qmap shape {qmap.shape} differs from the frames {tuple(store.frame_shape)} "
                             f"of {store.path}")
    else:
        qmap = np.asarray(store.qmap, np.float64)
    if q_edges is None:
        q_edges = store.q_edges
    if q_edges is None:
        return None, None
    edges = np.asarray(q_edges, np.float64).ravel()
    if len(edges) < 2 or not np.all(np.diff(edges) > 0):
        raise InputError(f"q_edges must be at least two increasing values, got {list(edges)}")
    if not np.isfinite(qmap).any():
        raise InputError(f"q_edges given but {store.path} has no q-map and none was passed")
    return qmap.ravel()[store.pixels], edges


def choose_blocks(n_frames: int, n_pixels: int, density: float, *, engine: str = "auto",
                  t_block: int | None = None, p_tile: int | None = None, ttcf_bin: int = 1,
                  store_p_tile: int = 1) -> tuple[bool, int, int]:
    """Block sizes of a correlation (shared with ``daskxpcs run --plan``).

    Parameters
    ----------
    n_frames, n_pixels : T and the stored pixels P of the scan
    density : photons / valid pixel / frame
    engine : "auto", "events" or "dense"
    t_block, p_tile : user choices (frames, pixels), None for the defaults
    ttcf_bin : TTCF time binning; time blocks are made a multiple of it
    store_p_tile : the store's pixel chunk; tiles are made a multiple of it

    Returns
    -------
    (sparse, t_block, p_tile) : whether the event engine is the default one, frames per
        time block and pixels per tile
    """
    sparse = engine == "events" or (engine == "auto" and density < EVENTS_MAX_DENSITY)
    if t_block is None:
        t_block = DEFAULT_T_BLOCK if sparse else DENSE_T_BLOCK
    t_block = max(1, min(int(t_block), n_frames))
    t_block = math.ceil(t_block / ttcf_bin) * ttcf_bin
    if p_tile is None:
        if sparse:
            # As few tiles as a pair task's events allow: every tile's partial numerators of
            # a block pair wait for the other tiles' before they are written, so more tiles
            # keep more (tb, tb) blocks alive; large tiles also amortise the numerator's
            # zeroing and the store's per-read latency. Pairs give the parallelism.
            p_tile = int(max(DENSE_P_TILE, EVENTS_PER_PAIR / max(2 * density * t_block, 1e-9)))
        else:
            p_tile = DENSE_P_TILE
        base = max(1, int(store_p_tile))
        if base < p_tile < n_pixels:
            p_tile = p_tile // base * base
    p_tile = max(1, min(int(p_tile), max(n_pixels, 1)))
    return sparse, t_block, p_tile


def plan_correlation(store: ScanStore | str, *, qmap=None, q_edges: Sequence[float] | None = None,
                     engine: str = "auto", t_block: int | None = None, p_tile: int | None = None,
                     ttcf_bin: int = 1, n_windows: int = 4) -> CorrelationPlan:
    """Choose block sizes, q-bin labels and the engine of every tile (reads metadata only)."""
    if isinstance(store, (str, bytes)) or hasattr(store, "__fspath__"):
        store = open_scan_store(store)
    if engine not in ("auto", "events", "dense"):
        raise InputError(f"engine must be 'auto', 'events' or 'dense', got {engine!r}")
    ttcf_bin = int(ttcf_bin)
    if ttcf_bin < 1:
        raise InputError(f"ttcf_bin must be >= 1, got {ttcf_bin}")
    T = int(store.n_frames)
    if T < 1:
        raise InputError(f"{store.path}: scan has no frames")
    q, edges = _resolve_q(store, qmap, q_edges)
    labels = K.pixel_labels(q, store.pixel_valid, edges)
    n_q = 1 if edges is None else len(edges) - 1
    q_edges_out = np.array([np.nan, np.nan]) if edges is None else edges
    n_pix = np.bincount(labels[labels >= 0], minlength=n_q)[:n_q].astype(np.int64)
    msgs = []
    for b in np.flatnonzero(n_pix == 0):
        msgs.append(f"{store.path}: q-bin {b} [{q_edges_out[b]:g}, {q_edges_out[b + 1]:g}) 1/A has no valid "
                    "pixel; its correlations are NaN")

    rate = np.nan_to_num(store.mean_image().ravel()[store.pixels], nan=0.0)
    used = labels >= 0
    density = float(rate[used].mean()) if used.any() else 0.0
    P = len(labels)
    sparse, t_block, p_tile = choose_blocks(T, P, density, engine=engine, t_block=t_block, p_tile=p_tile,
                                            ttcf_bin=ttcf_bin, store_p_tile=int(store.p_tile))
    tiles, engines = [], []
    for p0 in range(0, P, p_tile):
        p1 = min(P, p0 + p_tile)
        if not used[p0:p1].any():
            continue
        tiles.append((p0, p1))
        if engine == "auto":
            engines.append("events" if rate[p0:p1][used[p0:p1]].mean() < EVENTS_MAX_DENSITY else "dense")
        else:
            engines.append(engine)
    return CorrelationPlan(
        store_path=str(store.path), n_frames=T, frame_time_s=float(store.frame_time_s), t_block=t_block,
        p_tile=p_tile, ttcf_bin=ttcf_bin, n_q=n_q, q_edges=q_edges_out, labels=labels, n_pix=n_pix,
        tiles=tiles, engines=engines, lags=K.lag_ladder(T), edges=K.window_edges(T, n_windows),
        density=density, rate=rate, warnings=msgs,
    )


def _event_chunks(events_per_pixel: np.ndarray, p0: int) -> list[tuple[int, int]]:
    """Pixel ranges of a tile holding about EVENTS_PER_CHUNK events each."""
    cum = np.cumsum(events_per_pixel)
    total = float(cum[-1]) if len(cum) else 0.0
    cuts = np.searchsorted(cum, np.arange(EVENTS_PER_CHUNK, total, EVENTS_PER_CHUNK))
    edges = np.unique(np.concatenate([[0], cuts, [len(cum)]]).astype(np.int64))
    return [(p0 + int(a), p0 + int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def build_graph(plan: CorrelationPlan, out, *, mark_complete: bool = True) -> Delayed:
    """The Delayed that computes and writes one scan's correlation outputs.

    Computes nothing while building. The result of the Delayed is the dict of small
    arrays (g2, g2_err, ...) also written to ``out``.
    """
    for msg in plan.warnings:
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    tag = uuid.uuid4().hex[:10]
    spec = output.out_spec(out)
    T, tb, fb = plan.n_frames, plan.t_block, plan.ttcf_bin
    n_binned = T // fb
    blocks = plan.blocks
    pairs = [(i, j) for i in range(len(blocks)) for j in range(i, len(blocks))]
    n_win = len(plan.edges) - 1
    n_lag = len(plan.lags)

    def const(obj, name):
        return delayed(obj, name=f"{name}-{tag}", traverse=False)

    lags = const(plan.lags, "xpcs-lags")
    edges = const(plan.edges, "xpcs-edges")
    lagidx = const(K.lag_index(T, plan.lags), "xpcs-lagidx")
    win_of = const(np.repeat(np.arange(n_win, dtype=np.int32), np.diff(plan.edges)), "xpcs-winof")
    n_pix = const(plan.n_pix, "xpcs-npix")
    attrs = {
        "frame_time_s": plan.frame_time_s, "n_frames": T, "ttcf_bin": fb, "engine": plan.engine,
        "t_block": tb, "p_tile": plan.p_tile, "source_store": plan.store_path,
    }
    ready = delayed(output.init_output, pure=True)(spec, plan.n_q + 1, n_binned, max(1, tb // fb), attrs,
                                                   dask_key_name=f"xpcs-init-{tag}")

    g = max(1, plan.dense_group)
    supers = [list(range(k, min(len(blocks), k + g))) for k in range(0, len(blocks), g)]
    groups = [(a, b) for a in range(len(supers)) for b in range(a, len(supers))]
    lag_parts = []
    s_parts: list[list] = [[] for _ in blocks]  # per time block: its frame sums, one part per tile
    num_parts: dict[tuple[int, int], list] = {p: [] for p in pairs}
    for t, ((p0, p1), eng) in enumerate(zip(plan.tiles, plan.engines)):
        layout = const(K.tile_layout(plan.labels[p0:p1], plan.n_q), f"xpcs-layout-{t}")
        if eng == "events":
            # each (tile, block) is read once and shared by the pairs and the block's frame sums
            loads = [delayed(tasks.read_events, pure=True)(plan.store_path, blk, p0, p1,
                                                           dask_key_name=f"xpcs-evload-{tag}-{t}-{i}")
                     for i, blk in enumerate(blocks)]
            for i, blk in enumerate(blocks):
                s_parts[i].append(delayed(tasks.event_block_sums, pure=True)(
                    loads[i], layout, blk, dask_key_name=f"xpcs-evsum-{tag}-{t}-{i}"))
            # whole-scan lag statistics, one task per bounded pixel chunk, from the loads that
            # the tile's pairs keep alive anyway
            for c, (c0, c1) in enumerate(_event_chunks(plan.rate[p0:p1] * T, p0)):
                lag_parts.append(delayed(tasks.events_tile_stats, pure=True)(
                    loads, p0, c0, c1, layout, T, lags, lagidx, win_of, n_win,
                    dask_key_name=f"xpcs-evstats-{tag}-{t}-{c}"))
            for i, j in pairs:
                num_parts[(i, j)].append(delayed(K.event_pairs, pure=True)(
                    loads[i], loads[j], layout, blocks[i], blocks[j],
                    dask_key_name=f"xpcs-evpair-{tag}-{t}-{i}-{j}"))
        else:
            tile_lag = []
            # Groups of g x g block pairs decode each block once per group; ordered by
            # diagonal so tree neighbours share lag ranges.
            for gi, gj in sorted(groups, key=lambda ij: (ij[1] - ij[0], ij[0])):
                rows, cols = supers[gi], supers[gj]
                nums, lag, sums = delayed(tasks.dense_group, pure=True, nout=3)(
                    plan.store_path, p0, p1, layout, [blocks[i] for i in rows], [blocks[j] for j in cols],
                    lags, edges, dask_key_name=f"xpcs-dgroup-{tag}-{t}-{gi}-{gj}")
                for i in rows:
                    for j in cols:
                        if j >= i:
                            num_parts[(i, j)].append(delayed(tasks.pick, pure=True)(
                                nums, (blocks[i], blocks[j]), dask_key_name=f"xpcs-dpair-{tag}-{t}-{i}-{j}"))
                    if gi == gj:
                        s_parts[i].append(delayed(tasks.pick, pure=True)(
                            sums, blocks[i], dask_key_name=f"xpcs-dsum-{tag}-{t}-{i}"))
                tile_lag.append(lag)
            part = tree_reduce(tile_lag, K.add_lag, f"xpcs-lagtree-{tag}-{t}")
            lag_parts.append(delayed(tasks.finish_lag, pure=True)(part, layout, n_lag,
                                                                  dask_key_name=f"xpcs-lag-{tag}-{t}"))

    if not plan.tiles:
        raise InputError(f"{plan.store_path}: no valid pixel in any q-bin")
    # frame sums per time block: a TTCF block waits only for the tiles' sums of its own two
    # blocks, never for the whole scan, so finished numerators are written (and freed) early
    s_block = [tree_reduce(parts, K.add_arrays, f"xpcs-stree-{tag}-{i}") for i, parts in enumerate(s_parts)]
    s_full = delayed(tasks.join_blocks, pure=True)(s_block, dask_key_name=f"xpcs-sfull-{tag}")
    lag_stats = tree_reduce(lag_parts, K.add_arrays, f"xpcs-lagall-{tag}")
    c_parts = []
    for i, j in pairs:
        num = tree_reduce(num_parts[(i, j)], K.add_num, f"xpcs-numtree-{tag}-{i}-{j}")
        c_parts.append(delayed(output.normalise_and_write, pure=True)(
            num, s_block[i], s_block[j], n_pix, blocks[i], blocks[j], lags, spec, fb, n_binned, ready,
            dask_key_name=f"xpcs-write-{tag}-{i}-{j}"))
    c_stats = tree_reduce(c_parts, K.add_arrays, f"xpcs-ctree-{tag}")
    return delayed(output.finalise_output, pure=True)(
        spec, s_full, lag_stats, c_stats, n_pix, lags, edges, plan.frame_time_s, plan.q_edges, mark_complete,
        dask_key_name=f"xpcs-final-{tag}")
