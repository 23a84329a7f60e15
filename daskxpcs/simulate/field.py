"""Exact stationary complex Gaussian fields with a KWW correlation, by circulant embedding.

A pixel's scattered field E(u) is a circular complex Gaussian process of unit variance
in *internal time* u (in units of its relaxation time) with

    <E(u) E*(u + d)> = F(d) = exp(-|d|^beta),   0 < beta <= 2,

so that |F|^2 = exp(-2 |d|^beta), the KWW form of the paper.  exp(-|d|^beta) is the
characteristic function of a symmetric beta-stable law, hence positive definite on R for
every beta in (0, 2].  On a uniform grid u_j = j h it is sampled *exactly* by circulant
embedding (Dietrich & Newsam 1997): embed the n x n Toeplitz covariance in a circulant
matrix of size N >= 2(n - 1), whose eigenvalues are the DFT of its first row; draw
complex normal weights scaled by sqrt(eigenvalue / N) and take one DFT.  For beta <= 1
the covariance is convex and decreasing (Polya type) and the minimal embedding is
non-negative definite; for 1 < beta <= 2 the embedding is padded until the covariance
has decayed below 1e-13, after which the negative eigenvalues that remain are at the
rounding level and are clipped (anything larger raises).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

#: covariance below which the embedding is considered decayed, exp(-30) ~ 1e-13
_DECAY = 30.0
#: relative size of negative eigenvalues accepted as rounding noise
_EIG_TOL = 1e-9


def embedding_size(n: int, h_min: float, beta: float) -> int:
    """Circulant size N for an n-point grid of step `h_min` (internal-time units).

    Parameters
    ----------
    n : int
        Number of grid points to generate.
    h_min : float
        Smallest grid step among the pixels (units of tau); the slowest pixel decays
        last and so sets the padding.
    beta : float
        KWW exponent in (0, 2].

    Returns
    -------
    int
        A fast FFT length >= 2 (n - 1), padded for beta > 1 so that the covariance has
        decayed at the wrap-around point.
    """
    if not 0.0 < beta <= 2.0:
        raise ValueError(f"beta must be in (0, 2], got {beta}")
    m = max(n - 1, 1)
    if beta > 1.0:
        m = max(m, int(np.ceil(_DECAY ** (1.0 / beta) / h_min)) + 1)
    return int(scipy.fft.next_fast_len(2 * m))


def circulant_eigenvalues(h: np.ndarray, beta: float, size: int) -> np.ndarray:
    """Eigenvalues of the circulant embedding of exp(-|j h|^beta), one row per step.

    Parameters
    ----------
    h : ndarray (G,)
        Grid steps in units of tau (one per distinct pixel relaxation time).
    beta : float
        KWW exponent in (0, 2].
    size : int
        Circulant size N.

    Returns
    -------
    ndarray (G, N) float64
        Non-negative eigenvalues (rounding-level negatives clipped to 0).

    Raises
    ------
    ValueError
        When an eigenvalue is negative beyond rounding (embedding not valid).
    """
    h = np.atleast_1d(np.asarray(h, dtype=np.float64))
    j = np.arange(size, dtype=np.float64)
    lag = np.minimum(j, size - j)
    cov = np.exp(-((lag[None, :] * h[:, None]) ** beta))
    lam = scipy.fft.fft(cov, axis=1).real
    worst = lam.min(axis=1) / lam.max(axis=1)
    if np.any(worst < -_EIG_TOL):
        raise ValueError(
            f"circulant embedding is not non-negative definite (beta={beta}, "
            f"min eigenvalue ratio {worst.min():.3g}); increase the embedding size"
        )
    return np.clip(lam, 0.0, None)


def kww_field(eig: np.ndarray, n: int, rng: np.random.Generator, *, amplitudes: bool = False) -> np.ndarray:
    """Draw one complex field per row of `eig`, exactly KWW-correlated on n grid points.

    Parameters
    ----------
    eig : ndarray (P, N)
        Circulant eigenvalues per pixel (see `circulant_eigenvalues`).
    n : int
        Number of grid points kept (n <= N / 2 + 1).
    rng : numpy.random.Generator
    amplitudes : `eig` already holds sqrt(eigenvalue / (2 N)) as float32 (cached per pixel).

    Returns
    -------
    ndarray (P, n) complex64
        E[z_j z_k*] = exp(-|(j - k) h|^beta), E[z_j z_k] = 0, unit variance.  Single
        precision (covariance exact to ~1e-7) halves memory and time for big tiles.
    """
    p, size = eig.shape
    w = rng.standard_normal((p, size, 2), dtype=np.float32).view(np.complex64)[..., 0]
    w *= eig if amplitudes else np.sqrt(eig * (0.5 / size)).astype(np.float32)
    return scipy.fft.fft(w, axis=1, overwrite_x=True)[:, :n]
