"""Atomic writes, exact table columns, fingerprints and the complete marks used for resume."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
import zarr
from campaign_helpers import scan_entry, speckle_frames, write_lima, write_manifest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskxpcs.campaign.manifest import load_manifest
from daskxpcs.campaign.state import (
    atomic_write_json, atomic_write_text, conversion_fingerprint, mark_done, read_done, scan_fingerprint,
)
from daskxpcs.campaign.tables import COLUMNS, read_table, write_table

DESIGN_COLUMNS = {
    "scans": "scan, sample, stage, pressure_gpa, t_w_s, q_index, q_inv_angstrom, tau_s, tau_err_s, beta, "
             "beta_err, contrast, contrast_err, baseline, redchi, fit_ok",
    "isobars": "sample, stage, pressure_gpa, n_scans, tau_mean_s, tau_std_s, beta_mean, delta_c_90, delta_c_80, "
               "delta_c_70, delta_c_60, q1_inv_angstrom",
    "aging": "sample, stage, pressure_gpa, tau0_s, tau0_err_s, tau_star_s, tau_star_err_s, n_points",
    "qdep": "sample, stage, pressure_gpa, alpha, alpha_err, c, c_err",
    "structure": "scan, sample, stage, pressure_gpa, q1_inv_angstrom",
}


def test_columns_are_design_md_exactly():
    assert {k: ", ".join(v) for k, v in COLUMNS.items()} == DESIGN_COLUMNS


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert sorted(os.listdir(p.parent)) == ["a.txt"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    p = tmp_path / "s.json"
    atomic_write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(p, {"a": object()})
    assert p.read_text().strip().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert sorted(os.listdir(tmp_path)) == ["s.json"]


def test_json_nan_becomes_null(tmp_path):
    p = atomic_write_json(tmp_path / "s.json", {"x": float("nan"), "y": np.float64(2.5), "z": np.arange(2)})
    import json

    assert json.loads(p.read_text()) == {"x": None, "y": 2.5, "z": [0, 1]}


finite = st.floats(allow_nan=True, allow_infinity=False, width=64)


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries({"sample": st.sampled_from(["S1", "S2,x", 'q"']),
                                            "stage": st.just("compression"), "pressure_gpa": finite,
                                            "alpha": finite, "alpha_err": finite, "c": finite, "c_err": finite,
                                            "extra": st.integers()}), max_size=5))
def test_table_roundtrip_exact(tmp_path_factory, rows):
    p = tmp_path_factory.mktemp("t") / "qdep.csv"
    write_table(p, rows, "qdep")
    back = read_table(p)
    assert p.read_text().splitlines()[0] == "sample,stage,pressure_gpa,alpha,alpha_err,c,c_err"
    assert len(back) == len(rows)
    for r, b in zip(rows, back):
        assert set(b) == set(COLUMNS["qdep"])
        for k in COLUMNS["qdep"]:
            if isinstance(r[k], float) and math.isnan(r[k]):
                assert math.isnan(b[k])
            else:
                assert b[k] == r[k]


def test_missing_column_is_nan_and_ints_stay_ints(tmp_path):
    p = write_table(tmp_path / "a.csv", [{"sample": "S1", "stage": "compression", "pressure_gpa": 1.0,
                                           "n_points": np.int64(3), "tau0_s": np.float32(0.5)}], "aging")
    assert p.read_text().splitlines()[1] == "S1,compression,1.0,0.5,nan,nan,nan,3"


def _manifest(tmp_path, **kw):
    if not (tmp_path / "raw" / "a.h5").exists():
        write_lima(tmp_path / "raw" / "a.h5", speckle_frames(8))
    return load_manifest(write_manifest(tmp_path, [scan_entry("a", "raw/a.h5", **kw)]))


def test_fingerprint_follows_inputs(tmp_path):
    m = _manifest(tmp_path)
    s, g = m.scans[0], m.geometries["g1"]
    params = {"engine": "auto", "ttcf_bin": 1}
    fp = scan_fingerprint(s, g, params)
    cfp = conversion_fingerprint(s, g)
    assert fp == scan_fingerprint(s, g, dict(params))
    assert fp != scan_fingerprint(s, g, {"engine": "auto", "ttcf_bin": 2})
    m2 = _manifest(tmp_path, t_w=5.0)  # manifest entry changed, raw untouched: store still good
    assert scan_fingerprint(m2.scans[0], g, params) != fp
    assert conversion_fingerprint(m2.scans[0], m2.geometries["g1"]) == cfp
    st_ = os.stat(s.raw)
    os.utime(s.raw, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))
    assert conversion_fingerprint(s, g) != cfp
    np.save(tmp_path / "qmap.npy", np.zeros((24, 20), np.float32))
    time.sleep(0.01)
    assert conversion_fingerprint(s, g) != cfp


def test_read_done_needs_complete_mark_and_matching_fingerprint(tmp_path):
    p = tmp_path / "r.zarr" / "a"
    assert read_done(p, "f") is None
    zarr.open_group(str(tmp_path / "r.zarr"), mode="a")
    g = zarr.open_group(str(p), mode="w")
    g.attrs["campaign_fingerprint"] = "f"
    assert read_done(p, "f") is None  # no complete mark: a killed run
    mark_done(p, "f", {"rows": [{"tau_s": float("nan"), "q_index": -1}]})
    assert read_done(p, "f") == {"rows": [{"tau_s": None, "q_index": -1}]}
    assert read_done(p, "other") is None
    (p / "zarr.json").write_text("{ half")
    assert read_done(p, "f") is None
