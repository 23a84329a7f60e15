"""Bad input: one clear one-line error naming the file and the dataset or key."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
from conv_rawfiles import poisson_frames, write_lima

from conversions.arrays import load_array
from conversions.convert import convert
from conversions.decode import FrameReader
from conversions.errors import InputError, RawFormatError
from conversions.formats import open_raw

DATA = "/entry_0000/measurement/data"


def _one_line(exc: Exception) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


@pytest.fixture
def lima(tmp_path):
    return write_lima(tmp_path / "good.h5", poisson_frames(0, (6, 8, 10), 0.5))


def test_missing_file(tmp_path):
    with pytest.raises(RawFormatError) as exc:
        convert(tmp_path / "nope.h5", tmp_path / "s.zarr")
    assert "nope.h5" in _one_line(exc.value) and "no such file" in str(exc.value)


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("hello\n")
    with pytest.raises(RawFormatError, match="not an HDF5 file") as exc:
        convert(path, tmp_path / "s.zarr")
    assert str(path) in _one_line(exc.value)


def test_truncated_file(tmp_path):
    frames = poisson_frames(1, (40, 32, 32), 2.0)
    path = write_lima(tmp_path / "cut.h5", frames, compression=None)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RawFormatError) as exc:
        raw = open_raw(path)
        convert(raw, tmp_path / "s.zarr", layout="dense")
    assert str(path) in _one_line(exc.value)


def test_truncated_compressed_chunks(tmp_path):
    """Metadata intact, chunk bytes missing: the lock-free reader names file and dataset."""
    frames = poisson_frames(2, (30, 64, 64), 3.0)
    path = write_lima(tmp_path / "cut.h5", frames)
    reader = FrameReader(open_raw(path))  # chunk table read while the file is whole
    assert reader.lock_free
    with h5py.File(path) as f:
        info = f[DATA].id.get_chunk_info(29)
    with open(path, "r+b") as f:
        f.truncate(info.byte_offset + info.size // 2)
    np.testing.assert_array_equal(reader.read(0, 29), frames[:29])
    with pytest.raises(RawFormatError, match="frame 29.*cut short") as exc:
        reader.read(25, 30)
    assert f"{path}:{DATA}" in _one_line(exc.value)
    with pytest.raises(RawFormatError, match="truncated") as exc:  # and when opened anew
        convert(path, tmp_path / "s.zarr")
    assert str(path) in _one_line(exc.value)


def test_missing_dataset(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_group("entry_0000/measurement")
        f["other"] = np.zeros(3)
    with pytest.raises(RawFormatError, match="unknown layout") as exc:
        convert(path, tmp_path / "s.zarr")
    assert str(path) in _one_line(exc.value)


def test_missing_dataset_in_lima_folder(tmp_path, lima):
    folder = tmp_path / "scan"
    folder.mkdir()
    lima.rename(folder / "a_0000.h5")
    with h5py.File(folder / "a_0001.h5", "w") as f:
        f.create_group("entry_0000/measurement")
    with pytest.raises(RawFormatError) as exc:
        open_raw(folder)
    assert f"a_0001.h5:{DATA}: no such dataset" in _one_line(exc.value)


def test_broken_external_link(tmp_path, format_fixtures):
    import shutil

    shutil.copy(format_fixtures / "eiger/series_master.h5", tmp_path / "series_master.h5")
    with pytest.raises(RawFormatError, match="data_000001.*missing file") as exc:
        open_raw(tmp_path / "series_master.h5")
    assert "series_master.h5:/entry/data/data_000001" in _one_line(exc.value)


@pytest.mark.parametrize("what", ["qmap", "mask"])
def test_shape_mismatch(tmp_path, lima, what):
    wrong = np.zeros((10, 8))
    kw = {"qmap": wrong, "q_edges": [0, 1]} if what == "qmap" else {"mask": wrong}
    with pytest.raises(RawFormatError, match=r"shape \(10, 8\) != frame shape \(8, 10\)") as exc:
        convert(lima, tmp_path / "s.zarr", **kw)
    assert str(lima) in _one_line(exc.value)
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint64])
def test_unsupported_dtype(tmp_path, dtype):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA, data=np.ones((3, 4, 5), dtype))
    with pytest.raises(RawFormatError, match=f"unsupported dtype {np.dtype(dtype)}") as exc:
        convert(path, tmp_path / "s.zarr", frame_time_s=0.1)
    assert f"f.h5:{DATA}" in _one_line(exc.value)


def test_load_array(tmp_path):
    q = np.arange(12.0).reshape(3, 4)
    np.save(tmp_path / "q.npy", q)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f["geo/q"] = q
    np.testing.assert_array_equal(load_array(tmp_path / "q.npy", "qmap"), q)
    np.testing.assert_array_equal(load_array(f"{tmp_path}/g.h5:/geo/q", "qmap"), q)
    with pytest.raises(InputError, match="mask: no such file"):
        load_array(tmp_path / "m.npy", "mask")
    with pytest.raises(InputError, match="qmap: .*g.h5 has no dataset /geo/x"):
        load_array(f"{tmp_path}/g.h5:/geo/x", "qmap")
    (tmp_path / "bad.npy").write_text("junk")
    with pytest.raises(InputError, match="qmap: cannot read"):
        load_array(tmp_path / "bad.npy", "qmap")
    np.save(tmp_path / "v.npy", np.zeros(5))
    with pytest.raises(InputError, match="2-D"):
        load_array(tmp_path / "v.npy", "qmap")


def test_cli_convert(tmp_path, lima, capsys):
    from daskxpcs.cli import main

    out = tmp_path / "s.zarr"
    np.save(tmp_path / "mask.npy", np.zeros((8, 10), np.uint8))
    assert main(["convert", str(lima), str(out), "--mask", str(tmp_path / "mask.npy"),
                 "--scheduler", "synchronous"]) == 0
    line = capsys.readouterr().out.strip()
    assert "6 frames of 8x10" in line and "\n" not in line
    np.save(tmp_path / "q.npy", np.zeros((4, 4)))
    assert main(["convert", str(lima), str(tmp_path / "t.zarr"), "--qmap",
                 str(tmp_path / "q.npy"), "--q-edges", "0,1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("daskxpcs convert: error:") and "good.h5" in err and "\n" not in err


def test_cli_exit_code_in_a_process(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("hello\n")
    proc = subprocess.run([sys.executable, "-m", "daskxpcs.cli", "convert", str(path),
                           str(tmp_path / "s.zarr")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"daskxpcs convert: error: {path}: not an HDF5 file"
