"""Byte products on every x86 instruction set the host has, against exact integer numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskxpcs import kernels as K

HOST = K.host_isas()
needs_int8 = pytest.mark.skipif(not HOST, reason="no byte kernel for this CPU (or numba target)")
each_isa = pytest.mark.parametrize("isa", [pytest.param(isa, marks=pytest.mark.skipif(
    isa not in HOST, reason=f"this CPU has no {isa}")) for isa in K.ISAS])


def tile(rng, T, P, n_q, density):
    """(T, P) uint16 counts (density 'byte': uniform over 0..127) and labels with unused pixels."""
    if density == "byte":
        x = rng.integers(0, K.MAX_COUNT + 1, (T, P))
    else:
        x = rng.poisson(density, (T, P))
    labels = rng.integers(-1, n_q, P).astype(np.int32)
    return x.astype(np.uint16), labels


def exact(x, y):
    return x.astype(np.int64) @ y.T.astype(np.int64)


@each_isa
@settings(max_examples=30, deadline=None)
@given(st.integers(1, 70), st.integers(1, 300), st.integers(1, 5), st.sampled_from([0.0, 0.05, 1.0, 6.0, "byte"]),
       st.integers(0, 2**31), st.data())
def test_int8_products_equal_integer_numpy(isa, T, P, n_q, density, seed, data):
    x, labels = tile(np.random.default_rng(seed), T, P, n_q, density)
    lay = K.tile_layout(labels, n_q)
    col, koff = K.slab_columns(lay)
    assert np.all(np.diff(koff) % 64 == 0)
    a0 = data.draw(st.integers(0, T - 1))
    a1 = data.draw(st.integers(a0 + 1, T))
    b0 = data.draw(st.integers(0, T - 1))
    b1 = data.draw(st.integers(b0 + 1, T))
    fa, mxa, sa = K.frame_major_u8(x[a0:a1], lay, col, koff)
    fb, _, _ = K.frame_major_u8(x[b0:b1], lay, col, koff)
    assert mxa == x[a0:a1, labels >= 0].max(initial=0) and fa.shape == (-(-(a1 - a0) // 4) * 4, koff[-1])
    off = K.int8_products(fa, fb, a1 - a0, b1 - b0, lay, koff, isa)
    diag = K.int8_products(fa, fa, a1 - a0, a1 - a0, lay, koff, isa)  # one triangle, mirrored
    assert sorted(off) == sorted(diag) == sorted(set(labels[labels >= 0].tolist()))
    for b in off:
        m = labels == b
        assert off[b].dtype == np.int32
        np.testing.assert_array_equal(off[b], exact(x[a0:a1, m], x[b0:b1, m]))
        np.testing.assert_array_equal(diag[b], exact(x[a0:a1, m], x[a0:a1, m]))
        np.testing.assert_array_equal(sa[b], x[a0:a1, m].sum(axis=1))


def test_frame_major_layout_padding_and_counts_beyond_a_byte():
    rng = np.random.default_rng(3)
    labels = np.array([1, -1, 0, 1, 1, 0, -1, 1], np.int32)
    lay = K.tile_layout(labels, 3)
    col, koff = K.slab_columns(lay)
    np.testing.assert_array_equal(koff, [0, 64, 128, 128])  # bin 2 is empty
    x = rng.integers(0, 50, (6, 8)).astype(np.uint32)
    x[4, 3] = 300  # wraps in the byte; the maximum and the frame sums must still see it
    out = np.full((8, 128), 9, np.uint8)  # a dirty reused buffer
    fm, mx, sums = K.frame_major_u8(x, lay, col, koff, out=out)
    assert fm is out and mx == 300
    np.testing.assert_array_equal(fm[:6, :2], x[:, [2, 5]])
    np.testing.assert_array_equal(fm[:6, 64:68], x[:, [0, 3, 4, 7]] % 256)
    assert not fm[6:].any() and not fm[:, 2:64].any() and not fm[:, 68:].any()
    np.testing.assert_array_equal(sums[1], x[:, [0, 3, 4, 7]].sum(axis=1))
    assert not sums[2].any()
    with pytest.raises(ValueError, match="unsigned"):
        K.frame_major_u8(x.astype(np.float32), lay, col, koff)
    with pytest.raises(ValueError, match="out must be"):
        K.frame_major_u8(x, lay, col, koff, out=np.zeros((6, 128), np.uint8))


@each_isa
def test_int8_products_exact_where_float32_rounds(isa):
    # 1101 pixels at 127 counts: every sum is 1101 * 127**2 = 17 758 029, odd and above
    # 2**24, where float32 has no odd integers
    x = np.full((8, 1101), 127, np.uint16)
    lay = K.tile_layout(np.zeros(1101, np.int32), 1)
    col, koff = K.slab_columns(lay)
    fm, mx, _ = K.frame_major_u8(x, lay, col, koff)
    assert mx == 127
    # all 127: VPMADDUBSW's pair sums reach their largest, 2 * 127**2, below int16's limit
    assert np.all(K.int8_products(fm, fm, 8, 8, lay, koff, isa)[0] == 1101 * 127**2)


@needs_int8
def test_int8_products_refuse_other_layouts():
    lay = K.tile_layout(np.zeros(10, np.int32), 1)
    col, koff = K.slab_columns(lay)
    fm, _, _ = K.frame_major_u8(np.ones((5, 10), np.uint8), lay, col, koff)
    with pytest.raises(ValueError, match="frame_major_u8 layouts"):
        K.int8_products(fm, fm, 9, 9, lay, koff, HOST[0])
    with pytest.raises(ValueError, match="frame_major_u8 layouts"):
        K.int8_products(fm[:, :32], fm[:, :32], 5, 5, lay, koff, HOST[0])


def test_byte_kernels_chosen_by_environment(without_int8, monkeypatch):
    assert K.int8_isa() is None
    lay = K.tile_layout(np.zeros(4, np.int32), 1)
    col, koff = K.slab_columns(lay)
    fm, _, _ = K.frame_major_u8(np.ones((4, 4), np.uint16), lay, col, koff)
    with pytest.raises(RuntimeError, match="no byte kernel"):
        K.int8_products(fm, fm, 4, 4, lay, koff)
    for want in K.ISAS:  # a cap: that kernel or a slower one the host has
        monkeypatch.setenv("DASKXPCS_INT8", want)
        K.int8_isa.cache_clear()
        got = K.int8_isa()
        slower = list(K.ISAS)[list(K.ISAS).index(want):]
        assert got == next((isa for isa in slower if isa in HOST), None)
    monkeypatch.setenv("DASKXPCS_INT8", "avx9000")
    K.int8_isa.cache_clear()
    with pytest.raises(ValueError, match="DASKXPCS_INT8"):
        K.int8_isa()
    monkeypatch.setenv("DASKXPCS_INT8", "auto")
    K.int8_isa.cache_clear()
    assert K.int8_isa() == (HOST[0] if HOST else None)


def test_frame_major_runs_stop_at_bins_and_gaps():
    # two adjacent bins of exactly 64 pixels: stored pixels and byte columns both advance
    # by one across the boundary, yet each bin keeps its own frame sums; a masked pixel
    # splits a run
    labels = np.array([0] * 64 + [1] * 64 + [-1] + [1] * 3, np.int32)
    lay = K.tile_layout(labels, 2)
    col, koff = K.slab_columns(lay)
    x = np.random.default_rng(5).integers(0, 9, (3, len(labels))).astype(np.uint16)
    fm, mx, sums = K.frame_major_u8(x, lay, col, koff)
    np.testing.assert_array_equal(koff, [0, 64, 192])
    np.testing.assert_array_equal(fm[:3, :64], x[:, :64])
    np.testing.assert_array_equal(fm[:3, 64:131], x[:, np.r_[64:128, 129:132]])
    assert not fm[:, 131:].any() and not fm[3:].any()
    np.testing.assert_array_equal(sums, [x[:, :64].sum(1), x[:, np.r_[64:128, 129:132]].sum(1)])
    assert mx == x[:, labels >= 0].max()
