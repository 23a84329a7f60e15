"""Deploy recipes: the SLURM YAML renders a sane job script, the k8s manifest is a valid
DaskCluster, the shell scripts parse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from daskxpcs.cluster import scheduler_context, slurm_kwargs

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_slurm_yaml_renders_job_script(tmp_path, monkeypatch):
    jq = pytest.importorskip("dask_jobqueue")
    monkeypatch.chdir(tmp_path)  # SLURMCluster creates its log_directory
    kw = slurm_kwargs(DEPLOY / "slurm" / "cluster.yaml")
    assert kw["n_workers"] == 16
    kw["n_workers"] = 0  # render only: nothing submitted
    with jq.SLURMCluster(**kw) as cluster:
        script = cluster.job_script()
    lines = script.splitlines()
    for directive in ("#SBATCH -J daskxpcs", "#SBATCH -p nice", "#SBATCH --cpus-per-task=16", "#SBATCH -t 04:00:00",
                      "#SBATCH --exclusive"):
        assert directive in lines, (directive, script)
    assert any(l.startswith("#SBATCH --mem=") for l in lines)
    worker = next(l for l in lines if "dask_worker" in l or "dask worker" in l)
    for arg in ("--nthreads 4", "--nworkers 4", "--lifetime 235m", "--local-directory $TMPDIR"):
        assert arg in worker, (arg, worker)
    assert "source ~/venvs/daskxpcs/bin/activate" in lines


def test_slurm_spec_opens_a_jobqueue_cluster(tmp_path, monkeypatch):
    pytest.importorskip("dask_jobqueue")
    monkeypatch.chdir(tmp_path)
    kw = yaml.safe_load((DEPLOY / "slurm" / "cluster.yaml").read_text())
    kw.update(n_workers=0, log_directory=str(tmp_path / "logs"))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(kw))
    with scheduler_context(f"slurm:{tmp_path / 'c.yaml'}") as h:
        assert h.distributed and type(h.client.cluster).__name__ == "SLURMCluster"
        assert h.client.scheduler_info()["workers"] == {}


def test_kubernetes_daskcluster_manifest():
    doc = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    assert doc["apiVersion"] == "kubernetes.dask.org/v1" and doc["kind"] == "DaskCluster"
    name = doc["metadata"]["name"]
    spec = doc["spec"]
    assert isinstance(spec["worker"]["replicas"], int) and spec["worker"]["replicas"] >= 1
    (wc,) = spec["worker"]["spec"]["containers"]
    assert wc["args"][:2] == ["dask", "worker"] and "$(DASK_WORKER_NAME)" in wc["args"]
    mounts = {m["name"] for m in wc["volumeMounts"]}
    assert mounts <= {v["name"] for v in spec["worker"]["spec"]["volumes"]}
    (sc,) = spec["scheduler"]["spec"]["containers"]
    assert sc["args"] == ["dask", "scheduler"]
    port_names = {p["name"]: p["containerPort"] for p in sc["ports"]}
    assert port_names["tcp-comm"] == 8786
    svc = spec["scheduler"]["service"]
    assert svc["selector"] == {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    for p in svc["ports"]:
        assert p["targetPort"] in port_names
    assert {"name": "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", "value": "2"} in sc["env"]
    assert wc["image"] == sc["image"]


@pytest.mark.parametrize("script", ["slurm/daskxpcs.sbatch", "local/run-local.sh"])
def test_shell_scripts_parse(script):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    text = (DEPLOY / script).read_text()
    assert text.startswith("#!/")
    subprocess.run([bash, "-n", str(DEPLOY / script)], check=True)
    assert "daskxpcs run" in text
    if script.startswith("slurm"):
        assert "--scheduler-file" in text and "srun" in text and "dask worker" in text
    else:
        assert "127.0.0.1" in text and text.count("dask worker") == 1 and "for i in 1 2" in text
