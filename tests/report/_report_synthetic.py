"""A small but real campaign output directory built from synthetic KWW curves and TTCFs.

Independent of the rest of daskxpcs: real zarr v3 groups, CSVs with DESIGN.md's columns,
summary.json and a truth.json next to a manifest path, all written with numpy here.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import zarr

T = 256  # frames per scan
DT = 0.1  # s per frame
NY, NX = 40, 48
Q_EDGES = np.array([2.74, 2.82, 2.90, 2.98])
N_Q = Q_EDGES.size - 1
Q_REF = 2.86
ALPHA = 0.4
TAU_STAR = 3000.0
BETA = 1.6
CONTRAST = 0.2
TW = (600.0, 1800.0, 3600.0)
# (sample, stage, pressure, n_scans, tau0_s)
ISOBARS = [
    ("S1", "compression", 0.1, 3, 2.0),
    ("S1", "compression", 3.3, 3, 0.8),
    ("S1", "decompression", 3.2, 3, 2.5),
    ("S2", "compression", 0.1, 2, 2.2),
    ("S2", "compression", 6.3, 3, 0.9),
]
FAILED_SCAN = "S1_c3.3_s03"  # union fit flagged
COLUMNS = {
    "scans": ["scan", "sample", "stage", "pressure_gpa", "t_w_s", "q_index", "q_inv_angstrom", "tau_s",
              "tau_err_s", "beta", "beta_err", "contrast", "contrast_err", "baseline", "redchi", "fit_ok"],
    "isobars": ["sample", "stage", "pressure_gpa", "n_scans", "tau_mean_s", "tau_std_s", "beta_mean",
                "delta_c_90", "delta_c_80", "delta_c_70", "delta_c_60", "q1_inv_angstrom"],
    "aging": ["sample", "stage", "pressure_gpa", "tau0_s", "tau0_err_s", "tau_star_s", "tau_star_err_s",
              "n_points"],
    "qdep": ["sample", "stage", "pressure_gpa", "alpha", "alpha_err", "c", "c_err"],
    "structure": ["scan", "sample", "stage", "pressure_gpa", "q1_inv_angstrom"],
}


def lag_ladder(n: int) -> np.ndarray:
    lags = list(range(1, 9))
    k, step = 8, 2
    while True:
        for _ in range(4):
            k += step
            if k > n // 2:
                return np.array(lags)
            lags.append(k)
        step *= 2


def kww(dt, tau, beta, contrast, baseline=1.0):
    return baseline + contrast * np.exp(-2.0 * (np.asarray(dt) / tau) ** beta)


def smallest_interval(x: np.ndarray, f: float) -> float:
    x = np.sort(x)
    m = math.ceil(f * x.size - 1e-9)
    return float(np.min(x[m - 1:] - x[: x.size - m + 1]))


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})


def detector():
    y, x = np.mgrid[0:NY, 0:NX]
    qmap = (2.72 + 0.28 * x / NX + 0.02 * (y / NY) ** 2).astype(np.float32)
    valid = np.ones((NY, NX), bool)
    valid[:, 20:23] = False  # a dead stripe
    valid[5, 5] = False
    return qmap, valid


def build_output(root: Path, seed: int = 0) -> Path:
    """Write a synthetic campaign output directory under ROOT/out and return it."""
    rng = np.random.default_rng(seed)
    out = root / "out"
    out.mkdir(parents=True)
    (root / "campaign").mkdir()
    (root / "campaign" / "campaign.toml").write_text("[campaign]\nname = 'synthetic'\n")
    lag = lag_ladder(T)
    lag_s = lag * DT
    qmap, valid = detector()
    q_centres = 0.5 * (Q_EDGES[1:] + Q_EDGES[:-1])
    tt = np.arange(T)
    root_g = zarr.open_group(str(out / "results.zarr"), mode="w")
    scans_rows, struct_rows, iso_rows, aging_rows, qdep_rows = [], [], [], [], []
    truth = {"scans": {}, "isobars": []}
    for sample, stage, p, n_scans, tau0 in ISOBARS:
        pooled, taus_union, tws = [], [], []
        for i in range(n_scans):
            name = f"{sample}_{stage[0]}{p:g}_s{i + 1:02d}"
            tw = TW[i]
            tau_u = tau0 * math.exp(tw / TAU_STAR)
            tau_bins = np.append(tau_u * (q_centres / Q_REF) ** -ALPHA, tau_u)
            g = root_g.create_group(name)
            g2 = np.stack([kww(lag_s, tb, BETA, CONTRAST) for tb in tau_bins]) + rng.normal(0, 0.002, (N_Q + 1, lag.size))
            g.create_array("g2", data=g2)
            g.create_array("g2_err", data=np.full_like(g2, 0.002))
            g.create_array("lag_s", data=lag_s)
            g.create_array("lag_frames", data=lag)
            ttcf = np.empty((N_Q + 1, T, T), np.float32)
            for b, tb in enumerate(tau_bins):
                noise = rng.normal(0, 0.01, (T, T))
                ttcf[b] = kww(np.abs(tt[:, None] - tt[None, :]) * DT, tb, BETA, CONTRAST) + (noise + noise.T) / 2
            g.create_array("ttcf", data=ttcf, chunks=(1, 64, 64))
            n_win = 4
            g2_age = np.stack([np.stack([kww(lag_s, tb * math.exp(w * T * DT / 4 / TAU_STAR), BETA, CONTRAST)
                                         for tb in tau_bins]) for w in range(n_win)])
            g.create_array("g2_age", data=g2_age)
            g.create_array("age_t0_s", data=np.arange(n_win) * T * DT / n_win)
            inten = 0.02 * (1 + 0.05 * np.sin(tt / 20.0))[None, :] * np.ones((N_Q + 1, 1)) + rng.normal(0, 1e-4, (N_Q + 1, T))
            g.create_array("intensity", data=inten)
            g.create_array("n_pixels", data=np.array([300, 320, 310, 930], dtype=np.int64))
            g.create_array("q_edges", data=Q_EDGES)
            g.create_array("q_centres", data=q_centres)
            g.create_array("chi4", data=np.zeros((N_Q + 1, lag.size)))
            if sample == "S1":  # S2 has no detector image and no source store: figure skipped
                img = 0.02 * np.exp(-((qmap - 2.87) ** 2) / (2 * 0.05**2)) + 0.002
                g.create_array("mean_image", data=np.where(valid, img, np.nan))
                g.create_array("valid", data=valid)
                g.create_array("qmap", data=qmap)
            fits = []
            for b, tb in enumerate(tau_bins):
                fits.append({"tau_s": float(tb), "tau_err_s": 0.02 * float(tb), "beta": BETA, "beta_err": 0.05,
                             "contrast": CONTRAST, "contrast_err": 0.004, "baseline": 1.0, "redchi": 1.0,
                             "fit_ok": 1, "reason": ""})
            if name == FAILED_SCAN:
                fits[-1] = {k: math.nan for k in fits[-1]} | {"fit_ok": 0, "reason": "fit did not converge"}
            meta = {"scan": name, "sample": sample, "stage": stage, "pressure_gpa": p, "t_w_s": tw,
                    "frame_time_s": DT, "n_frames": T, "ttcf_bin": 1, "fits": fits,
                    "age_fits": [{"tau_s": tau_u * math.exp(w * T * DT / 4 / TAU_STAR), "beta": BETA,
                                  "contrast": CONTRAST, "baseline": 1.0, "fit_ok": 1} for w in range(n_win)]}
            g.attrs.update(meta)
            for b, f in enumerate(fits):
                scans_rows.append({"scan": name, "sample": sample, "stage": stage, "pressure_gpa": p, "t_w_s": tw,
                                   "q_index": b if b < N_Q else -1,
                                   "q_inv_angstrom": q_centres[b] if b < N_Q else Q_REF,
                                   **{k: f[k] for k in COLUMNS["scans"] if k in f}})
            struct_rows.append({"scan": name, "sample": sample, "stage": stage, "pressure_gpa": p,
                                "q1_inv_angstrom": 2.87 + 0.0049 * p + rng.normal(0, 3e-4)})
            truth["scans"][name] = {"tau_union_s": tau_u, "beta": BETA, "contrast": CONTRAST, "q1": 2.87 + 0.0049 * p,
                                    "expected": {"tau_s": [float(x) for x in tau_bins], "beta": [BETA] * (N_Q + 1)}}
            if fits[-1]["fit_ok"]:
                taus_union.append(tau_u)
                tws.append(tw)
        tau_mean = float(np.mean(taus_union))
        for i in range(n_scans):
            k = int(round(tau_mean / DT))
            name = f"{sample}_{stage[0]}{p:g}_s{i + 1:02d}"
            pooled.append(np.diagonal(root_g[name]["ttcf"][-1], offset=k))
        pooled = np.concatenate(pooled).astype(float)
        iso_rows.append({"sample": sample, "stage": stage, "pressure_gpa": p, "n_scans": n_scans,
                         "tau_mean_s": tau_mean, "tau_std_s": float(np.std(taus_union)), "beta_mean": BETA,
                         **{f"delta_c_{f}": smallest_interval(pooled, f / 100) for f in (90, 80, 70, 60)},
                         "q1_inv_angstrom": 2.87 + 0.0049 * p})
        truth["isobars"].append({"sample": sample, "stage": stage, "pressure_gpa": p, "tau0_s": tau0,
                                 "tau_star_s": TAU_STAR, "tau0_scan_fit_s": tau0, "beta": BETA,
                                 "q1": 2.87 + 0.0049 * p,
                                 "scans": [f"{sample}_{stage[0]}{p:g}_s{i + 1:02d}" for i in range(n_scans)]})
        if n_scans >= 3 and len(tws) >= 2:
            slope, icpt = np.polyfit(tws, np.log(taus_union), 1)
            aging_rows.append({"sample": sample, "stage": stage, "pressure_gpa": p, "tau0_s": math.exp(icpt),
                               "tau0_err_s": 0.01, "tau_star_s": 1 / slope, "tau_star_err_s": 10.0,
                               "n_points": len(tws)})
        qtau = [(r["q_inv_angstrom"], r["tau_s"]) for r in scans_rows
                if (r["sample"], r["stage"], r["pressure_gpa"]) == (sample, stage, p) and r["q_index"] >= 0]
        q, tq = np.array(qtau).T
        a, lc = np.polyfit(np.log(q), -np.log(tq), 1)
        qdep_rows.append({"sample": sample, "stage": stage, "pressure_gpa": p, "alpha": a, "alpha_err": 0.01,
                          "c": math.exp(lc), "c_err": 0.01})
    for name, rows in (("scans", scans_rows), ("isobars", iso_rows), ("aging", aging_rows),
                       ("qdep", qdep_rows), ("structure", struct_rows)):
        _write_csv(out / f"{name}.csv", COLUMNS[name], rows)
    # summary.json and truth.json in the forms daskxpcs.campaign and daskxpcs.simulate write
    summary = {
        "campaign": "synthetic-test",
        "manifest": str(root / "campaign" / "campaign.toml"),
        "versions": {"daskxpcs": "0.1.0", "numpy": np.__version__, "zarr": zarr.__version__},
        "parameters": {"manifest": str(root / "campaign" / "campaign.toml"), "scheduler": "threads",
                       "ttcf_bin": 1, "engine": "auto"},
        "timings_s": {"total_s": 12.5, "stages": {"correlate_s": 9.0},
                      "per_scan": {"S1_c0.1_s01": {"correlate_s": 1.5, "analyse_s": 0.2}}},
        "failed_scans": [{"scan": "S2_c6.3_s04", "raw": "raw/S2_c6.3_s04.h5",
                          "reason": "raw/S2_c6.3_s04.h5:/entry_0000/measurement/data: truncated"}],
        "failed_isobars": [{"sample": "S9", "stage": "compression", "pressure_gpa": 1.0, "reason": "no scans"}],
        "structure_slopes": {f"{s}/{st}": {"dq1_dp_slope": 0.0049, "dq1_dp_slope_err": 1e-4,
                                           "dq1_dp_intercept": 2.87, "n_points": 3}
                             for s, st in sorted({(i[0], i[1]) for i in ISOBARS})},
    }
    truth["samples"] = {s: {"q1_0": 2.87, "dq1_dP": {"compression": 0.0049, "decompression": 0.0049}}
                        for s in ("S1", "S2")}
    truth["global"] = {"alpha": ALPHA}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (root / "campaign" / "truth.json").write_text(json.dumps(truth, indent=1))
    return out
