"""Raw writers: exact read-back with h5py + hdf5plugin, the fixtures' layout, and the project readers."""

from __future__ import annotations


import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskxpcs.simulate import read_frames, write_bliss, write_eiger, write_lima, write_lima2_sparse


def _frames(t, ny, nx, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.poisson(0.3, (t, ny, nx)).astype(dtype)
    a[:, 2, :] = np.iinfo(dtype).max  # a gap row
    return a


def _blocks(a, size):
    for i in range(0, a.shape[0], size):
        yield a[i : i + size]


def _write(fmt, tmp, a, per_file, block, mask=None):
    """Write `a` in `fmt`; returns (path for read_frames / open_raw, entry)."""
    if fmt == "lima":
        write_lima(tmp / "lima", _blocks(a, block), frames_per_file=per_file, exposure_time=0.09, latency_time=0.01)
        return tmp / "lima", None
    if fmt == "bliss":
        write_bliss(tmp / "b" / "m.h5", _blocks(a[:5], block), scan_number=1, frame_time_s=0.1, frames_per_file=per_file)
        entry = write_bliss(tmp / "b" / "m.h5", _blocks(a, block), scan_number=2, frame_time_s=0.1, frames_per_file=per_file)
        return tmp / "b" / "m.h5", entry
    if fmt == "eiger":
        pm = np.zeros(a.shape[1:], np.uint32)
        pm[2, :] = 1
        write_eiger(tmp / "e" / "x_master.h5", _blocks(a, block), frames_per_file=per_file, frame_time_s=0.1, pixel_mask=pm)
        return tmp / "e" / "x_master.h5", None
    if fmt == "lima2":
        bad = np.zeros(a.shape[1:], bool)
        bad[2, :] = True
        write_lima2_sparse(tmp / "l2", _blocks(a, block), mask=bad, frames_per_file=per_file)
        return tmp / "l2", None
    raise AssertionError(fmt)


def _expected(fmt, a):
    if fmt == "lima2":
        b = a.copy()
        b[:, 2, :] = 0  # masked pixels carry no events
        return b
    return a


FMTS = ["lima", "bliss", "eiger", "lima2"]


@pytest.mark.parametrize("fmt", FMTS)
@settings(max_examples=4, deadline=None)
@given(
    t=st.integers(1, 23),
    per_file=st.integers(1, 10),
    block=st.integers(1, 9),
    dtype=st.sampled_from(["uint16", "uint32"]),
)
def test_writer_reads_back_identically(fmt, t, per_file, block, dtype, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(fmt)
    a = _frames(t, 9, 11, dtype)
    path, entry = _write(fmt, tmp, a, per_file, block)
    got = read_frames(path, fmt, entry=entry)
    np.testing.assert_array_equal(got, _expected(fmt, a))
    assert not list(tmp.rglob("*.tmp"))  # nothing half-written left behind


def _layout(path):
    out = {}
    with h5py.File(path, "r") as h:

        def visit(name):
            link = h.get(name, getlink=True)
            obj = h.get(name)
            if isinstance(link, h5py.HardLink):
                out[name] = "dataset" if isinstance(obj, h5py.Dataset) else "group"
            else:
                out[name] = type(link).__name__

        h.visit_links(visit)
    return out


@pytest.mark.parametrize(
    "fmt, ours, theirs",
    [
        ("lima", "lima/eiger4m_0000.h5", "lima/scan0001/eiger4m_0000.h5"),
        ("bliss", "b/m.h5", "bliss/sample_0001.h5"),
        ("eiger", "e/x_master.h5", "eiger/series_master.h5"),
        ("eiger", "e/x_data_000001.h5", "eiger/series_data_000001.h5"),
        ("lima2", "l2/eiger4m_v2_sparse_frame_0_00000.h5", "lima2/scan0001/eiger4m_v2_sparse_frame_0_00000.h5"),
    ],
)
def test_layout_matches_fixture(fmt, ours, theirs, tmp_path, format_fixtures):
    a = _frames(24, 40, 56, "uint32")
    _write(fmt, tmp_path, a, 10, 7)
    mine, ref = _layout(tmp_path / ours), _layout(format_fixtures / theirs)
    if fmt == "bliss":  # our master holds entries 1.1 and 2.1
        mine = {k: v for k, v in mine.items() if not k.startswith("2.1")}
    assert mine == ref
    with h5py.File(tmp_path / ours, "r") as h, h5py.File(format_fixtures / theirs, "r") as f:
        for name, kind in ref.items():
            if kind != "dataset":
                continue
            d, e = h[name], f[name]
            assert d.ndim == e.ndim, name
            if e.chunks is not None and e.ndim == 3:  # frame stacks: one frame a chunk, bitshuffle-LZ4
                assert d.chunks == (1,) + d.shape[1:], name
                assert "32008" in d._filters, name
        assert dict(h.attrs).get("creator") == dict(f.attrs).get("creator")


def test_bliss_virtual_dataset_is_relative(tmp_path):
    a = _frames(12, 5, 6, "uint32")
    _write("bliss", tmp_path, a, 5, 4)
    with h5py.File(tmp_path / "b" / "m.h5", "r") as h:
        ds = h["2.1/measurement/eiger4m"]
        assert ds.is_virtual
        assert all(not s.file_name.startswith("/") for s in ds.virtual_sources())
        np.testing.assert_allclose(np.diff(h["2.1/measurement/elapsed_time"][()]), 0.1)
    moved = tmp_path / "moved"
    (tmp_path / "b").rename(moved)  # relative links survive a move of the whole folder
    np.testing.assert_array_equal(read_frames(moved / "m.h5", "bliss", entry="2.1"), a)


def test_lima2_rejects_unmasked_overflow(tmp_path):
    a = _frames(3, 5, 6, "uint32")
    with pytest.raises(ValueError, match="does not fit"):
        write_lima2_sparse(tmp_path / "x", iter([a]))  # gap row (0xFFFFFFFF) not masked
    assert not list(tmp_path.rglob("*.h5*"))


def test_eiger_requires_master_name(tmp_path):
    with pytest.raises(ValueError, match="_master.h5"):
        write_eiger(tmp_path / "x.h5", iter([_frames(2, 3, 3, "uint32")]))


@pytest.mark.parametrize("fmt", FMTS)
def test_project_reader_round_trip(fmt, tmp_path):
    from conversions.formats import open_raw

    a = _frames(17, 9, 11, "uint32", seed=3)
    path, entry = _write(fmt, tmp_path, a, 6, 5)
    raw = open_raw(path, entry=entry) if entry else open_raw(path)
    assert raw.format == fmt
    assert raw.n_frames == a.shape[0] and tuple(raw.frame_shape) == a.shape[1:]
    got = np.asarray(raw.read_frames(0, raw.n_frames))
    good = np.ones(a.shape[1:], bool)
    good[2, :] = False
    np.testing.assert_array_equal(got[:, good], a[:, good])
    if fmt != "lima2":
        np.testing.assert_array_equal(got, a)
    else:
        assert (got[:, ~good] == 0).all() or (raw.bad_mask is not None and raw.bad_mask[~good].all())
    if fmt in ("lima", "bliss", "eiger"):
        assert raw.frame_time_s == pytest.approx(0.1)
