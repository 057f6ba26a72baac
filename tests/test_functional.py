"""The functional API against the plain-loop reference.

Every value check compares with ``reference.py`` (loops written from the definition),
with numbers worked out by hand, or with the seed documents; shapes are checked
against the output-size formulas written out in ``conftest.py``.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import (
    SEED_002_OUT,
    SEED_003_OUT,
    BACKENDS,
    assert_matches,
    available_backends,
    conv_configs,
    explicit_padding,
    output_spatial,
)
from reference import conv_reference, conv_transpose_reference

FLOATS = (np.float32, np.float64)


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------
# The seed documents' worked examples

def test_seed_002_stride_2(backend):
    x = np.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    w = np.array([[4.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    got = stc.conv_transpose2d(x, w, stride=2, backend=backend)
    assert got.shape == (1, 1, 4, 4)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got[0, 0], SEED_002_OUT)


def test_seed_002_default_backend_and_nd_name():
    x = np.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    w = np.array([[4.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(stc.conv_transpose(x, w, None, 2)[0, 0], SEED_002_OUT)


@pytest.mark.parametrize("explicit", ["sparse", "auto"])
def test_seed_003_named_backends(explicit):
    assert explicit in BACKENDS
    x = np.ones((1, 1, 4, 4))
    w = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    got = stc.conv_transpose2d(x, w, stride=2, padding=1, backend=explicit)
    assert got.shape == (1, 1, 8, 8)
    np.testing.assert_array_equal(got[0, 0], SEED_003_OUT)


def test_seed_003_every_backend(backend):
    x = np.ones((1, 1, 4, 4))
    w = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    # Positional torch order: input, weight, bias, stride, padding.
    got = stc.conv_transpose2d(x, w, None, 2, 1, backend=backend)
    np.testing.assert_array_equal(got, SEED_003_OUT.reshape(1, 1, 8, 8))
    # float32 too: small integers are exact.
    got32 = stc.conv_transpose2d(x.astype(np.float32), w.astype(np.float32), stride=2,
                                 padding=1, backend=backend)
    assert got32.dtype == np.float32
    np.testing.assert_array_equal(got32[0, 0], SEED_003_OUT)


def test_seed_003_padding_2_gives_2x2_by_hand(backend):
    # The tutorial's "s=2, p=1" 2x2 input [[2, 4], [0, 1]], kernel [[3, 1], [1, 5]]:
    # full 4x4 output cropped by one on every side.
    x = np.array([[2.0, 4.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    w = np.array([[3.0, 1.0], [1.0, 5.0]]).reshape(1, 1, 2, 2)
    got = stc.conv_transpose2d(x, w, stride=2, padding=1, backend=backend)
    # full = [[6,2,12,4],[2,10,4,20],[0,0,3,1],[0,0,1,5]] -> centre 2x2
    np.testing.assert_array_equal(got[0, 0], [[10.0, 4.0], [0.0, 3.0]])


def test_seed_004_buffer_sum(backend):
    # A 2x2 input, 2x2 kernel, stride 1: the 3x3 sum of the four buffers.
    x = np.array([[2.0, 4.0], [0.0, 1.0]]).reshape(1, 1, 2, 2)
    w = np.array([[3.0, 1.0], [1.0, 5.0]]).reshape(1, 1, 2, 2)
    got = stc.conv_transpose2d(x, w, backend=backend)
    np.testing.assert_array_equal(got[0, 0], [[6, 14, 4], [2, 17, 21], [0, 1, 5]])


def test_seed_001_shape(backend):
    rng = _rng(1)
    x = rng.standard_normal((2, 4, 12, 16, 12))
    w = rng.standard_normal((4, 3, 3, 3, 3))
    got = stc.conv_transpose3d(x, w, stride=2, padding=1, output_padding=1,
                               backend=backend)
    assert got.shape == (2, 3, 24, 32, 24)
    assert got.dtype == np.float64
    assert np.isfinite(got).all()
    # A cheap value check: output (0, 0, 0) only sees input (0, 0, 0) through
    # kernel tap (1, 1, 1) (o = 2*i - 1 + k).
    np.testing.assert_allclose(got[:, :, 0, 0, 0],
                               np.einsum("nc,cd->nd", x[:, :, 0, 0, 0], w[:, :, 1, 1, 1]),
                               rtol=1e-12, atol=1e-12)
    by_size = stc.conv_transpose3d(x, w, stride=2, padding=1, output_size=(24, 32, 24),
                                   backend=backend)
    assert by_size.shape == (2, 3, 24, 32, 24)
    np.testing.assert_allclose(by_size[:, :, 0, 0, 0], got[:, :, 0, 0, 0], rtol=1e-12)


# ---------------------------------------------------------------------------
# Random configurations vs the reference

def _check_inputs_unchanged(before, after):
    for a, b in zip(before, after):
        if a is None:
            assert b is None
        else:
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=100, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_conv_transpose_matches_reference(rank, data, dtype):
    cfg = data.draw(conv_configs(rank, transposed=True))
    x, w, b = cfg.arrays(dtype)
    saved = [None if a is None else a.copy() for a in (x, w, b)]
    ref = cfg.reference(x, w, b)
    assert ref.shape == cfg.output_shape
    for backend in available_backends():
        # torch.nn.functional's positional order.
        got = stc.conv_transpose(x, w, b, cfg.stride, cfg.padding, cfg.output_padding,
                                 cfg.groups, cfg.dilation, backend=backend)
        assert got.shape == cfg.output_shape, (backend, cfg)
        assert got.dtype == dtype, (backend, cfg)
        assert_matches(got, ref)
        _check_inputs_unchanged(saved, (x, w, b))


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=100, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_conv_matches_reference(rank, data, dtype):
    cfg = data.draw(conv_configs(rank, transposed=False))
    x, w, b = cfg.arrays(dtype)
    saved = [None if a is None else a.copy() for a in (x, w, b)]
    ref = cfg.reference(x, w, b)
    assert ref.shape == cfg.output_shape
    for backend in available_backends():
        got = stc.conv(x, w, b, cfg.stride, cfg.padding, cfg.dilation, cfg.groups,
                       backend=backend)
        assert got.shape == cfg.output_shape, (backend, cfg)
        assert got.dtype == dtype, (backend, cfg)
        assert_matches(got, ref)
        _check_inputs_unchanged(saved, (x, w, b))


# ---------------------------------------------------------------------------
# Ranked aliases

TRANSPOSE_ALIASES = {1: stc.conv_transpose1d, 2: stc.conv_transpose2d,
                     3: stc.conv_transpose3d}
CONV_ALIASES = {1: stc.conv1d, 2: stc.conv2d, 3: stc.conv3d}


def _ranked_case(rank, transposed, seed=3):
    rng = _rng(seed)
    size = (4, 3, 2)[:rank] if rank < 3 else (3, 2, 3)
    kernel = (3, 2, 1)[:rank] if rank < 3 else (2, 1, 3)
    groups, cin, cout = 2, 4, 2
    x = rng.standard_normal((2, cin) + size)
    if transposed:
        w = rng.standard_normal((cin, cout // groups) + kernel)
    else:
        w = rng.standard_normal((cout, cin // groups) + kernel)
    b = rng.standard_normal(cout)
    return x, w, b, groups


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_transpose_aliases_equal_nd_and_reference(rank, backend):
    x, w, b, groups = _ranked_case(rank, True)
    kw = dict(stride=2, padding=1, output_padding=1, groups=groups, dilation=2)
    alias = TRANSPOSE_ALIASES[rank](x, w, b, backend=backend, **kw)
    nd = stc.conv_transpose(x, w, b, backend=backend, **kw)
    ref = conv_transpose_reference(x, w, b, 2, 1, 1, groups, 2)
    assert_matches(alias, ref)
    np.testing.assert_array_equal(alias, nd)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_aliases_equal_nd_and_reference(rank, backend):
    x, w, b, groups = _ranked_case(rank, False)
    kw = dict(stride=2, padding=1, dilation=1, groups=groups)
    alias = CONV_ALIASES[rank](x, w, b, backend=backend, **kw)
    nd = stc.conv(x, w, b, backend=backend, **kw)
    ref = conv_reference(x, w, b, 2, 1, 1, groups)
    assert_matches(alias, ref)
    np.testing.assert_array_equal(alias, nd)


@pytest.mark.parametrize("rank,other", [(r, o) for r in (1, 2, 3) for o in (1, 2, 3)
                                        if r != o])
def test_aliases_refuse_weight_of_other_rank(rank, other):
    x = np.ones((1, 1) + (3,) * other)
    w = np.ones((1, 1) + (2,) * other)
    with pytest.raises(ValueError, match="weight"):
        TRANSPOSE_ALIASES[rank](x, w)
    with pytest.raises(ValueError, match="weight"):
        CONV_ALIASES[rank](x, w)
    # The N-d functions take the rank from the weight and accept it.
    assert stc.conv_transpose(x, w).shape == (1, 1) + (4,) * other
    assert stc.conv(x, w).shape == (1, 1) + (2,) * other


# ---------------------------------------------------------------------------
# Unbatched and empty batch

@pytest.mark.parametrize("rank", [1, 2, 3])
def test_unbatched_input(rank, backend):
    x, w, b, groups = _ranked_case(rank, True, seed=4)
    got = stc.conv_transpose(x[0], w, b, 2, 1, 1, groups, 2, backend=backend)
    ref = conv_transpose_reference(x[:1], w, b, 2, 1, 1, groups, 2)
    assert got.shape == ref.shape[1:]
    assert_matches(got, ref[0])

    x, w, b, groups = _ranked_case(rank, False, seed=4)
    got = stc.conv(x[1], w, b, 2, 1, 1, groups, backend=backend)
    ref = conv_reference(x[1:2], w, b, 2, 1, 1, groups)
    assert got.shape == ref.shape[1:]
    assert_matches(got, ref[0])


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("dtype", FLOATS)
def test_empty_batch(rank, dtype, backend):
    x, w, b, groups = _ranked_case(rank, True)
    x0 = np.empty((0,) + x.shape[1:], dtype=dtype)
    got = stc.conv_transpose(x0, w.astype(dtype), b.astype(dtype), 2, 1, 1, groups, 2,
                             backend=backend)
    pairs = ((1, 1),) * rank
    out = output_spatial(x.shape[2:], w.shape[2:], 2, pairs, 2, 1, transposed=True)
    assert got.shape == (0, w.shape[1] * groups) + out
    assert got.dtype == dtype

    x, w, b, groups = _ranked_case(rank, False)
    x0 = np.empty((0,) + x.shape[1:], dtype=dtype)
    got = stc.conv(x0, w.astype(dtype), None, 2, 1, 1, groups, backend=backend)
    out = output_spatial(x.shape[2:], w.shape[2:], 2, pairs, 1, transposed=False)
    assert got.shape == (0, w.shape[0]) + out
    assert got.dtype == dtype


# ---------------------------------------------------------------------------
# dtypes (the table in conv_transpose's docstring and the docs' conventions page)

def _array_of(dtype, shape, rng):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind == "u":
        return rng.integers(0, 256, shape).astype(dtype)
    if dtype.kind == "i":
        return rng.integers(-5, 6, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


DTYPE_TABLE = [
    # input, weight, bias, result
    (np.float16, np.float16, None, np.float32),
    (np.float16, np.float32, None, np.float32),
    (np.float16, np.float64, None, np.float64),
    (np.uint8, np.float32, None, np.float64),
    (np.uint8, np.float32, np.float32, np.float64),
    (np.float32, np.int64, None, np.float64),
    (np.float32, np.int32, np.float32, np.float64),
    (np.float32, np.float32, np.float64, np.float64),
    (np.float32, np.float32, np.float16, np.float32),
    (np.float32, np.float32, np.int16, np.float64),
    (np.bool_, np.float32, None, np.float64),
    (np.int64, np.int64, np.int64, np.float64),
    (np.float32, np.float32, None, np.float32),
    (np.float64, np.float32, np.float32, np.float64),
]


@pytest.mark.parametrize("x_dtype,w_dtype,b_dtype,expected", DTYPE_TABLE)
def test_dtype_promotion(x_dtype, w_dtype, b_dtype, expected, backend):
    rng = _rng(5)
    x = _array_of(x_dtype, (2, 2, 3, 4), rng)
    b = None if b_dtype is None else _array_of(b_dtype, (4,), rng)

    w = _array_of(w_dtype, (2, 4, 2, 3), rng)
    got = stc.conv_transpose2d(x, w, b, stride=2, padding=(0, 1), groups=1,
                               backend=backend)
    assert got.dtype == expected
    assert_matches(got, conv_transpose_reference(x, w, b, 2, (0, 1), 0, 1, 1), expected)

    w = _array_of(w_dtype, (4, 2, 2, 3), rng)
    got = stc.conv2d(x, w, b, stride=1, padding=1, backend=backend)
    assert got.dtype == expected
    assert_matches(got, conv_reference(x, w, b, 1, 1, 1, 1), expected)


# ---------------------------------------------------------------------------
# Memory layouts

def _layout(kind, array, rng):
    """``array``'s values in the memory layout ``kind``."""
    if kind == "fortran":
        out = np.asfortranarray(array)
        assert not out.flags.c_contiguous or array.ndim <= 1
        return out
    if kind == "strided":
        base = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
        base[..., ::2] = array
        base[..., 1::2] = rng.standard_normal(array.shape)
        return base[..., ::2]
    if kind == "strided_middle":
        if array.ndim < 3:
            return _layout("strided", array, rng)
        base = np.repeat(array, 2, axis=2)
        out = base[:, :, ::2]
        np.testing.assert_array_equal(out, array)
        return out
    if kind == "negative":
        flipped = np.ascontiguousarray(array[..., ::-1])
        return flipped[..., ::-1]
    if kind == "negative_all":
        reverse = (slice(None, None, -1),) * array.ndim
        flipped = np.ascontiguousarray(array[reverse])
        return flipped[reverse]
    if kind == "readonly":
        out = array.copy()
        out.setflags(write=False)
        return out
    if kind == "list":
        return array.tolist()
    raise AssertionError(kind)


LAYOUTS = ["fortran", "strided", "strided_middle", "negative", "negative_all",
           "readonly", "list"]


def _snapshot(value):
    return None if value is None else np.array(value, copy=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOATS)
def test_memory_layouts_conv_transpose(layout, dtype, backend):
    rng = _rng(6)
    x = rng.standard_normal((2, 4, 3, 5)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    xs, ws, bs = (_layout(layout, a, rng) for a in (x, w, b))
    before = [_snapshot(a) for a in (xs, ws, bs)]
    got = stc.conv_transpose2d(xs, ws, bs, 2, ((1, 0), 1), 1, 2, (1, 2), backend=backend)
    ref = conv_transpose_reference(x, w, b, 2, [(1, 0), 1], 1, 2, (1, 2))
    assert got.shape == ref.shape
    # Python lists of floats are float64 arrays (the dtype table).
    assert got.dtype == (np.float64 if layout == "list" else dtype)
    assert_matches(got, ref, dtype)
    for a, snap in zip((xs, ws, bs), before):
        np.testing.assert_array_equal(np.asarray(a), snap)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOATS)
def test_memory_layouts_conv(layout, dtype, backend):
    rng = _rng(7)
    x = rng.standard_normal((2, 4, 6, 5)).astype(dtype)
    w = rng.standard_normal((6, 2, 3, 2)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    xs, ws, bs = (_layout(layout, a, rng) for a in (x, w, b))
    before = [_snapshot(a) for a in (xs, ws, bs)]
    got = stc.conv2d(xs, ws, bs, 2, ((1, 0), 1), (1, 2), 2, backend=backend)
    ref = conv_reference(x, w, b, 2, [(1, 0), 1], (1, 2), 2)
    assert got.shape == ref.shape
    # Python lists of floats are float64 arrays (the dtype table).
    assert got.dtype == (np.float64 if layout == "list" else dtype)
    assert_matches(got, ref, dtype)
    for a, snap in zip((xs, ws, bs), before):
        np.testing.assert_array_equal(np.asarray(a), snap)


def test_result_is_writeable_and_independent_of_inputs(backend):
    rng = _rng(8)
    x = rng.standard_normal((1, 2, 3))
    x.setflags(write=False)
    w = rng.standard_normal((2, 1, 1))
    w.setflags(write=False)
    got = stc.conv_transpose1d(x, w, backend=backend)
    assert got.flags.writeable
    assert not np.shares_memory(got, x) and not np.shares_memory(got, w)
    assert_matches(got, conv_transpose_reference(x, w))


# ---------------------------------------------------------------------------
# output_size=

def _output_size_case(seed=9):
    rng = _rng(seed)
    x = rng.standard_normal((1, 2, 3, 4))
    w = rng.standard_normal((2, 3, 3, 3))
    b = rng.standard_normal(3)
    return x, w, b


def test_output_size_spatial_and_with_leading_sizes(backend):
    x, w, b = _output_size_case()
    # stride 2, padding 1, kernel 3: base sizes (2*3-1, 2*4-1) = (5, 7); op 0..1.
    for size, op in [((5, 7), (0, 0)), ((6, 7), (1, 0)), ((5, 8), (0, 1)),
                     ((6, 8), (1, 1))]:
        ref = conv_transpose_reference(x, w, b, 2, 1, op)
        for requested in (size, (1, 3) + size, list(size)):
            got = stc.conv_transpose2d(x, w, b, stride=2, padding=1,
                                       output_size=requested, backend=backend)
            assert got.shape == (1, 3) + size
            assert_matches(got, ref)


def test_output_size_unbatched(backend):
    x, w, b = _output_size_case()
    ref = conv_transpose_reference(x, w, b, 2, 1, (1, 0))
    for requested in ((6, 7), (3, 6, 7)):
        got = stc.conv_transpose2d(x[0], w, b, stride=2, padding=1,
                                   output_size=requested, backend=backend)
        assert got.shape == (3, 6, 7)
        assert_matches(got, ref[0])


def test_output_size_beyond_pytorch_with_dilation(backend):
    # dilation 3 > stride 2: output_padding may reach 2 (< max(stride, dilation)).
    rng = _rng(10)
    x = rng.standard_normal((1, 1, 3))
    w = rng.standard_normal((1, 2, 2))
    base = (3 - 1) * 2 + 3 * (2 - 1) + 1  # 8
    for op in range(3):
        got = stc.conv_transpose1d(x, w, stride=2, dilation=3, output_size=(base + op,),
                                   backend=backend)
        assert got.shape == (1, 2, base + op)
        assert_matches(got, conv_transpose_reference(x, w, None, 2, 0, op, 1, 3))
    with pytest.raises(ValueError):
        stc.conv_transpose1d(x, w, stride=2, dilation=3, output_size=(base + 3,),
                             backend=backend)


def test_output_size_agreeing_output_padding_is_accepted(backend):
    x, w, b = _output_size_case()
    got = stc.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=(1, 0),
                               output_size=(6, 7), backend=backend)
    assert got.shape == (1, 3, 6, 7)
    assert_matches(got, conv_transpose_reference(x, w, b, 2, 1, (1, 0)))


@pytest.mark.parametrize("output_padding", [1, (0, 1), (1, 1)])
def test_output_size_disagreeing_output_padding_raises(output_padding, backend):
    x, w, b = _output_size_case()
    with pytest.raises(ValueError, match="output_padding"):
        stc.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=output_padding,
                             output_size=(6, 7), backend=backend)


@pytest.mark.parametrize("size", [(4, 7), (7, 7), (5, 9), (5, 6), (1, 1), (100, 100)])
def test_output_size_out_of_reach_raises(size, backend):
    x, w, b = _output_size_case()
    with pytest.raises(ValueError, match="output_size"):
        stc.conv_transpose2d(x, w, b, stride=2, padding=1, output_size=size,
                             backend=backend)


# ---------------------------------------------------------------------------
# padding: "same", "valid", per-axis pairs

SAME_GRID = list(itertools.product([1, 2, 4, 5], [1, 2, 3, 4], [1, 2, 3], [1, 2]))


@pytest.mark.parametrize("n,k,s,d", SAME_GRID)
def test_same_padding_1d(n, k, s, d, backend):
    rng = _rng(n * 1000 + k * 100 + s * 10 + d)
    # transposed: output = input * stride
    x = rng.standard_normal((1, 2, n))
    w = rng.standard_normal((2, 2, k))
    b = rng.standard_normal(2)
    got = stc.conv_transpose1d(x, w, b, stride=s, padding="same", dilation=d,
                               backend=backend)
    assert got.shape == (1, 2, n * s)
    pairs = explicit_padding("same", (n,), (k,), s, d, transposed=True)
    assert_matches(got, conv_transpose_reference(x, w, b, s, [pairs[0]], 0, 1, d))
    # convolution: output = ceil(input / stride)
    w = rng.standard_normal((3, 2, k))
    got = stc.conv1d(x, w, None, stride=s, padding="same", dilation=d, backend=backend)
    assert got.shape == (1, 3, -(-n // s))
    pairs = explicit_padding("same", (n,), (k,), s, d, transposed=False)
    assert_matches(got, conv_reference(x, w, None, s, [pairs[0]], d))


def test_same_padding_2d_3d_mixed_axes(backend):
    rng = _rng(11)
    x = rng.standard_normal((2, 2, 3, 5, 2))
    w = rng.standard_normal((2, 1, 3, 2, 1))
    stride, dilation = (2, 3, 1), (2, 1, 3)
    got = stc.conv_transpose3d(x, w, None, stride, "same", 0, 1, dilation, backend=backend)
    assert got.shape == (2, 1, 6, 15, 2)
    pairs = explicit_padding("same", (3, 5, 2), (3, 2, 1), stride, dilation,
                             transposed=True)
    assert_matches(got, conv_transpose_reference(x, w, None, stride, list(pairs), 0, 1,
                                                 dilation))
    w = rng.standard_normal((4, 1, 3, 2, 1))
    got = stc.conv3d(x, w, None, stride, "same", dilation, 2, backend=backend)
    assert got.shape == (2, 4, 2, 2, 2)
    pairs = explicit_padding("same", (3, 5, 2), (3, 2, 1), stride, dilation,
                             transposed=False)
    assert_matches(got, conv_reference(x, w, None, stride, list(pairs), dilation, 2))


def test_same_conv_smaller_half_first_by_hand(backend):
    # k=2, s=1: total padding 1 goes to the end: out[i] = x[i] + 10*x[i+1].
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    w = np.array([[[1.0, 10.0]]])
    np.testing.assert_array_equal(stc.conv1d(x, w, padding="same", backend=backend),
                                  [[[21.0, 32.0, 43.0, 4.0]]])


def test_same_transpose_crop_by_hand(backend):
    # k=4, s=2: crop 4 + 1 - 2 = 3, split (1, 2).  Full output [1, 2, 5, 8, 6, 8].
    x = np.array([[[1.0, 2.0]]])
    w = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    np.testing.assert_array_equal(
        stc.conv_transpose1d(x, w, stride=2, padding="same", backend=backend),
        [[[2.0, 5.0, 8.0, 6.0]]])


def test_same_transpose_negative_crop_extends_with_bias_only(backend):
    # k=1, s=3: crop 1 - 3 = -2, so the full output [5, 0, 0, 10] is extended by two
    # positions at the end, which receive only the bias.
    x = np.array([[[1.0, 2.0]]])
    w = np.array([[[5.0]]])
    got = stc.conv_transpose1d(x, w, np.array([1.0]), stride=3, padding="same",
                               backend=backend)
    np.testing.assert_array_equal(got, [[[6.0, 1.0, 1.0, 11.0, 1.0, 1.0]]])


def test_valid_padding_is_zero_padding(backend):
    rng = _rng(12)
    x = rng.standard_normal((1, 2, 4, 3))
    w = rng.standard_normal((2, 3, 2, 2))
    got = stc.conv_transpose2d(x, w, stride=2, padding="valid", backend=backend)
    assert_matches(got, conv_transpose_reference(x, w, None, 2, 0))
    w = rng.standard_normal((3, 2, 2, 2))
    got = stc.conv2d(x, w, stride=(1, 2), padding="valid", backend=backend)
    assert got.shape == (1, 3, 3, 1)
    assert_matches(got, conv_reference(x, w, None, (1, 2), 0))


@pytest.mark.parametrize("padding", [((0, 2), (1, 0)), ((3, 0), (0, 0)), ((1, 2), 1),
                                     (0, (2, 1))])
def test_asymmetric_padding_pairs(padding, backend):
    rng = _rng(13)
    x = rng.standard_normal((2, 2, 4, 5))
    w = rng.standard_normal((2, 2, 3, 3))
    b = rng.standard_normal(2)
    ref_padding = [p if isinstance(p, int) else list(p) for p in padding]
    got = stc.conv_transpose2d(x, w, b, 2, padding, 1, 1, 1, backend=backend)
    ref = conv_transpose_reference(x, w, b, 2, ref_padding, 1, 1, 1)
    pairs = explicit_padding(padding, (4, 5), (3, 3), transposed=True)
    assert got.shape == (2, 2) + output_spatial((4, 5), (3, 3), 2, pairs, 1, 1,
                                                transposed=True)
    assert_matches(got, ref)
    got = stc.conv2d(x, w, b, 2, padding, 1, 1, backend=backend)
    ref = conv_reference(x, w, b, 2, ref_padding, 1, 1)
    pairs = explicit_padding(padding, (4, 5), (3, 3), transposed=False)
    assert got.shape == (2, 2) + output_spatial((4, 5), (3, 3), 2, pairs, 1,
                                                transposed=False)
    assert_matches(got, ref)


def test_asymmetric_padding_1d_pair(backend):
    x = np.arange(1.0, 5.0).reshape(1, 1, 4)
    w = np.array([[[1.0, 1.0, 1.0]]])
    # conv with padding (2, 0): windows of [0, 0, 1, 2, 3, 4]
    np.testing.assert_array_equal(stc.conv1d(x, w, padding=((2, 0),), backend=backend),
                                  [[[1.0, 3.0, 6.0, 9.0]]])
    # transposed, full [1, 3, 6, 9, 7, 4], crop (0, 2)
    np.testing.assert_array_equal(
        stc.conv_transpose1d(x, w, padding=((0, 2),), backend=backend),
        [[[1.0, 3.0, 6.0, 9.0]]])


# ---------------------------------------------------------------------------
# Batched = per-sample

@pytest.mark.parametrize("rank", [1, 2, 3])
def test_batched_equals_per_sample(rank, backend):
    rng = _rng(14 + rank)
    size = (5, 4, 3)[:rank]
    x = rng.standard_normal((3, 4) + size)
    w = rng.standard_normal((4, 2) + (2,) * rank)
    b = rng.standard_normal(4)
    batched = stc.conv_transpose(x, w, b, 2, 1, 1, 2, 1, backend=backend)
    singles = np.stack([stc.conv_transpose(x[i], w, b, 2, 1, 1, 2, 1, backend=backend)
                        for i in range(3)])
    assert batched.shape == singles.shape
    np.testing.assert_allclose(batched, singles, rtol=1e-12, atol=1e-12)
    assert_matches(batched, conv_transpose_reference(x, w, b, 2, 1, 1, 2, 1))

    w = rng.standard_normal((6, 2) + (2,) * rank)
    b = rng.standard_normal(6)
    batched = stc.conv(x, w, b, 1, 1, 2, 2, backend=backend)
    singles = np.stack([stc.conv(x[i], w, b, 1, 1, 2, 2, backend=backend)
                        for i in range(3)])
    np.testing.assert_allclose(batched, singles, rtol=1e-12, atol=1e-12)
    assert_matches(batched, conv_reference(x, w, b, 1, 1, 2, 2))
