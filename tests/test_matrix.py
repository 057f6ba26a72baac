"""The matrix form: conv_matrix, conv_transpose_matrix and the identity
``conv_transpose_matrix(...) == conv_matrix(...).T`` entry for entry.

Matrices are checked against the plain-loop reference in tests/reference.py, against
the size formulas and structural entry counts written out here, and against each other
only through the transpose identity the library exists to show.
"""

import time
import tracemalloc
from math import prod

import numpy as np
import pytest
import scipy.sparse
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import conv_configs, conv_size, transposed_size
from reference import conv_reference, conv_transpose_reference


# ---------------------------------------------------------------------------
# Formulas and structural counts, written out from the definitions.


def axis_pairs(small, large, k, s, pb, d):
    """Number of (small position o, tap t) with 0 <= o*s - pb + t*d < large."""
    return sum(1 for o in range(small) for t in range(k) if 0 <= o * s - pb + t * d < large)


def structural_nnz(g):
    """Stored entries: small channels x large channels per group x reachable pairs."""
    per_axis = [axis_pairs(sm, lg, k, s, pb, d) for sm, lg, k, s, (pb, _), d in zip(
        g["small"], g["large"], g["kernel"], g["stride"], g["pairs"], g["dilation"])]
    return g["c_small"] * (g["c_large"] // g["groups"]) * prod(per_axis)


def rows_sorted(matrix):
    """Column indices strictly increasing inside every row (checked, not trusted)."""
    indptr, indices = matrix.indptr, matrix.indices
    for r in range(matrix.shape[0]):
        row = indices[indptr[r]:indptr[r + 1]]
        if np.any(np.diff(row) <= 0):
            return False
    return True


def first_rows(channels, conv_small, small):
    """Rows ``(c, *pos)`` of a matrix over ``channels x conv_small`` with ``pos < small``."""
    positions = np.indices(small).reshape(len(small), -1)
    spatial = np.ravel_multi_index(tuple(positions), conv_small)
    return (np.arange(channels)[:, None] * prod(conv_small) + spatial[None, :]).ravel()


def assert_same_csr(a, b):
    a, b = a.tocsr(), b.tocsr()
    a.sort_indices()
    b.sort_indices()
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)
    assert (a != b).nnz == 0


def assert_close(got, ref, dtype):
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-300)
    if np.dtype(dtype) == np.float32:
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * scale)
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * scale)


# ---------------------------------------------------------------------------
# Strategies.

@st.composite
def geometries(draw, transposed, max_dilation=3):
    """One random (transposed) convolution: sizes, channels, hyper-parameters, drawn by
    conftest's ``conv_configs`` (the kit's generator), sizes re-derived here.

    ``small`` is the convolution's output / transposed convolution's input, ``large``
    the other side.  ``padding`` is the argument in user form (int, ints, pairs).
    """
    cfg = draw(conv_configs(transposed=transposed, padding_kinds=("int", "ints", "pairs"),
                            max_batch=1, max_groups=2, max_channels=2, max_padding=2,
                            max_size={1: 6, 2: 6, 3: 4}, max_dilation=max_dilation))
    rank = cfg.rank
    per_axis = lambda v: (v,) * rank if isinstance(v, int) else tuple(v)  # noqa: E731
    kernel, stride, dilation = cfg.kernel, per_axis(cfg.stride), per_axis(cfg.dilation)
    pairs = [tuple(p) for p in cfg.pairs]
    if transposed:
        small, c_small, c_large = cfg.in_size, cfg.in_channels, cfg.out_channels
        op = per_axis(cfg.output_padding)
        large = tuple(transposed_size(n, k, s, pb, pe, o, d) for n, k, s, (pb, pe), o, d
                      in zip(small, kernel, stride, pairs, op, dilation))
    else:
        large, c_small, c_large = cfg.in_size, cfg.out_channels, cfg.in_channels
        op = (0,) * rank
        small = tuple(conv_size(n, k, s, pb, pe, d)
                      for n, k, s, (pb, pe), d in zip(large, kernel, stride, pairs, dilation))
    assume(min(small + large) >= 1)
    return dict(rank=rank, kernel=kernel, stride=stride, dilation=dilation, pairs=pairs,
                padding=cfg.padding, groups=cfg.groups, c_small=c_small, c_large=c_large,
                small=small, large=large, op=op)


def weight_for(g, rng, dtype=np.float64):
    # One layout serves both operators: (small channels, large channels // groups, *kernel).
    return rng.standard_normal((g["c_small"], g["c_large"] // g["groups"]) + g["kernel"]) \
        .astype(dtype)


def transposed_matrix(g, w, **kw):
    return stc.conv_transpose_matrix((g["c_small"],) + g["small"], w, g["stride"],
                                     g["padding"], g["op"], g["groups"], g["dilation"], **kw)


def forward_matrix(g, w, **kw):
    return stc.conv_matrix((g["c_large"],) + g["large"], w, g["stride"], g["padding"],
                           g["dilation"], g["groups"], **kw)


# ---------------------------------------------------------------------------
# The identity.

@settings(max_examples=200, deadline=None)
@given(geometries(transposed=True), st.integers(0, 2**32 - 1))
def test_transpose_matrix_is_conv_matrix_transposed(g, seed):
    w = weight_for(g, np.random.default_rng(seed))
    m = transposed_matrix(g, w)
    a = forward_matrix(g, w)
    # The adjoint convolution's output size, from the formula: small + op // stride.
    conv_small = tuple(conv_size(n, k, s, pb, pe, d) for n, k, s, (pb, pe), d in zip(
        g["large"], g["kernel"], g["stride"], g["pairs"], g["dilation"]))
    assert conv_small == tuple(n + o // s for n, o, s in zip(g["small"], g["op"], g["stride"]))
    assert a.shape == (g["c_small"] * prod(conv_small), g["c_large"] * prod(g["large"]))
    if conv_small == g["small"]:
        assert_same_csr(m, a.T)
    else:
        # output_padding >= stride (dilation > stride): the rows of the first positions.
        rows = first_rows(g["c_small"], conv_small, g["small"])
        assert_same_csr(m, a[rows].T)


def test_identity_with_output_padding_beyond_stride_dense():
    # 1-D, stride 1, dilation 3, output_padding 2: the adjoint conv has 2 extra outputs.
    w = np.array([[[1.0, 2.0, 3.0]]])
    m = stc.conv_transpose_matrix((1, 3), w, stride=1, output_padding=2, dilation=3)
    assert m.shape == (3 + 6 + 2, 3)
    a = stc.conv_matrix((1, 11), w, stride=1, dilation=3)
    assert a.shape == (5, 11)
    np.testing.assert_array_equal(m.toarray(), a.toarray()[:3].T)
    # The dense matrix from the definition: out[i + 3t] += x[i] * w[t].
    expected = np.zeros((11, 3))
    for i in range(3):
        for t in range(3):
            expected[i + 3 * t, i] = w[0, 0, t]
    np.testing.assert_array_equal(m.toarray(), expected)


def test_readme_example_identity():
    w = np.array([[4.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    m = stc.conv_transpose_matrix((1, 2, 2), w, stride=2)
    a = stc.conv_matrix((1, 4, 4), w, stride=2)
    assert m.shape == (16, 4) and a.shape == (4, 16)
    assert_same_csr(m, a.T)
    x = np.array([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal((m @ x).reshape(4, 4), [[0, 0, 4, 1], [0, 0, 2, 3],
                                                          [8, 2, 12, 3], [4, 6, 6, 9]])


# ---------------------------------------------------------------------------
# Dot test.

@settings(max_examples=100, deadline=None)
@given(geometries(transposed=True), st.integers(0, 2**32 - 1))
def test_dot_test(g, seed):
    rng = np.random.default_rng(seed)
    w = weight_for(g, rng)
    m = transposed_matrix(g, w)
    a = forward_matrix(g, w)
    conv_small = tuple(n + o // s for n, o, s in zip(g["small"], g["op"], g["stride"]))
    a = a[first_rows(g["c_small"], conv_small, g["small"])]
    x = rng.standard_normal(a.shape[1])   # convolution input = transposed output
    y = rng.standard_normal(a.shape[0])   # convolution output = transposed input
    lhs = np.dot(a @ x, y)
    rhs = np.dot(x, m @ y)
    scale = np.dot(abs(a) @ np.abs(x), np.abs(y))
    assert abs(lhs - rhs) <= 1e-12 * max(scale, 1e-300), (lhs, rhs)


# ---------------------------------------------------------------------------
# Matrices against the reference.

@settings(max_examples=60, deadline=None)
@given(geometries(transposed=False), st.sampled_from([np.float64, np.float32]),
       st.integers(1, 2), st.integers(0, 2**32 - 1))
def test_conv_matrix_matches_reference(g, dtype, batch, seed):
    rng = np.random.default_rng(seed)
    w = weight_for(g, rng, dtype)
    x = rng.standard_normal((batch, g["c_large"]) + g["large"]).astype(dtype)
    a = forward_matrix(g, w)
    assert isinstance(a, scipy.sparse.csr_array)
    assert a.shape == (g["c_small"] * prod(g["small"]), g["c_large"] * prod(g["large"]))
    assert a.dtype == dtype
    assert a.nnz == structural_nnz(g)
    assert a.has_sorted_indices and rows_sorted(a)
    got = (a @ x.reshape(batch, -1).T).T.reshape((batch, g["c_small"]) + g["small"])
    assert got.dtype == dtype
    ref = conv_reference(x, w, None, g["stride"], g["pairs"], g["dilation"], g["groups"])
    assert ref.shape == got.shape
    assert_close(got, ref, dtype)


@settings(max_examples=60, deadline=None)
@given(geometries(transposed=True), st.sampled_from([np.float64, np.float32]),
       st.integers(1, 2), st.integers(0, 2**32 - 1))
def test_conv_transpose_matrix_matches_reference(g, dtype, batch, seed):
    rng = np.random.default_rng(seed)
    w = weight_for(g, rng, dtype)
    x = rng.standard_normal((batch, g["c_small"]) + g["small"]).astype(dtype)
    m = transposed_matrix(g, w)
    assert isinstance(m, scipy.sparse.csr_array)
    assert m.shape == (g["c_large"] * prod(g["large"]), g["c_small"] * prod(g["small"]))
    assert m.dtype == dtype
    assert m.nnz == structural_nnz(g)
    assert m.has_sorted_indices and rows_sorted(m)
    got = (m @ x.reshape(batch, -1).T).T.reshape((batch, g["c_large"]) + g["large"])
    assert got.dtype == dtype
    ref = conv_transpose_reference(x, w, None, g["stride"], g["pairs"], g["op"],
                                   g["groups"], g["dilation"])
    assert ref.shape == got.shape
    assert_close(got, ref, dtype)


def test_conv_matrix_docstring_example_dense():
    a = stc.conv_matrix((1, 3), np.array([[[1.0, 2.0]]]))
    np.testing.assert_array_equal(a.toarray(), [[1.0, 2.0, 0.0], [0.0, 1.0, 2.0]])


def test_groups_block_structure():
    # groups=2, 2 channels each side: the dense matrix is block-diagonal by group.
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 2, 3))   # conv: C_out 4, C_in 4, groups 2
    a = stc.conv_matrix((4, 5), w, padding=1, groups=2).toarray()
    assert a.shape == (4 * 5, 4 * 5)
    np.testing.assert_array_equal(a[:10, 10:], 0)
    np.testing.assert_array_equal(a[10:, :10], 0)
    x = rng.standard_normal((1, 4, 5))
    np.testing.assert_allclose((a @ x.ravel()).reshape(1, 4, 5),
                               conv_reference(x, w, padding=1, groups=2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size, kernel, stride, dilation", [
    ((7,), 3, 2, 1), ((6, 5), (2, 3), (2, 1), (1, 2)), ((4, 3, 5), 2, 3, 1), ((5,), 1, 3, 1),
])
def test_conv_matrix_same_padding_matches_reference(size, kernel, stride, dilation):
    # TensorFlow's rule, written out: total = max((ceil(n/s) - 1)*s + d*(k-1) + 1 - n, 0),
    # smaller half at the beginning.
    rank = len(size)
    k, s, d = ((v,) * rank if isinstance(v, int) else v for v in (kernel, stride, dilation))
    pairs = []
    for n, kk, ss, dd in zip(size, k, s, d):
        total = max((-(-n // ss) - 1) * ss + dd * (kk - 1) + 1 - n, 0)
        pairs.append((total // 2, total - total // 2))
    rng = np.random.default_rng(1)
    w = rng.standard_normal((2, 3) + k)
    x = rng.standard_normal((1, 3) + size)
    a = stc.conv_matrix((3,) + size, w, stride=s, padding="same", dilation=d)
    out = tuple(-(-n // ss) for n, ss in zip(size, s))
    assert a.shape == (2 * prod(out), 3 * prod(size))
    ref = conv_reference(x, w, stride=s, padding=pairs, dilation=d)
    np.testing.assert_allclose((a @ x.ravel()).reshape(ref.shape), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size, kernel, stride, dilation", [
    ((4,), 3, 2, 1), ((3, 4), (2, 3), (2, 1), (1, 2)), ((2, 3, 2), 2, 3, 1), ((3,), 1, 3, 1),
    ((3,), 4, 2, 1),
])
def test_conv_transpose_matrix_same_padding_matches_reference(size, kernel, stride, dilation):
    # Keras / ONNX SAME_UPPER, written out: crop = d*(k-1) + 1 - s split smaller half
    # first; a negative crop extends the output at the end (a negative end padding
    # in the reference's size formula).
    rank = len(size)
    k, s, d = ((v,) * rank if isinstance(v, int) else v for v in (kernel, stride, dilation))
    pairs = []
    for kk, ss, dd in zip(k, s, d):
        crop = dd * (kk - 1) + 1 - ss
        pairs.append((crop // 2, crop - crop // 2) if crop >= 0 else (0, crop))
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 2) + k)
    x = rng.standard_normal((1, 3) + size)
    m = stc.conv_transpose_matrix((3,) + size, w, stride=s, padding="same", dilation=d)
    out = tuple(n * ss for n, ss in zip(size, s))
    assert m.shape == (2 * prod(out), 3 * prod(size))
    ref = conv_transpose_reference(x, w, stride=s, padding=pairs, dilation=d)
    assert ref.shape[2:] == out
    np.testing.assert_allclose((m @ x.ravel()).reshape(ref.shape), ref, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# dtype, format, entry count.

@pytest.mark.parametrize("weight_dtype, matrix_dtype", [
    (np.float64, np.float64), (np.float32, np.float32), (np.float16, np.float32),
    (np.int64, np.float64), (np.int32, np.float64), (np.uint8, np.float64),
    (np.bool_, np.float64),
])
@pytest.mark.parametrize("which", ["conv", "transpose"])
def test_matrix_dtype_follows_weight(weight_dtype, matrix_dtype, which):
    w = (np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2) % 5 + 1).astype(weight_dtype)
    if which == "conv":
        a = stc.conv_matrix((3, 4, 5), w, stride=2)
        x = np.arange(3 * 4 * 5, dtype=np.float64).reshape(1, 3, 4, 5)
        ref = conv_reference(x, w.astype(np.float64), stride=2)
    else:
        a = stc.conv_transpose_matrix((2, 3, 2), w, stride=2)
        x = np.arange(2 * 3 * 2, dtype=np.float64).reshape(1, 2, 3, 2)
        ref = conv_transpose_reference(x, w.astype(np.float64), stride=2)
    assert isinstance(a, scipy.sparse.csr_array)
    assert a.dtype == matrix_dtype
    np.testing.assert_allclose(a @ x.ravel().astype(matrix_dtype), ref.ravel(), rtol=1e-6)


def test_zero_weights_are_stored_structurally():
    # Entries are stored wherever the kernel reaches, zeros of the weight included.
    g = dict(c_small=2, c_large=2, groups=1, kernel=(3, 2), stride=(2, 1), dilation=(1, 2),
             pairs=[(1, 0), (0, 1)], small=(3, 4), large=None)
    g["large"] = tuple(transposed_size(n, k, s, pb, pe, 0, d) for n, k, s, (pb, pe), d in
                       zip(g["small"], g["kernel"], g["stride"], g["pairs"], g["dilation"]))
    w = np.zeros((2, 2, 3, 2))
    w[0, 1, 1, 0] = 1.0
    m = stc.conv_transpose_matrix((2, 3, 4), w, stride=(2, 1), padding=((1, 0), (0, 1)),
                                  dilation=(1, 2))
    assert m.nnz == structural_nnz(g)
    assert np.count_nonzero(m.data) < m.nnz


# ---------------------------------------------------------------------------
# max_nnz.

@pytest.mark.parametrize("which", ["conv", "transpose"])
def test_max_nnz_small(which):
    g = dict(c_small=2, c_large=3, groups=1, kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
             pairs=[(1, 1), (1, 1)])
    if which == "conv":
        g["large"] = (5, 4)
        g["small"] = (5, 4)
        build = lambda **kw: stc.conv_matrix((3, 5, 4), np.ones((2, 3, 3, 3)), padding=1, **kw)  # noqa: E731
    else:
        g["small"] = (5, 4)
        g["large"] = (5, 4)
        build = lambda **kw: stc.conv_transpose_matrix((2, 5, 4), np.ones((2, 3, 3, 3)), padding=1, **kw)  # noqa: E731
    nnz = structural_nnz(g)
    with pytest.raises(ValueError, match="max_nnz") as info:
        build(max_nnz=10)
    assert str(nnz) in str(info.value).replace(",", "").replace("_", ""), str(info.value)
    with pytest.raises(ValueError, match="max_nnz"):
        build(max_nnz=nnz - 1)
    assert build(max_nnz=nnz).nnz == nnz


@pytest.mark.parametrize("input_shape, weight_shape", [
    ((512, 256, 256), (512, 512, 3, 3)),   # 2-D, many channels
    ((1, 2**20), (512, 1, 3)),             # 1-D, long signal
])
@pytest.mark.parametrize("which", ["conv", "transpose"])
def test_max_nnz_refuses_huge_matrix_before_allocating(which, input_shape, weight_shape):
    # Both are far over the default max_nnz = 2**28; the refusal must be immediate and
    # must not build anything of the matrix's (or the input's) size first.
    w = np.ones(weight_shape, dtype=np.float32)
    if which == "transpose":
        input_shape = (weight_shape[0],) + input_shape[1:]
    build = stc.conv_matrix if which == "conv" else stc.conv_transpose_matrix
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError, match="max_nnz"):
            build(input_shape, w, padding=1)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0, elapsed
    assert peak < 50 * 2**20, f"peak traced memory {peak / 2**20:.0f} MiB before refusing"


def test_default_max_nnz_is_2_to_the_28():
    # 512 x 512 channels, kernel 1, 1025 positions: 2**28 + 2**18 entries, just over.
    # (A broadcast weight: the refusal must come before the weight is ever copied.)
    w = np.broadcast_to(np.float32(1.0), (2**9, 2**9, 1))
    with pytest.raises(ValueError, match="max_nnz") as info:
        stc.conv_matrix((2**9, 2**10 + 1), w)
    assert str(2**28 + 2**18) in str(info.value).replace(",", "").replace("_", "")
