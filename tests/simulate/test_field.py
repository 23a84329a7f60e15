"""Circulant-embedding KWW fields: valid embeddings and the exact covariance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskxpcs.simulate.field import circulant_eigenvalues, embedding_size, kww_field


@settings(max_examples=40, deadline=None)
@given(
    beta=st.floats(0.05, 2.0),
    h=st.floats(1e-3, 5.0),
    n=st.integers(2, 3000),
)
def test_embedding_is_non_negative_definite(beta, h, n):
    size = embedding_size(n, h, beta)
    assert size >= 2 * (n - 1)
    lam = circulant_eigenvalues(np.array([h]), beta, size)
    assert lam.min() >= 0.0
    # the embedding reproduces the covariance at every lag < n (inverse DFT of eigenvalues)
    c = np.fft.ifft(lam[0]).real[: min(n, 50)]
    np.testing.assert_allclose(c, np.exp(-((np.arange(c.size) * h) ** beta)), atol=1e-9)


def test_invalid_beta_rejected():
    with pytest.raises(ValueError, match="beta"):
        embedding_size(10, 0.1, 2.5)


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.8, 2.0])
def test_field_covariance_is_kww(beta):
    rng = np.random.default_rng(1)
    n, h, p = 300, 0.04, 3000
    lam = circulant_eigenvalues(np.full(p, h), beta, embedding_size(n, h, beta))
    z = kww_field(lam, n, rng)
    for k in (0, 5, 12, 25, 40):
        c = np.mean(z[:, k:] * np.conj(z[:, : n - k]))
        # statistical error ~ 1/sqrt(p * n / correlation length)
        assert abs(c - np.exp(-((k * h) ** beta))) < 0.02, (k, c)
        assert abs(np.mean(z[:, k:] * z[:, : n - k])) < 0.02  # circular: <z z> = 0
