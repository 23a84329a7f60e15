"""Public entry points of the correlation: ``correlate_scan`` and ``correlate_graph``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
from dask.delayed import Delayed

from conversions.scheduling import local_get, progress_bar
from daskxpcs.cluster import single_blas_thread
from daskxpcs.graph import build_graph, plan_correlation
from daskxpcs.graph.output import open_out, out_spec

__all__ = ["correlate_scan", "correlate_graph"]


def correlate_graph(store, out, *, qmap: np.ndarray | None = None, q_edges: Sequence[float] | None = None,
                    engine: str = "auto", t_block: int | None = None, p_tile: int | None = None,
                    ttcf_bin: int = 1, n_windows: int = 4, mark_complete: bool = True) -> Delayed:
    """Build (without computing anything) the graph that correlates one scan store.

    Parameters
    ----------
    store : path of a Zarr scan store, or an open ``ScanStore``
    out : path of a Zarr group to create (overwritten), or an existing ``zarr.Group``
        to write into. Arrays: see docs/internals.md, "Correlation outputs".
    qmap : (ny, nx) q in 1/A, overrides the store's
    q_edges : (n_q + 1,) 1/A, overrides the store's; no q information -> one bin
    engine : "auto" (per tile, by measured density), "events" or "dense"
    t_block : frames per time block (rounded up to a multiple of ``ttcf_bin``); default 512
    p_tile : stored pixels per tile; default from the density
    ttcf_bin : frames averaged per ttcf cell (T' = T // ttcf_bin)
    n_windows : age windows of g2_age
    mark_complete : set ``complete = True`` on ``out`` when the graph finishes

    Returns
    -------
    dask.delayed.Delayed
        Computing it writes every output; its value is a dict of the small arrays.
    """
    plan = plan_correlation(store, qmap=qmap, q_edges=q_edges, engine=engine, t_block=t_block,
                            p_tile=p_tile, ttcf_bin=ttcf_bin, n_windows=n_windows)
    return build_graph(plan, out, mark_complete=mark_complete)


def _scheduler_context(scheduler: Any):
    if scheduler is None or not isinstance(scheduler, str):
        if scheduler is None:
            return contextlib.nullcontext(None)
        return contextlib.nullcontext(scheduler)  # a distributed Client
    if scheduler in ("threads", "synchronous", "processes", "sync"):
        return contextlib.nullcontext(scheduler)
    from daskxpcs.cluster import scheduler_context

    @contextlib.contextmanager
    def ctx():
        with scheduler_context(scheduler) as handle:
            yield handle.scheduler

    return ctx()


def correlate_scan(store, out, *, qmap: np.ndarray | None = None, q_edges: Sequence[float] | None = None,
                   engine: str = "auto", t_block: int | None = None, p_tile: int | None = None,
                   ttcf_bin: int = 1, n_windows: int = 4, scheduler: Any = None,
                   progress: bool = False) -> dict:
    """Correlate one scan store: TTCF per q-bin, g2, g2_err, age-resolved g2, C statistics.

    Parameters are those of :func:`correlate_graph`, plus
    scheduler : None (Dask's default: an active distributed client, else threads),
        "threads", "synchronous", "processes", a ``--scheduler`` string
        (see ``daskxpcs.cluster``) or a ``distributed.Client``.
    progress : show a progress bar (local schedulers).

    Returns
    -------
    dict of timings in s (``plan_s``, ``compute_s``, ``total_s``) plus ``engine``,
    ``n_tasks``, ``t_block`` and ``p_tile``; also stored as the group attribute ``timings``.
    The group's ``complete`` attribute is written last.
    """
    t_start = time.perf_counter()
    plan = plan_correlation(store, qmap=qmap, q_edges=q_edges, engine=engine, t_block=t_block,
                            p_tile=p_tile, ttcf_bin=ttcf_bin, n_windows=n_windows)
    graph = build_graph(plan, out, mark_complete=False)
    n_tasks = len(graph.__dask_graph__())
    t_plan = time.perf_counter()
    with _scheduler_context(scheduler) as sched:
        with progress_bar(progress and (sched is None or isinstance(sched, str))), single_blas_thread(sched):
            dask.compute(graph, scheduler=local_get(sched))  # None: Dask's default
    t_done = time.perf_counter()
    timings = {
        "plan_s": t_plan - t_start,
        "compute_s": t_done - t_plan,
        "total_s": t_done - t_start,
        "engine": plan.engine,
        "n_tasks": n_tasks,
        "t_block": plan.t_block,
        "p_tile": plan.p_tile,
    }
    g = open_out(out_spec(out))
    g.attrs.update({"timings": timings, "complete": True})
    return timings
