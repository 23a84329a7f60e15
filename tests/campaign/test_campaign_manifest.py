"""Manifest validation: every problem named (key and scan), all at once, nothing created."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from campaign_helpers import EDGES, SHAPE, have, scan_entry, speckle_frames, write_lima, write_manifest

from conversions.errors import InputError
from daskxpcs.campaign.manifest import ManifestError, load_manifest

def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _good(tmp_path: Path, n: int = 2) -> list[dict]:
    scans = []
    for i in range(n):
        write_lima(tmp_path / "raw" / f"s{i}.h5", speckle_frames(8, seed=i))
        scans.append(scan_entry(f"s{i}", f"raw/s{i}.h5", p=1.0 + i, t_w=10.0 * i))
    return scans


def test_valid_manifest_resolves_paths_and_groups_isobars(tmp_path):
    scans = _good(tmp_path, 3)
    scans[2]["pressure_gpa"] = 1.0
    m = load_manifest(write_manifest(tmp_path, scans), read_headers=False)
    assert m.name == "test"
    assert m.output == tmp_path / "out"
    assert [s.name for s in m.scans] == ["s0", "s1", "s2"]
    assert m.scans[0].raw == tmp_path / "raw" / "s0.h5"
    g = m.geometries["g1"]
    assert g.qmap == str(tmp_path / "qmap.npy") and g.q_edges == tuple(EDGES) and g.shape == SHAPE
    assert {k: [s.name for s in v] for k, v in m.isobars().items()} == {
        ("S1", "compression", 1.0): ["s0", "s2"], ("S1", "compression", 2.0): ["s1"]}
    assert not tmp_path.joinpath("out").exists()


def test_every_problem_reported_at_once_and_nothing_created(tmp_path):
    scans = _good(tmp_path, 2)
    scans.append(scan_entry("s1", "raw/s1.h5"))                                     # duplicate name
    scans.append(scan_entry("S1_c3.3_s01", "raw/s0.h5", p="3.3"))                   # pressure as a string
    scans.append(scan_entry("neg", "raw/s0.h5", t_w=-5.0))                          # negative time
    scans.append(scan_entry("stage", "raw/s0.h5", stage="compresion"))              # bad stage
    scans.append(scan_entry("nofile", "raw/missing.h5"))                            # missing raw
    scans.append({**scan_entry("geo", "raw/s0.h5"), "geometry": "run9"})            # unknown geometry
    scans.append({**scan_entry("typo", "raw/s0.h5"), "presure_gpa": 1.0})           # unknown key
    scans.append(scan_entry("ft", "raw/s0.h5", frame_time_s=0.0))                   # frame time 0
    scans.append(scan_entry("entry", "raw/s0.h5", raw_entry=3.1))                   # entry not a string
    bad = {"name": "g1", "qmap": "qmap.npy", "mask": "nomask.npy", "q_edges": [1.0, 2.0, 1.5], "dist": 1}
    path = write_manifest(tmp_path, scans, geometry=bad, extra='\n[extra]\nfoo = 1\n')
    before = _tree(tmp_path)
    with pytest.raises(ManifestError) as ei:
        load_manifest(path)
    probs = ei.value.problems
    text = str(ei.value)
    expected = [
        'scan[2] "s1": duplicate scan name "s1" (also scan[1])',
        'scan[3] "S1_c3.3_s01": pressure_gpa must be a number, got "3.3"',
        'scan[4] "neg": t_w_s must be >= 0, got -5',
        "scan[5] \"stage\": stage must be \"compression\" or \"decompression\", got 'compresion'",
        'scan[6] "nofile": raw not found: ',
        'scan[7] "geo": unknown geometry "run9" (defined: g1)',
        "scan[8] \"typo\": unknown key 'presure_gpa'",
        'scan[9] "ft": frame_time_s must be > 0, got 0',
        'scan[10] "entry": raw_entry must be a string such as "3.1", got 3.1',
        "geometry[0] \"g1\": unknown key 'dist'",
        'geometry[0] "g1": q_edges must be strictly increasing',
        'geometry[0] "g1": mask file not found: ',
        "manifest: unknown key 'extra'",
    ]
    for e in expected:
        assert any(p.startswith(e) for p in probs), (e, probs)
        assert e in text
    assert len(probs) == len(expected)
    assert isinstance(ei.value, InputError)
    assert _tree(tmp_path) == before


def test_missing_tables_and_required_keys(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('[campaign]\nname = "x"\n[[scan]]\nname = "a"\n')
    with pytest.raises(ManifestError) as ei:
        load_manifest(p)
    probs = ei.value.problems
    for key in ("sample", "geometry", "stage", "pressure_gpa", "t_w_s", "raw"):
        assert f'scan[0] "a": {key} is required' in probs
    assert "manifest: no [[geometry]] table" in probs


def test_not_toml_and_not_found(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text("[campaign\nname=")
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(p)
    with pytest.raises(ManifestError, match="manifest file not found"):
        load_manifest(tmp_path / "nope.toml")


def test_qmap_in_hdf5_and_missing_dataset(tmp_path):
    scans = _good(tmp_path, 1)
    with h5py.File(tmp_path / "geo.h5", "w") as f:
        f["q"] = np.ones(SHAPE, np.float32)
    ok = write_manifest(tmp_path, scans, geometry={"name": "g1", "qmap": "geo.h5:/q", "q_edges": EDGES})
    assert load_manifest(ok, read_headers=False).geometries["g1"].shape == SHAPE
    bad = write_manifest(tmp_path, scans, geometry={"name": "g1", "qmap": "geo.h5:/nope", "q_edges": EDGES})
    with pytest.raises(ManifestError, match=r'geometry\[0\] "g1": qmap: .*geo.h5: no dataset /nope'):
        load_manifest(bad, read_headers=False)


def test_poni_without_pyfai_is_a_clear_error(tmp_path):
    if have("pyFAI"):
        pytest.skip("pyFAI installed")
    scans = _good(tmp_path, 1)
    (tmp_path / "run1.poni").write_text("Distance: 1.0\n")
    path = write_manifest(tmp_path, scans, geometry={"name": "g1", "poni": "run1.poni", "q_edges": EDGES})
    with pytest.raises(ManifestError, match=r'geometry\[0\] "g1": poni needs pyFAI, which is not installed'):
        load_manifest(path, read_headers=False)


def test_geometry_needs_qmap_or_poni(tmp_path):
    path = write_manifest(tmp_path, _good(tmp_path, 1), geometry={"name": "g1", "q_edges": EDGES})
    with pytest.raises(ManifestError, match="needs qmap"):
        load_manifest(path, read_headers=False)


def test_qmap_and_mask_shapes_checked_against_frames(tmp_path):
    scans = _good(tmp_path, 2)
    write_lima(tmp_path / "raw" / "wide.h5", speckle_frames(8, shape=(24, 21)))
    scans.append(scan_entry("wide", "raw/wide.h5"))
    np.save(tmp_path / "mask.npy", np.zeros((23, 20), np.uint8))
    path = write_manifest(tmp_path, scans, geometry={"name": "g1", "qmap": "qmap.npy", "mask": "mask.npy",
                                                     "q_edges": EDGES})
    with pytest.raises(ManifestError) as ei:
        load_manifest(path)
    assert 'geometry[0] "g1": mask shape 23x20 differs from the qmap shape 24x20' in ei.value.problems
    assert any(p.startswith('scan[2] "wide": geometry "g1" qmap shape 24x20 differs from the frame shape 24x21')
               for p in ei.value.problems), ei.value.problems
    assert len(ei.value.problems) == 2


def test_headers_read(tmp_path):
    m = load_manifest(write_manifest(tmp_path, _good(tmp_path, 1)))
    s = m.scans[0]
    assert (s.n_frames, s.frame_shape) == (8, SHAPE)
    assert s.frame_period_s == pytest.approx(0.1)


def test_cli_run_bad_manifest_exits_2_and_creates_nothing(tmp_path, capsys):
    from daskxpcs.cli import main

    scans = _good(tmp_path, 1)
    scans[0]["pressure_gpa"] = "high"
    path = write_manifest(tmp_path, scans)
    before = _tree(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["run", str(path)]) == 2
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert 'scan[0] "s0": pressure_gpa must be a number, got "high"' in err
    assert _tree(tmp_path) == before
