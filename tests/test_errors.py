"""Errors and input safety for the functional API and the matrices.

Every error is checked for its type and for naming the argument; the valid calls next
to them are checked against tests/reference.py.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hyp

import sparsetconv as stc
from conftest import conv_configs, forced_algorithm
from reference import conv_reference, conv_transpose_reference
from sparsetconv import _compiled
from sparsetconv._plan import make_plan

BACKENDS = ["auto", "direct", "sparse"]

TRANSPOSED = {1: stc.conv_transpose1d, 2: stc.conv_transpose2d, 3: stc.conv_transpose3d}
FORWARD = {1: stc.conv1d, 2: stc.conv2d, 3: stc.conv3d}


def rng():
    return np.random.default_rng(1234)


def tconv_case(rank=2, c_in=2, c_out=3, groups=1, size=3, kernel=2):
    r = rng()
    x = r.standard_normal((2, c_in) + (size,) * rank)
    w = r.standard_normal((c_in, c_out // groups) + (kernel,) * rank)
    b = r.standard_normal(c_out)
    return x, w, b


def conv_case(rank=2, c_in=2, c_out=3, groups=1, size=5, kernel=2):
    r = rng()
    x = r.standard_normal((2, c_in) + (size,) * rank)
    w = r.standard_normal((c_out, c_in // groups) + (kernel,) * rank)
    b = r.standard_normal(c_out)
    return x, w, b


# ---------------------------------------------------------------------------
# Ranks.

@pytest.mark.parametrize("rank, weight_rank", [
    (r, wr) for r in (1, 2, 3) for wr in (1, 2, 3) if r != wr
])
def test_ranked_alias_refuses_weight_of_other_rank(rank, weight_rank):
    x, _, _ = tconv_case(rank=rank)
    _, w_other, _ = tconv_case(rank=weight_rank)
    with pytest.raises(ValueError, match="weight"):
        TRANSPOSED[rank](x, w_other)
    xc, _, _ = conv_case(rank=rank)
    _, wc_other, _ = conv_case(rank=weight_rank)
    with pytest.raises(ValueError, match="weight"):
        FORWARD[rank](xc, wc_other)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_ranked_alias_accepts_its_own_rank(rank):
    x, w, b = tconv_case(rank=rank)
    np.testing.assert_allclose(TRANSPOSED[rank](x, w, b, stride=2),
                               conv_transpose_reference(x, w, b, stride=2),
                               rtol=1e-12, atol=1e-12)
    xc, wc, bc = conv_case(rank=rank)
    np.testing.assert_allclose(FORWARD[rank](xc, wc, bc, stride=2),
                               conv_reference(xc, wc, bc, stride=2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weight_ndim", [0, 1, 2, 6])
def test_generic_functions_refuse_unsupported_weight_rank(weight_ndim):
    w = np.ones((2,) * weight_ndim)
    x = np.ones((1, 2, 3, 3))
    with pytest.raises(ValueError, match="weight"):
        stc.conv_transpose(x, w)
    with pytest.raises(ValueError, match="weight"):
        stc.conv(x, w)


@pytest.mark.parametrize("x_ndim", [0, 1, 2, 5, 6])
def test_wrong_input_rank(x_ndim):
    # A 2-D weight accepts (N, C, H, W) or (C, H, W) only.
    w = np.ones((2, 3, 2, 2))
    x = np.ones((2,) * x_ndim)
    with pytest.raises(ValueError, match="input"):
        stc.conv_transpose2d(x, w)
    with pytest.raises(ValueError, match="input"):
        stc.conv_transpose(x, w)
    wc = np.ones((3, 2, 2, 2))
    with pytest.raises(ValueError, match="input"):
        stc.conv2d(x, wc)
    with pytest.raises(ValueError, match="input"):
        stc.conv(x, wc)


def test_unbatched_input_is_accepted():
    x, w, b = tconv_case()
    out = stc.conv_transpose2d(x[0], w, b, stride=2)
    ref = conv_transpose_reference(x[:1], w, b, stride=2)[0]
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# Channels and groups.

def test_transposed_input_channels_must_match_weight():
    x, w, _ = tconv_case(c_in=2)
    bad = np.concatenate([x, x[:, :1]], axis=1)   # 3 channels, weight expects 2
    with pytest.raises(ValueError, match="input|channel") as info:
        stc.conv_transpose2d(bad, w)
    assert "3" in str(info.value) and "2" in str(info.value)
    with pytest.raises(ValueError, match="input|channel"):
        stc.conv_transpose2d(bad[0], w)   # unbatched too


def test_conv_input_channels_must_match_weight_times_groups():
    x, w, _ = conv_case(c_in=4, c_out=4, groups=2)   # weight (4, 2, k, k)
    with pytest.raises(ValueError, match="input|channel"):
        stc.conv2d(x[:, :3], w, groups=2)
    with pytest.raises(ValueError, match="input|channel"):
        stc.conv2d(x, w, groups=1)   # weight then expects 2 channels


@pytest.mark.parametrize("groups", [2, 4])
def test_groups_must_divide_transposed_in_channels(groups):
    x = np.ones((1, 3, 4, 4))
    w = np.ones((3, 1, 2, 2))
    with pytest.raises(ValueError, match="groups"):
        stc.conv_transpose2d(x, w, groups=groups)


def test_groups_must_divide_conv_out_channels():
    x = np.ones((1, 4, 4, 4))
    w = np.ones((3, 2, 2, 2))   # C_out 3, C_in/groups 2: groups=2 needs C_out % 2 == 0
    with pytest.raises(ValueError, match="groups"):
        stc.conv2d(x, w, groups=2)


def test_groups_must_divide_conv_in_channels():
    x = np.ones((1, 3, 4, 4))   # 3 input channels cannot split into 2 groups
    w = np.ones((4, 1, 2, 2))
    with pytest.raises(ValueError, match="groups|input|channel"):
        stc.conv2d(x, w, groups=2)


@pytest.mark.parametrize("groups", [0, -1])
def test_groups_below_one(groups):
    x, w, _ = tconv_case()
    with pytest.raises(ValueError, match="groups"):
        stc.conv_transpose2d(x, w, groups=groups)
    xc, wc, _ = conv_case()
    with pytest.raises(ValueError, match="groups"):
        stc.conv2d(xc, wc, groups=groups)


@pytest.mark.parametrize("groups", [1.5, "2", True, None])
def test_groups_not_an_int(groups):
    x, w, _ = tconv_case()
    with pytest.raises(TypeError, match="groups"):
        stc.conv_transpose2d(x, w, groups=groups)
    xc, wc, _ = conv_case()
    with pytest.raises(TypeError, match="groups"):
        stc.conv2d(xc, wc, groups=groups)


def test_groups_valid_case_matches_reference():
    x, w, b = tconv_case(c_in=4, c_out=6, groups=2)
    out = stc.conv_transpose2d(x, w, b, stride=2, groups=2)
    np.testing.assert_allclose(out, conv_transpose_reference(x, w, b, stride=2, groups=2),
                               rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# Bias.

@pytest.mark.parametrize("bias_shape", [(2,), (4,), (3, 1), (1, 3), ()])
def test_bias_of_wrong_shape(bias_shape):
    x, w, _ = tconv_case(c_in=2, c_out=3)   # transposed: C_out = 3
    with pytest.raises(ValueError, match="bias"):
        stc.conv_transpose2d(x, w, np.ones(bias_shape))
    xc, wc, _ = conv_case(c_in=2, c_out=3)
    with pytest.raises(ValueError, match="bias"):
        stc.conv2d(xc, wc, np.ones(bias_shape))


def test_transposed_bias_is_per_output_channel_not_weight_dim0():
    # Transposed weight is (C_in, C_out // groups, ...): bias follows C_out, not C_in.
    x, w, _ = tconv_case(c_in=4, c_out=2, groups=1)
    with pytest.raises(ValueError, match="bias"):
        stc.conv_transpose2d(x, w, np.ones(4))
    b = np.arange(2.0)
    np.testing.assert_allclose(stc.conv_transpose2d(x, w, b),
                               conv_transpose_reference(x, w, b), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# Hyper-parameters through the functional API.

@pytest.mark.parametrize("kwargs, name", [
    (dict(stride=0), "stride"),
    (dict(stride=(1, -1)), "stride"),
    (dict(dilation=0), "dilation"),
    (dict(padding=-1), "padding"),
    (dict(padding=(0, (1, -1))), "padding"),
    (dict(stride=2, output_padding=2), "output_padding"),
    (dict(stride=1, output_padding=1), "output_padding"),
    (dict(stride=2, output_padding=-1), "output_padding"),
    (dict(stride=(1, 2, 3)), "stride"),
    (dict(padding=(1, 1, 1)), "padding"),
    (dict(padding=((0, 1, 2), 0)), "padding"),
])
def test_bad_hyper_parameters_transposed(kwargs, name):
    x, w, _ = tconv_case()
    with pytest.raises(ValueError, match=name):
        stc.conv_transpose2d(x, w, **kwargs)


def test_output_padding_message_says_how_to_fix_it():
    x, w, _ = tconv_case()
    with pytest.raises(ValueError, match="output_padding") as info:
        stc.conv_transpose2d(x, w, stride=(2, 3), output_padding=(0, 3))
    message = str(info.value)
    assert "axis 1" in message
    # The fix: a value in the allowed range 0..2 (below max(stride, dilation) = 3).
    assert "2" in message and "3" in message


@pytest.mark.parametrize("kwargs, name", [
    (dict(stride=0), "stride"),
    (dict(dilation=(1, 0)), "dilation"),
    (dict(padding=-2), "padding"),
    (dict(padding=((2, -1), 0)), "padding"),
    (dict(stride=(1,)), "stride"),
])
def test_bad_hyper_parameters_conv(kwargs, name):
    x, w, _ = conv_case()
    with pytest.raises(ValueError, match=name):
        stc.conv2d(x, w, **kwargs)


@pytest.mark.parametrize("name", ["stride", "padding", "dilation", "output_padding"])
@pytest.mark.parametrize("bad", [1.5, True, (1, 0.5)])
def test_non_int_hyper_parameters(name, bad):
    x, w, _ = tconv_case()
    with pytest.raises(TypeError, match=name):
        stc.conv_transpose2d(x, w, **{name: bad})
    if name != "output_padding":
        xc, wc, _ = conv_case()
        with pytest.raises(TypeError, match=name):
            stc.conv2d(xc, wc, **{name: bad})


def test_empty_output_is_an_error():
    x, w, _ = conv_case(size=2, kernel=3)
    with pytest.raises(ValueError, match="axis"):
        stc.conv2d(x, w)
    xt, wt, _ = tconv_case(size=1, kernel=1)
    with pytest.raises(ValueError, match="axis"):
        stc.conv_transpose2d(xt, wt, padding=1)


@pytest.mark.parametrize("padding", ["full", "circular", "", "validd"])
def test_bad_padding_strings(padding):
    x, w, _ = tconv_case()
    with pytest.raises(ValueError, match="padding"):
        stc.conv_transpose2d(x, w, padding=padding)
    xc, wc, _ = conv_case()
    with pytest.raises(ValueError, match="padding"):
        stc.conv2d(xc, wc, padding=padding)
    with pytest.raises(ValueError, match="padding"):
        stc.conv_matrix(xc.shape[1:], wc, padding=padding)


def test_padding_strings_valid_and_same_work():
    x, w, b = tconv_case(size=3, kernel=3)
    out = stc.conv_transpose2d(x, w, b, stride=2, padding="same")
    assert out.shape == (2, 3, 6, 6)
    # crop = 1*(3-1) + 1 - 2 = 1, split (0, 1).
    ref = conv_transpose_reference(x, w, b, stride=2, padding=[(0, 1), (0, 1)])
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stc.conv_transpose2d(x, w, b, stride=2, padding="valid"),
                               conv_transpose_reference(x, w, b, stride=2), rtol=1e-12,
                               atol=1e-12)


# ---------------------------------------------------------------------------
# output_size.

def test_output_size_out_of_reach():
    x, w, _ = tconv_case(size=3, kernel=3)   # stride 2: reachable 7 or 8
    with pytest.raises(ValueError, match="output_size") as info:
        stc.conv_transpose2d(x, w, stride=2, output_size=(9, 8))
    assert "7" in str(info.value) and "8" in str(info.value)
    with pytest.raises(ValueError, match="output_size"):
        stc.conv_transpose2d(x, w, stride=2, output_size=(6, 7))
    with pytest.raises(ValueError, match="output_size"):
        stc.conv_transpose2d(x, w, stride=2, output_size=(2, 3, 9, 8))


@pytest.mark.parametrize("output_size", [(7,), (7, 7, 7), (1, 7, 7)])
def test_output_size_of_wrong_length(output_size):
    x, w, _ = tconv_case(size=3, kernel=3)
    with pytest.raises(ValueError, match="output_size"):
        stc.conv_transpose2d(x, w, stride=2, output_size=output_size)


@pytest.mark.parametrize("output_size", [(7.5, 8), ("7", 8)])
def test_output_size_non_int(output_size):
    x, w, _ = tconv_case(size=3, kernel=3)
    with pytest.raises(TypeError, match="output_size"):
        stc.conv_transpose2d(x, w, stride=2, output_size=output_size)


def test_output_size_and_disagreeing_output_padding():
    x, w, _ = tconv_case(size=3, kernel=3)
    with pytest.raises(ValueError, match="output_padding|output_size"):
        stc.conv_transpose2d(x, w, stride=2, output_padding=1, output_size=(7, 7))
    with pytest.raises(ValueError, match="output_padding|output_size"):
        stc.conv_transpose2d(x, w, stride=2, output_padding=(1, 0), output_size=(8, 8))


@pytest.mark.parametrize("output_padding", [0, 1, (1, 1)])
@pytest.mark.parametrize("output_size", [(8, 8), (2, 3, 8, 8)])
def test_output_size_with_agreeing_or_zero_output_padding(output_padding, output_size):
    x, w, b = tconv_case(size=3, kernel=3)
    out = stc.conv_transpose2d(x, w, b, stride=2, output_padding=output_padding,
                               output_size=output_size)
    ref = conv_transpose_reference(x, w, b, stride=2, output_padding=1)
    assert out.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# dtypes.

def _bad_dtype_arrays(shape):
    return {
        "complex": np.ones(shape, dtype=np.complex128),
        "object": np.ones(shape, dtype=object),
        "string": np.full(shape, "a"),
        "bytes": np.full(shape, b"a"),
    }


@pytest.mark.parametrize("kind", ["complex", "object", "string", "bytes"])
@pytest.mark.parametrize("which", ["input", "weight", "bias"])
def test_unsupported_dtypes_raise_type_error(kind, which):
    x, w, b = tconv_case()
    arrays = {"input": x, "weight": w, "bias": b}
    arrays[which] = _bad_dtype_arrays(arrays[which].shape)[kind]
    with pytest.raises(TypeError, match=which):
        stc.conv_transpose2d(arrays["input"], arrays["weight"], arrays["bias"])
    xc, wc, bc = conv_case()
    arrays = {"input": xc, "weight": wc, "bias": bc}
    arrays[which] = _bad_dtype_arrays(arrays[which].shape)[kind]
    with pytest.raises(TypeError, match=which):
        stc.conv2d(arrays["input"], arrays["weight"], arrays["bias"])


@pytest.mark.parametrize("kind", ["complex", "object", "string"])
def test_matrix_functions_refuse_unsupported_weight_dtypes(kind):
    w = _bad_dtype_arrays((2, 3, 2, 2))[kind]
    with pytest.raises(TypeError, match="weight"):
        stc.conv_matrix((3, 4, 4), w)
    with pytest.raises(TypeError, match="weight"):
        stc.conv_transpose_matrix((2, 3, 3), w)


# ---------------------------------------------------------------------------
# Backend.

@pytest.mark.parametrize("backend", ["fast", "", "torch", "dense"])
def test_unknown_backend(backend):
    x, w, _ = tconv_case()
    with pytest.raises(ValueError, match="backend"):
        stc.conv_transpose2d(x, w, backend=backend)
    xc, wc, _ = conv_case()
    with pytest.raises(ValueError, match="backend"):
        stc.conv2d(xc, wc, backend=backend)


# ---------------------------------------------------------------------------
# Matrix functions: shapes, channels, groups.

def test_matrix_input_shape_must_fit_weight():
    w = np.ones((2, 3, 2, 2))
    with pytest.raises(ValueError, match="input_shape|input"):
        stc.conv_matrix((3, 4, 4, 4), w)   # 3 spatial sizes for a 2-D weight
    with pytest.raises(ValueError, match="input_shape|input"):
        stc.conv_matrix((4, 4), w)         # no channel axis
    with pytest.raises(ValueError, match="input_shape|input"):
        stc.conv_transpose_matrix((2, 3), w)


def test_matrix_channels_and_groups():
    w = np.ones((2, 3, 2, 2))
    with pytest.raises(ValueError, match="input|channel"):
        stc.conv_matrix((4, 4, 4), w)            # expects 3 channels
    with pytest.raises(ValueError, match="input|channel"):
        stc.conv_transpose_matrix((3, 4, 4), w)  # expects 2 channels
    with pytest.raises(ValueError, match="groups"):
        stc.conv_transpose_matrix((2, 4, 4), w, groups=4)
    with pytest.raises(ValueError, match="groups"):
        stc.conv_matrix((6, 4, 4), w, groups=0)
    with pytest.raises(ValueError, match="output_padding"):
        stc.conv_transpose_matrix((2, 4, 4), w, stride=2, output_padding=2)


# ---------------------------------------------------------------------------
# Inputs are never modified; read-only and non-contiguous inputs work.

def _calls(x, w, b, xc, wc, bc, backend):
    return [
        (lambda: stc.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1,
                                      backend=backend),
         lambda: conv_transpose_reference(x, w, b, stride=2, padding=1, output_padding=1)),
        (lambda: stc.conv_transpose(x, w, b, stride=2, output_size=(6, 6), backend=backend),
         lambda: conv_transpose_reference(x, w, b, stride=2)),
        (lambda: stc.conv2d(xc, wc, bc, stride=2, padding=((0, 1), 1), backend=backend),
         lambda: conv_reference(xc, wc, bc, stride=2, padding=[(0, 1), (1, 1)])),
        (lambda: stc.conv(xc, wc, bc, dilation=2, padding="same", backend=backend),
         lambda: conv_reference(xc, wc, bc, dilation=2, padding=[(1, 1), (1, 1)])),
    ]


@pytest.mark.parametrize("read_only", [False, True])
def test_inputs_are_never_modified(backend, read_only):
    x, w, b = tconv_case()
    xc, wc, bc = conv_case()
    arrays = [x, w, b, xc, wc, bc]
    copies = [a.copy() for a in arrays]
    if read_only:
        for a in arrays:
            a.setflags(write=False)
    for call, reference in _calls(*arrays, backend):
        out = call()
        ref = reference()
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
        # The result is a fresh, writable array that shares no memory with the inputs.
        assert out.flags.writeable
        assert not any(np.shares_memory(out, a) for a in arrays)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)
        assert a.flags.writeable is not read_only


@pytest.mark.parametrize("read_only", [False, True])
def test_matrix_functions_never_modify_the_weight(read_only):
    w = rng().standard_normal((2, 3, 2, 2))
    w32 = w.astype(np.float32)
    copies = [w.copy(), w32.copy()]
    if read_only:
        w.setflags(write=False)
        w32.setflags(write=False)
    x = rng().standard_normal((1, 3, 4, 4))
    a = stc.conv_matrix((3, 4, 4), w, stride=2)
    np.testing.assert_allclose(a @ x.ravel(), conv_reference(x, w, stride=2).ravel(),
                               rtol=1e-12, atol=1e-12)
    a.data[:] = 0.0   # writing the matrix must not write the weight
    stc.conv_transpose_matrix((2, 3, 3), w32, stride=2)
    np.testing.assert_array_equal(w, copies[0])
    np.testing.assert_array_equal(w32, copies[1])


def test_non_contiguous_inputs(backend):
    r = rng()
    big_x = r.standard_normal((2, 4, 7, 8))
    x = big_x[:, ::2, ::2, 1::2]                      # (2, 2, 4, 4), strided
    w = np.asfortranarray(r.standard_normal((2, 3, 3, 2)))
    b = r.standard_normal(6)[::2]
    before = big_x.copy()
    out = stc.conv_transpose2d(x, w, b, stride=(2, 1), padding=(1, 0), backend=backend)
    ref = conv_transpose_reference(x, w, b, stride=(2, 1), padding=[1, 0])
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(big_x, before)
    xc = big_x.transpose(0, 1, 3, 2)                  # (2, 4, 8, 7), not C-contiguous
    wc = r.standard_normal((2, 2, 4, 3)).transpose(0, 2, 3, 1)   # (2, 4, 3, 2), strided
    out = stc.conv2d(xc, wc, backend=backend)
    np.testing.assert_allclose(out, conv_reference(xc, wc), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# NaN and inf propagate as IEEE arithmetic says.

@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
def test_special_values_propagate_transposed(backend, special):
    # Stride 2, kernel 2: each input element owns one disjoint 2x2 output block.
    r = rng()
    x = r.standard_normal((1, 2, 3, 3))
    w = r.uniform(0.5, 1.5, (2, 2, 2, 2)) * r.choice([-1.0, 1.0], (2, 2, 2, 2))
    b = np.array([0.25, -0.5])
    x[0, 0, 1, 2] = special
    out = stc.conv_transpose2d(x, w, b, stride=2, backend=backend)
    assert out.shape == (1, 2, 6, 6)
    block = (0, slice(None), slice(2, 4), slice(4, 6))
    mask = np.zeros(out.shape, dtype=bool)
    mask[block] = True
    if np.isnan(special):
        assert np.isnan(out[mask]).all()
    else:
        # Exactly one contribution per output position: special * w[0, co, ki, kj].
        expected = special * w[0] + b[:, None, None]
        np.testing.assert_array_equal(out[block], expected)
    assert np.isfinite(out[~mask]).all()
    finite = x.copy()
    finite[0, 0, 1, 2] = 0.0
    ref = conv_transpose_reference(finite, w, b, stride=2)
    np.testing.assert_allclose(out[~mask], ref[~mask], rtol=1e-12, atol=1e-12)


def test_nan_propagates_conv_and_stays_in_its_group(backend):
    r = rng()
    x = r.standard_normal((1, 4, 6, 6))
    w = r.uniform(0.5, 1.5, (4, 2, 2, 2))   # groups=2: output channels 0,1 read inputs 0,1
    x[0, 1, 3, 2] = np.nan                   # reaches output (1, 1) of channels 0 and 1 only
    out = stc.conv2d(x, w, stride=2, groups=2, backend=backend)
    assert out.shape == (1, 4, 3, 3)
    mask = np.zeros(out.shape, dtype=bool)
    mask[0, :2, 1, 1] = True
    assert np.isnan(out[mask]).all()
    assert np.isfinite(out[~mask]).all()


def test_nan_in_weight_and_inf_in_bias(backend):
    r = rng()
    x = r.standard_normal((1, 1, 3, 3))
    w = r.uniform(0.5, 1.5, (1, 2, 2, 2))
    w[0, 0, 0, 1] = np.nan   # output channel 0, tap (0, 1): even rows, odd columns
    b = np.array([0.0, np.inf])
    out = stc.conv_transpose2d(x, w, b, stride=2, backend=backend)
    nan_mask = np.zeros(out.shape, dtype=bool)
    nan_mask[0, 0, 0::2, 1::2] = True
    assert np.isnan(out[nan_mask]).all()
    assert np.isfinite(out[0, 0][~nan_mask[0, 0]]).all()
    assert (out[0, 1] == np.inf).all()


def test_zero_times_inf_is_nan_where_the_kernel_reaches():
    # IEEE: 0 * inf = nan.  A zero weight tap still multiplies the inf input.
    x = np.array([[[1.0, np.inf, 1.0]]])
    w = np.array([[[0.0, 1.0]]])
    out = stc.conv_transpose1d(x, w, stride=2)   # positions 2i + t
    assert out.shape == (1, 1, 6)
    assert np.isnan(out[0, 0, 2])
    assert out[0, 0, 3] == np.inf
    np.testing.assert_array_equal(out[0, 0, [0, 1, 4, 5]], [0.0, 1.0, 0.0, 1.0])


# ---------------------------------------------------------------------------
# The non-finite rule: padding is never multiplied, on every backend and algorithm.

def _same_specials(got, want, what):
    """NaN where ``want`` is NaN, the same infinities, finite values close."""
    assert got.shape == want.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN at {what}")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"+inf at {what}")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"-inf at {what}")
    finite = np.isfinite(want)
    scale = max(1.0, float(np.abs(want[finite]).max(initial=0.0)))
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=1e-9 * scale,
                               err_msg=what)


def test_nan_weight_meeting_padding_issue_reproducer():
    # The rule: out[0] = nan*padding (nothing) + 1*1 + 1*1 = 2.
    x, w = np.ones((1, 1, 3)), np.array([[[np.nan, 1.0, 1.0]]])
    want = np.array([[[2.0, np.nan, np.nan]]])
    for backend in BACKENDS:
        np.testing.assert_array_equal(stc.conv(x, w, padding=1, backend=backend), want)
    # 16 channel pairs: the smallest group "auto" may run as GEMM; every algorithm forced.
    x16, w16 = np.ones((1, 4, 3)), np.ones((4, 4, 3))
    w16[:, :, 0] = np.nan
    want16 = stc.conv(x16, w16, padding=1, backend="sparse")
    assert np.isfinite(want16[..., 0]).all() and np.isnan(want16[..., 1:]).all()
    for name in _compiled.ALGORITHMS:
        with forced_algorithm(name):
            for backend in ("auto", "direct"):
                np.testing.assert_array_equal(stc.conv(x16, w16, padding=1, backend=backend),
                                              want16)


@pytest.mark.parametrize("x_shape, w_shape, padding, groups", [
    ((2, 4, 6, 7), (4, 1, 5, 5), 1, 4),         # depthwise 5x5
    ((1, 1, 5, 6, 4), (1, 4, 3, 3, 3), 0, 1),   # one input channel, 3-D
])
def test_non_finite_rule_when_a_transposed_call_runs_as_a_convolution(
        x_shape, w_shape, padding, groups):
    # A stride-1 direct transposed convolution runs as the convolution it equals,
    # whose padding (kernel reach minus the crop) the kernels may multiply: a
    # non-finite weight must send the call to the exact path, as for a convolution.
    r = np.random.default_rng(0)
    x, w = r.standard_normal(x_shape), r.standard_normal(w_shape)
    plan_kwargs = dict(padding=padding, groups=groups)
    executor = _compiled.Executor(_transposed_plan(x, w, padding, groups), "direct")
    assert executor.kernel_plan is not executor.plan  # the gather form is in use
    w.reshape(-1)[::7] = np.nan
    want = stc.conv_transpose(x, w, backend="sparse", **plan_kwargs)
    assert np.isfinite(want).any() and np.isnan(want).any()
    _same_specials(stc.conv_transpose(x, w, backend="direct", **plan_kwargs), want, "direct")


def _transposed_plan(x, w, padding, groups):
    return make_plan(True, None, x.shape, x.dtype, w.shape, w.dtype, None, None, 1, padding,
                     0, groups, 1, None)


@settings(max_examples=60, deadline=None)
@given(cfg=hyp.one_of(conv_configs(transposed=True), conv_configs(transposed=False)),
       special=hyp.sampled_from([np.nan, np.inf, -np.inf]),
       where=hyp.sampled_from(["weight", "input", "both"]),
       algorithm=hyp.sampled_from(sorted(_compiled.ALGORITHMS)))
def test_non_finite_rule_every_backend_and_algorithm(cfg, special, where, algorithm):
    x, w, b = cfg.arrays()
    r = np.random.default_rng(cfg.seed)
    for name, array in (("weight", w), ("input", x)):
        if where in (name, "both"):
            array[r.random(array.shape) < 0.3] = special
    function = stc.conv_transpose if cfg.transposed else stc.conv
    backward = stc.conv_transpose_backward if cfg.transposed else stc.conv_backward
    kw = cfg.kwargs()
    want = function(x, w, b, backend="sparse", **kw)   # the matrix: never stores padding
    g = r.standard_normal(want.shape)
    g[r.random(g.shape) < 0.2] = special
    want_grads = backward(g, x, w, backend="sparse", **kw)
    with forced_algorithm(algorithm):
        for backend in ("auto", "direct"):
            _same_specials(function(x, w, b, backend=backend, **kw), want,
                           f"{backend}/{algorithm} {cfg}")
            grads = backward(g, x, w, backend=backend, **kw)
            for label, got, expected in zip(("input", "weight", "bias"), grads, want_grads):
                _same_specials(got, expected, f"grad {label} {backend}/{algorithm} {cfg}")


# ---------------------------------------------------------------------------
# Odd arguments: integer-likes work, everything else gets an error naming it.

X1, W1 = np.ones((1, 1, 2)), np.ones((1, 1, 2))


@pytest.mark.parametrize("call", [
    lambda: stc.conv(X1, W1, stride=2**63),
    lambda: stc.conv(X1, W1, stride=2**63, backend="sparse"),
    lambda: stc.conv_transpose(X1, W1, dilation=2**62),
    lambda: stc.conv(X1, W1, padding=((0, 2**63),)),
    lambda: stc.conv_backward(np.ones((1, 1, 1)), X1, W1, stride=2**63),
    lambda: stc.contributions(np.ones(2), np.ones(2), stride=2**63),
    lambda: stc.conv_output_size(2**63, 3),
    lambda: stc.conv_matrix((1, 2), W1, stride=(2**64,)),
], ids=["conv", "sparse", "dilation", "padding", "backward", "contributions", "size", "matrix"])
def test_values_beyond_64_bit_indices_are_value_errors(call):
    with pytest.raises(ValueError, match=r"stride|dilation|padding|input_size|2\*\*62"):
        call()


@pytest.mark.parametrize("x_shape, w_shape, stride, padding", [
    ((1, 21, 16, 16), (21, 21, 64, 64), 32, 16),      # FCN-32s: big GEMM columns
    ((8, 512, 256), (512, 256, 16), 8, 4),            # MelGAN
    ((2, 64, 12, 16, 12), (64, 32, 3, 3, 3), 2, 1),   # V-Net
])
def test_the_compiled_kernels_serve_real_layers(x_shape, w_shape, stride, padding):
    """The exact NumPy path is for workspaces that cannot exist, not for big layers."""
    from sparsetconv import functional

    x, w = np.empty(x_shape, np.float32), np.empty(w_shape, np.float32)
    with stc.threads(64):  # more threads than CPUs: still the kernels
        call = functional._prepare(True, None, x, w, None, stride, padding, 0, 1, 1, None,
                                   "auto")
    assert isinstance(call, _compiled.Executor), call


def test_huge_strides_that_fit_are_computed():
    # One output position: the compiled workspace would scale with the stride, so an
    # exact path serves it.
    got = stc.conv(X1, W1, stride=2**62 - 1)
    np.testing.assert_array_equal(got, [[[2.0]]])


@pytest.mark.parametrize("call, what", [
    (lambda: stc.conv_transpose(X1, W1, stride=10**12), "output of shape (1, 1, 1000000000002)"),
    (lambda: stc.conv_transpose(X1, W1, stride=10**12, backend="sparse"), "output of shape"),
    (lambda: stc.conv_transpose_matrix((1, 2), W1, stride=10**12), "sparse matrix of shape"),
    (lambda: stc.contributions(np.ones(2), np.ones(2), stride=10**12), "contributions of shape"),
])
def test_results_too_big_to_allocate_say_what_they_need(call, what):
    with pytest.raises(MemoryError, match=re.escape(what) + r".* needs [0-9.]+ [KMGTPE]iB"):
        call()


def test_scalar_output_size_for_1d():
    want = stc.conv_transpose(X1, W1, stride=3, output_padding=1)
    for size in (6, np.int64(6), np.array(6), (6,), [1, 1, 6]):
        np.testing.assert_array_equal(stc.conv_transpose(X1, W1, stride=3, output_size=size),
                                      want)


def test_integer_likes_are_accepted_everywhere():
    x5 = np.ones((1, 1, 5))
    want = stc.conv(x5, W1, stride=2, padding=1)
    for stride in (np.array(2), np.int32(2), (np.array(2),), np.array([2])):
        for padding in (np.array(1), (np.array(1),), ((np.int8(1), np.array(1)),)):
            np.testing.assert_array_equal(stc.conv(x5, W1, stride=stride, padding=padding),
                                          want)
    assert stc.conv_output_size(np.array([5, 6]), np.int64(3)) == (3, 4)
    assert stc.conv_matrix((1, 4), W1, max_nnz=np.int64(10)).shape == (3, 4)


@pytest.mark.parametrize("call, error, name", [
    (lambda: stc.conv_output_size(b"12", 3), TypeError, "input_size"),
    (lambda: stc.conv_output_size("12", 3), TypeError, "input_size"),
    (lambda: stc.conv(X1, W1, stride=2.0), TypeError, "stride"),
    (lambda: stc.conv(X1, W1, stride=True), TypeError, "stride"),
    (lambda: stc.conv(X1, W1, stride=np.array([True])), TypeError, "stride"),
    (lambda: stc.conv(X1, W1, stride="2"), TypeError, "stride"),
    (lambda: stc.conv(X1, W1, padding=b"same"), TypeError, "padding"),
    (lambda: stc.conv(X1, W1, padding=np.array([[1, 2, 3]])), ValueError, "padding"),
    (lambda: stc.conv(X1, W1, groups=np.array([1])), TypeError, "groups"),
    (lambda: stc.conv_transpose(X1, W1, output_size=2.5), TypeError, "output_size"),
    (lambda: stc.conv_transpose(X1, W1, output_size="3"), TypeError, "output_size"),
    (lambda: stc.conv_matrix((1, 4), W1, max_nnz="10"), TypeError, "max_nnz"),
    (lambda: stc.conv_matrix((1, 4), W1, max_nnz=True), TypeError, "max_nnz"),
    (lambda: stc.conv_matrix((1, 4), W1, max_nnz=-1), ValueError, "max_nnz"),
    (lambda: stc.conv_matrix(4, W1), ValueError, "input_shape"),
    (lambda: stc.conv_matrix("14", W1), TypeError, "input_shape"),
    (lambda: stc.Conv2d(2, 2, 0), ValueError, "kernel_size"),
    (lambda: stc.Conv2d(2, 2, -1), ValueError, "kernel_size"),
    (lambda: stc.Conv2d(2, 2, 3, stride=0), ValueError, "stride"),
    (lambda: stc.Conv2d(2, 2, 3, padding=-1), ValueError, "padding"),
    (lambda: stc.ConvTranspose1d(2, 2, 3, stride=2, output_padding=2), ValueError,
     "output_padding"),
    (lambda: stc.conv(np.array([["a", "b"]]), W1), TypeError, "input"),
    (lambda: stc.conv(np.ones((1, 2, 3)).astype(str), W1), TypeError, "input"),
    (lambda: stc.conv(X1, W1.astype(object)), TypeError, "weight"),
    # a ragged list: NumPy >= 1.24 refuses it (ValueError), 1.23 makes an object
    # array (refused as a dtype, TypeError); either way the error names "input"
    (lambda: stc.conv([[[1.0, 2.0], [1.0]]], W1), (ValueError, TypeError), "input"),
    (lambda: stc.contributions(np.array(["a", "b"]), np.ones(2)), TypeError, "input"),
    (lambda: stc.output_terms(np.ones(2), np.ones(2), 1.5), TypeError, "index"),
    (lambda: stc.output_terms(np.ones(2), np.ones(2), True), TypeError, "index"),
    (lambda: stc.output_terms(np.ones(2), np.ones(2), "0"), TypeError, "index"),
    (lambda: stc.output_terms(np.ones(2), np.ones(2), (0, 0)), ValueError, "index"),
    (lambda: stc.conv_backward(np.ones((1, 1, 1)).astype(complex), X1, W1), TypeError,
     "grad_output"),
    (lambda: stc.set_num_threads(10**6), ValueError, "n"),
])
def test_odd_arguments_name_themselves(call, error, name):
    with pytest.raises(error, match=name):
        call()


# ---------------------------------------------------------------------------
# Errors that say how to fix.

def test_channels_last_input_suggests_moveaxis():
    x = np.ones((2, 7, 9, 4))                       # (N, H, W, C) with C = 4
    w = np.ones((5, 4, 3, 3))
    with pytest.raises(ValueError, match=re.escape("np.moveaxis(input, -1, 1)")):
        stc.conv(x, w)
    fixed = stc.conv(np.moveaxis(x, -1, 1), w)
    assert fixed.shape == (2, 5, 5, 7)
    with pytest.raises(ValueError, match=re.escape("np.moveaxis(input, -1, 0)")):
        stc.conv_transpose(np.ones((7, 9, 3)), np.ones((3, 2, 3, 3)))


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_convolution_layout_weight_in_conv_transpose_suggests_the_fix(groups):
    r = rng()
    c_in, c_out = 2 * groups, 3 * groups
    x = r.standard_normal((2, c_in, 5, 5))
    conv_layout = r.standard_normal((c_out, c_in // groups, 3, 3))
    with pytest.raises(ValueError, match="convolution's") as info:
        stc.conv_transpose(x, conv_layout, groups=groups)
    fix = str(info.value).rsplit(": ", 1)[1].split(";")[0]
    weight = eval(fix, {"weight": conv_layout})      # the suggested expression, as given
    assert weight.shape == (c_in, c_out // groups, 3, 3)
    # It is the adjoint's weight: the transposed convolution with it is the matrix
    # transpose of the convolution with the original weight, group blocks included.
    a = stc.conv_matrix((c_in, 5, 5), weight.reshape(groups, c_in // groups, c_out // groups,
                                                     3, 3).swapaxes(1, 2).reshape(
                                                         c_out, c_in // groups, 3, 3),
                        groups=groups)
    b = stc.conv_matrix((c_in, 5, 5), conv_layout, groups=groups)
    assert (a != b).nnz == 0
    assert stc.conv_transpose(x, weight, groups=groups).shape[1] == c_out


def test_transposed_layout_weight_in_conv_suggests_swapaxes():
    with pytest.raises(ValueError, match=re.escape("weight.swapaxes(0, 1)")):
        stc.conv(np.ones((2, 5, 9, 9)), np.ones((5, 3, 3, 3)))


def test_4d_input_with_5d_weight_says_it_was_read_unbatched():
    with pytest.raises(ValueError, match="unbatched") as info:
        stc.conv(np.ones((2, 3, 9, 9)), np.ones((5, 3, 3, 3, 3)))
    assert "4-D weight" in str(info.value)
    # When the channels happen to fit, the reading is the documented one: one sample.
    out = stc.conv(np.ones((3, 4, 9, 9)), np.ones((5, 3, 3, 3, 3)))
    assert out.shape == (5, 2, 7, 7)
