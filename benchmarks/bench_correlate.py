"""Benchmark of the correlation engine; every time is a whole process, imports included.

Commands (``--scale s`` multiplies the detector side, ``--frames`` overrides T)::

    python benchmarks/bench_correlate.py sparse  [--scale 1] [--frames 2000] [--workdir DIR] [--repeat 3]
        0.01 ph/px/frame, 1024x1024, 10 q-bins: ``daskxpcs correlate`` time, frames*pixels/s,
        and the ratio against ESRF's xpcs-correlator event correlator (medians of --repeat
        alternating runs of each process; pip package
        ``xpcs-correlator``, installed with --no-deps in a venv with system site packages
        under WORKDIR/venv; skipped with a message when it cannot be installed or run).
    python benchmarks/bench_correlate.py dense   [--scale 1] [--frames 2000] [--repeat 1]
        1.0 ph/px/frame, same shape: ``daskxpcs correlate`` against one float32 numpy
        X @ X.T over the same pixels (its process reads the store's counts first; the
        product alone is printed too). Target: >= 1.3x. Where the CPU has byte kernels
        (exact int8 block products, the default there) our other paths run too: the AVX2
        kernel (DASKXPCS_INT8=avx2, what most x86 CPUs without AVX-512 run) when the default
        is an AVX-512 one, and the float32 BLAS path (DASKXPCS_INT8=0). ``--repeat N``
        alternates N runs of the processes and compares medians (about 3 min a round at full size).
        Second baseline: APS boost_corr's CPU two-time correlator (TwotimeCorrelator, torch
        on "cpu", dense C of all 10 q-bins plus its g2 and SAXS by-products, every bin's C
        turned into numpy). Its process reads the store and writes boost_corr's own q-map
        HDF5 file (dynamic = static map = the store's q-bins, cropped to them) in a temp
        dir under WORKDIR, then reads the store block by block and feeds the counts 64
        frames at a time, as its dataset loaders hand over frame batches. Target:
        boost_corr / daskxpcs >= 2x. It then checks one q-bin's C (t1 <= t2: boost_corr
        keeps the upper triangle) against daskxpcs's ``ttcf``: both
        are C = N sum_p I_t1 I_t2 / (S_t1 S_t2) over the bin's N pixels, diagonal included.
        Installed once into a venv under WORKDIR/boostcorr-venv (system site packages plus
        this interpreter's): ``pip install --no-deps torch==2.13.0`` (a CPU build where
        pip's find-links offer one; PyPI's default CUDA build cannot import without its
        nvidia-* dependencies, which are then installed too, several GB), torch's pure-Python
        dependencies, tqdm, scipy, h5py, then ``pip install --no-deps
        --ignore-requires-python boost-corr==0.1.7`` (it declares Python >= 3.12 but runs on
        3.11); skipped with a message when it cannot be installed or run.
    python benchmarks/bench_correlate.py memory  [--scale 1] [--frames 14000]
        peak RSS of ``daskxpcs correlate`` on a 0.01 ph/px/frame scan.
    python benchmarks/bench_correlate.py scaling [--scale 1] [--frames 6000]
        a 0.01 ph/px/frame scan with --scheduler local:1 and local:2 (distributed, one thread
        each), whole processes; 6000 frames by default, as at 2000 the cluster's start and the
        transfer of shared loads between worker processes are most of a 5 s run.
    python benchmarks/bench_correlate.py all ...

Stores are generated once per (kind, shape, frames) under WORKDIR (default
/tmp/daskxpcs-bench), block by block with plain Poisson counts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import numpy as np

N_Q = 10


def qmap_and_edges(ny: int, nx: int) -> tuple[np.ndarray, list[float]]:
    """A radial q-map (1/A) around the detector centre and 10 equal bins spanning it."""
    y, x = np.mgrid[:ny, :nx]
    r = np.hypot(y - ny / 2, x - nx / 2)
    q = (2.70 + 0.32 * r / r.max()).astype(np.float32)
    return q, np.linspace(2.70, 3.0201, N_Q + 1).tolist()


def generate(path: Path, n_frames: int, ny: int, nx: int, density: float, seed: int = 0) -> None:
    """Write a Poisson scan store block by block (never the whole stack in memory)."""
    from conversions.store import create_store, finalise_store, write_block

    if (path / "zarr.json").exists():
        try:
            from conversions.store import open_scan_store

            open_scan_store(path)
            return
        except Exception:
            pass
    rng = np.random.default_rng(seed)
    q, edges = qmap_and_edges(ny, nx)
    layout = "events" if density < 0.05 else "dense"
    create_store(path, n_frames=n_frames, frame_shape=(ny, nx), dtype=np.dtype(np.uint16),
                 base_valid=np.ones((ny, nx), bool), qmap=q, q_edges=edges, frame_time_s=0.1,
                 layout=layout, source={"source_format": "benchmark"})
    import zarr

    attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    t0 = time.perf_counter()
    for i in range(attrs["n_blocks"]):
        a, b = i * attrs["t_block"], min(n_frames, (i + 1) * attrs["t_block"])
        if density < 0.05:  # sparse: photons at random pixels, as fast as it gets
            blk = np.zeros((b - a, ny * nx), np.uint16)
            for k in range(b - a):
                n = rng.poisson(density * ny * nx)
                np.add.at(blk[k], rng.integers(0, ny * nx, n), 1)
            blk = blk.reshape(b - a, ny, nx)
        else:
            blk = rng.poisson(density, (b - a, ny, nx)).astype(np.uint16)
        write_block(path, i, blk)
    finalise_store(path, expected_frames=n_frames)
    print(f"  generated {path} ({n_frames} x {ny}x{nx}, {density} ph/px/frame) in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)


def run_timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Wall time (s), peak RSS of the child (MiB) and output of a whole process."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    return dt, rss, p.stdout + p.stderr


def correlate_cmd(store: Path, out: Path, scheduler: str = "threads", extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "daskxpcs.cli", "correlate", str(store), "--out", str(out),
            "--scheduler", scheduler, *(extra or [])]


def peak_rss_cmd(cmd: list[str]) -> tuple[float, int, str]:
    """Run ``cmd`` in a fresh wrapper so that RUSAGE_CHILDREN holds only its peak."""
    wrapper = textwrap.dedent(f"""
        import resource, subprocess, sys, time
        t0 = time.perf_counter()
        p = subprocess.run({cmd!r}, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        sys.stdout.write(p.stdout + p.stderr)
        print("PEAK", dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, p.returncode)
    """)
    p = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("PEAK")][-1].split()
    if int(line[3]) != 0:
        raise RuntimeError(p.stdout + p.stderr)
    return float(line[1]), int(line[2]), p.stdout


BASELINE_DENSE = """
import sys, time, numpy as np
t0 = time.perf_counter()
from conversions.store import open_scan_store
st = open_scan_store(sys.argv[1])
x = st.read_dense(0, st.n_frames, 0, len(st.pixels))
t1 = time.perf_counter()
c = x @ x.T
t2 = time.perf_counter()
print(f"BASE read={t1 - t0:.3f} matmul={t2 - t1:.3f} shape={c.shape}")
"""

BASELINE_XPCSCORR = """
import sys, time, numpy as np
t0 = time.perf_counter()
from conversions.store import open_scan_store
from xpcscorr.correlators.sparse.chunked_pixel_numba import CorrelatorSparsePixelChunkedNumba
st = open_scan_store(sys.argv[1])
T, (ny, nx) = st.n_frames, st.frame_shape
ptr, frame, count = st.read_events(0, T, 0, len(st.pixels))
# CSC over every detector pixel (columns = flat pixel index), as xpcscorr expects
full_ptr = np.zeros(ny * nx + 1, np.int64)
n_ev = np.zeros(ny * nx, np.int64)
n_ev[st.pixels] = np.diff(ptr)
np.cumsum(n_ev, out=full_ptr[1:])
order = np.argsort(st.pixels, kind="stable")
starts, lens = ptr[:-1][order], np.diff(ptr)[order]
# gather each pixel's events in flat-pixel order (vectorised: no Python loop over pixels)
idx = np.arange(lens.sum()) + np.repeat(starts - (np.cumsum(lens) - lens), lens)
q = st.qmap.astype(float)
edges = np.asarray(st.q_edges)
masks = np.stack([(q >= edges[b]) & (q < edges[b + 1]) & st.valid for b in range(len(edges) - 1)])
t1 = time.perf_counter()
c = CorrelatorSparsePixelChunkedNumba(count[idx].astype(np.float64), frame[idx].astype(np.int64), full_ptr,
                                      (T, ny, nx), masks, ttcf_format="t1,t2", t1_t2_binning=None,
                                      age_binning=None, lag_binning=None,
                                      extra_options={"dask_cluster_type": "local", "dask_n_workers": int(sys.argv[2]),
                                                     "chunks_N": int(sys.argv[3])})
c._compute()
t2 = time.perf_counter()
print(f"BASE load={t1 - t0:.3f} correlate={t2 - t1:.3f} ttcf={c.results.ttcf.shape}")
"""


BASELINE_BOOSTCORR = """
import os, sys, tempfile, time, numpy as np
t0 = time.perf_counter()
import h5py, torch
from boost_corr import TwotimeCorrelator
from boost_corr.xpcs_aps_8idi.xpcs_qpartitionmap import XpcsQPartitionMap
from conversions.store import open_scan_store
st = open_scan_store(sys.argv[1])
T, (ny, nx), P = st.n_frames, st.frame_shape, len(st.pixels)
# boost_corr's q-map file: dynamic = static map = daskxpcs's q-bin + 1 (0: pixel unused)
edges = np.asarray(st.q_edges, np.float64)
q = st.qmap.astype(np.float64)
with np.errstate(invalid="ignore"):
    b = np.searchsorted(edges, q, side="right") - 1
    used = st.valid & np.isfinite(q) & (b >= 0) & (b < len(edges) - 1)
dq = np.where(used, b + 1, 0).astype(np.uint32)
with tempfile.TemporaryDirectory(dir=sys.argv[2]) as tmp:
    qfile = os.path.join(tmp, "qmap.h5")
    with h5py.File(qfile, "w") as f:
        f["/qmap/dynamic_roi_map"] = dq
        f["/qmap/static_roi_map"] = dq
        f["/qmap/mask"] = st.valid.astype(np.uint8)
    # crop_ratio_threshold > 1: always crop to the q-map's pixels, sorted by bin
    qpm = XpcsQPartitionMap(qfile, device="cpu", flag_sort=True, crop_ratio_threshold=2.0)
crop = qpm.mask_crop.cpu().numpy()
col = np.full(ny * nx, -1, np.int64)
col[st.pixels] = np.arange(P)
col = col[crop]  # store column of each of boost_corr's pixels
assert (col >= 0).all()
gather = not np.array_equal(col, np.arange(len(col)))
tt = TwotimeCorrelator(qpm.qinfo, frame_num=T, det_size=(ny, nx), method="normal", window=1024,
                       mask_crop=qpm.mask_crop, device="cpu")
t1 = time.perf_counter()
for a in range(0, T, st.t_block):  # the store read block by block (stored integers), boost_corr
    x = st.read_dense(a, min(T, a + st.t_block), 0, P, dtype=None)  # fed float32, 64 frames a call
    for f in range(0, len(x), 64):
        part = x[f:f + 64][:, col] if gather else x[f:f + 64]
        tt.process(torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32)))
t2 = time.perf_counter()
tt.post_processing(smooth_method="sqmap")
saxs = qpm.normalize_scattering(tt.get_scattering())
t3 = time.perf_counter()
keep, kept, n_c2 = int(sys.argv[3]), None, 0
for item in tt.get_twotime_generator():  # every bin's dense (upper-triangle) C, as numpy
    for k, v in item.items():
        if k.startswith("correlation_map/c2_"):
            if qpm.qinfo["dq_idx"][n_c2] == keep + 1:
                kept = v
            n_c2, shape = n_c2 + 1, v.shape
t4 = time.perf_counter()
print(f"BASE load={t1 - t0:.3f} read+process={t2 - t1:.3f} post={t3 - t2:.3f} twotime={t4 - t3:.3f} "
      f"bins={n_c2} c2={shape} pixels={len(crop)} threads={torch.get_num_threads()}")
if kept is not None:
    np.save(sys.argv[4], kept)
"""


def side_venv(venv: Path, name: str) -> str | None:
    """Python of a venv under WORKDIR that also sees this interpreter's packages, or None with a message.

    Created with --system-site-packages plus a .pth line adding this interpreter's purelib
    (numpy, h5py, dask, numba, the project, ...) below the venv's own packages.
    """
    py = venv / "bin" / "python"
    if not py.exists():
        r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], capture_output=True)
        if r.returncode != 0:
            print(f"  {name}: cannot create a venv; baseline skipped")
            return None
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True).stdout.strip()
        Path(site, "daskxpcs-parent.pth").write_text(
            f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    return str(py)


def xpcscorr_python(workdir: Path) -> str | None:
    """Python of a venv (this interpreter's packages visible) with xpcs-correlator, or None with a message."""
    py = side_venv(workdir / "venv", "xpcs-correlator")
    if py is None:
        return None
    r = subprocess.run([py, "-c", "import xpcscorr"], capture_output=True)
    if r.returncode != 0:
        r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "xpcs-correlator"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"  xpcs-correlator not installable ({r.stderr.strip().splitlines()[-1:]}); baseline skipped")
            return None
    return py


#: boost-corr 0.1.7 declares Python >= 3.12 but runs on 3.11; its declared dependencies
#: (torchvision, scikit-image, nvidia-ml-py, matplotlib, ...) serve its GUI, GPU scheduler
#: and file readers, not the two-time correlator, so it goes in with --no-deps and these.
BOOSTCORR = "boost-corr==0.1.7"
BOOSTCORR_TORCH = "torch==2.13.0"
BOOSTCORR_DEPS = ["filelock", "typing-extensions", "sympy", "networkx", "jinja2", "fsspec",  # torch's
                  "tqdm", "scipy", "h5py"]  # boost_corr's imports on the two-time path
BOOSTCORR_CHECK = ("import torch, boost_corr, boost_corr.xpcs_aps_8idi.xpcs_qpartitionmap; "
                   "assert float(torch.ones(4) @ torch.ones(4)) == 4.0")


def boostcorr_python(workdir: Path) -> str | None:
    """Python of a venv (this interpreter's packages visible) with boost_corr and CPU torch, or None with a message.

    torch goes in first with --no-deps: a CPU build (torch-2.13.0+cpu, where pip's
    find-links offer one) needs none of the nvidia-* CUDA wheels. PyPI's default Linux
    wheel is a CUDA build that cannot import without them (libcudnn.so.9 missing); only
    when torch cannot import and multiply on the CPU is it reinstalled with its
    dependencies (several GB).
    """
    py = side_venv(workdir / "boostcorr-venv", "boost_corr")
    if py is None:
        return None
    if subprocess.run([py, "-c", BOOSTCORR_CHECK], capture_output=True).returncode == 0:
        return py

    def pip(*args: str) -> str | None:
        r = subprocess.run([py, "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
        return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1]

    torch_ok = [py, "-c", "import torch; assert float(torch.ones(4) @ torch.ones(4)) == 4.0"]
    steps = [("--no-deps", BOOSTCORR_TORCH), tuple(BOOSTCORR_DEPS),
             ("--no-deps", "--ignore-requires-python", BOOSTCORR)]
    for i, step in enumerate(steps):
        err = pip(*step)
        if err is not None:
            print(f"  boost_corr: pip install {' '.join(step)} failed ({err}); baseline skipped")
            return None
        if i == 1 and subprocess.run(torch_ok, capture_output=True).returncode != 0:
            print(f"  boost_corr: {BOOSTCORR_TORCH} does not run without its dependencies; "
                  "installing them (nvidia-* wheels, several GB)", flush=True)
            err = pip(BOOSTCORR_TORCH)
            if err is not None:
                print(f"  boost_corr: pip install {BOOSTCORR_TORCH} failed ({err}); baseline skipped")
                return None
    r = subprocess.run([py, "-c", BOOSTCORR_CHECK], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"  boost_corr installed but does not import ({(r.stderr.strip().splitlines() or ['?'])[-1]}); "
              "baseline skipped")
        return None
    return py


def shape_of(scale: float) -> tuple[int, int]:
    side = max(16, int(round(1024 * scale)))
    return side, side


def scan_store(args, density: float, default_frames: int = 2000) -> tuple[Path, int, int, int]:
    """(store, T, ny, nx): the benchmark's Poisson store, generated once per shape."""
    ny, nx = shape_of(args.scale)
    T = args.frames or default_frames
    kind = "sparse" if density < 0.05 else "dense"
    store = args.workdir / f"{kind}_{T}_{ny}x{nx}.zarr"
    generate(store, T, ny, nx, density)
    return store, T, ny, nx


def bench_sparse(args) -> dict:
    store, T, ny, nx = scan_store(args, 0.01)
    py = xpcscorr_python(args.workdir)
    ours, base, out, bout = [], [], "", ""
    # alternate the two processes and take medians: single runs on a shared machine vary
    # by tens of percent, and the first run after an install compiles numba kernels
    for _ in range(max(1, args.repeat or 3)):
        dt, _, out = run_timed(correlate_cmd(store, args.workdir / "out_sparse.zarr", args.scheduler))
        ours.append(dt)
        if py is not None:
            try:
                bt, _, bout = run_timed([py, "-c", BASELINE_XPCSCORR, str(store), str(args.workers),
                                         str(max(1, ny * nx // (4 * args.workers)))])
                base.append(bt)
            except RuntimeError as exc:
                print(f"    xpcs-correlator baseline failed, skipped: {str(exc).strip().splitlines()[-1]}")
                py = None
    dt = float(np.median(ours))
    rate = T * ny * nx / dt
    print(f"sparse 0.01 ph/px/frame {T} x {ny}x{nx}: daskxpcs correlate {dt:.2f} s, median of "
          f"{[round(x, 2) for x in ours]} ({rate:.3g} frame*pixel/s)\n    {out.strip().splitlines()[-1]}")
    res = {"daskxpcs_s": dt, "daskxpcs_runs_s": ours, "frame_pixels_per_s": rate}
    if base:
        bt = float(np.median(base))
        print(f"    xpcs-correlator (CorrelatorSparsePixelChunkedNumba, {args.workers} local workers): "
              f"{bt:.2f} s, median of {[round(x, 2) for x in base]}   "
              f"{[ln for ln in bout.splitlines() if ln.startswith('BASE')]}")
        print(f"    ratio xpcs-correlator / daskxpcs = {bt / dt:.2f}x (medians)")
        res.update(xpcscorr_s=bt, xpcscorr_runs_s=base, ratio=bt / dt)
    return res


def bench_dense(args) -> dict:
    store, T, ny, nx = scan_store(args, 1.0)
    py = boostcorr_python(args.workdir)
    check_bin, c2_file = N_Q // 2, args.workdir / "boostcorr_c2.npy"
    ours, nump, mms, boost, out, base, bout = [], [], [], [], "", "", ""
    # where byte kernels are the default, our slower paths too: AVX2 (x86 CPUs without
    # AVX-512) and float32 BLAS (CPUs without byte kernels)
    from daskxpcs.kernels import host_isas, int8_isa

    isa = int8_isa()
    paths = {} if isa is None else {"0": []}
    if isa not in (None, "avx2") and "avx2" in host_isas():
        paths = {"avx2": [], **paths}
    # the processes alternate; medians are compared (see bench_sparse)
    for _ in range(max(1, args.repeat or 1)):
        dt, _, out = run_timed(correlate_cmd(store, args.workdir / "out_dense.zarr", args.scheduler))
        ours.append(dt)
        for env, times in paths.items():
            times.append(run_timed(correlate_cmd(store, args.workdir / f"out_dense_{env}.zarr", args.scheduler),
                                   env={"DASKXPCS_INT8": env})[0])
        bt, _, nout = run_timed([sys.executable, "-c", BASELINE_DENSE, str(store)])
        base = [ln for ln in nout.splitlines() if ln.startswith("BASE")][-1]
        nump.append(bt)
        mms.append(float(base.split("matmul=")[1].split()[0]))
        if py is not None:
            c2_file.unlink(missing_ok=True)
            try:
                bt, _, bout = run_timed([py, "-c", BASELINE_BOOSTCORR, str(store), str(args.workdir),
                                         str(check_bin), str(c2_file)])
                boost.append(bt)
            except RuntimeError as exc:
                print(f"    boost_corr baseline failed, skipped: {str(exc).strip().splitlines()[-1]}")
                py = None

    def runs(xs):
        return f"median of {[round(x, 2) for x in xs]}" if len(xs) > 1 else "one run"

    dt, bt, mm = float(np.median(ours)), float(np.median(nump)), float(np.median(mms))
    print(f"dense 1.0 ph/px/frame {T} x {ny}x{nx}: daskxpcs correlate {dt:.2f} s, {runs(ours)} "
          f"({T * ny * nx / dt:.3g} frame*pixel/s), block products "
          f"{f'int8 ({isa})' if isa else 'float32 BLAS'}\n    {out.strip().splitlines()[-1]}")
    names = {"avx2": "int8 AVX2 path (DASKXPCS_INT8=avx2, as on x86 CPUs without AVX-512)",
             "0": "float32 BLAS path (DASKXPCS_INT8=0, as on CPUs without byte kernels)"}
    med = {env: float(np.median(times)) for env, times in paths.items()}
    for env, times in paths.items():
        print(f"    {names[env]}: {med[env]:.2f} s, {runs(times)}; default / this path speed-up "
              f"{med[env] / dt:.2f}x")

    def others(base_s):
        return "".join(f"; {'BLAS' if env == '0' else env} path {base_s / m:.2f}x" for env, m in med.items())

    print(f"    numpy float32 X @ X.T process {bt:.2f} s, {runs(nump)} ({base}); ratio numpy process / "
          f"daskxpcs = {bt / dt:.2f}x, numpy matmul alone / daskxpcs = {mm / dt:.2f}x (target >= 1.3x)"
          + others(bt))
    res = {"daskxpcs_s": dt, "daskxpcs_runs_s": ours, "numpy_s": bt, "numpy_runs_s": nump,
           "numpy_matmul_s": mm, "ratio": bt / dt, "int8_isa": isa,
           "paths": {env: {"s": med[env], "runs_s": paths[env], "numpy_ratio": bt / med[env]} for env in paths}}
    if boost:
        bt = float(np.median(boost))
        print(f"    {BOOSTCORR} (TwotimeCorrelator, torch CPU, dense C of all {N_Q} bins): {bt:.2f} s, "
              f"{runs(boost)}   {[ln for ln in bout.splitlines() if ln.startswith('BASE')]}")
        print(f"    ratio boost_corr / daskxpcs = {bt / dt:.2f}x (target >= 2x)" + others(bt))
        res.update(boostcorr_s=bt, boostcorr_runs_s=boost, boostcorr_ratio=bt / dt)
        try:  # same numbers? boost_corr keeps the upper triangle (t1 <= t2) of C
            import zarr

            iu = np.triu_indices(T)
            c = zarr.open_group(str(args.workdir / "out_dense.zarr"), mode="r")["ttcf"][check_bin][iu]
            rel = np.abs(np.load(c2_file)[iu].astype(np.float64) - c) / np.abs(c)
            print(f"    check: q-bin {check_bin} C(t1 <= t2), boost_corr vs daskxpcs ttcf: max |rel diff| "
                  f"{np.nanmax(rel):.1e}, mean {np.nanmean(rel):.1e}")
            res.update(boostcorr_check_max_rel=float(np.nanmax(rel)))
        except Exception as exc:
            print(f"    check of boost_corr against daskxpcs ttcf failed: {exc!r}")
        finally:
            c2_file.unlink(missing_ok=True)
    return res


def bench_memory(args) -> dict:
    store, T, ny, nx = scan_store(args, 0.01, default_frames=14000)
    dt, rss, out = peak_rss_cmd(correlate_cmd(store, args.workdir / "out_mem.zarr", args.scheduler))
    ttcf_gib = (N_Q + 1) * T * T * 4 / 2**30
    print(f"memory 0.01 ph/px/frame {T} x {ny}x{nx}: peak RSS {rss} MiB in {dt:.1f} s "
          f"(one q-bin's T x T float32 would be {ttcf_gib / (N_Q + 1):.2f} GiB, all {ttcf_gib:.2f} GiB)")
    return {"peak_rss_mib": rss, "seconds": dt}


def bench_scaling(args) -> dict:
    store, T, ny, nx = scan_store(args, 0.01, default_frames=6000)
    times, compute = {}, {}
    for n in (1, 2):
        times[n], _, out = run_timed(correlate_cmd(store, args.workdir / f"out_scale{n}.zarr", f"local:{n}"))
        compute[n] = float(re.search(r"compute_s=([0-9.]+)", out).group(1))
    print(f"scaling sparse {T} x {ny}x{nx}: local:1 {times[1]:.2f} s, local:2 {times[2]:.2f} s, "
          f"speed-up {times[1] / times[2]:.2f}x (whole processes, cluster start included); "
          f"compute alone {compute[1]:.2f} s vs {compute[2]:.2f} s, {compute[1] / compute[2]:.2f}x")
    return {"local1_s": times[1], "local2_s": times[2], "speedup": times[1] / times[2],
            "compute_speedup": compute[1] / compute[2]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["sparse", "dense", "memory", "scaling", "all"])
    p.add_argument("--scale", type=float, default=1.0, help="detector side relative to 1024")
    p.add_argument("--frames", type=int, help="frames (default 2000; 14000 for memory, 6000 for scaling)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/daskxpcs-bench"))
    p.add_argument("--scheduler", default="threads")
    p.add_argument("--workers", type=int, default=2, help="xpcs-correlator local workers")
    p.add_argument("--repeat", type=int, help="runs of each process, alternating; medians are compared "
                   "(default 3 for sparse, 1 for dense)")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"cpus={os.cpu_count()} python={sys.version.split()[0]}", flush=True)
    results = {}
    for what in (["sparse", "dense", "memory", "scaling"] if args.what == "all" else [args.what]):
        results[what] = globals()[f"bench_{what}"](args)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
