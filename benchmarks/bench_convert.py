"""Benchmark: raw LIMA (bitshuffle-LZ4) -> Zarr scan store, against a plain h5py read.

Run::

    python benchmarks/bench_convert.py DATA_DIR [--frames 2000] [--size 1024] [--density 0.01]
                                       [--scheduler threads]

Creates (once) ``DATA_DIR/lima_<frames>x<size>.h5``: uint32 Poisson counts at
``density`` photons / pixel / frame, one frame a chunk, bitshuffle-LZ4 (HDF5 filter
32008), as LIMA writes it. Then times, each as a whole process (imports included):

(a) a plain ``h5py`` read of the whole dataset into memory (the baseline);
(b) ``daskxpcs convert`` of the file to a store.

Prints throughput (frames/s, MB/s of uncompressed counts), the store's compression
ratio (uncompressed counts / bytes on disk), and the time ratio (b)/(a): below 1
means converting is faster than merely reading the file with h5py. CPU seconds
(user + system) are printed too: on a shared machine they vary less than wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

READ_SCRIPT = """
import sys, h5py, hdf5plugin
with h5py.File(sys.argv[1], "r") as f:
    a = f["/entry_0000/measurement/data"][()]
print(a.shape, int(a.sum()))
"""


def make_file(path: Path, frames: int, size: int, density: float, seed: int = 0) -> None:
    """Write the LIMA test file (in batches, so memory stays small)."""
    import h5py
    import hdf5plugin

    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as f:
        det = f.create_group("/entry_0000/ESRF-ID10/eiger4m")
        d = det.create_dataset("data", shape=(frames, size, size), dtype="uint32",
                               chunks=(1, size, size),
                               **hdf5plugin.Bitshuffle(cname="lz4"))
        acq = det.create_group("acquisition")
        acq["exposure_time"] = 0.01
        acq["latency_time"] = 0.0
        f["/entry_0000/measurement/data"] = h5py.SoftLink("/entry_0000/ESRF-ID10/eiger4m/data")
        for t0 in range(0, frames, 50):
            n = min(50, frames - t0)
            # photons dropped uniformly with a Poisson total: each pixel is Poisson
            npix = n * size * size
            where = rng.integers(0, npix, rng.poisson(density * npix))
            d[t0:t0 + n] = np.bincount(where, minlength=npix).astype(np.uint32).reshape(
                n, size, size)
    os.replace(tmp, path)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of a whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dir", type=Path)
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--density", type=float, default=0.01)
    p.add_argument("--scheduler", default="threads")
    args = p.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    raw = args.data_dir / f"lima_{args.frames}x{args.size}.h5"
    if not raw.exists():
        t = time.perf_counter()
        make_file(raw, args.frames, args.size, args.density)
        print(f"wrote {raw} in {time.perf_counter() - t:.1f} s")
    store = args.data_dir / "bench_store.zarr"
    shutil.rmtree(store, ignore_errors=True)
    nbytes = args.frames * args.size * args.size * 4
    exe = [sys.executable]
    t_read, c_read = timed(exe + ["-c", READ_SCRIPT, str(raw)])
    t_conv, c_conv = timed(exe + ["-m", "daskxpcs.cli", "convert", str(raw), str(store),
                                  "--scheduler", args.scheduler])
    stored = du(store)
    load = os.getloadavg()[0]
    print(f"cpus={os.cpu_count()} load1={load:.1f} frames={args.frames} "
          f"size={args.size}x{args.size} density={args.density} "
          f"raw_file={raw.stat().st_size / 1e6:.1f} MB")
    for name, t, c in (("h5py read (a)", t_read, c_read), ("convert  (b)", t_conv, c_conv)):
        print(f"{name}: {t:7.2f} s wall {c:7.2f} s cpu  {args.frames / t:8.1f} frames/s  "
              f"{nbytes / t / 1e6:8.1f} MB/s")
    print(f"store: {stored / 1e6:.1f} MB, compression ratio {nbytes / stored:.1f} "
          f"(raw file {nbytes / raw.stat().st_size:.1f})")
    print(f"ratio convert/read (b)/(a) = {t_conv / t_read:.2f} wall, "
          f"{c_conv / c_read:.2f} cpu")
    shutil.rmtree(store, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
