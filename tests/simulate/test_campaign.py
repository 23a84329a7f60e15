"""A tiny campaign: manifest keys (DESIGN.md), files, formats and the ground truth's physics."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from daskxpcs.simulate import read_frames, simulate_campaign

CAMPAIGN_KEYS = {"name", "output"}
GEOMETRY_KEYS = {"name", "qmap", "mask", "q_edges", "poni"}
SCAN_KEYS = {"name", "sample", "geometry", "stage", "pressure_gpa", "t_w_s", "raw", "raw_entry", "frame_time_s",
             "temperature_k"}
SCAN_REQUIRED = {"name", "sample", "geometry", "stage", "pressure_gpa", "t_w_s", "raw"}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> tuple[Path, dict, dict]:
    out = tmp_path_factory.mktemp("campaign")
    manifest = simulate_campaign(out, preset="tiny", seed=1)
    with open(manifest, "rb") as f:
        doc = tomllib.load(f)
    truth = json.loads((out / "truth.json").read_text())
    return manifest, doc, truth


def test_manifest_has_design_keys(campaign):
    manifest, doc, _ = campaign
    assert manifest.name == "campaign.toml"
    assert set(doc) == {"campaign", "geometry", "scan"}
    assert set(doc["campaign"]) == CAMPAIGN_KEYS
    names = [s["name"] for s in doc["scan"]]
    assert len(names) == len(set(names))
    geoms = {g["name"]: g for g in doc["geometry"]}
    for g in doc["geometry"]:
        assert set(g) <= GEOMETRY_KEYS and {"name", "qmap", "q_edges"} <= set(g)
        q = np.load(manifest.parent / g["qmap"])
        m = np.load(manifest.parent / g["mask"])
        assert q.shape == m.shape
        assert q.min() == pytest.approx(2.70, abs=1e-4) and q.max() == pytest.approx(3.05, abs=1e-4)
        assert list(g["q_edges"]) == sorted(g["q_edges"])
    for s in doc["scan"]:
        assert SCAN_REQUIRED <= set(s) <= SCAN_KEYS
        assert s["geometry"] in geoms
        assert s["stage"] in ("compression", "decompression")
        assert (manifest.parent / s["raw"]).exists()


def test_scans_cover_every_format_and_read_back(campaign):
    manifest, doc, truth = campaign
    fmts = {t["format"] for t in truth["scans"].values()}
    assert fmts == {"lima", "bliss", "eiger", "lima2"}
    for s in doc["scan"]:
        t = truth["scans"][s["name"]]
        frames = read_frames(manifest.parent / s["raw"], t["format"], entry=s.get("raw_entry"))
        assert frames.shape[0] == t["n_frames"]
        geo = next(g for g in doc["geometry"] if g["name"] == s["geometry"])
        valid = np.load(manifest.parent / truth["geometries"][geo["name"]]["valid_file"])
        assert frames.shape[1:] == valid.shape
        mean = frames[:, valid].mean()
        assert mean == pytest.approx(t["rate"], rel=0.15)
        if t["format"] != "lima2":  # the dtype-maximum rule plus the manifest mask give the valid pixels
            top = np.iinfo(frames.dtype).max
            mask = np.load(manifest.parent / geo["mask"]) != 0
            np.testing.assert_array_equal(~(mask | (frames == top).any(axis=0)), valid)


def test_truth_is_consistent(campaign):
    _, doc, truth = campaign
    assert set(truth["scans"]) == {s["name"] for s in doc["scan"]}
    g = truth["global"]
    assert {"alpha", "q_ref", "tau_ref_s"} <= set(g)
    assert g["generator"] == "exact"  # the default: the preset's beta
    assert [i["beta"] for i in truth["isobars"]] == [i["beta_preset"] for i in truth["isobars"]]
    for s in doc["scan"]:
        t = truth["scans"][s["name"]]
        for key in ("sample", "stage", "pressure_gpa", "t_w_s", "raw"):
            assert t[key] == s[key]
        n_q = len(t["q_edges"]) - 1
        assert len(t["tau_q_centre_s"]) == n_q and len(t["expected"]["tau_s"]) == n_q + 1
        assert t["tau_union_s"] == t["expected"]["tau_s"][-1]
        # tau well inside the measured lags: a few to ~20 % of the scan
        duration = t["n_frames"] * t["frame_time_s"]
        assert 0.02 * duration < t["tau_union_s"] < 0.25 * duration
        # tau(q) decreases with q as q^-alpha
        tq = np.array(t["tau_q_centre_s"])
        np.testing.assert_allclose(tq, t["tau_ref_s"] * (np.array(t["q_centres"]) / g["q_ref"]) ** -g["alpha"])
        assert 0 < t["beta"] <= 2 and 0 < t["contrast"] < 1
    for iso in truth["isobars"]:
        assert all(truth["scans"][n]["pressure_gpa"] == iso["pressure_gpa"] for n in iso["scans"])
        law = truth["samples"][iso["sample"]]
        assert iso["q1"] == pytest.approx(law["q1_0"] + law["dq1_dP"][iso["stage"]] * iso["pressure_gpa"])
        tws = [truth["scans"][n]["t_w_s"] for n in iso["scans"]]
        taus = [truth["scans"][n]["expected"]["tau_s"][-1] for n in iso["scans"]]
        if iso["tau_star_s"] is not None:  # aging: tau grows with t_w as tau0 exp(t_w / tau*)
            assert np.all(np.diff(taus) > 0)
            mids = [truth["scans"][n]["tau_ref_s"] for n in iso["scans"]]
            np.testing.assert_allclose(mids, iso["tau0_scan_fit_s"] * np.exp(np.array(tws) / iso["tau_star_s"]))
        assert iso["heterogeneous"] == any(truth["scans"][n]["heterogeneous"] for n in iso["scans"])


def test_rejuvenation_isobar_is_fastest_and_heterogeneous(campaign):
    _, _, truth = campaign
    for sample in truth["samples"]:
        comp = [i for i in truth["isobars"] if i["sample"] == sample and i["stage"] == "compression"]
        fastest = min(comp, key=lambda i: i["tau0_s"])
        assert fastest["pressure_gpa"] == 3.3 and fastest["heterogeneous"]
        assert any(truth["scans"][n]["avalanche_frames"] for n in fastest["scans"])


def test_bad_preset_or_format_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        simulate_campaign(tmp_path, preset="huge")
    with pytest.raises(ValueError, match="formats"):
        simulate_campaign(tmp_path, preset="tiny", formats=["tiff"])
    assert not (tmp_path / "campaign.toml").exists()
