"""Lock-free chunk decoding gives exactly what h5py + hdf5plugin gives."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conv_rawfiles import EXPECTED_FORMATS, poisson_frames, write_lima
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversions.decode import FrameReader, chunk_table, decode_chunk
from conversions.formats import open_raw


@pytest.mark.parametrize("fmt", ["lima", "bliss", "eiger"])
def test_fixtures_decode_lock_free(format_fixtures, fmt):
    raw = open_raw(format_fixtures / EXPECTED_FORMATS[fmt])
    reader = FrameReader(raw)
    assert reader.lock_free
    np.testing.assert_array_equal(reader.read(0, raw.n_frames), raw.read_frames(0, raw.n_frames))
    frames = np.concatenate(list(reader.iter_frames(5, 23)))
    np.testing.assert_array_equal(frames, raw.read_frames(5, 23))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from([np.uint8, np.uint16, np.uint32]),
       ny=st.integers(1, 33), nx=st.integers(1, 40), lam=st.sampled_from([0.0, 0.02, 3.0]),
       codec=st.sampled_from(["bslz4", "bszstd"]))
def test_random_files_decode_like_h5py(tmp_path, dtype, ny, nx, lam, codec):
    frames = poisson_frames(1, (5, ny, nx), lam, dtype)
    frames[2, 0, 0] = np.iinfo(dtype).max
    path = write_lima(tmp_path / f"f_{np.dtype(dtype).name}_{ny}_{nx}_{codec}.h5", frames,
                      compression=codec)
    raw = open_raw(path)
    reader = FrameReader(raw)
    assert reader.lock_free
    got = reader.read(0, 5)
    np.testing.assert_array_equal(got, raw.read_frames(0, 5))
    np.testing.assert_array_equal(got, frames)


@pytest.mark.parametrize("compression", ["gzip", None])
def test_other_filters_fall_back_to_h5py(tmp_path, compression):
    frames = poisson_frames(2, (4, 6, 7), 1.0)
    raw = open_raw(write_lima(tmp_path / "g.h5", frames, compression=compression))
    reader = FrameReader(raw)
    assert not reader.lock_free
    np.testing.assert_array_equal(reader.read(0, 4), frames)
    np.testing.assert_array_equal(np.concatenate(list(reader.iter_frames(1, 4))), frames[1:])


def test_decoding_from_many_threads(tmp_path):
    frames = poisson_frames(3, (40, 32, 48), 0.5)
    raw = open_raw(write_lima(tmp_path / "t.h5", frames))
    reader = FrameReader(raw)
    out = np.zeros_like(frames)

    def work(a):
        out[a:a + 10] = reader.read(a, a + 10)

    threads = [threading.Thread(target=work, args=(a,)) for a in range(0, 40, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(out, frames)


def test_decode_chunk_reads_the_filter_header(tmp_path):
    frames = poisson_frames(4, (2, 8, 9), 2.0, np.uint16)
    raw = open_raw(write_lima(tmp_path / "h.h5", frames))
    table = chunk_table(raw.segments[0], raw.frame_shape, raw.dtype)
    with open(raw.segments[0].file, "rb") as f:
        f.seek(int(table.offsets[1]))
        buf = f.read(int(table.sizes[1]))
    np.testing.assert_array_equal(decode_chunk(buf, (8, 9), np.uint16), frames[1])
    with pytest.raises(ValueError, match="expected"):
        decode_chunk(buf, (8, 10), np.uint16)


def test_bitshuffle_wheel_fallback_decodes_the_same(tmp_path, monkeypatch):
    import conversions.decode as decode

    frames = poisson_frames(5, (6, 20, 24), 1.5, np.uint16)
    raw = open_raw(write_lima(tmp_path / "w.h5", frames))
    fast = FrameReader(raw).read(0, 6)
    monkeypatch.setattr(decode, "_bshuf_lib", lambda: None)  # the bitshuffle wheel instead
    slow = FrameReader(raw)
    assert slow.lock_free
    np.testing.assert_array_equal(slow.read(0, 6), fast)
    np.testing.assert_array_equal(fast, frames)
