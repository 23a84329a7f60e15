"""Dask's local schedulers: their ``get`` functions and a terminal progress bar."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

from dask.diagnostics import ProgressBar

__all__ = ["LOCAL_SCHEDULERS", "local_get", "progress_bar"]

#: Names ``dask.compute(scheduler=...)`` accepts for its local schedulers.
LOCAL_SCHEDULERS = ("threads", "processes", "synchronous", "sync", "single-threaded")


def local_get(scheduler: Any) -> Any:
    """The ``get`` function of a local scheduler name; anything else is returned unchanged.

    ``dask.compute(scheduler="threads")`` imports ``distributed`` (about 0.2 s) only to
    look for a running client; the ``get`` function itself skips that lookup.

    Parameters
    ----------
    scheduler : a name in :data:`LOCAL_SCHEDULERS`, a distributed Client, a callable or None

    Returns
    -------
    what to pass as ``dask.compute(..., scheduler=...)``: same results, no client lookup
    """
    if not isinstance(scheduler, str) or scheduler not in LOCAL_SCHEDULERS:
        return scheduler
    if scheduler == "threads":
        from dask.threaded import get
    elif scheduler == "processes":
        from dask.multiprocessing import get
    else:
        from dask.local import get_sync as get
    return get


class _PromptBar(ProgressBar):
    """Dask's ProgressBar, except that the end of a computation does not wait for the next tick.

    Dask's bar joins its timer thread, which sleeps ``dt`` between redraws: every
    computation lasted a whole number of ``dt``.
    """

    def _start(self, dsk):
        self._wake = threading.Event()
        super()._start(dsk)

    def _timer_func(self):
        while self._running:
            self._update_bar(self._elapsed())
            self._wake.wait(self._dt)

    def _elapsed(self) -> float:
        from timeit import default_timer

        return default_timer() - self._start_time

    def _finish(self, dsk, state, errored):
        self._running = False
        self._wake.set()
        super()._finish(dsk, state, errored)


@contextlib.contextmanager
def progress_bar(show: bool, dt: float = 0.5) -> Iterator[None]:
    """A progress bar on stderr for local-scheduler computes in the block, when it is a terminal.

    Parameters
    ----------
    show : whether a bar is wanted at all
    dt : seconds between redraws
    """
    if show and sys.stderr.isatty():
        with _PromptBar(out=sys.stderr, dt=dt):
            yield
    else:
        yield
