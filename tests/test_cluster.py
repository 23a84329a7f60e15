"""--scheduler specs: local schedulers, LocalCluster, real scheduler/worker processes, TLS."""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

from conversions.errors import InputError
from daskxpcs.cluster import SchedulerSpecError, parse_spec, scheduler_context, single_blas_thread, slurm_kwargs

sys.path.insert(0, str(Path(__file__).parent / "campaign"))
from daskprocs import DaskProcesses, free_port  # noqa: E402


def _work():
    x = da.arange(10_000, chunks=1000, dtype=np.float64)
    return (x * x).sum()


EXPECTED = float(np.sum(np.arange(10_000, dtype=np.float64) ** 2))


def test_single_blas_thread_only_under_the_threaded_scheduler():
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        for sched in (None, "threads"):
            with single_blas_thread(sched):
                assert blas_threads() == {1}
            assert blas_threads() == {2}  # restored
        for sched in ("synchronous", "processes"):
            with single_blas_thread(sched):
                assert blas_threads() == {2}


@pytest.mark.parametrize("spec, parsed", [
    ("threads", ("threads", None)), ("processes", ("processes", None)), ("synchronous", ("synchronous", None)),
    ("sync", ("synchronous", None)), ("local:3", ("local", 3)), ("tcp://10.0.0.1:8786", ("address", "tcp://10.0.0.1:8786")),
    ("tls://host.example:8786", ("address", "tls://host.example:8786")),
    ("scheduler-file:/x/s.json", ("scheduler-file", "/x/s.json")), ("slurm:c.yaml", ("slurm", "c.yaml")),
])
def test_parse_spec(spec, parsed):
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["", "thread", "local:", "local:0", "local:two", "tcp://host", "tcp://:8786",
                                  "tcp://h:99999", "scheduler-file:", "slurm:", "mpi://x"])
def test_bad_spec_is_an_input_error(spec):
    with pytest.raises(SchedulerSpecError) as ei:
        parse_spec(spec)
    assert isinstance(ei.value, InputError)
    assert "--scheduler" in str(ei.value)


def test_missing_files_are_input_errors(tmp_path):
    with pytest.raises(SchedulerSpecError, match="scheduler file not found"):
        with scheduler_context(f"scheduler-file:{tmp_path / 'none.json'}"):
            pass
    with pytest.raises(SchedulerSpecError, match="file not found"):
        with scheduler_context(f"slurm:{tmp_path / 'none.yaml'}"):
            pass


@pytest.mark.parametrize("spec", ["threads", "processes", "synchronous"])
def test_local_schedulers(spec):
    before = dask.config.get("scheduler", None)
    with scheduler_context(spec) as h:
        assert h.kind == spec and h.client is None and h.dashboard_link is None
        assert dask.config.get("scheduler") == spec
        assert _work().compute(scheduler=h.scheduler) == EXPECTED
        assert _work().compute() == EXPECTED
    assert dask.config.get("scheduler", None) == before


def test_default_is_threads_without_a_client():
    with scheduler_context(None) as h:
        assert h.kind == "threads"


def test_unreachable_scheduler_is_an_input_error():
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(SchedulerSpecError, match="cannot reach the Dask scheduler"):
            with scheduler_context(f"tcp://127.0.0.1:{free_port()}"):
                pass


@pytest.mark.distributed
def test_local_cluster_and_allowed_failures():
    from distributed import KilledWorker

    with scheduler_context("local:1") as h:
        assert h.distributed and h.n_workers() == 1
        assert h.dashboard_link is None or h.dashboard_link.startswith("http://127.0.0.1:")
        assert _work().compute(scheduler=h.scheduler) == EXPECTED
        assert _work().compute() == EXPECTED  # the cluster is Dask's default inside the context
        # a task that kills every worker it lands on is reported, not retried forever
        with pytest.raises(KilledWorker):
            h.client.submit(os._exit, 1, pure=False).result(timeout=120)
        h.client.wait_for_workers(1, timeout=60)
        client = h.client
    assert client.status == "closed"


@pytest.mark.distributed
def test_existing_scheduler_tcp_and_scheduler_file(tmp_path):
    with DaskProcesses(tmp_path, n_workers=2) as procs:
        with scheduler_context(procs.address) as h:
            assert h.n_workers() == 2
            assert _work().compute(scheduler=h.scheduler) == EXPECTED
        with scheduler_context(f"scheduler-file:{procs.scheduler_file}") as h:
            assert h.n_workers() == 2
            assert _work().compute() == EXPECTED
        # an existing scheduler outlives our client
        assert all(p.poll() is None for p in procs.procs)


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    cryptography = pytest.importorskip("cryptography")
    del cryptography
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "daskxpcs-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.mark.distributed
def test_tls_uses_dask_security_config(tmp_path):
    from distributed import LocalCluster, Security

    cert, key = _self_signed(tmp_path)
    sec = Security(tls_ca_file=cert, tls_scheduler_cert=cert, tls_scheduler_key=key, tls_worker_cert=cert,
                   tls_worker_key=key, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
    conf = {"distributed.comm.tls.ca-file": cert, "distributed.comm.tls.client.cert": cert,
            "distributed.comm.tls.client.key": key}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls://", host="127.0.0.1",
                      security=sec, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        with pytest.raises(SchedulerSpecError, match="TLS needs certificates"):
            with scheduler_context(address):
                pass
        with dask.config.set(conf):
            with scheduler_context(address) as h:
                assert _work().compute(scheduler=h.scheduler) == EXPECTED


def test_slurm_kwargs_both_layouts(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("cores: 4\nmemory: 16GB\nwalltime: '01:00:00'\njob-extra-directives: ['--exclusive']\n")
    b = tmp_path / "b.yaml"
    b.write_text("jobqueue:\n  slurm:\n    cores: 4\n    memory: 16GB\n")
    assert slurm_kwargs(a) == {"cores": 4, "memory": "16GB", "walltime": "01:00:00",
                               "job_extra_directives": ["--exclusive"]}
    assert slurm_kwargs(b) == {"cores": 4, "memory": "16GB"}
    c = tmp_path / "c.yaml"
    c.write_text("- 1\n- 2\n")
    with pytest.raises(SchedulerSpecError, match="expected a mapping"):
        slurm_kwargs(c)
