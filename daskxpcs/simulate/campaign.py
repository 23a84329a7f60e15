"""Synthetic campaigns: two samples through a pressure cycle, written in every raw format.

The physics follows the paper (PtCuNiP metallic glass in a diamond anvil cell):

* FSDP position linear in pressure, q1 = q1_0 + dq1/dP * P per sample and stage (slope
  exaggerated about 2x over the paper's 4.91e-3 1/A/GPa so that it shows on a small
  detector; the truth records the value used).
* tau(q) = tau (q / q_ref)^-alpha with one global alpha (1.0, larger than the paper's
  0.36 for the same reason).
* Low-pressure compression isobars: heterogeneous, non-aging dynamics (rate changes and
  avalanches), strongest at the rejuvenation pressure 3.3 GPa, which is also the fastest
  compression isobar.  High-pressure and decompression isobars: homogeneous aging,
  tau(t_w) = tau0 exp(t_w / tau*) across and within scans, compressed beta up to 1.8.
* Scans go round-robin to LIMA, Bliss (one master per sample, one entry per scan),
  Eiger and LIMA2 sparse, with beam fluctuations, module gaps, dead and hot pixels.

Outputs (in `outdir`): `campaign.toml` (DESIGN.md keys), `truth.json`, per geometry
`<name>_qmap.npy`, `<name>_mask.npy` (nonzero = bad: gaps and dead pixels; hot pixels
are left for the dtype-maximum rule) and `truth/<name>_valid.npy`, and `raw/`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daskxpcs.atomic import atomic_open, atomic_write_text
from daskxpcs.jsonsafe import json_safe
from daskxpcs.simulate.geometry import Detector, make_detector
from daskxpcs.simulate.scan import ScanSpec, check_method, iter_scan_blocks, scan_truth, spec_dict
from daskxpcs.simulate.writers import write_bliss, write_eiger, write_lima, write_lima2_sparse

FORMATS = ("lima", "bliss", "eiger", "lima2")
Q_REF = 2.87
ALPHA = 1.0


@dataclass(frozen=True)
class Isobar:
    """One pressure step: times in units of the scan duration D."""

    stage: str
    pressure_gpa: float
    n_scans: int
    tau0: float  # tau at t_w = 0, at q_ref, in D
    tau_star: float | None  # aging time in D; None = no aging
    beta: float
    hetero: float  # 0 = homogeneous; ~1 = rejuvenation (rate changes + avalanches)


@dataclass(frozen=True)
class Preset:
    shape: tuple[int, int]
    n_frames: int
    frame_time_s: float
    rate: tuple[float, float]  # per sample
    contrast: float
    n_modes: int
    oversample: int
    frames_per_file: int
    samples: dict  # sample -> list[Isobar]
    q_edges: tuple[float, ...] = (2.70, 2.78, 2.86, 2.94, 3.02)
    gaps: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
    n_dead: int = 0
    n_hot: int = 0
    tw_first: float = 0.5  # first scan's t_w in D
    tw_step: float = 2.0  # t_w spacing of the scans of an isobar in D


def _cycle_s1() -> list[Isobar]:
    c, d = "compression", "decompression"
    return [
        Isobar(c, 0.1, 1, 0.11, None, 1.2, 0.3),
        Isobar(c, 1.5, 1, 0.075, None, 1.3, 0.6),
        Isobar(c, 3.3, 2, 0.04, None, 1.5, 1.0),
        Isobar(c, 6.3, 3, 0.045, 4.0, 1.8, 0.0),
        Isobar(d, 3.3, 3, 0.06, 5.0, 1.7, 0.0),
    ]


def _cycle_s2() -> list[Isobar]:
    c, d = "compression", "decompression"
    return [
        Isobar(c, 0.1, 1, 0.12, None, 1.2, 0.3),
        Isobar(c, 3.3, 2, 0.05, None, 1.5, 1.0),
        Isobar(c, 6.3, 3, 0.05, 4.0, 1.8, 0.0),
        Isobar(d, 3.3, 1, 0.07, None, 1.7, 0.0),
    ]


def _cycle_full(scale: float) -> list[Isobar]:
    c, d = "compression", "decompression"
    comp = [(0.1, 0.11, None, 1.2, 0.3), (1.5, 0.075, None, 1.3, 0.6), (3.3, 0.04, None, 1.5, 1.0),
            (4.9, 0.05, 6.0, 1.6, 0.3), (6.3, 0.045, 4.0, 1.8, 0.0), (7.0, 0.05, 4.0, 1.8, 0.0)]
    dec = [(6.3, 0.05, 4.0, 1.8, 0.0), (4.9, 0.055, 4.5, 1.75, 0.0), (3.3, 0.06, 5.0, 1.7, 0.0),
           (1.5, 0.08, 6.0, 1.6, 0.0), (0.5, 0.1, 8.0, 1.5, 0.0)]
    return [Isobar(c, p, 3, t * scale, s, b, h) for p, t, s, b, h in comp] + [
        Isobar(d, p, 3, t * scale, s, b, h) for p, t, s, b, h in dec
    ]


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        shape=(32, 40), n_frames=256, frame_time_s=0.05, rate=(0.3, 0.2), contrast=0.25, n_modes=1,
        oversample=2, frames_per_file=100,
        samples={
            "S1": [Isobar("compression", 3.3, 1, 0.05, None, 1.5, 1.0),
                   Isobar("compression", 6.3, 3, 0.05, 4.0, 1.8, 0.0)],
            "S2": [Isobar("compression", 3.3, 1, 0.06, None, 1.5, 1.0),
                   Isobar("decompression", 3.3, 1, 0.07, None, 1.7, 0.0)],
        },
        gaps=((16,), ()), n_dead=4, n_hot=2,
    ),
    "small": Preset(
        shape=(96, 96), n_frames=800, frame_time_s=0.1, rate=(0.25, 0.2), contrast=0.2, n_modes=1,
        oversample=1, frames_per_file=300,
        samples={"S1": _cycle_s1(), "S2": _cycle_s2()},
        gaps=((48,), (70,)), n_dead=12, n_hot=4,
    ),
    "archive": Preset(
        shape=(512, 512), n_frames=4000, frame_time_s=0.1, rate=(0.01, 0.01), contrast=0.2, n_modes=1,
        oversample=1, frames_per_file=1000,
        samples={"S1": _cycle_full(1.0), "S2": _cycle_full(1.1)},
        gaps=((255, 256), (170, 340)), n_dead=200, n_hot=20,
    ),
}
PRESETS["demo"] = PRESETS["small"]

#: FSDP q1(P) = q1_0 + slope P, per sample and stage (1/A, 1/A/GPa)
Q1_LAW = {
    "S1": {"q1_0": 2.870, "compression": 0.0100, "decompression": 0.0095},
    "S2": {"q1_0": 2.865, "compression": 0.0105, "decompression": 0.0100},
}


def _heterogeneity(h: float, n_frames: int, tau_frames: float, rng: np.random.Generator):
    """Rate segments (start, speed factor in {1/2, 1, 2}, or {1/3, 1, 3} for h >= 1) and avalanche frames."""
    if h <= 0:
        return (), ()
    segs, t = [], 0
    mean_len = max(4 * tau_frames, n_frames / (2 + 4 * h))
    while True:
        t += int(rng.exponential(mean_len)) + max(1, int(tau_frames))
        if t >= n_frames - 1:
            break
        # integer speed ratios keep every frame on the internal-time grid (exact sampling)
        swing = [1.0 / 3.0, 3.0] if h >= 1.0 else [0.5, 2.0]
        factor = 1.0 if rng.random() > min(0.8, 0.6 * h) else float(rng.choice(swing))
        segs.append((t, factor))
    if segs:  # common scale so that the mean speed is 1 (ratios, hence exactness, kept)
        starts = [0] + [a for a, _ in segs] + [n_frames - 1]
        speeds = [1.0] + [f for _, f in segs]
        mean = sum(v * (b - a) for v, a, b in zip(speeds, starts[:-1], starts[1:])) / (n_frames - 1)
        segs = [(0, 1.0 / mean)] + [(a, f / mean) for a, f in segs]
    n_av = max(int(h >= 1.0), int(rng.poisson(2.0 * h)))
    lo, hi = int(0.1 * n_frames), int(0.9 * n_frames)
    av = tuple(sorted({int(a) for a in rng.integers(lo, hi, n_av)})) if n_av else ()
    return tuple(segs), av


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v)} to TOML")


def _toml(campaign: dict, geometries: list[dict], scans: list[dict]) -> str:
    lines = ["# synthetic campaign written by daskxpcs.simulate; ground truth in truth.json", "[campaign]"]
    lines += [f"{k} = {_fmt(v)}" for k, v in campaign.items()]
    for table, rows in (("geometry", geometries), ("scan", scans)):
        for row in rows:
            lines += ["", f"[[{table}]]"] + [f"{k} = {_fmt(v)}" for k, v in row.items() if v is not None]
    return "\n".join(lines) + "\n"


def _atomic_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, arr)


def write_scan(
    fmt: str,
    outdir: Path,
    name: str,
    sample: str,
    spec: ScanSpec,
    det: Detector,
    *,
    frames_per_file: int,
    bliss_scan_number: int = 1,
    workdir: Path | None = None,
    method: str = "exact",
) -> tuple[str, str | None]:
    """Generate a scan block by block and write it in `fmt`; returns (raw, raw_entry) for the manifest.

    `method` is the generator ("exact" or "renewal", which needs spec.beta = 1; see
    `scan.iter_scan_blocks`).
    """
    blocks = iter_scan_blocks(spec, det, workdir=workdir, method=method)
    raw = outdir / "raw"
    if fmt == "lima":
        write_lima(raw / name, blocks, frames_per_file=frames_per_file,
                   exposure_time=spec.frame_time_s * 0.99, latency_time=spec.frame_time_s * 0.01)
        return f"raw/{name}", None
    if fmt == "bliss":
        master = raw / f"{sample}_bliss" / f"{sample}_0001.h5"
        entry = write_bliss(master, blocks, scan_number=bliss_scan_number, frame_time_s=spec.frame_time_s,
                            frames_per_file=frames_per_file, title=f"mtimescan {spec.frame_time_s} 1 {spec.n_frames} ({name})")
        return master.relative_to(outdir).as_posix(), entry
    if fmt == "eiger":
        master = raw / name / f"{name}_master.h5"
        write_eiger(master, blocks, frames_per_file=frames_per_file, frame_time_s=spec.frame_time_s,
                    count_time_s=spec.frame_time_s * 0.99, wavelength_a=det.wavelength_a,
                    pixel_mask=det.pixel_mask, detector_distance_m=det.distance_m, pixel_size_m=det.pixel_size_m)
        return master.relative_to(outdir).as_posix(), None
    if fmt == "lima2":
        write_lima2_sparse(raw / name, blocks, mask=det.pixel_mask != 0, frames_per_file=frames_per_file)
        return f"raw/{name}", None
    raise ValueError(f"unknown format {fmt!r}")


def simulate_campaign(
    outdir: str | os.PathLike,
    *,
    preset: str = "small",
    seed: int = 0,
    formats: list[str] | tuple[str, ...] | None = None,
    method: str = "exact",
) -> Path:
    """Write a synthetic two-sample campaign with its ground truth.

    Parameters
    ----------
    outdir : directory to write (created; an existing `raw/` in it is replaced).
    preset : "tiny" (seconds, tests), "small" / "demo" (the demo, 17 scans of 800 frames of
        96 x 96 px), "archive" (66 scans of 4000 frames of 512 x 512 px at 0.01
        ph/px/frame, for benchmarks; generated block-wise in bounded memory).
    seed : random seed (the same seed gives the same files).
    formats : raw formats to use, assigned round-robin to scans (default all four:
        "lima", "bliss", "eiger", "lima2").
    method : scan generator.  "exact" (default): Gaussian speckle fields with the preset's
        KWW beta, cost O(frames x pixels x log frames) (the archive preset takes hours).
        "renewal": piecewise-constant speckle (`renewal.py`), cost O(pieces + photons)
        (the archive preset in minutes), whose g2 equals the exact model's for beta = 1
        only: every scan is then simulated with beta = 1 instead of the preset's, and the
        truth (scans' `beta`, `expected`, `spec`, isobars' `beta`) says beta = 1 (the
        preset's value is kept as the isobars' `beta_preset`).  Recorded as
        `global.generator` in truth.json.

    Returns
    -------
    Path : the manifest `outdir/campaign.toml`.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    check_method(None, method)
    fmts = tuple(formats) if formats else FORMATS
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown formats {bad}; choose from {FORMATS}")
    pr = PRESETS[preset]
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    # a crash half-way must not leave an old manifest pointing at new raw files
    for stale in ("campaign.toml", "truth.json"):
        (out / stale).unlink(missing_ok=True)
    if (out / "raw").exists():
        shutil.rmtree(out / "raw")
    (out / "truth").mkdir(exist_ok=True)
    D = pr.n_frames * pr.frame_time_s
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2026]))

    geometries, geo_truth, dets = [], {}, {}
    for i, sample in enumerate(pr.samples):
        gname = f"run{i + 1}"
        det = make_detector(gname, pr.shape, centre=(0.5 + 0.1 * i, -2.0 - 0.2 * i), gap_rows=pr.gaps[0],
                            gap_cols=pr.gaps[1], n_dead=pr.n_dead, n_hot=pr.n_hot, q_edges=pr.q_edges,
                            seed=seed * 10 + i)
        dets[sample] = det
        _atomic_npy(out / f"{gname}_qmap.npy", det.qmap.astype(np.float32))
        _atomic_npy(out / f"{gname}_mask.npy", det.mask)
        _atomic_npy(out / "truth" / f"{gname}_valid.npy", det.valid)
        geometries.append({"name": gname, "qmap": f"{gname}_qmap.npy", "mask": f"{gname}_mask.npy",
                           "q_edges": list(det.q_edges)})
        geo_truth[gname] = {
            "sample": sample, "shape": list(pr.shape), "q_edges": list(det.q_edges),
            "q_min": float(det.qmap.min()), "q_max": float(det.qmap.max()),
            "gap_rows": list(pr.gaps[0]), "gap_cols": list(pr.gaps[1]),
            "dead_pixels": np.argwhere(det.dead).tolist(), "hot_pixels": np.argwhere(det.hot).tolist(),
            "n_valid": int(det.valid.sum()), "valid_file": f"truth/{gname}_valid.npy",
            "wavelength_a": det.wavelength_a,
        }

    scans, scan_truths, isobars = [], {}, []
    k_scan, bliss_n = 0, {}
    for si, (sample, cycle) in enumerate(pr.samples.items()):
        det, law = dets[sample], Q1_LAW[sample]
        for iso in cycle:
            q1 = law["q1_0"] + law[iso.stage] * iso.pressure_gpa
            tau0_s = iso.tau0 * D
            tau_star_s = None if iso.tau_star is None else iso.tau_star * D
            # the renewal generator is exact for beta = 1 only: simulate (and tell) beta = 1
            beta = 1.0 if method == "renewal" else iso.beta
            names = []
            for j in range(iso.n_scans):
                fmt = fmts[k_scan % len(fmts)]
                k_scan += 1
                tw = (pr.tw_first + pr.tw_step * j) * D
                tau_tw = tau0_s * (1.0 if tau_star_s is None else math.exp(tw / tau_star_s))
                segs, av = _heterogeneity(iso.hetero, pr.n_frames, tau_tw / pr.frame_time_s, rng)
                name = f"{sample}_{iso.stage[0]}{iso.pressure_gpa:.1f}_s{j + 1:02d}"
                lima_dtype = "uint16" if (sample == "S2" and fmt in ("lima", "bliss")) else "uint32"
                spec = ScanSpec(
                    n_frames=pr.n_frames, frame_time_s=pr.frame_time_s, tau_s=tau_tw, beta=beta,
                    contrast=pr.contrast, n_modes=pr.n_modes, rate=pr.rate[si], alpha=ALPHA, q_ref=Q_REF, q1=q1,
                    tau_star_s=tau_star_s, rate_segments=segs, avalanches=av, beam_rms=0.03,
                    oversample=pr.oversample, dtype=lima_dtype, seed=int(rng.integers(2**31)),
                )
                if fmt == "bliss":
                    bliss_n[sample] = bliss_n.get(sample, 0) + 1
                raw, entry = write_scan(fmt, out, name, sample, spec, det, frames_per_file=pr.frames_per_file,
                                        bliss_scan_number=bliss_n.get(sample, 1), workdir=out, method=method)
                scans.append({"name": name, "sample": sample, "geometry": det.name, "stage": iso.stage,
                              "pressure_gpa": iso.pressure_gpa, "t_w_s": tw, "raw": raw, "raw_entry": entry,
                              "frame_time_s": pr.frame_time_s})
                tr = scan_truth(spec, det)
                tr.update(sample=sample, stage=iso.stage, pressure_gpa=iso.pressure_gpa, t_w_s=tw, format=fmt,
                          raw=raw, raw_entry=entry, geometry=det.name, spec=spec_dict(spec))
                scan_truths[name] = tr
                names.append(name)
            isobars.append({
                "sample": sample, "stage": iso.stage, "pressure_gpa": iso.pressure_gpa, "n_scans": iso.n_scans,
                "tau0_s": tau0_s, "tau_star_s": tau_star_s, "beta": beta,
                "beta_preset": iso.beta, "q1": q1,
                "heterogeneity": iso.hetero,
                "heterogeneous": any(scan_truths[n]["heterogeneous"] for n in names),
                # what a fit of the scans' mid-scan tau against their start t_w gives
                "tau0_scan_fit_s": None if tau_star_s is None else tau0_s * math.exp(0.5 * D / tau_star_s),
                "scans": names,
            })

    manifest = out / "campaign.toml"
    atomic_write_text(manifest, _toml({"name": f"PtCuNiP-HP-sim-{preset}", "output": "results"}, geometries, scans))
    truth = {
        "generator": "daskxpcs.simulate", "preset": preset, "seed": seed, "formats": list(fmts),
        "global": {"alpha": ALPHA, "q_ref": Q_REF, "tau_ref_s": PRESETS[preset].samples["S1"][0].tau0 * D,
                   "frame_time_s": pr.frame_time_s, "n_frames": pr.n_frames, "contrast": pr.contrast,
                   "n_modes": pr.n_modes, "beam_rms": 0.03, "generator": method,
                   "notes": "tau per scan: tau_ref_s at q_ref at mid-scan; expected.*: KWW fit of the exact "
                            "ensemble g2 per q-bin (last entry = union) on the multi-tau ladder"},
        "samples": {s: {"geometry": dets[s].name, "q1_0": Q1_LAW[s]["q1_0"],
                        "dq1_dP": {st: Q1_LAW[s][st] for st in ("compression", "decompression")}}
                    for s in pr.samples},
        "geometries": geo_truth,
        "isobars": isobars,
        "scans": scan_truths,
    }
    atomic_write_text(out / "truth.json", json.dumps(json_safe(truth), indent=1))
    return manifest


__all__ = ["simulate_campaign", "PRESETS", "Preset", "Isobar", "FORMATS", "Q1_LAW", "write_scan"]
