"""Delta C (smallest interval) and chi4 against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from daskxpcs.models import chi4, delta_c, smallest_interval_width


def brute_force(x: np.ndarray, f: float) -> float:
    """Every interval [a, b] with a, b among the values; keep those holding >= f of them."""
    x = x[np.isfinite(x)]
    n = x.size
    a, b = np.meshgrid(x, x, indexing="ij")
    inside = ((x[None, None, :] >= a[..., None]) & (x[None, None, :] <= b[..., None])).sum(-1)
    ok = (b >= a) & (inside / n >= f - 1e-12)
    return float((b - a)[ok].min())


@settings(max_examples=150, deadline=None)
@given(
    x=arrays(np.float64, st.integers(1, 40),
             elements=st.floats(-5, 5, allow_nan=False).map(lambda v: round(v, 2))),
    f=st.sampled_from([0.9, 0.8, 0.7, 0.6, 0.5, 0.25, 1.0, 0.33]),
)
def test_smallest_interval_matches_brute_force(x, f):
    assert smallest_interval_width(x, f) == pytest.approx(brute_force(x, f), abs=1e-12)


def test_exact_small_cases():
    assert smallest_interval_width([0.0, 1.0, 2.0, 10.0], 0.75) == 2.0
    # 0.7 * 10 = 7.000000000000001 must still mean 7 values
    assert smallest_interval_width(np.arange(10.0), 0.7) == 6.0
    assert smallest_interval_width([3.0, np.nan, 1.0, np.inf], 1.0) == 2.0
    assert math.isnan(smallest_interval_width([np.nan], 0.9))
    with pytest.raises(ValueError):
        smallest_interval_width([1.0], 0.0)


def test_broad_and_bimodal_exceed_narrow_at_every_fraction():
    rng = np.random.default_rng(0)
    narrow = 1.05 + 0.01 * rng.normal(size=4000)
    bimodal = np.concatenate([1.02 + 0.01 * rng.normal(size=2000), 1.10 + 0.01 * rng.normal(size=2000)])
    broad = 1.05 + 0.04 * rng.normal(size=4000)
    dn, db, dw = delta_c(narrow), delta_c(bimodal), delta_c(broad)
    assert list(dn) == ["delta_c_90", "delta_c_80", "delta_c_70", "delta_c_60"]
    for k in dn:
        assert db[k] > dn[k] and dw[k] > dn[k]
    # Gaussian: the 90 % smallest interval is 2 * 1.645 sigma
    assert dn["delta_c_90"] == pytest.approx(2 * 1.6449 * 0.01, rel=0.05)
    assert dn["delta_c_90"] > dn["delta_c_80"] > dn["delta_c_70"] > dn["delta_c_60"]


def test_chi4_normalisation():
    var = np.array([[0.01, 0.02, 0.04], [0.1, 0.2, 0.3]])
    out = chi4(var, np.array([1.2, 1.1]), np.array([1.0, np.nan]))
    assert out[0] == pytest.approx(var[0] / 0.04)
    assert np.isnan(out[1]).all()
    assert chi4(np.array([0.01]), 1.1, 1.0) == pytest.approx([1.0])
