"""Writers of small raw files for the conversion tests (real HDF5, real filters)."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

EXPECTED_FORMATS = {
    "lima": "lima/scan0001",
    "bliss": "bliss/sample_0001.h5",
    "eiger": "eiger/series_master.h5",
    "lima2": "lima2/scan0001",
}


def write_lima(path: Path, frames: np.ndarray, *, compression="bslz4",
               exposure: float | None = 0.1, latency: float = 0.0) -> Path:
    """A LIMA v1 file: one frame a chunk, bitshuffle-LZ4 unless told otherwise."""
    if compression == "bslz4":
        kw = dict(hdf5plugin.Bitshuffle(cname="lz4"))
    elif compression == "bszstd":
        kw = dict(hdf5plugin.Bitshuffle(cname="zstd"))
    elif compression == "gzip":
        kw = {"compression": "gzip"}
    else:
        kw = {}
    with h5py.File(path, "w") as f:
        det = f.create_group("/entry_0000/ESRF-ID10/eiger4m")
        det.create_dataset("data", data=frames, chunks=(1,) + frames.shape[1:], **kw)
        if exposure is not None:
            det["acquisition/exposure_time"] = exposure
            det["acquisition/latency_time"] = latency
        f["/entry_0000/measurement/data"] = h5py.SoftLink("/entry_0000/ESRF-ID10/eiger4m/data")
    return path


def poisson_frames(seed: int, shape, lam: float, dtype=np.uint32) -> np.ndarray:
    return np.random.default_rng(seed).poisson(lam, shape).astype(dtype)


