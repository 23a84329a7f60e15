"""Kernels on plain arrays against direct numpy loops (no Dask, no stores)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daskxpcs import kernels as K


def csr(x: np.ndarray, t0: int):
    """(t, p) dense counts -> CSR-by-pixel events with absolute frames."""
    px, fr = np.nonzero(x.T)
    ptr = np.zeros(x.shape[1] + 1, np.int64)
    np.cumsum(np.bincount(px, minlength=x.shape[1]), out=ptr[1:])
    return ptr, (fr + t0).astype(np.int32), x[fr, px].astype(np.int32)


def lag_sums_loop(x, lags, edges):
    """A_p(k) = sum_t x[t,p] x[t+k,p] for the whole scan and inside each window."""
    T, P = x.shape
    out = np.zeros((len(edges), len(lags), P))
    for li, k in enumerate(lags):
        out[0, li] = (x[: T - k] * x[k:]).sum(axis=0)
        for w in range(len(edges) - 1):
            a, b = edges[w], edges[w + 1]
            if b - a > k:
                out[1 + w, li] = (x[a:b - k] * x[a + k:b]).sum(axis=0)
    return out


scans = st.tuples(st.integers(2, 40), st.integers(1, 12), st.sampled_from([0.0, 0.05, 0.5, 3.0]),
                  st.integers(1, 4), st.integers(0, 2**31))


def draw(T, P, density, n_q, seed):
    rng = np.random.default_rng(seed)
    x = rng.poisson(density, (T, P)).astype(np.float32)
    labels = rng.integers(-1, n_q, P).astype(np.int32)
    return x, labels


def frame_range(data, T: int, start: int = 0) -> tuple[int, int]:
    """A drawn non-empty frame range [f0, f1) of [start, T)."""
    f0 = data.draw(st.integers(start, T - 1))
    return f0, data.draw(st.integers(f0 + 1, T))


@settings(max_examples=25, deadline=None)
@given(scans, st.data())
def test_event_pairs_equal_dense_products_and_numpy(scan, data):
    T, P, density, n_q, seed = scan
    x, labels = draw(T, P, density, n_q, seed)
    a0, a1 = frame_range(data, T)
    b0, b1 = frame_range(data, T, a0)
    lay = K.tile_layout(labels, n_q)
    ev = K.event_pairs(csr(x[a0:a1], a0), csr(x[b0:b1], b0), lay, (a0, a1), (b0, b1))
    xa = K.pixel_major(x[a0:a1], lay)
    de = K.dense_products(xa, K.pixel_major(x[b0:b1], lay), lay)
    diag = K.dense_products(xa, xa, lay)  # one array twice: the syrk path of a diagonal block
    assert sorted(ev) == sorted(de) == sorted(diag) == sorted(set(labels[labels >= 0].tolist()))
    for b in ev:
        m = labels == b
        want = x[a0:a1, m].astype(np.float64) @ x[b0:b1, m].T.astype(np.float64)
        np.testing.assert_array_equal(ev[b], want)
        np.testing.assert_array_equal(de[b], want)
        np.testing.assert_array_equal(diag[b], x[a0:a1, m].astype(np.float64) @ x[a0:a1, m].T.astype(np.float64))


@settings(max_examples=25, deadline=None)
@given(scans, st.data())
def test_event_pairs_diagonal_block_mirrors_upper_triangle(scan, data):
    # the same events passed twice take the upper-triangle path; it must equal numpy
    T, P, density, n_q, seed = scan
    x, labels = draw(T, P, density, n_q, seed)
    a0, a1 = frame_range(data, T)
    lay = K.tile_layout(labels, n_q)
    ev = csr(x[a0:a1], a0)
    got = K.event_pairs(ev, ev, lay, (a0, a1), (a0, a1))
    full = K.event_pairs(ev, csr(x[a0:a1], a0), lay, (a0, a1), (a0, a1))
    small = K.compact_events(ev, T)  # the graph's loads: uint16 frames and counts, int32 offsets
    assert [a.dtype for a in small] == [np.int32, np.uint16, np.uint16]
    compact = K.event_pairs(small, small, lay, (a0, a1), (a0, a1))
    sums = K.event_frame_sums(small, labels, n_q, a0, a1)
    for b in got:
        m = labels == b
        want = x[a0:a1, m].astype(np.float64) @ x[a0:a1, m].T.astype(np.float64)
        np.testing.assert_array_equal(got[b], want)
        np.testing.assert_array_equal(full[b], want)
        np.testing.assert_array_equal(compact[b], want)
        np.testing.assert_array_equal(sums[b], x[a0:a1, m].sum(axis=1))


@settings(max_examples=25, deadline=None)
@given(scans, st.integers(1, 4), st.data())
def test_lag_sums_dense_and_events_equal_numpy(scan, n_win, data):
    T, P, density, n_q, seed = scan
    x, labels = draw(T, P, density, n_q, seed)
    lags = K.lag_ladder(T)
    edges = K.window_edges(T, n_win)
    lay = K.tile_layout(labels, n_q)
    want = lag_sums_loop(x.astype(np.float64), lags, edges)[:, :, lay.perm]
    # dense: sum of the partials of every block pair (ti <= tj) of a random blocking
    tb = data.draw(st.integers(1, T))
    blocks = [(t, min(T, t + tb)) for t in range(0, T, tb)]
    total = (0, np.zeros((len(edges), 0, len(lay.perm))))
    for i, a in enumerate(blocks):
        for b in blocks[i:]:
            xa, xb = K.pixel_major(x[a[0]:a[1]], lay), K.pixel_major(x[b[0]:b[1]], lay)
            np.testing.assert_array_equal(xa, x[a[0]:a[1], lay.perm].T)
            assert xa.dtype == np.float32 and xa.flags.c_contiguous
            part = K.dense_lag_sums(xa, xb, a, b, lags, edges)
            total = K.add_lag(total, part)
    # the graph sums every pair of a group into one partial covering the whole ladder, from
    # float32 rows or (counts within a byte) uint8 rows with int32 sums
    got = np.zeros_like(want)
    got[:, total[0]:total[0] + total[1].shape[1]] = total[1]
    for dtype in (np.float32, np.uint8):
        into = (0, np.zeros((len(edges), len(lags), len(lay.perm))))
        for i, a in enumerate(blocks):
            for b in blocks[i:]:
                xa = K.pixel_major(x[a[0]:a[1]], lay, dtype=dtype)
                K.dense_lag_sums(xa, K.pixel_major(x[b[0]:b[1]], lay, dtype=dtype), a, b, lags, edges, out=into)
        np.testing.assert_allclose(into[1], got, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    # per-bin statistics from the dense partial and from the whole-scan event kernel agree
    stats_dense = K.lag_bin_stats(total, lay, len(lags))
    win_of = np.repeat(np.arange(len(edges) - 1, dtype=np.int32), np.diff(edges))
    s, stats_ev = K.event_tile_stats(csr(x, 0), labels, n_q, T, lags, K.lag_index(T, lags), win_of, len(edges) - 1)
    np.testing.assert_allclose(stats_ev, stats_dense, rtol=1e-12)
    # the graph passes the time blocks' compacted loads unmerged: the same sums
    parts = [K.compact_events(csr(x[a[0]:a[1]], a[0]), T) for a in blocks]
    s_parts, stats_parts = K.event_tile_stats(parts, labels, n_q, T, lags, K.lag_index(T, lags), win_of,
                                              len(edges) - 1)
    np.testing.assert_array_equal(stats_parts, stats_ev)
    np.testing.assert_array_equal(s_parts, s)
    for b in range(n_q):
        m = labels[lay.perm] == b
        np.testing.assert_allclose(stats_ev[0, :, b], want[:, :, m].sum(axis=2), rtol=1e-12)
        np.testing.assert_allclose(stats_ev[1, :, b], (want[:, :, m] ** 2).sum(axis=2), rtol=1e-12)
        np.testing.assert_array_equal(s[b], x[:, labels == b].sum(axis=1))
        np.testing.assert_array_equal(K.dense_frame_sums(K.pixel_major(x, lay), lay)[b], s[b])
        np.testing.assert_array_equal(K.event_frame_sums(csr(x, 0), labels, n_q, 0, T)[b], s[b])


def test_pixel_labels_left_closed_and_invalid():
    q = np.array([1.0, 1.5, 2.0, 2.5, np.nan, 0.5, 1.2])
    valid = np.array([1, 1, 1, 1, 1, 1, 0], bool)
    assert K.pixel_labels(q, valid, [1.0, 1.5, 2.5]).tolist() == [0, 1, 1, -1, -1, -1, -1]
    assert K.pixel_labels(q, valid, None).tolist() == [0, 0, 0, 0, 0, 0, -1]


def test_c_diag_stats_and_binning():
    rng = np.random.default_rng(0)
    T = 30
    c = rng.random((2, T, T))
    c[0, 3, 7] = np.nan
    lags = K.lag_ladder(T)
    full = np.zeros((3, 2, len(lags)))
    for a0, a1, b0, b1 in [(0, 10, 0, 10), (0, 10, 10, 30), (10, 30, 10, 30)]:
        full += K.c_diag_stats(np.ascontiguousarray(c[:, a0:a1, b0:b1]), a0, b0, lags)
    for li, k in enumerate(lags):
        d = np.diagonal(c, k, axis1=1, axis2=2)
        ok = np.isfinite(d)
        np.testing.assert_array_equal(full[0, :, li], ok.sum(axis=1))
        np.testing.assert_allclose(full[1, :, li], np.where(ok, d, 0).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(K.bin_block(c, 10, 9, 3), c[:, :30, :27].reshape(2, 10, 3, 9, 3).mean(axis=(2, 4)))


def test_normalise_block_union_and_empty_bin():
    s_i = np.array([[2.0, 4.0], [0.0, 0.0]])
    num = {0: np.array([[8.0, 4.0], [2.0, 6.0]])}
    c = K.normalise_block(num, s_i, s_i, np.array([2, 0]), (2, 2))
    # bin 0: N = num / 2, S = s / 2
    np.testing.assert_allclose(c[0], (num[0] / 2) / np.outer(s_i[0] / 2, s_i[0] / 2))
    assert np.isnan(c[1]).all()
    np.testing.assert_allclose(c[2], c[0])
    by_bin = np.concatenate([cb for _, cb in K.normalise_bins(num, s_i, s_i, np.array([2, 0]), (2, 2))])
    np.testing.assert_array_equal(by_bin, c)


def test_window_edges_and_lag_index():
    assert K.window_edges(10, 4).tolist() == [0, 2, 5, 7, 10]
    assert K.window_edges(3, 5).tolist() == [0, 1, 2, 3]
    idx = K.lag_index(40, K.lag_ladder(40))
    assert idx[10] == 8 and idx[9] == -1 and idx[0] == -1


def test_dense_lag_sums_refuses_a_partial_that_does_not_cover_the_pair():
    x = np.ones((2, 40), np.float32)
    lags, edges = K.lag_ladder(40), K.window_edges(40, 2)
    lo, hi = K.lag_range(lags, 0, 20, 20, 40)
    narrow = (lo + 1, np.zeros((len(edges), hi - lo - 1, 2)))
    with pytest.raises(ValueError, match="lag partial covers"):
        K.dense_lag_sums(x[:, :20], x[:, 20:], (0, 20), (20, 40), lags, edges, out=narrow)


def test_add_num_sums_float32_partials_in_float64():
    # dense tiles hand over float32 BLAS products; their sum over tiles must stay exact
    a = {0: np.full((2, 3), 2**24, np.float32)}
    b = {0: np.ones((2, 3), np.float32), 1: np.full((2, 3), 5, np.float32)}
    out = K.add_num(a, b)
    assert out[0].dtype == np.float64
    np.testing.assert_array_equal(out[0], 2**24 + 1)
    np.testing.assert_array_equal(out[1], 5)


def test_add_num_keeps_int32_only_while_the_sum_fits():
    a = {0: np.full((2, 3), 2**30, np.int32), 1: np.full((2, 3), 2**30, np.int32), 2: np.ones((2, 3), np.int32)}
    b = {0: np.full((2, 3), 2**30 - 1, np.int32), 1: np.full((2, 3), 2**30, np.int32),
         2: np.ones((2, 3), np.float32)}
    out = K.add_num(a, b)
    assert [out[k].dtype for k in range(3)] == [np.int32, np.float64, np.float64]
    np.testing.assert_array_equal(out[0], 2**31 - 1)
    np.testing.assert_array_equal(out[1], 2**31)  # would wrap in int32
    np.testing.assert_array_equal(out[2], 2)


def test_event_pairs_int32_only_where_bounded():
    # two pixels of 40000 photons in one frame: frame sum x largest count passes 2**30,
    # so the sums are float64, exact (3.2e9 would wrap in int32); small counts give int32
    lay = K.tile_layout(np.zeros(2, np.int32), 1)
    for value, dtype in ((40000, np.float64), (3, np.int32)):
        x = np.zeros((4, 2), np.int64)
        x[1] = value
        x[3, 0] = value
        ev = csr(x, 0)
        want = x.astype(np.float64) @ x.T.astype(np.float64)
        for got in (K.event_pairs(ev, ev, lay, (0, 4), (0, 4)), K.event_pairs(ev, csr(x, 0), lay, (0, 4), (0, 4))):
            assert got[0].dtype == dtype
            np.testing.assert_array_equal(got[0], want)


def test_dense_kernels_take_float64_where_float32_rounds():
    # 1101 pixels at 127 counts: every product sum is 1101 * 127**2 = 17 758 029, odd and
    # above 2**24, where float32 has no odd integers; so is one pixel's lag-1 sum over 1200 frames
    want = 1101 * 127**2
    lay = K.tile_layout(np.zeros(1101, np.int32), 1)
    xt = K.pixel_major(np.full((8, 1101), 127, np.uint16), lay)
    assert np.all(K.dense_products(xt, xt, lay)[0].astype(np.int64) != want)
    assert np.all(K.dense_products(xt, xt, lay, max_count=127)[0] == want)
    one = K.pixel_major(np.full((1200, 1), 127, np.uint16), K.tile_layout(np.zeros(1, np.int32), 1))
    lags, edges = np.array([1]), np.array([0, 1200])
    _, plain = K.dense_lag_sums(one, one, (0, 1200), (0, 1200), lags, edges)
    _, wide = K.dense_lag_sums(one, one, (0, 1200), (0, 1200), lags, edges, max_count=127)
    assert plain[0, 0, 0] != 1199 * 127**2
    assert wide[0, 0, 0] == wide[1, 0, 0] == 1199 * 127**2
    # bytes sum in int32, exact far beyond 2**24; float64 where even that could wrap
    ones = K.pixel_major(np.full((1200, 1), 127, np.uint16), K.tile_layout(np.zeros(1, np.int32), 1), dtype=np.uint8)
    _, small = K.dense_lag_sums(ones, ones, (0, 1200), (0, 1200), lags, edges)
    assert small[0, 0, 0] == 1199 * 127**2
    big = np.full((1, 140_000), 127, np.uint8)  # 139 999 * 127**2 > 2**31
    _, sums = K.dense_lag_sums(big, big, (0, 140_000), (0, 140_000), lags, np.array([0, 140_000]), max_count=127)
    assert sums[0, 0, 0] == 139_999 * 127**2
    with pytest.raises(ValueError, match="must both be float32 or both uint8"):
        K.dense_lag_sums(ones, one, (0, 1200), (0, 1200), lags, edges)
