"""Lock-free frame decoding.

h5py serialises every call (and the HDF5 filter pipeline runs inside it) under one
global lock, so threads decoding through h5py take turns. For the common layout,
one frame per chunk compressed with bitshuffle-LZ4 (HDF5 filter 32008), we read
the chunk table once through h5py, then read each chunk's bytes with plain file
reads and decompress them with ``bitshuffle.decompress_lz4``, which releases the
GIL: several threads decode at once. Any other layout or filter falls back to
h5py + hdf5plugin (``RawScan.read_frames``, the reference path).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from conversions.errors import RawFormatError
from conversions.formats.base import RawScan, Segment, dataset, open_h5

BSHUF_FILTER = 32008
BSHUF_LZ4 = 2
BSHUF_ZSTD = 3

try:  # optional at import; without it every read takes the h5py path
    import bitshuffle
except ImportError:  # pragma: no cover
    bitshuffle = None


@dataclass(frozen=True)
class ChunkTable:
    """Where each frame's compressed chunk lies in its file.

    Attributes
    ----------
    file, dataset : the source.
    offsets, sizes : (n,) int64 byte offset and stored size of frame i's chunk
        (frames ``src_start .. src_start + n`` of the dataset).
    raw : (n,) bool, True where the filter was skipped for that chunk.
    codec : "lz4" or "zstd" (bitshuffle's inner compressor).
    """

    file: str
    dataset: str
    src_start: int
    offsets: np.ndarray
    sizes: np.ndarray
    raw: np.ndarray
    codec: str


def chunk_table(seg: Segment, frame_shape: tuple[int, int], dtype: np.dtype) -> ChunkTable | None:
    """The chunk table of a segment, or None when it cannot be decoded lock-free
    (chunks other than one frame, filters other than bitshuffle alone, no bitshuffle)."""
    if bitshuffle is None:
        return None
    with open_h5(seg.file) as f:
        d = dataset(f, seg.file, seg.dataset)
        if d.is_virtual or d.chunks != (1,) + tuple(frame_shape) or d.dtype != dtype:
            return None
        dcpl = d.id.get_create_plist()
        if dcpl.get_nfilters() != 1:
            return None
        code, _, opts, _ = dcpl.get_filter(0)
        if code != BSHUF_FILTER:
            return None
        codec = {BSHUF_LZ4: "lz4", BSHUF_ZSTD: "zstd"}.get(opts[4] if len(opts) > 4 else 0)
        if codec is None:
            return None
        n = seg.n
        offsets = np.full(n, -1, np.int64)
        sizes = np.zeros(n, np.int64)
        raw = np.zeros(n, bool)
        lo, hi = seg.src_start, seg.src_start + n

        def visit(info):
            t = info.chunk_offset[0]
            if lo <= t < hi:
                offsets[t - lo] = info.byte_offset
                sizes[t - lo] = info.size
                raw[t - lo] = bool(info.filter_mask & 1)

        try:
            d.id.chunk_iter(visit)
        except (AttributeError, NotImplementedError):  # old HDF5: one query per chunk
            for t in range(lo, hi):
                try:
                    visit(d.id.get_chunk_info_by_coord((t, 0, 0)))
                except (KeyError, ValueError):
                    pass
    if np.any(offsets < 0):
        # unwritten chunks read as the fill value; leave those files to h5py
        return None
    return ChunkTable(seg.file, seg.dataset, seg.src_start, offsets, sizes, raw, codec)


def decode_chunk(buf: bytes | np.ndarray, frame_shape: tuple[int, int], dtype: np.dtype,
                 codec: str = "lz4") -> np.ndarray:
    """Decode one bitshuffle chunk as HDF5 filter 32008 stores it.

    The chunk starts with a 12-byte header: the uncompressed size (uint64, big
    endian) and the block size in bytes (uint32, big endian).
    """
    dtype = np.dtype(dtype)
    arr = np.frombuffer(buf, np.uint8)
    nbytes = int.from_bytes(arr[:8].tobytes(), "big")
    block = int.from_bytes(arr[8:12].tobytes(), "big") // dtype.itemsize
    n = int(np.prod(frame_shape))
    if nbytes != n * dtype.itemsize:
        raise ValueError(f"chunk holds {nbytes} bytes, expected {n * dtype.itemsize}")
    fn = bitshuffle.decompress_lz4 if codec == "lz4" else bitshuffle.decompress_zstd
    return fn(arr[12:], tuple(frame_shape), dtype, block)


class FrameReader:
    """Reads frames of a raw scan, lock-free where the layout allows.

    Picklable (holds only paths and chunk tables), so it can travel to Dask
    worker processes. Open files are cached per process.
    """

    def __init__(self, raw: RawScan, lock_free: bool = True):
        self.raw = raw
        self.tables: list[ChunkTable | None] = []
        if not raw.sparse:
            for seg in raw.segments:
                self.tables.append(chunk_table(seg, raw.frame_shape, raw.dtype)
                                   if lock_free else None)

    @property
    def lock_free(self) -> bool:
        """True when every frame is decoded without h5py."""
        return bool(self.tables) and all(t is not None for t in self.tables)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as (n, ny, nx) of the raw dtype."""
        raw = self.raw
        start, stop = max(0, int(start)), min(raw.n_frames, int(stop))
        if raw.sparse:
            return raw.read_frames(start, stop)
        out = np.empty((max(0, stop - start),) + tuple(raw.frame_shape), raw.dtype)
        for seg, table in zip(raw.segments, self.tables):
            a, b = max(start, seg.offset), min(stop, seg.offset + seg.n)
            if a >= b:
                continue
            if table is None:
                out[a - start:b - start] = raw.read_frames(a, b)
                continue
            self._read_table(seg, table, a, b, out[a - start:b - start])
        return out

    def iter_frames(self, start: int, stop: int, batch: int = 16) -> Iterator[np.ndarray]:
        """Frames [start, stop) in time order as (n, ny, nx) arrays, without copies:
        one frame at a time where decoded lock-free, else ``batch`` frames."""
        raw = self.raw
        start, stop = max(0, int(start)), min(raw.n_frames, int(stop))
        if raw.sparse:
            for a in range(start, stop, batch):
                yield raw.read_frames(a, min(stop, a + batch))
            return
        for seg, table in zip(raw.segments, self.tables):
            a0, b0 = max(start, seg.offset), min(stop, seg.offset + seg.n)
            if a0 >= b0:
                continue
            if table is None:
                for a in range(a0, b0, batch):
                    yield raw.read_frames(a, min(b0, a + batch))
                continue
            for frame in self._decode(seg, table, a0, b0):
                yield frame[None]

    def _read_table(self, seg: Segment, table: ChunkTable, a: int, b: int,
                    out: np.ndarray) -> None:
        for k, frame in enumerate(self._decode(seg, table, a, b)):
            out[k] = frame

    def _decode(self, seg: Segment, table: ChunkTable, a: int, b: int) -> Iterator[np.ndarray]:
        """Decoded frames [a, b) (scan indices) of one segment, one at a time."""
        raw = self.raw
        nbytes = int(np.prod(raw.frame_shape)) * raw.dtype.itemsize
        fd = os.open(table.file, os.O_RDONLY)
        try:
            for t in range(a - seg.offset, b - seg.offset):
                off, size = int(table.offsets[t]), int(table.sizes[t])
                buf = os.pread(fd, size, off)
                if len(buf) != size:
                    raise RawFormatError(table.file, table.dataset,
                                         f"frame {seg.src_start + t}: chunk at byte {off} is "
                                         "cut short (truncated file?)")
                if table.raw[t]:
                    if size != nbytes:
                        raise RawFormatError(table.file, table.dataset,
                                             f"frame {seg.src_start + t}: bad chunk size")
                    yield np.frombuffer(buf, raw.dtype).reshape(raw.frame_shape)
                    continue
                try:
                    frame = decode_chunk(buf, raw.frame_shape, raw.dtype, table.codec)
                except (ValueError, RuntimeError) as exc:
                    raise RawFormatError(table.file, table.dataset,
                                         f"frame {seg.src_start + t}: cannot decode chunk "
                                         f"({exc})") from exc
                yield frame
        finally:
            os.close(fd)


def read_frames_h5py(raw: RawScan, start: int, stop: int) -> np.ndarray:
    """The reference path: h5py + hdf5plugin (holds the h5py lock)."""
    return raw.read_frames(start, stop)


__all__ = ["ChunkTable", "FrameReader", "chunk_table", "decode_chunk", "read_frames_h5py"]
