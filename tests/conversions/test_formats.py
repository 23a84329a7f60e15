"""Every reader against the independent format fixtures, and format detection."""

from __future__ import annotations

import numpy as np
import pytest

from conversions.errors import RawFormatError
from conversions.formats import detect_format, open_raw
from conv_rawfiles import EXPECTED_FORMATS

FORMATS = sorted(EXPECTED_FORMATS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_reader_returns_expected_counts(format_fixtures, expected, fmt):
    path = format_fixtures / EXPECTED_FORMATS[fmt]
    assert detect_format(path) == fmt
    raw = open_raw(path)
    counts, bad = expected["counts"], expected["bad"]
    assert raw.format == fmt and raw.n_frames == counts.shape[0]
    assert raw.frame_shape == counts.shape[1:]
    frames = raw.read_frames(0, raw.n_frames)
    np.testing.assert_array_equal(frames[:, ~bad], counts[:, ~bad])
    part = raw.read_frames(7, 13)  # across a file boundary (10 frames a file)
    np.testing.assert_array_equal(part[:, ~bad], counts[7:13][:, ~bad])
    if fmt == "lima2":
        assert raw.sparse and (frames[:, bad] == 0).all()
        np.testing.assert_array_equal(raw.bad_mask, bad)
    else:
        assert not raw.sparse
        assert raw.frame_time_s == pytest.approx(expected["frame_time"])
    if fmt == "eiger":
        np.testing.assert_array_equal(raw.bad_mask, bad)
        assert raw.wavelength_a == pytest.approx(0.5904009449200013)
        assert raw.energy_kev == pytest.approx(21.0, rel=1e-6)
    if fmt == "bliss":
        assert raw.energy_kev == pytest.approx(21.0) and raw.entry == "1.1"


def test_single_lima_file_is_a_scan(format_fixtures, expected):
    raw = open_raw(format_fixtures / "lima/scan0001/eiger4m_0001.h5")
    assert raw.n_frames == 10
    bad = expected["bad"]
    np.testing.assert_array_equal(raw.read_frames(0, 10)[:, ~bad],
                                  expected["counts"][10:20][:, ~bad])


@pytest.mark.parametrize("entry", [None, "1", "1.1"])
def test_bliss_entry_choice(format_fixtures, entry):
    raw = open_raw(format_fixtures / "bliss/sample_0001.h5", entry=entry)
    assert raw.entry == "1.1" and raw.n_frames == 24


def test_bliss_missing_entry_named(format_fixtures):
    with pytest.raises(RawFormatError, match=r"sample_0001\.h5:/7: no such scan entry"):
        open_raw(format_fixtures / "bliss/sample_0001.h5", entry="7")


def test_bliss_several_scans_need_an_entry(tmp_path, format_fixtures):
    import h5py

    path = tmp_path / "master.h5"
    with h5py.File(path, "w") as f:
        f.attrs["creator"] = "bliss"
        for scan in ("1.1", "2.1"):
            f.create_dataset(f"{scan}/measurement/eiger4m", data=np.zeros((3, 4, 5), np.uint16))
            f[f"{scan}/measurement/elapsed_time"] = np.arange(3) * 0.5
    with pytest.raises(RawFormatError, match="choose one"):
        open_raw(path)
    raw = open_raw(path, entry="2")
    assert raw.entry == "2.1" and raw.frame_time_s == pytest.approx(0.5)
    assert raw.dtype == np.uint16 and raw.read_frames(0, 3).shape == (3, 4, 5)


def test_lima_frame_time_is_exposure_plus_latency(tmp_path):
    from conv_rawfiles import poisson_frames, write_lima

    path = write_lima(tmp_path / "a.h5", poisson_frames(0, (3, 4, 5), 0.1),
                      exposure=0.08, latency=0.02)
    assert open_raw(path).frame_time_s == pytest.approx(0.1)
    path = write_lima(tmp_path / "b.h5", poisson_frames(0, (3, 4, 5), 0.1), exposure=None)
    assert open_raw(path).frame_time_s is None


def test_bliss_external_link_decodes_from_the_linked_file(tmp_path):
    import h5py

    from conversions.decode import FrameReader
    from conv_rawfiles import poisson_frames, write_lima

    frames = poisson_frames(0, (7, 9, 11), 0.5)
    write_lima(tmp_path / "lima_0000.h5", frames)
    with h5py.File(tmp_path / "master.h5", "w") as f:
        f.attrs["creator"] = "bliss"
        f["1.1/measurement/eiger4m"] = h5py.ExternalLink("lima_0000.h5",
                                                         "/entry_0000/measurement/data")
        f["1.1/measurement/elapsed_time"] = np.arange(7) * 0.2
    raw = open_raw(tmp_path / "master.h5")
    assert raw.format == "bliss" and raw.frame_time_s == pytest.approx(0.2)
    reader = FrameReader(raw)
    assert reader.lock_free
    np.testing.assert_array_equal(reader.read(0, 7), frames)
    np.testing.assert_array_equal(raw.read_frames(0, 7), frames)
