"""The library's own AVX-512 GEMM (sparsetconv/_gemm.h) against NumPy, and every GEMM
kernel of the convolutions computed with it and with the BLAS, against the reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import assert_matches
from reference import conv_reference, conv_transpose_reference, weight_gradient_reference
from sparsetconv import _compiled, _kernels
from sparsetconv._plan import make_plan

needs_own = pytest.mark.skipif(not _kernels.own_gemm_available(),
                               reason="the own GEMM needs a CPU with AVX-512")

# the blocking of _gemm.h: panels of MR = 2 vectors x NR = 12, blocks KC, MC, NC
KC, MC, NC, NR = 256, 256, 3072, 12


def _column_major(rng, rows, cols, dtype, pad):
    """A (rows x cols) column-major view whose leading dimension is rows + pad."""
    whole = np.asfortranarray(rng.standard_normal((rows + pad, cols)).astype(dtype))
    return whole[:rows]


def _check(transa, transb, m, n, k, dtype, accumulate, pad, seed=0):
    rng = np.random.default_rng(seed)
    a = _column_major(rng, *((m, k) if transa == "N" else (k, m)), dtype, pad)
    b = _column_major(rng, *((k, n) if transb == "N" else (n, k)), dtype, pad)
    c = _column_major(rng, m, n, dtype, pad)
    whole_c = c.base.copy(order="F")  # the rows past m must not change
    op_a = a if transa == "N" else a.T
    op_b = b if transb == "N" else b.T
    want = op_a.astype(np.float64) @ op_b.astype(np.float64)
    if accumulate:
        want += c
    assert _kernels.own_gemm(transa, transb, a, b, c, accumulate)
    scale = max(1.0, np.sqrt(k))
    tol = (2e-6 if dtype == np.float32 else 1e-13) * scale
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(c.base[m:], whole_c[m:])


@needs_own
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transa, transb", [("N", "N"), ("N", "T"), ("T", "N"), ("T", "T")])
@pytest.mark.parametrize("m, n, k", [
    (1, 1, 1), (32, 12, 256), (16, 12, 7),      # whole tiles (float32, float64)
    (33, 13, 257), (31, 11, 255),               # one past / short of a tile and a KC block
    (MC + 40, 3, 2 * KC + 5),                   # several MC and KC blocks, n under NR
    (5, NC + 7, 3),                             # two NC blocks
    (0, 4, 3), (4, 0, 3), (4, 3, 0),            # empty
])
@pytest.mark.parametrize("accumulate", [False, True])
def test_own_gemm_matches_numpy(transa, transb, m, n, k, dtype, accumulate):
    _check(transa, transb, m, n, k, dtype, accumulate, pad=3)


@needs_own
@settings(max_examples=60, deadline=None)
@given(transa=st.sampled_from("NT"), transb=st.sampled_from("NT"),
       m=st.integers(1, 300), n=st.integers(1, 60), k=st.integers(1, 600),
       dtype=st.sampled_from([np.float32, np.float64]), accumulate=st.booleans(),
       pad=st.integers(0, 20), seed=st.integers(0, 2**16))
def test_own_gemm_random_shapes(transa, transb, m, n, k, dtype, accumulate, pad, seed):
    _check(transa, transb, m, n, k, dtype, accumulate, pad, seed)


@needs_own
def test_own_gemm_refuses_bad_arguments():
    a = np.asfortranarray(np.ones((4, 3), np.float32))
    b = np.asfortranarray(np.ones((3, 2), np.float32))
    c = np.asfortranarray(np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="transa"):
        _kernels.own_gemm("X", "N", a, b, c, False)
    with pytest.raises(ValueError, match="chain"):
        _kernels.own_gemm("T", "N", a, b, c, False)
    with pytest.raises(ValueError, match="column-major"):
        _kernels.own_gemm("N", "N", np.ones((4, 3), np.float32), b, c, False)
    with pytest.raises(ValueError, match="dtype"):
        _kernels.own_gemm("N", "N", a.astype(np.float64), b, c, False)


def test_set_gemm_kernel():
    before = _kernels.gemm_kernel()
    assert before == ("own" if _kernels.own_gemm_available() else "blas")
    try:
        assert _kernels.set_gemm_kernel("blas") == before
        assert _kernels.gemm_kernel() == "blas"
        if not _kernels.own_gemm_available():
            with pytest.raises(ValueError, match="AVX-512"):
                _kernels.set_gemm_kernel("own")
        with pytest.raises(ValueError, match="one of"):
            _kernels.set_gemm_kernel("mkl")
    finally:
        _kernels.set_gemm_kernel(before)


# (input, weight, stride, padding, output_padding, dilation, groups) of transposed
# layers whose GEMMs have edge tiles, several KC blocks, groups and 3-D columns
LAYERS = [
    ((2, 40, 5, 6), (40, 13, 3, 3), 2, 1, 1, 1, 1),
    ((3, 24, 7), (24, 10, 4), 3, 2, 0, 2, 2),
    ((1, 300, 3, 3), (300, 33, 3, 3), 1, 1, 0, 1, 1),
    ((2, 8, 3, 4, 5), (8, 6, 3, 2, 3), (2, 1, 2), 1, 0, 1, 2),
]


def _kernel_choices():
    return ["own", "blas"] if _kernels.own_gemm_available() else ["blas"]


@pytest.mark.parametrize("kernel", _kernel_choices())
@pytest.mark.parametrize("transposed", [True, False])
@pytest.mark.parametrize("layer", LAYERS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_algorithm_with_each_gemm_kernel(layer, transposed, kernel, dtype):
    """The forced GEMM forward pass and GEMM weight gradient, in the transposed layer's
    direction or in its adjoint convolution's, with each GEMM kernel."""
    x_shape, w_shape, stride, padding, output_padding, dilation, groups = layer
    rng = np.random.default_rng(7)
    w = rng.standard_normal(w_shape).astype(dtype)
    small = rng.standard_normal(x_shape).astype(dtype)
    large_shape = conv_transpose_reference(small, w, None, stride, padding, output_padding,
                                           groups, dilation).shape
    large = rng.standard_normal(large_shape).astype(dtype)
    if transposed:
        x, args = small, (stride, padding, output_padding, groups, dilation)
        b = rng.standard_normal(w_shape[1] * groups).astype(dtype)
        want = conv_transpose_reference(x, w, b, stride, padding, output_padding, groups,
                                        dilation)
    else:
        x, args = large, (stride, padding, 0, groups, dilation)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        want = conv_reference(x, w, b, stride, padding, dilation, groups)
    want_grad = weight_gradient_reference(small, large, w_shape[2:], stride, padding, groups,
                                          dilation)
    plan = make_plan(transposed, None, x.shape, x.dtype, w.shape, w.dtype, b.shape, b.dtype,
                     *args, None)
    previous = _kernels.set_gemm_kernel(kernel)
    try:
        got = _compiled.Executor(plan, _compiled.ALGORITHMS["gemm"])(x, w, b)
        got_grad = _compiled.WeightGradient(plan, "gemm")(small, large)
    finally:
        _kernels.set_gemm_kernel(previous)
    assert_matches(got, want)
    assert_matches(got_grad, want_grad)
