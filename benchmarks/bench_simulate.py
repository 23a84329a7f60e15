"""Simulator throughput: exact KWW speckle generation and the raw-format writers.

Prints pixel-frames per second for the exact circulant-embedding generator streamed
through the tile file, against a baseline measured in the same run (an AR(1) complex
field, exact only for beta = 1), and MB/s of each writer against an uncompressed h5py
write of the same frames.  With --archive it writes the whole "archive" campaign.

    python benchmarks/bench_simulate.py [--frames 1000] [--size 256] [--archive OUTDIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from daskxpcs.simulate import ScanSpec, iter_scan_blocks, make_detector, simulate_campaign
from daskxpcs.simulate.writers import write_bliss, write_eiger, write_lima, write_lima2_sparse


def ar1_baseline(T: int, ny: int, nx: int, tau_frames: float, rate: float, seed: int = 0) -> int:
    """Exponential (beta = 1) speckle by an AR(1) recursion, frame by frame; returns photons."""
    rng = np.random.default_rng(seed)
    a = np.exp(-1.0 / tau_frames)
    s = np.sqrt((1 - a * a) / 2)
    e = (rng.standard_normal((ny, nx), np.float32) + 1j * rng.standard_normal((ny, nx), np.float32)) / np.sqrt(2)
    total = 0
    for _ in range(T):
        e = a * e + s * (rng.standard_normal((ny, nx), np.float32) + 1j * rng.standard_normal((ny, nx), np.float32))
        total += int(rng.poisson(rate * (e.real**2 + e.imag**2)).sum())
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--rate", type=float, default=0.01)
    ap.add_argument("--archive", type=Path, help="also write the archive campaign here (long)")
    args = ap.parse_args()
    T, n = args.frames, args.size
    det = make_detector(shape=(n, n), gap_rows=(n // 2,), n_dead=20, n_hot=4)
    spec = ScanSpec(n_frames=T, tau_s=0.05 * T * 0.1, beta=1.8, rate=args.rate, oversample=1, seed=1)
    pxf = T * n * n / 1e6

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        frames = [b for b in iter_scan_blocks(spec, det, workdir=tmp, memmap_bytes=0)]
        t_exact = time.perf_counter() - t
        t = time.perf_counter()
        ar1_baseline(T, n, n, spec.tau_s / spec.frame_time_s, args.rate)
        t_ar1 = time.perf_counter() - t
        print(f"generate {T} x {n}x{n}: exact KWW {pxf / t_exact:.2f} Mpx-frames/s, "
              f"AR(1) baseline {pxf / t_ar1:.2f} Mpx-frames/s, ratio {t_ar1 / t_exact:.2f}")

        mb = sum(b.nbytes for b in frames) / 1e6
        t = time.perf_counter()
        with h5py.File(Path(tmp) / "plain.h5", "w") as h:
            d = h.create_dataset("data", shape=(T, n, n), dtype=frames[0].dtype, chunks=(1, n, n))
            i = 0
            for b in frames:
                d[i : i + len(b)] = b
                i += len(b)
        t_plain = time.perf_counter() - t
        print(f"h5py uncompressed baseline: {mb / t_plain:.0f} MB/s")
        writers = {
            "lima": lambda: write_lima(Path(tmp) / "lima", iter(frames)),
            "bliss": lambda: write_bliss(Path(tmp) / "b" / "m.h5", iter(frames)),
            "eiger": lambda: write_eiger(Path(tmp) / "e" / "s_master.h5", iter(frames)),
            "lima2": lambda: write_lima2_sparse(Path(tmp) / "l2", iter(frames), mask=det.pixel_mask != 0),
        }
        for name, fn in writers.items():
            t = time.perf_counter()
            fn()
            dt = time.perf_counter() - t
            print(f"write {name:6s}: {mb / dt:6.0f} MB/s (ratio to baseline {t_plain / dt:.2f})")

    if args.archive:
        t = time.perf_counter()
        simulate_campaign(args.archive, preset="archive")
        print(f"archive campaign: {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
