"""Dense block products in 8-bit integers on x86 SIMD: exact int32 numerators.

At dense count rates a tile's counts are small integers, and byte products summed in
int32 are exact and several times faster than float32 BLAS. One micro-kernel, generated
as LLVM IR by a numba intrinsic, per instruction set (the best the host has is used):

- ``avx512vnni``: ``VPDPBUSD`` multiplies 64 byte pairs and adds them, four at a time,
  into 16 int32 lanes, a 4 x 4 block of outputs. On the development machine (Zen 4, one
  thread) a 1024 x 976-frame block product over 8192 pixels takes 46 ms against 154 ms
  for OpenBLAS sgemm on the same counts (3.3x), a diagonal block 26 ms against 90 ms
  for ssyrk (3.4x).
- ``avx512bw`` and ``avx2``: ``VPMADDUBSW`` (byte pairs -> int16, no saturation below
  2 * 127**2) then ``VPMADDWD`` against ones (-> int32), 4 x 2 blocks on 64- or 32-byte
  vectors: 2.1x and 2.0x sgemm on the same machine, for CPUs without VNNI (AVX2 covers
  Intel since Haswell and AMD since Zen 1).

A block is laid out frame-major, ``(t, k)`` uint8: each bin's pixels are one run of
columns padded with zeros to a multiple of 64, and the frames are padded to a multiple
of 4, so the micro-kernels never need a remainder loop. Products are exact while every
count is at most 127 (one operand is read as signed bytes) and a bin's sums stay below
2**31; :func:`frame_major_u8` reports the block's largest count so that callers fall
back to the float32 BLAS kernels of :mod:`.dense` otherwise.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from llvmlite import ir
from numba import literally, njit, types
from numba.extending import intrinsic, overload

from daskxpcs.kernels.diag import TileLayout

__all__ = ["ISAS", "host_isas", "int8_isa", "MAX_COUNT", "MAX_BIN_COLUMNS", "slab_columns", "frame_major_shape",
           "frame_major_u8", "int8_products"]

#: largest count the byte products take (VPDPBUSD reads one operand as signed bytes)
MAX_COUNT = 127
#: a bin's int32 sums stay exact while (its padded pixels) * MAX_COUNT**2 < 2**31
MAX_BIN_COLUMNS = (2**31 - 1) // MAX_COUNT**2 // 64 * 64

#: instruction sets with a micro-kernel, fastest first: (rows, columns, vector bytes)
ISAS = {"avx512vnni": (4, 4, 64), "avx512bw": (4, 2, 64), "avx2": (4, 2, 32)}
_NEEDS = {"avx512vnni": ("avx512vnni", "avx512bw"), "avx512bw": ("avx512bw",), "avx2": ("avx2",)}
_ROWS = 4  # frames are padded to a multiple of every kernel's rows and columns
_KC = 2048  # bytes of a row per pass (a multiple of 64)
_PANEL = 128 * 1024  # bytes of b kept in L2 per pass


@functools.lru_cache(maxsize=1)
def host_isas() -> tuple[str, ...]:
    """The micro-kernels this host can run, fastest first (empty when numba does not
    compile for the host CPU, e.g. ``NUMBA_CPU_NAME`` set for portable caches)."""
    from llvmlite import binding
    from numba.core import config

    if config.CPU_NAME not in (None, "host"):
        return ()
    feats = binding.get_host_cpu_features()
    return tuple(isa for isa, need in _NEEDS.items() if all(feats.get(f) for f in need))


@functools.lru_cache(maxsize=1)
def int8_isa() -> str | None:
    """The instruction set of the byte products used by default, or None (BLAS only).

    The fastest of :data:`ISAS` that the host has. The environment variable
    ``DASKXPCS_INT8`` set to ``0`` (or ``off``) turns byte products off; set to an
    instruction set it caps the choice at that one (benchmarks, tests).
    """
    want = os.environ.get("DASKXPCS_INT8", "auto").strip().lower()
    if want in ("0", "off", "false", "no", "none"):
        return None
    have = host_isas()
    if want in ("", "1", "auto", "on"):
        return have[0] if have else None
    if want not in ISAS:
        raise ValueError(f"DASKXPCS_INT8={want!r}: expected 0, auto or one of {', '.join(ISAS)}")
    slower = list(ISAS)[list(ISAS).index(want):]
    return next((isa for isa in slower if isa in have), None)


def _transpose_reduce(builder, vecs, lanes):
    # n vectors of `lanes` int32 -> one vector whose lane order[q] sums vecs[q]: pairs of
    # vectors are folded by two-source shuffles and adds (about 2 instructions a vector
    # instead of a horizontal sum each), then the last vector folds on itself
    vty = ir.VectorType(ir.IntType(32), lanes)
    owners = [[q] * lanes for q in range(len(vecs))]

    def fold(v, ov, w, ow):
        m1, m2, own = [], [], []
        for lane_owners, base in ((ov, 0), (ow, lanes)):
            for q in dict.fromkeys(o for o in lane_owners if o >= 0):
                idx = [base + i for i, o in enumerate(lane_owners) if o == q]
                m1 += idx[:len(idx) // 2]
                m2 += idx[len(idx) // 2:]
                own += [q] * (len(idx) // 2)
        pad = lanes - len(m1)
        m1, m2, own = m1 + [0] * pad, m2 + [0] * pad, own + [-1] * pad
        lo = builder.shuffle_vector(v, w, ir.Constant(vty, m1))
        hi = builder.shuffle_vector(v, w, ir.Constant(vty, m2))
        return builder.add(lo, hi), own

    while len(vecs) > 1:
        pairs = zip(zip(vecs[::2], owners[::2]), zip(vecs[1::2], owners[1::2]))
        vecs, owners = map(list, zip(*(fold(v, ov, w, ow) for (v, ov), (w, ow) in pairs)))
    v, own = vecs[0], owners[0]
    while any(own.count(q) > 1 for q in own if q >= 0):
        v, own = fold(v, own, v, [-1] * lanes)
    return v, own


@intrinsic
def _microkernel(typingctx, isa, pa, lda, pb, ldb, n_vec, pc, ldc):
    # C[r, c] += sum_k A[r, k] B[c, k] for r < rows, c < cols, k < n_vec * vector bytes;
    # A, B bytes with row strides lda, ldb (bytes), C int32 with row stride ldc
    # (elements); raw addresses. isa: a string literal, a key of ISAS.
    if not isinstance(isa, types.StringLiteral) or isa.literal_value not in ISAS:
        return None
    name = isa.literal_value
    rows, cols, width = ISAS[name]
    lanes = width // 4
    v8 = ir.VectorType(ir.IntType(8), width)
    v16 = ir.VectorType(ir.IntType(16), width // 2)
    v32 = ir.VectorType(ir.IntType(32), lanes)
    sig = types.void(isa, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        _, pa, lda, pb, ldb, n_vec, pc, ldc = args
        mod = builder.module
        i64 = ir.IntType(64)

        def const(v):
            return ir.Constant(i64, v)

        def declare(fname, ret, *argtys):
            return mod.globals.get(fname) or ir.Function(mod, ir.FunctionType(ret, list(argtys)), fname)

        if name == "avx512vnni":
            dot = declare("llvm.x86.avx512.vpdpbusd.512", v32, v32, v32, v32)

            def madd(acc, a, b):  # acc + sums of 4 u8 x s8 products per lane
                return builder.call(dot, [acc, builder.bitcast(a, v32), builder.bitcast(b, v32)])
        else:
            ubsw_name, wd_name = {64: ("llvm.x86.avx512.pmaddubs.w.512", "llvm.x86.avx512.pmaddw.d.512"),
                                  32: ("llvm.x86.avx2.pmadd.ub.sw", "llvm.x86.avx2.pmadd.wd")}[width]
            ubsw = declare(ubsw_name, v16, v8, v8)
            wd = declare(wd_name, v32, v16, v16)
            ones = ir.Constant(v16, [1] * (width // 2))

            def madd(acc, a, b):  # u8 x s8 pairs -> int16 (exact below 2 * 127**2) -> int32 pairs
                return builder.add(acc, builder.call(wd, [builder.call(ubsw, [a, b]), ones]))

        zero = ir.Constant(v32, None)
        entry = builder.block
        loop = builder.function.append_basic_block("int8.loop")
        done = builder.function.append_basic_block("int8.done")
        builder.cbranch(builder.icmp_signed(">", n_vec, const(0)), loop, done)

        builder.position_at_end(loop)
        k = builder.phi(i64)
        acc = [builder.phi(v32) for _ in range(rows * cols)]
        k.add_incoming(const(0), entry)
        for a in acc:
            a.add_incoming(zero, entry)
        off = builder.mul(k, const(width))

        def load(base, stride, r):
            addr = builder.add(builder.add(base, builder.mul(stride, const(r))), off)
            return builder.load(builder.inttoptr(addr, v8.as_pointer()), align=1)

        av = [load(pa, lda, r) for r in range(rows)]
        new = [None] * (rows * cols)
        for c in range(cols):
            bv = load(pb, ldb, c)
            for r in range(rows):
                new[cols * r + c] = madd(acc[cols * r + c], av[r], bv)
        k1 = builder.add(k, const(1))
        body_end = builder.block
        k.add_incoming(k1, body_end)
        for a, v in zip(acc, new):
            a.add_incoming(v, body_end)
        builder.cbranch(builder.icmp_signed("<", k1, n_vec), loop, done)

        builder.position_at_end(done)
        final = []
        for v in new:
            phi = builder.phi(v32)
            phi.add_incoming(zero, entry)
            phi.add_incoming(v, body_end)
            final.append(phi)
        sums, owner = _transpose_reduce(builder, final, lanes)
        row_ty = ir.VectorType(ir.IntType(32), cols)
        for r in range(rows):
            addr = builder.add(pc, builder.mul(const(4), builder.mul(ldc, const(r))))
            ptr = builder.inttoptr(addr, row_ty.as_pointer())
            row = builder.shuffle_vector(sums, sums, ir.Constant(row_ty, [owner.index(cols * r + c)
                                                                         for c in range(cols)]))
            builder.store(builder.add(builder.load(ptr, align=4), row), ptr, align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True, cache=True)
def _gram(a, b, out, upper, isa):
    # out += a @ b.T with a (m, K), b (n, K) uint8 rows (unit column stride), out (m, n)
    # int32 C-contiguous; m a multiple of rows, n of cols, K of width. upper: only the
    # blocks on or above the diagonal (a is b). Panels of b of 128 kB stay in L2 while
    # every row block of a passes over them (without them a 1024 x 1024 block ran at 0.7
    # of the speed). One compiled copy per instruction set, made only where it is used.
    literally(isa)
    rows, cols, width = _shape(isa)
    m, k = a.shape
    n = b.shape[0]
    lda, ldb, ldc = a.strides[0], b.strides[0], out.shape[1]
    pa, pb, pc = a.ctypes.data, b.ctypes.data, out.ctypes.data
    kc = min(k, _KC)
    nb = max(cols, _PANEL // max(kc, 64) // cols * cols)
    for k0 in range(0, k, kc):
        n_vec = (min(k, k0 + kc) - k0) // width
        for j0 in range(0, n, nb):
            j1 = min(n, j0 + nb)
            for i in range(0, min(m, j1) if upper else m, rows):
                for j in range(max(j0, i) if upper else j0, j1, cols):
                    _microkernel(isa, pa + i * lda + k0, lda, pb + j * ldb + k0, ldb, n_vec,
                                 pc + 4 * (i * ldc + j), ldc)


def _shape(isa):
    """(rows, columns, vector bytes) of an instruction set's micro-kernel (numba only)."""
    raise NotImplementedError


@overload(_shape)
def _shape_impl(isa):
    if isinstance(isa, types.StringLiteral) and isa.literal_value in ISAS:
        rows, cols, width = ISAS[isa.literal_value]
        return lambda isa: (rows, cols, width)
    return None


def _entry(isa: str):
    # _gram with the instruction set as a compile-time constant: called from Python with a
    # string, _gram would re-dispatch on its literal at every call (16 ms each)
    @njit(nogil=True, cache=True)
    def gram(a, b, out, upper):
        _gram(a, b, out, upper, isa)
    return gram


_GRAMS = {isa: _entry(isa) for isa in ISAS}


@njit(nogil=True, cache=True)
def _mirror_upper(c):
    n = c.shape[0]
    for r in range(1, n):
        for s in range(r):
            c[r, s] = c[s, r]


def slab_columns(layout: TileLayout) -> tuple[np.ndarray, np.ndarray]:
    """Column of each used pixel in the frame-major byte layout, and each bin's column range.

    Returns
    -------
    col : (nv,) int64, column of row ``r`` of ``layout.perm``
    koff : (n_q + 1,) int64, bin b's columns are ``[koff[b], koff[b + 1])``, a multiple of 64
    """
    n = np.diff(layout.bin_start)
    koff = np.concatenate([[0], np.cumsum((n + 63) // 64 * 64)]).astype(np.int64)
    col = np.arange(len(layout.perm), dtype=np.int64) + np.repeat(koff[:-1] - layout.bin_start[:-1], n)
    return col, koff


@njit(nogil=True, cache=True)
def _gather_u8(x, src, dst, length, bin_runs, bin_start, koff, out, sums):
    # out[t, dst[q] + i] = x[t, src[q] + i] over the runs q of each bin (bytes, wrapping
    # above 255), zero padding; per-bin frame sums of the unwrapped counts; returns the
    # largest count. Runs of adjacent pixels make the copy, sum and max vectorise.
    n = x.shape[0]
    mx = 0
    for t in range(n):
        row = x[t]
        out_row = out[t]
        for b in range(bin_start.shape[0] - 1):
            s = 0
            for q in range(bin_runs[b], bin_runs[b + 1]):
                a = row[src[q]:src[q] + length[q]]
                o = out_row[dst[q]:dst[q] + length[q]]
                for i in range(a.shape[0]):
                    v = a[i]
                    mx = max(mx, v)
                    s += v
                    o[i] = v
            sums[b, t] = s
            out_row[koff[b] + bin_start[b + 1] - bin_start[b]:koff[b + 1]] = 0
    out[n:] = 0
    return mx


def _runs(layout: TileLayout, col: np.ndarray) -> tuple[np.ndarray, ...]:
    # maximal runs of rows whose stored pixels and byte columns both advance by one,
    # never crossing a bin: (src, dst, length, first run of each bin)
    perm = layout.perm
    cut = np.zeros(len(perm), bool)
    if len(perm):
        cut[0] = True
        cut[1:] = (np.diff(perm) != 1) | (np.diff(col) != 1)
        cut[layout.bin_start[:-1][layout.bin_start[:-1] < len(perm)]] = True
    first = np.flatnonzero(cut)
    length = np.diff(np.append(first, len(perm)))
    bin_runs = np.searchsorted(first, layout.bin_start).astype(np.int64)
    return perm[first], col[first], length.astype(np.int64), bin_runs


def frame_major_shape(n_frames: int, koff: np.ndarray) -> tuple[int, int]:
    """Shape of a block's frame-major bytes: (n_frames rounded up to a multiple of 4, koff[-1])."""
    return (n_frames + _ROWS - 1) // _ROWS * _ROWS, int(koff[-1])


def frame_major_u8(x: np.ndarray, layout: TileLayout, col: np.ndarray, koff: np.ndarray,
                   out: np.ndarray | None = None) -> tuple[np.ndarray, int, np.ndarray]:
    """(t, pt) counts of a tile -> frame-major bytes, the largest count and the frame sums.

    Counts above 255 wrap in the bytes: the caller checks the returned maximum against
    :data:`MAX_COUNT` before :func:`int8_products`. The frame sums are of the counts
    themselves, exact whatever the maximum.

    Parameters
    ----------
    x : (t, pt) unsigned integer counts of the tile's stored pixels
    layout : the tile's :class:`~daskxpcs.kernels.diag.TileLayout`
    col, koff : from :func:`slab_columns`
    out : C-contiguous uint8 ``(ceil4(t), koff[-1])`` to fill (a reused buffer), or None

    Returns
    -------
    bytes : (ceil4(t), koff[-1]) uint8, rows t and beyond zero
    max_count : int
    sums : (n_q, t) float64, counts per bin per frame
    """
    shape = frame_major_shape(x.shape[0], koff)
    if out is None:
        out = np.empty(shape, np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"frame_major_u8: out must be C-contiguous uint8 {shape}, got {out.dtype} {out.shape}")
    if x.dtype.kind != "u":
        raise ValueError(f"frame_major_u8: counts must be unsigned integers, got {x.dtype}")
    sums = np.empty((len(layout.bin_start) - 1, x.shape[0]), np.float64)
    src, dst, length, bin_runs = _runs(layout, col)
    mx = _gather_u8(np.ascontiguousarray(x), src, dst, length, bin_runs, layout.bin_start, koff, out, sums)
    return out, int(mx), sums


def int8_products(fa: np.ndarray, fb: np.ndarray, ni: int, nj: int, layout: TileLayout,
                  koff: np.ndarray, isa: str | None = None) -> dict:
    """Numerator sums of one (tile, block i, block j): {bin: X_i^T X_j (ni, nj) int32}, exact.

    Parameters
    ----------
    fa, fb : frame-major bytes of blocks i and j from :func:`frame_major_u8`, every count
        at most :data:`MAX_COUNT`; pass the same array twice for a diagonal block (one
        triangle is computed, the other copied)
    ni, nj : frames of blocks i and j
    koff : bin column ranges from :func:`slab_columns`
    isa : a key of :data:`ISAS` that this host has; default :func:`int8_isa`
    """
    isa = int8_isa() if isa is None else isa
    if isa not in host_isas():
        raise RuntimeError(f"int8_products: no byte kernel for {isa or 'this CPU'} here "
                           f"(host has {', '.join(host_isas()) or 'none'})")
    for f, n in ((fa, ni), (fb, nj)):
        if (f.dtype != np.uint8 or f.ndim != 2 or (f.size and f.strides[1] != 1) or f.shape[1] != koff[-1]
                or f.shape[0] % _ROWS or not n <= f.shape[0] < n + _ROWS):
            raise ValueError(f"int8_products: blocks must be frame_major_u8 layouts of {ni} and {nj} frames, "
                             f"got {fa.dtype} {fa.shape} and {fb.dtype} {fb.shape}")
    diagonal = fa is fb
    out = {}
    for b in layout.bins:
        k0, k1 = int(koff[b]), int(koff[b + 1])
        if k1 - k0 > MAX_BIN_COLUMNS:
            raise ValueError(f"int8_products: bin {b} has {k1 - k0} columns, int32 sums exact up to "
                             f"{MAX_BIN_COLUMNS}")
        c = np.zeros((fa.shape[0], fb.shape[0]), np.int32)
        _GRAMS[isa](fa[:, k0:k1], fb[:, k0:k1], c, diagonal)
        if diagonal:
            _mirror_upper(c)
        out[int(b)] = c[:ni, :nj]
    return out
