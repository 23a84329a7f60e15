"""``--scheduler`` strings -> a context manager giving a Dask scheduler.

Accepted specs::

    threads (default) | processes | synchronous      local Dask schedulers
    local:N                                         distributed LocalCluster, N workers on 127.0.0.1
    tcp://HOST:PORT                                 an existing distributed scheduler
    tls://HOST:PORT                                 the same over TLS; certificates from Dask's
                                                    config ``distributed.comm.tls.*``
    scheduler-file:PATH                             the scheduler named in a scheduler file
    slurm:FILE.yaml                                 dask-jobqueue SLURMCluster from a YAML of its kwargs

Within the context the chosen scheduler is also Dask's default, so code that calls
``dask.compute`` without ``scheduler=`` uses it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask

from conversions.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["SchedulerHandle", "SchedulerSpecError", "parse_spec", "scheduler_context", "single_blas_thread",
           "DISTRIBUTED_CONFIG"]

LOCAL = {"threads": "threads", "processes": "processes", "synchronous": "synchronous", "sync": "synchronous"}

# A task that keeps killing workers is reported after this many deaths, not retried forever;
# applies to the clusters this module starts (an external scheduler keeps its own config).
DISTRIBUTED_CONFIG = {"distributed.scheduler.allowed-failures": 2}

log = logging.getLogger(__name__)


class SchedulerSpecError(InputError):
    """A ``--scheduler`` string that is malformed or names something that cannot be used."""


@dataclass
class SchedulerHandle:
    """What ``scheduler_context`` yields.

    Attributes
    ----------
    spec : str
        The spec as given.
    kind : str
        ``"threads"``, ``"processes"``, ``"synchronous"`` or ``"distributed"``.
    scheduler : str or distributed.Client
        Pass as ``dask.compute(..., scheduler=handle.scheduler)``.
    client : distributed.Client or None
        The client for distributed kinds.
    """

    spec: str
    kind: str
    scheduler: Any
    client: Any = None

    @property
    def distributed(self) -> bool:
        return self.client is not None

    @property
    def dashboard_link(self) -> str | None:
        if self.client is None:
            return None
        try:
            if "dashboard" not in self.client.scheduler_info().get("services", {}):
                return None  # scheduler started without one
            return self.client.dashboard_link
        except Exception:  # no dashboard (bokeh missing or disabled)
            return None

    def n_workers(self) -> int:
        """Workers (distributed) or threads (local) available now."""
        if self.client is not None:
            return max(1, len(self.client.scheduler_info().get("workers", {})))
        if self.kind == "synchronous":
            return 1
        return os.cpu_count() or 1


def single_blas_thread(scheduler: Any) -> contextlib.AbstractContextManager:
    """One BLAS thread per Dask thread while the local threaded scheduler computes.

    Dask's threads already fill the cores; OpenBLAS's own pool under each of them
    oversubscribes the cores (the dense engine ran 1.45 x slower on 2 cores).
    Distributed workers get the same from their nanny (``OPENBLAS_NUM_THREADS=1``).
    The limit is process-wide: wrap the whole computation, not single tasks.

    Parameters
    ----------
    scheduler : what ``dask.compute(scheduler=...)`` receives (None: Dask's default)
    """
    if scheduler in (None, "threads"):
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1, user_api="blas")
    return contextlib.nullcontext()


def parse_spec(spec: str) -> tuple[str, str | int | None]:
    """Split a scheduler spec into (kind, argument) without starting anything.

    Returns
    -------
    (kind, arg) : kind in {"threads", "processes", "synchronous", "local", "address",
        "scheduler-file", "slurm"}; arg is the worker count, address or path.

    Raises
    ------
    SchedulerSpecError
        For anything else.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SchedulerSpecError(f"--scheduler: expected a string, got {spec!r}")
    s = spec.strip()
    if s.lower() in LOCAL:
        return LOCAL[s.lower()], None
    if s.startswith("local:"):
        n = s[len("local:"):]
        if not n.isdigit() or int(n) < 1:
            raise SchedulerSpecError(f"--scheduler {spec!r}: local:N needs a worker count N >= 1")
        return "local", int(n)
    if s.startswith(("tcp://", "tls://")):
        hostport = s.split("://", 1)[1]
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SchedulerSpecError(f"--scheduler {spec!r}: expected tcp://HOST:PORT or tls://HOST:PORT")
        return "address", s
    if s.startswith("scheduler-file:"):
        path = s[len("scheduler-file:"):]
        if not path:
            raise SchedulerSpecError(f"--scheduler {spec!r}: scheduler-file:PATH needs a path")
        return "scheduler-file", path
    if s.startswith("slurm:"):
        path = s[len("slurm:"):]
        if not path:
            raise SchedulerSpecError(f"--scheduler {spec!r}: slurm:FILE.yaml needs a file")
        return "slurm", path
    raise SchedulerSpecError(
        f"--scheduler {spec!r}: unknown scheduler; expected threads, processes, synchronous, "
        "local:N, tcp://HOST:PORT, tls://HOST:PORT, scheduler-file:PATH or slurm:FILE.yaml"
    )


def slurm_kwargs(path: str | os.PathLike) -> dict:
    """Read SLURMCluster keyword arguments from YAML.

    Accepts either the kwargs at top level or dask-jobqueue's own config layout
    (``jobqueue: {slurm: {...}}``).
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SchedulerSpecError(f"--scheduler slurm:{path}: file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SchedulerSpecError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise SchedulerSpecError(f"{path}: expected a mapping of SLURMCluster arguments")
    if "jobqueue" in data:
        data = (data.get("jobqueue") or {}).get("slurm") or {}
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _connect(address: str | None = None, scheduler_file: str | None = None, security=None):
    from distributed import Client

    where = address or f"scheduler file {scheduler_file}"
    try:
        return Client(address, scheduler_file=scheduler_file, security=security)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerSpecError(f"--scheduler: cannot reach the Dask scheduler at {where}: {exc}") from None


@contextlib.contextmanager
def _client_context(client, cluster=None) -> Iterator[Any]:
    try:
        with contextlib.suppress(Exception):
            client.forward_logging(level=logging.WARNING)
        yield client
    finally:
        client.close()
        if cluster is not None:
            try:
                cluster.close()
            except Exception as exc:  # distributed races a nanny still restarting a killed worker
                logger.warning("closing the local Dask cluster: %r", exc)


@contextlib.contextmanager
def scheduler_context(spec: Any = "threads") -> Iterator[SchedulerHandle]:
    """Open the scheduler named by ``spec`` for the duration of the block.

    Parameters
    ----------
    spec : str, distributed.Client or None
        A spec string (see module docstring). A ``Client`` is used as is (not closed on
        exit); ``None`` means the current Dask default (a global client if one is active,
        else threads).

    Yields
    ------
    SchedulerHandle

    Raises
    ------
    SchedulerSpecError
        For a malformed spec, a missing file, or a scheduler that cannot be reached.
    """
    if spec is None or not isinstance(spec, str):
        yield _existing(spec)
        return
    kind, arg = parse_spec(spec)
    if kind in ("threads", "processes", "synchronous"):
        with dask.config.set(scheduler=kind):
            yield SchedulerHandle(spec, kind, kind)
        return

    from distributed import LocalCluster, Security

    with dask.config.set(DISTRIBUTED_CONFIG):
        if kind == "local":
            cluster = LocalCluster(
                n_workers=int(arg), threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                processes=True,
            )
            from distributed import Client

            client = Client(cluster)
            ctx = _client_context(client, cluster)
        elif kind == "address":
            security = Security() if str(arg).startswith("tls://") else None
            if security is not None and not security.tls_client_cert and not security.tls_ca_file:
                raise SchedulerSpecError(
                    f"--scheduler {spec}: TLS needs certificates in Dask's config "
                    "(distributed.comm.tls.ca-file, distributed.comm.tls.client.cert/key)"
                )
            ctx = _client_context(_connect(address=str(arg), security=security))
        elif kind == "scheduler-file":
            if not Path(str(arg)).is_file():
                raise SchedulerSpecError(f"--scheduler {spec}: scheduler file not found")
            ctx = _client_context(_connect(scheduler_file=str(arg), security=Security()))
        else:  # slurm
            kwargs = slurm_kwargs(str(arg))  # a bad file is named before a missing package
            try:
                from dask_jobqueue import SLURMCluster
            except ImportError:
                raise SchedulerSpecError(
                    f"--scheduler {spec}: needs dask-jobqueue (pip install 'daskxpcs[slurm]')"
                ) from None
            try:
                cluster = SLURMCluster(**kwargs)
            except TypeError as exc:
                raise SchedulerSpecError(f"{arg}: bad SLURMCluster argument: {exc}") from None
            from distributed import Client

            ctx = _client_context(Client(cluster), cluster)
        # The client is Dask's default while open; it must not go into dask.config, which
        # nannies pickle into every (re)started worker process.
        with ctx as client:
            yield SchedulerHandle(spec, "distributed", client, client)


def _existing(obj) -> SchedulerHandle:
    if obj is not None:
        if "Client" in type(obj).__name__:
            return SchedulerHandle(repr(obj), "distributed", obj, obj)
        raise SchedulerSpecError(f"--scheduler: expected a spec string or a Client, got {obj!r}")
    try:
        from distributed import get_client

        client = get_client()
        return SchedulerHandle("default", "distributed", client, client)
    except (ImportError, ValueError):
        return SchedulerHandle("default", "threads", "threads")
