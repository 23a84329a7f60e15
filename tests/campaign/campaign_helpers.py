"""Helpers for the campaign tests: tiny raw scans (ESRF LIMA layout, bitshuffle-LZ4) and manifests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = (24, 20)
EDGES = [1.0, 1.5, 2.0, 2.5]


def write_lima(path: Path, frames: np.ndarray, *, exposure_s: float = 0.09, latency_s: float = 0.01,
               detector: str = "eiger") -> Path:
    """A LIMA file: /entry_0000/<instr>/<det>/data linked from measurement/data, one frame per chunk."""
    import h5py
    import hdf5plugin

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        e = f.create_group("entry_0000")
        e.attrs["NX_class"] = "NXentry"
        det = e.create_group(f"ESRF-ID10/{detector}")
        det.create_dataset("data", data=frames, chunks=(1,) + frames.shape[1:],
                           **hdf5plugin.Bitshuffle(cname="lz4"))
        acq = det.create_group("acquisition")
        acq["exposure_time"] = exposure_s
        acq["latency_time"] = latency_s
        acq["nb_frames"] = frames.shape[0]
        m = e.create_group("measurement")
        m["data"] = h5py.SoftLink(f"/entry_0000/ESRF-ID10/{detector}/data")
    return path


def speckle_frames(n_frames: int, shape=SHAPE, *, tau_frames: float = 6.0, mean: float = 0.3,
                   seed: int = 0) -> np.ndarray:
    """Photon counts of a speckle field decorrelating with time constant ``tau_frames`` (AR(1) field)."""
    rng = np.random.default_rng(seed)
    a = np.exp(-1.0 / tau_frames)
    z = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    out = np.empty((n_frames,) + shape, np.uint32)
    for t in range(n_frames):
        z = a * z + np.sqrt(1 - a * a) * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
        out[t] = rng.poisson(mean * np.abs(z) ** 2 / 2)
    return out


def qmap(shape=SHAPE) -> np.ndarray:
    y, x = np.indices(shape)
    return (1.0 + 1.6 * x / shape[1] + 0.0 * y).astype(np.float32)


def write_manifest(root: Path, scans: list[dict], *, geometry: dict | None = None, extra: str = "") -> Path:
    """A manifest with one geometry 'g1' (qmap.npy) and the given scan tables (TOML written by hand)."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "qmap.npy").exists():
        np.save(root / "qmap.npy", qmap())
    geometry = geometry or {"name": "g1", "qmap": "qmap.npy", "q_edges": EDGES}
    lines = ['[campaign]', 'name = "test"', 'output = "out"', '', '[[geometry]]']
    lines += [f"{k} = {_toml(v)}" for k, v in geometry.items()]
    for s in scans:
        lines += ["", "[[scan]]"] + [f"{k} = {_toml(v)}" for k, v in s.items()]
    path = root / "campaign.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _toml(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


def scan_entry(name: str, raw: str, *, sample="S1", stage="compression", p=1.0, t_w=0.0, **kw) -> dict:
    return {"name": name, "sample": sample, "geometry": "g1", "stage": stage, "pressure_gpa": p,
            "t_w_s": t_w, "raw": raw, **kw}


def have(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
