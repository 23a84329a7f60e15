"""Raw-format writers: ESRF LIMA, Bliss master, Dectris Eiger NeXus, LIMA2 sparse.

Every writer takes an iterator of frame blocks (n, ny, nx) so a scan never sits in memory,
and lays its files out exactly as the independent fixtures in
`shared/fixtures/formats/` (see DESIGN.md "Raw formats").  Each file is written under a
temporary name and renamed into place when complete, so a crash never leaves a file that
looks finished.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

LIMA_DATA = "/entry_0000/{instrument}/{detector}/data"


def _bitshuffle_lz4() -> dict:
    return dict(hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))


@contextmanager
def _atomic_h5(path: Path, mode: str = "w") -> Iterator[h5py.File]:
    """Open `path`.tmp for writing and rename it to `path` on success."""
    tmp = path.with_name(path.name + ".tmp")
    if mode == "a" and path.exists():
        shutil.copy2(path, tmp)
    try:
        with h5py.File(tmp, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _rechunk(blocks: Iterable[np.ndarray], per_file: int) -> Iterator[tuple[int, np.ndarray]]:
    """Split a stream of frame blocks into (file number, sub-block) pieces of <= per_file frames a file."""
    if per_file < 1:
        raise ValueError(f"frames_per_file must be >= 1, got {per_file}")
    n_done = 0
    for block in blocks:
        block = np.asarray(block)
        if block.ndim != 3:
            raise ValueError(f"frame blocks must be (n, ny, nx), got shape {block.shape}")
        i = 0
        while i < block.shape[0]:
            k = n_done // per_file
            take = min(per_file - n_done % per_file, block.shape[0] - i)
            yield k, block[i : i + take]
            i += take
            n_done += take


class _FrameFiles:
    """A series of HDF5 files each holding a resizable (n, ny, nx) frame dataset."""

    def __init__(self, paths, dset: str, init, *, compress: bool = True):
        self.paths, self.dset, self.init, self.compress = paths, dset, init, compress
        self.files: list[tuple[Path, int]] = []
        self._h: h5py.File | None = None
        self._ds = None
        self._tmp: Path | None = None

    def _open(self, k: int, like: np.ndarray) -> None:
        path = Path(self.paths(k))
        self._tmp = path.with_name(path.name + ".tmp")
        self._h = h5py.File(self._tmp, "w")
        self.init(self._h, k)
        ny, nx = like.shape[1:]
        opts = _bitshuffle_lz4() if self.compress else {}
        self._ds = self._h.create_dataset(
            self.dset, shape=(0, ny, nx), maxshape=(None, ny, nx), dtype=like.dtype, chunks=(1, ny, nx), **opts
        )
        self.files.append((path, 0))

    def _close(self) -> None:
        if self._h is not None:
            self._h.close()
            self._h = None

    def write(self, pieces: Iterable[tuple[int, np.ndarray]]) -> list[tuple[Path, int]]:
        try:
            for k, sub in pieces:
                if k >= len(self.files):
                    self._close()
                    self._open(k, sub)
                n0 = self._ds.shape[0]
                if sub.shape[1:] != self._ds.shape[1:] or sub.dtype != self._ds.dtype:
                    raise ValueError(f"frame block {sub.shape} {sub.dtype} differs from {self._ds.shape} {self._ds.dtype}")
                self._ds.resize(n0 + sub.shape[0], axis=0)
                self._ds[n0:] = sub
                self.files[-1] = (self.files[-1][0], n0 + sub.shape[0])
            self._close()
        except BaseException:
            self._close()
            for path, _ in self.files:
                path.with_name(path.name + ".tmp").unlink(missing_ok=True)
            raise
        if not self.files:
            raise ValueError("no frames to write")
        return self.files

    def finish(self, update=None) -> list[tuple[Path, int]]:
        """Optionally update each temp file (update(h5file)), then rename them all into place."""
        for path, _ in self.files:
            tmp = path.with_name(path.name + ".tmp")
            if update is not None:
                with h5py.File(tmp, "r+") as h:
                    update(h)
            os.replace(tmp, path)
        return self.files


def write_lima(
    folder: str | os.PathLike,
    blocks: Iterable[np.ndarray],
    *,
    frames_per_file: int = 1000,
    prefix: str = "eiger4m",
    instrument: str = "ESRF-ID10",
    detector: str = "eiger4m",
    exposure_time: float = 0.1,
    latency_time: float = 0.0,
    pixel_size_m: float = 75e-6,
) -> list[tuple[Path, int]]:
    """Write frames as ESRF LIMA files `folder/<prefix>_0000.h5`, `_0001.h5`, ...

    Layout (as the fixture `lima/scan0001`): `/entry_0000/<instrument>/<detector>/data`
    (n, ny, nx), one frame per chunk, bitshuffle-LZ4 (filter 32008); soft links
    `/entry_0000/measurement/data` and `<detector>/plot/data`; `acquisition/exposure_time`,
    `latency_time`, `nb_frames` (total of the series); `detector_information`.

    Parameters
    ----------
    folder : output directory (created).
    blocks : iterable of (n, ny, nx) uint16/uint32 arrays, in frame order.
    frames_per_file : frames per LIMA file.
    exposure_time, latency_time : s; the frame period is their sum.

    Returns
    -------
    list of (path, n_frames) per file, in order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = LIMA_DATA.format(instrument=instrument, detector=detector)
    det = f"/entry_0000/{instrument}/{detector}"

    def name(k: int) -> Path:
        return folder / f"{prefix}_{k:04d}.h5"

    def init(h: h5py.File, k: int) -> None:
        h.attrs.update(NX_class="NXroot", creator="LIMA-1.9.21", default="/entry_0000", file_name=name(k).name)
        e = h.create_group("entry_0000")
        e.attrs["NX_class"] = "NXentry"
        e["title"] = np.bytes_(b"Lima 2D detector acquisition")
        d = h.create_group(det)
        d["acquisition/exposure_time"] = float(exposure_time)
        d["acquisition/latency_time"] = float(latency_time)
        d["acquisition/nb_frames"] = np.int64(0)
        d["detector_information/name"] = np.bytes_(detector.encode())
        d["detector_information/pixel_size/xsize"] = float(pixel_size_m)
        d["detector_information/pixel_size/ysize"] = float(pixel_size_m)
        d.create_group("plot")["data"] = h5py.SoftLink(data)
        h.create_group("entry_0000/measurement")["data"] = h5py.SoftLink(data)

    ff = _FrameFiles(name, data, init)
    files = ff.write(_rechunk(blocks, frames_per_file))
    total = sum(n for _, n in files)

    def update(h: h5py.File) -> None:
        h[f"{det}/acquisition/nb_frames"][()] = total

    return ff.finish(update)


def write_bliss(
    master: str | os.PathLike,
    blocks: Iterable[np.ndarray],
    *,
    scan_number: int = 1,
    frame_time_s: float = 0.1,
    detector: str = "eiger4m",
    lima_dir: str | None = None,
    frames_per_file: int = 1000,
    energy_kev: float = 21.0,
    title: str | None = None,
) -> str:
    """Write a Bliss scan: LIMA files plus entry `<scan_number>.1` in a master file.

    The LIMA files go to `<master dir>/<lima_dir>` (default `scan%04d`); the master's
    `/<n>.1/measurement/<detector>` is a virtual dataset over them with paths relative to
    the master, `/<n>.1/measurement/elapsed_time` (T,) s, `/<n>.1/title`,
    `/<n>.1/instrument/metadata/<detector>/xray_energy` (keV).  Other entries of an
    existing master are kept (the master is rewritten atomically).

    Returns
    -------
    str : the entry name, e.g. "3.1".
    """
    master = Path(master)
    master.parent.mkdir(parents=True, exist_ok=True)
    sub = lima_dir or f"scan{scan_number:04d}"
    files = write_lima(
        master.parent / sub,
        blocks,
        frames_per_file=frames_per_file,
        detector=detector,
        exposure_time=frame_time_s,
        latency_time=0.0,
    )
    with h5py.File(files[0][0], "r") as h:
        src = h[LIMA_DATA.format(instrument="ESRF-ID10", detector=detector)]
        ny, nx, dtype = src.shape[1], src.shape[2], src.dtype
    total = sum(n for _, n in files)
    layout = h5py.VirtualLayout(shape=(total, ny, nx), dtype=dtype)
    t0 = 0
    for path, n in files:
        rel = os.path.relpath(path, master.parent).replace(os.sep, "/")
        layout[t0 : t0 + n] = h5py.VirtualSource(rel, LIMA_DATA.format(instrument="ESRF-ID10", detector=detector), shape=(n, ny, nx))
        t0 += n
    entry = f"{scan_number}.1"
    with _atomic_h5(master, "a") as h:
        h.attrs["creator"] = "bliss"
        if entry in h:
            del h[entry]
        g = h.create_group(entry)
        g["title"] = np.bytes_((title or f"mtimescan {frame_time_s} 1 {total}").encode())
        g["instrument/metadata/" + detector + "/xray_energy"] = float(energy_kev)
        g["instrument/positioners/delta"] = 35.0
        m = g.create_group("measurement")
        m.create_virtual_dataset(detector, layout, fillvalue=0)
        m["elapsed_time"] = np.arange(total, dtype=np.float64) * frame_time_s
    return entry


def write_eiger(
    master: str | os.PathLike,
    blocks: Iterable[np.ndarray],
    *,
    frames_per_file: int = 1000,
    frame_time_s: float = 0.1,
    count_time_s: float | None = None,
    wavelength_a: float = 0.5904,
    pixel_mask: np.ndarray | None = None,
    detector_distance_m: float = 5.0,
    pixel_size_m: float = 75e-6,
) -> list[tuple[Path, int]]:
    """Write a Dectris Eiger NeXus series: `<stem>_master.h5` + `<stem>_data_00000N.h5`.

    `master` must end in `_master.h5`.  Data files hold `/entry/data/data` (n, ny, nx),
    bitshuffle-LZ4, one frame a chunk; the master links them as
    `/entry/data/data_00000N` (external links) and holds
    `/entry/instrument/detector/{count_time, frame_time, detector_distance,
    x_pixel_size, y_pixel_size, detectorSpecific/{nimages, pixel_mask}}` and
    `/entry/instrument/beam/incident_wavelength` (A).

    Returns
    -------
    list of (data file path, n_frames).
    """
    master = Path(master)
    if not master.name.endswith("_master.h5"):
        raise ValueError(f"Eiger master file name must end in _master.h5: {master}")
    master.parent.mkdir(parents=True, exist_ok=True)
    stem = master.name[: -len("_master.h5")]

    def name(k: int) -> Path:
        return master.parent / f"{stem}_data_{k + 1:06d}.h5"

    ff = _FrameFiles(name, "/entry/data/data", lambda h, k: None)
    files = ff.write(_rechunk(blocks, frames_per_file))
    with h5py.File(master.parent / (files[0][0].name + ".tmp"), "r") as h:
        ny, nx = h["/entry/data/data"].shape[1:]
    ff.finish()
    total = sum(n for _, n in files)
    with _atomic_h5(master, "w") as h:
        e = h.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        d = e.create_group("data")
        for k, (path, _) in enumerate(files):
            d[f"data_{k + 1:06d}"] = h5py.ExternalLink(path.name, "/entry/data/data")
        det = e.create_group("instrument/detector")
        det["count_time"] = float(count_time_s if count_time_s is not None else frame_time_s)
        det["frame_time"] = float(frame_time_s)
        det["detector_distance"] = float(detector_distance_m)
        det["x_pixel_size"] = float(pixel_size_m)
        det["y_pixel_size"] = float(pixel_size_m)
        det["detectorSpecific/nimages"] = np.int64(total)
        pm = np.zeros((ny, nx), np.uint32) if pixel_mask is None else np.asarray(pixel_mask, np.uint32)
        if pm.shape != (ny, nx):
            raise ValueError(f"pixel_mask shape {pm.shape} differs from frames {(ny, nx)}")
        det["detectorSpecific/pixel_mask"] = pm
        e["instrument/beam/incident_wavelength"] = float(wavelength_a)
    return files


def write_lima2_sparse(
    folder: str | os.PathLike,
    blocks: Iterable[np.ndarray],
    *,
    mask: np.ndarray | None = None,
    frames_per_file: int = 1000,
    prefix: str = "eiger4m_v2_sparse_frame_0",
    intensity_dtype: str = "uint16",
) -> list[tuple[Path, int]]:
    """Write LIMA2 sparse files `folder/<prefix>_0000N.h5` (per-frame CSR).

    `/entry_0000/measurement/data/` holds `frame_ptr` (n + 1,) (starts at 0 in every
    file), `index` (E,) uint32 flat pixel indices (increasing within a frame),
    `intensity` (E,) counts, `mask` (ny, nx) uint8 (nonzero = bad); pixels flagged in
    `mask` carry no events; root attribute `creator = b"LIMA2"`.

    Raises
    ------
    ValueError : a count does not fit `intensity_dtype` (e.g. an unmasked hot pixel).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    it_dtype = np.dtype(intensity_dtype)
    top = np.iinfo(it_dtype).max
    files: list[tuple[Path, int]] = []
    state: dict = {}

    def close() -> None:
        if "h" in state:
            state.pop("h").close()

    try:
        for k, sub in _rechunk(blocks, frames_per_file):
            ny, nx = sub.shape[1:]
            if k >= len(files):
                close()
                path = folder / f"{prefix}_{k:05d}.h5"
                h = h5py.File(path.with_name(path.name + ".tmp"), "w")
                h.attrs["creator"] = np.bytes_(b"LIMA2")
                e = h.create_group("entry_0000")
                e.attrs["pyFAI_sparse_frames"] = "measurement/data"
                g = e.create_group("measurement/data")
                g.attrs["NX_class"] = "NXdata"
                bad = np.zeros((ny, nx), bool) if mask is None else np.asarray(mask) != 0
                if bad.shape != (ny, nx):
                    raise ValueError(f"mask shape {bad.shape} differs from frames {(ny, nx)}")
                g["mask"] = bad.astype(np.uint8)
                ptr_dtype = np.uint32 if frames_per_file * ny * nx < 2**32 else np.uint64
                g.create_dataset("frame_ptr", data=np.zeros(1, ptr_dtype), maxshape=(None,), chunks=(4096,))
                g.create_dataset("index", shape=(0,), maxshape=(None,), dtype=np.uint32, chunks=(1 << 16,))
                g.create_dataset("intensity", shape=(0,), maxshape=(None,), dtype=it_dtype, chunks=(1 << 16,))
                state.update(h=h, g=g, bad=bad.ravel())
                files.append((path, 0))
            g, bad = state["g"], state["bad"]
            flat = sub.reshape(sub.shape[0], -1)
            fr, col = np.nonzero(flat)  # row-major: frame order, then increasing pixel index
            ok = ~bad[col]
            fr, col = fr[ok], col[ok]
            vals = flat[fr, col]
            if vals.size and vals.max() > top:
                raise ValueError(f"count {vals.max()} does not fit {it_dtype} in {files[-1][0]} (mask hot pixels)")
            counts = np.bincount(fr, minlength=sub.shape[0])
            ptr, idx, inten = g["frame_ptr"], g["index"], g["intensity"]
            e0, p0 = idx.shape[0], ptr.shape[0]
            idx.resize(e0 + vals.size, axis=0)
            inten.resize(e0 + vals.size, axis=0)
            idx[e0:] = col.astype(np.uint32)
            inten[e0:] = vals.astype(it_dtype)
            ptr.resize(p0 + sub.shape[0], axis=0)
            ptr[p0:] = e0 + np.cumsum(counts)
            files[-1] = (files[-1][0], files[-1][1] + sub.shape[0])
        close()
    except BaseException:
        close()
        for path, _ in files:
            path.with_name(path.name + ".tmp").unlink(missing_ok=True)
        raise
    if not files:
        raise ValueError("no frames to write")
    for path, _ in files:
        os.replace(path.with_name(path.name + ".tmp"), path)
    return files


def read_frames(path: str | os.PathLike, fmt: str, *, entry: str | None = None) -> np.ndarray:
    """Read back every frame (T, ny, nx) written by one of these writers (h5py + hdf5plugin).

    For tests and checks only (the project's readers live in `conversions.formats`).
    `path`: the LIMA / LIMA2 folder, the Bliss master, the Eiger master; `fmt` in
    {"lima", "bliss", "eiger", "lima2"}.  LIMA2 frames are densified with 0 at masked pixels.
    """
    path = Path(path)
    if fmt == "lima":
        parts = []
        for f in sorted(path.glob("*.h5")):
            with h5py.File(f, "r") as h:
                parts.append(h["/entry_0000/measurement/data"][()])
        return np.concatenate(parts)
    if fmt == "bliss":
        with h5py.File(path, "r") as h:
            ent = entry or sorted(k for k in h if k.endswith(".1"))[0]
            meas = h[ent]["measurement"]
            name = next(k for k in meas if k.startswith("eiger"))
            return meas[name][()]
    if fmt == "eiger":
        with h5py.File(path, "r") as h:
            d = h["/entry/data"]
            return np.concatenate([d[k][()] for k in sorted(d)])
    if fmt == "lima2":
        parts = []
        for f in sorted(path.glob("*.h5")):
            with h5py.File(f, "r") as h:
                g = h["/entry_0000/measurement/data"]
                ptr, idx, val = g["frame_ptr"][()], g["index"][()], g["intensity"][()]
                ny, nx = g["mask"].shape
                dense = np.zeros((ptr.size - 1, ny * nx), np.uint32)
                fr = np.repeat(np.arange(ptr.size - 1), np.diff(ptr.astype(np.int64)))
                dense[fr, idx] = val
                parts.append(dense.reshape(-1, ny, nx))
        return np.concatenate(parts)
    raise ValueError(f"unknown format {fmt!r}")


__all__ = ["write_lima", "write_bliss", "write_eiger", "write_lima2_sparse", "read_frames", "LIMA_DATA"]
