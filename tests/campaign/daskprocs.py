"""A real Dask scheduler and workers as separate processes on 127.0.0.1 (what `dask scheduler`
and `dask worker` start), for tests marked ``distributed``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba-cache"))
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "3"
    return env


class DaskProcesses:
    """``dask scheduler`` + N ``dask worker`` subprocesses; ``close()`` stops exactly those."""

    def __init__(self, workdir: Path, n_workers: int = 2, nthreads: int = 1, extra_scheduler: list[str] = (),
                 extra_worker: list[str] = (), protocol: str = "tcp"):
        self.port = free_port()
        self.address = f"{protocol}://127.0.0.1:{self.port}"
        self.scheduler_file = Path(workdir) / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self.logs = Path(workdir) / "dask-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._start("scheduler", [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                                  f"{protocol}://127.0.0.1", "--port", str(self.port), "--no-dashboard",
                                  "--scheduler-file", str(self.scheduler_file), *extra_scheduler])
        for i in range(n_workers):
            self._start(f"worker{i}", [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                                       "--nthreads", str(nthreads), "--nworkers", "1", "--no-dashboard",
                                       "--host", "127.0.0.1", "--name", f"w{i}",
                                       "--local-directory", str(Path(workdir) / f"w{i}"), *extra_worker])
        self.n_workers = n_workers

    def _start(self, name: str, cmd: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "w")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                                           cwd=str(self.logs)))
        log.close()

    def wait(self, timeout: float = 180, security=None) -> None:
        from distributed import Client

        deadline = time.monotonic() + timeout
        while True:
            try:
                with Client(self.address, timeout="5s", security=security) as c:
                    c.wait_for_workers(self.n_workers, timeout=max(1.0, deadline - time.monotonic()))
                    return
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dask processes did not start; logs in {self.logs}") from None
                time.sleep(0.5)

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self):
        self.wait()
        return self

    def __exit__(self, *exc):
        self.close()
