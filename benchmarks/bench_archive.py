"""Archive benchmark: a whole campaign through ``daskxpcs run``, against its ``--plan``.

Steps:

1. Simulate the "archive" preset with the streaming simulator (2 samples x 11 isobars x
   3 scans x 4000 frames of 512 x 512 at 0.01 photon/pixel/frame), scaled down by
   ``--scale`` (fraction of the frames per scan) and ``--isobars`` (isobars per sample).
   ``--generator renewal`` (default) uses the piecewise-constant speckle generator
   (``daskxpcs/simulate/renewal.py``, cost grows with the photons: a few seconds a scan,
   mostly writing the raw files; every scan with beta = 1, and truth.json says so);
   ``--generator exact`` the Gaussian-field one with the preset's KWW beta (about 6 h
   for the full preset).
2. ``--plan`` on it (projected time from ``daskxpcs.campaign.plan.DEFAULT_THROUGHPUT``).
3. ``run`` it; print total time, frames x pixels / s, peak memory (RSS) of every process
   (this one; with ``--scheduler local:N`` also the scheduler and each worker) and the
   ratio actual / projected time.
4. ``--plan`` of a manifest the size of the real archive (2 x 11 isobars x 10 scans x
   10 000 frames of 2162 x 2068, Eiger2 4M) written as header-only LIMA files (chunked
   datasets with no chunk stored, a few kB each) with the throughput just measured:
   expected time on 1, 8 and 64 workers.

Commands::

    python benchmarks/bench_archive.py                       # full archive preset (simulation: minutes)
    python benchmarks/bench_archive.py --generator exact     # the same with the exact generator (hours)
    python benchmarks/bench_archive.py --scale 0.1 --isobars 2            # scaled down, threads
    python benchmarks/bench_archive.py --scale 0.1 --isobars 2 --scheduler local:2

The data go to ``--workdir`` (default ``bench-data/archive``, git-ignored) and are reused
when the same scale, isobars, seed and generator were simulated before (stamp
``bench-params.json``); ``--clean`` removes them afterwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ARCHIVE = {"samples": 2, "isobars": 11, "scans": 10, "frames": 10_000, "shape": (2162, 2068)}


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB


def simulate(workdir: Path, scale: float, isobars: int, seed: int, generator: str = "renewal") -> Path:
    """Write the scaled archive campaign (in this process; call through a subprocess)."""
    from daskxpcs.simulate import campaign as sim

    base = sim.PRESETS["archive"]
    n_frames = max(64, int(round(base.n_frames * scale)))
    preset = dataclasses.replace(base, n_frames=n_frames,
                                 samples={k: v[:isobars] for k, v in base.samples.items()})
    name = f"archive-bench-{n_frames}-{isobars}"
    sim.PRESETS[name] = preset  # a derived preset, registered in this process only
    return sim.simulate_campaign(workdir, preset=name, seed=seed, method=generator)


def _simulated(workdir: Path, scale: float, isobars: int, seed: int, generator: str) -> tuple[Path, float]:
    stamp = workdir / "bench-params.json"
    params = {"scale": scale, "isobars": isobars, "seed": seed, "generator": generator}
    manifest = workdir / "campaign.toml"
    if manifest.exists() and stamp.exists() and json.loads(stamp.read_text()) == params:
        return manifest, 0.0
    t = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--simulate-only", "--workdir", str(workdir), "--scale", str(scale),
                    "--isobars", str(isobars), "--seed", str(seed), "--generator", generator], check=True)
    stamp.write_text(json.dumps(params))
    return manifest, time.perf_counter() - t


def header_only_archive(root: Path, spec: dict = ARCHIVE) -> Path:
    """A manifest of header-only LIMA files the size of the real archive (nothing but headers on disk)."""
    import h5py
    import hdf5plugin

    from daskxpcs.simulate.campaign import _cycle_full

    root.mkdir(parents=True, exist_ok=True)
    ny, nx = spec["shape"]
    y, x = np.indices((ny, nx), dtype=np.float32)
    r = np.hypot(y - ny * 0.5, x + 2.0 * nx)  # a ring segment around the FSDP
    q = (2.6 + 0.5 * (r - r.min()) / (r.max() - r.min())).astype(np.float32)
    np.save(root / "qmap.npy", q)
    lines = ['[campaign]', 'name = "archive-size"', '', '[[geometry]]', 'name = "eiger4m"', 'qmap = "qmap.npy"',
             'q_edges = [2.70, 2.78, 2.86, 2.94, 3.02]']
    for s in range(spec["samples"]):
        for iso in _cycle_full(1.0)[: spec["isobars"]]:
            for j in range(spec["scans"]):
                name = f"S{s + 1}_{iso.stage[0]}{iso.pressure_gpa:.1f}_s{j + 1:02d}"
                path = root / "raw" / f"{name}.h5"
                if not path.exists():
                    path.parent.mkdir(exist_ok=True)
                    with h5py.File(path, "w") as f:
                        det = f.create_group("entry_0000/ID10/eiger4m")
                        det.create_dataset("data", shape=(spec["frames"], ny, nx), dtype="uint32",
                                           chunks=(1, ny, nx), **hdf5plugin.Bitshuffle(cname="lz4"))
                        det["acquisition/exposure_time"] = 0.099
                        det["acquisition/latency_time"] = 0.001
                        f["entry_0000/measurement/data"] = h5py.SoftLink("/entry_0000/ID10/eiger4m/data")
                lines += ["", "[[scan]]", f'name = "{name}"', f'sample = "S{s + 1}"', 'geometry = "eiger4m"',
                          f'stage = "{iso.stage}"', f"pressure_gpa = {iso.pressure_gpa}",
                          f"t_w_s = {600.0 + 1200.0 * j}", f'raw = "raw/{name}.h5"']
    (root / "campaign.toml").write_text("\n".join(lines) + "\n")
    return root / "campaign.toml"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=REPO / "bench-data" / "archive")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the 4000 frames per scan")
    ap.add_argument("--isobars", type=int, default=11, help="isobars per sample (of 11)")
    ap.add_argument("--scheduler", default="threads", help="threads or local:N")
    ap.add_argument("--max-in-flight", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generator", choices=("renewal", "exact"), default="renewal",
                    help="simulator: renewal (default; fast, beta = 1) or exact (any beta; hours at full size)")
    ap.add_argument("--clean", action="store_true", help="remove the simulated data afterwards")
    ap.add_argument("--simulate-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.simulate_only:
        simulate(a.workdir, a.scale, a.isobars, a.seed, a.generator)
        return 0

    from daskxpcs.campaign import load_manifest, run_campaign
    from daskxpcs.campaign.plan import format_plan, plan_campaign

    manifest, t_sim = _simulated(a.workdir / "campaign", a.scale, a.isobars, a.seed, a.generator)
    out = a.workdir / "out"
    if out.exists():
        shutil.rmtree(out)
    man = load_manifest(manifest)
    n_workers = int(a.scheduler.split(":")[1]) if a.scheduler.startswith("local:") else (os.cpu_count() or 1)
    plan = plan_campaign(man, max_in_flight=a.max_in_flight)
    print(format_plan(plan))
    projected = plan.time_s(n_workers)
    print(f"simulated in {t_sim:.1f} s" if t_sim else "simulation reused")

    client = cluster = None
    scheduler = a.scheduler
    if a.scheduler.startswith("local:"):
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None)
        client = scheduler = Client(cluster)
    t = time.perf_counter()
    rc = run_campaign(manifest, out=out, scheduler=scheduler, max_in_flight=a.max_in_flight, report=False,
                      progress=False)
    wall = time.perf_counter() - t
    peaks = {"client (this process)": _maxrss_bytes()}
    if client is not None:
        rss = client.run(_maxrss_bytes)
        peaks.update({f"worker {w}": v for w, v in sorted(rss.items())})
        peaks["scheduler"] = client.run_on_scheduler(_maxrss_bytes)
        client.close()
        cluster.close()
    summary = json.loads((out / "summary.json").read_text())
    fp = plan.frame_pixels
    print(f"\nrun ({a.scheduler}, {n_workers} workers): exit {rc}, {summary['n_succeeded']}/{summary['n_scans']} scans "
          f"in {wall:.1f} s; {fp:.3e} frame-pixels -> {fp / wall:.3e} frame-pixels/s "
          f"({fp / wall / n_workers:.3e} per worker)")
    stages = summary["timings_s"]["stages"]
    print("stage seconds (summed over scans): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    for k, v in peaks.items():
        print(f"peak RSS {k}: {v / 2**20:.0f} MiB")
    print(f"projected {projected:.1f} s ({plan.throughput:.3g} frame-pixels/s per worker + "
          f"{plan.scan_overhead_s:.2g} s per scan, {plan.calibration_source}); "
          f"actual / projected = {wall / projected:.2f}")

    big = plan_campaign(load_manifest(header_only_archive(a.workdir / "archive-headers")), calibration=out,
                        max_in_flight=a.max_in_flight)
    print("\nreal archive size (header-only files), throughput measured above:")
    print(format_plan(big))
    if a.clean:
        shutil.rmtree(a.workdir)
    return rc


if __name__ == "__main__":
    sys.exit(main())
