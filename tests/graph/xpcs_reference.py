"""Plain-numpy reference of DESIGN.md's estimators (whole T x T matrices; tests only)."""

from __future__ import annotations

import numpy as np


def ladder(n_frames: int) -> np.ndarray:
    """1..8, then 4 lags per octave (10, 12, 14, 16, 20, 24, ...) up to T // 2."""
    lags = list(range(1, 9))
    step = 2
    while lags[-1] < n_frames:
        lags += [lags[-1] + step * i for i in range(1, 5)]
        step *= 2
    return np.array([k for k in lags if k <= n_frames // 2], np.int64)


def valid_pixels(frames: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Flat valid mask: the given mask minus pixels that ever hold the dtype maximum."""
    T = frames.shape[0]
    ok = np.ones(frames.shape[1:], bool) if valid is None else np.asarray(valid, bool).copy()
    if frames.dtype.kind in "ui":
        ok &= ~(frames == np.iinfo(frames.dtype).max).any(axis=0)
    return ok.reshape(-1) if T else ok.reshape(-1)


def bin_masks(frames, valid, qmap, q_edges):
    ok = valid_pixels(frames, valid)
    if q_edges is None:
        return [ok]
    q = np.asarray(qmap, np.float64).reshape(-1)
    return [ok & (q >= q_edges[b]) & (q < q_edges[b + 1]) for b in range(len(q_edges) - 1)]


def reference(frames, valid=None, qmap=None, q_edges=None, ttcf_bin=1, n_windows=4) -> dict:
    T = frames.shape[0]
    X = frames.reshape(T, -1).astype(np.float64)
    masks = bin_masks(frames, valid, qmap, q_edges)
    masks.append(np.logical_or.reduce(masks))
    lags = ladder(T)
    n_win = min(n_windows, T)
    edges = [w * T // n_win for w in range(n_win + 1)]
    Tb = T // ttcf_bin
    out = {k: [] for k in ("ttcf", "g2", "g2_err", "c_diag_mean", "c_diag_var", "intensity", "n_pixels")}
    age, age_err = np.full((n_win, len(masks), len(lags)), np.nan), np.full((n_win, len(masks), len(lags)), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for bi, m in enumerate(masks):
            Xb = X[:, m]
            n = Xb.shape[1]
            S = Xb.mean(axis=1) if n else np.full(T, np.nan)
            N = Xb @ Xb.T / n if n else np.full((T, T), np.nan)
            C = N / np.outer(S, S)
            out["ttcf"].append(C[:Tb * ttcf_bin, :Tb * ttcf_bin].reshape(Tb, ttcf_bin, Tb, ttcf_bin).mean(axis=(1, 3)))
            out["intensity"].append(S)
            out["n_pixels"].append(n)

            def g2_of(t0, t1, k):
                den = S[t0:t1 - k].mean() * S[t0 + k:t1].mean()
                per_pixel = (Xb[t0:t1 - k] * Xb[t0 + k:t1]).mean(axis=0) / den
                err = per_pixel.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
                return np.diagonal(N[t0:t1, t0:t1], k).mean() / den, err

            g, e, cm, cv = [], [], [], []
            for k in lags:
                gk, ek = g2_of(0, T, k)
                g.append(gk)
                e.append(ek)
                d = np.diagonal(C, k)
                d = d[np.isfinite(d)]
                cm.append(d.mean() if d.size else np.nan)
                cv.append(d.var() if d.size else np.nan)
            for w in range(n_win):
                t0, t1 = edges[w], edges[w + 1]
                for li, k in enumerate(lags):
                    if 2 * k < t1 - t0:
                        age[w, bi, li], age_err[w, bi, li] = g2_of(t0, t1, k)
            out["g2"].append(g)
            out["g2_err"].append(e)
            out["c_diag_mean"].append(cm)
            out["c_diag_var"].append(cv)
    res = {k: np.array(v, dtype=np.float64) for k, v in out.items()}
    res["n_pixels"] = res["n_pixels"].astype(np.int64)
    res["g2_age"], res["g2_age_err"] = age, age_err
    res["lag_frames"] = lags
    res["age_edges"] = np.array(edges)
    return res
