"""Helpers shared by the simulator tests: a plain-numpy g2 (DESIGN.md formula) and a KWW fit."""

from __future__ import annotations

import lmfit
import numpy as np


def numpy_g2(frames: np.ndarray, pixels: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """g2(k) = mean_t N(t, t+k) / (mean_{t<T-k} S(t) * mean_{t>=k} S(t)) over flat `pixels`."""
    x = frames.reshape(frames.shape[0], -1)[:, pixels].astype(np.float64)
    s = x.mean(axis=1)
    out = np.empty(len(lags))
    for i, k in enumerate(lags):
        num = np.mean(x[:-k] * x[k:])
        out[i] = num / (s[:-k].mean() * s[k:].mean())
    return out


def fit_kww(lag_s: np.ndarray, g2: np.ndarray, tau0: float, beta0: float = 1.0) -> dict:
    """lmfit fit of baseline + contrast exp(-2 (t/tau)^beta)."""

    def model(t, baseline, contrast, tau, beta):
        return baseline + contrast * np.exp(-2.0 * (t / tau) ** beta)

    m = lmfit.Model(model)
    p = m.make_params(baseline=1.0, contrast=max(g2[0] - 1.0, 1e-3), tau=tau0, beta=beta0)
    p["tau"].min = lag_s[0] / 10
    p["beta"].set(min=0.1, max=3.0)
    r = m.fit(g2, p, t=lag_s)
    return {k: r.params[k].value for k in ("baseline", "contrast", "tau", "beta")}
