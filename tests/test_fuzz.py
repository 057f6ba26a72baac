"""Adversarial arguments at every public function: a result, or an error naming them.

Each example starts from a valid call and replaces one argument by an odd value --
huge, negative or zero numbers, 0-d arrays, NumPy scalars, bools, floats, strings,
bytes, None, wrong tuple lengths, broadcast and negative-stride arrays, big-endian and
odd dtypes, empty arrays.  The call must return, or raise ``ValueError``/``TypeError``
whose message names the replaced argument, or ``MemoryError`` saying what it needs; no
other exception, no crash, and the arrays passed in are left unchanged.

Huge values start at 2**36, so a valid call never allocates more than a few MiB: a
result of 2**36 elements is refused by the memory check before anything is allocated.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsetconv as stc

HUGE = [2**36, 2**40, 2**62 - 1, 2**62, 2**63, 2**64, -2**63]
SMALL = [-2, -1, 0, 1, 2, 3]

integers = st.sampled_from(SMALL + HUGE)
odd_scalars = st.one_of(
    integers,
    integers.filter(lambda v: -2**63 <= v < 2**63).map(np.int64),
    st.sampled_from(SMALL).map(np.int8),
    st.sampled_from([0, 1, 2, 3]).map(np.uint16),
    integers.filter(lambda v: abs(v) < 2**63).map(np.array),   # 0-d arrays
    st.sampled_from([True, False, np.True_, np.array(True)]),
    st.sampled_from([2.0, 0.5, -1.0, float("nan"), float("inf"), np.float32(2.0)]),
    st.sampled_from(["2", "same", "valid", "full", "", b"1", b"same", None, object(), 1j]),
)
odd_values = st.one_of(
    odd_scalars,
    st.lists(odd_scalars, min_size=0, max_size=4).map(tuple),
    st.lists(st.tuples(odd_scalars, odd_scalars), min_size=1, max_size=3).map(tuple),
    st.lists(st.sampled_from(SMALL + HUGE[:2]), min_size=1, max_size=3).map(np.array),
    st.just(np.ones((2, 2), dtype=np.int64)),
    st.just(range(1, 3)),
)

DTYPES = [">f8", "<f4", ">f4", "f2", "i1", ">i8", "u8", "?", "c16", "O", "U3", "S2",
          "M8[s]", "m8[s]", "V8", "g"]


@st.composite
def odd_arrays(draw, shape):
    """An array of about ``shape`` in an odd form, or something that is not an array."""
    kind = draw(st.sampled_from(["dtype", "broadcast", "reversed", "empty", "0-d", "rank",
                                 "list", "ragged", "scalar", "none", "readonly"]))
    base = np.arange(1, int(np.prod(shape)) + 1, dtype=np.float64).reshape(shape) / 7
    if kind == "dtype":
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return base.astype(dtype)
            except (TypeError, ValueError):
                return np.zeros(shape, dtype=dtype)
    if kind == "broadcast":
        return np.broadcast_to(base[..., :1], shape)
    if kind == "reversed":
        return base[..., ::-1]
    if kind == "empty":
        return np.zeros(shape[:-1] + (0,))
    if kind == "0-d":
        return np.array(1.5)
    if kind == "rank":
        return base.reshape(shape + (1,)) if draw(st.booleans()) else base.reshape(-1)
    if kind == "list":
        return base.tolist()
    if kind == "ragged":
        return [[1.0, 2.0], [3.0]]
    if kind == "scalar":
        return draw(st.sampled_from([1.0, "abc", b"x", np.float64(2.0)]))
    if kind == "readonly":
        base.setflags(write=False)
        return base
    return None


X = np.ones((1, 2, 4))          # (N, C, L)
W = np.ones((2, 3, 2))          # transposed layout (C_in, C_out, k); conv layout for 3 -> 2
XC = np.ones((1, 3, 5))         # conv input with 3 channels for W


def _spec():
    """(function, valid keyword arguments, the names to replace, array argument shapes)."""
    hyper = ["stride", "padding", "dilation", "groups"]
    return [
        (stc.conv_transpose, dict(input=X, weight=W, bias=np.ones(3), stride=2, padding=1,
                                  output_padding=1, groups=1, dilation=1, backend="auto"),
         hyper + ["output_padding", "input", "weight", "bias", "backend", "output_size"]),
        (stc.conv_transpose1d, dict(input=X, weight=W, stride=2, backend="sparse"),
         ["stride", "padding", "input", "weight", "output_size"]),
        (stc.conv, dict(input=XC, weight=W, bias=np.ones(2), stride=2, padding=1,
                        dilation=1, groups=1, backend="direct"),
         hyper + ["input", "weight", "bias", "backend"]),
        (stc.conv2d, dict(input=np.ones((3, 4, 4)), weight=np.ones((2, 3, 2, 2)),
                          padding="same"),
         ["stride", "padding", "dilation", "input", "weight"]),
        (stc.conv_transpose_backward, dict(grad_output=np.ones((1, 3, 7)), input=X,
                                           weight=W, stride=2, padding=1, output_padding=1),
         hyper + ["output_padding", "grad_output", "input", "weight", "needs", "backend"]),
        (stc.conv_backward, dict(grad_output=np.ones((1, 2, 3)), input=XC, weight=W,
                                 stride=2, padding=1),
         hyper + ["grad_output", "input", "weight", "needs", "backend"]),
        (stc.conv_matrix, dict(input_shape=(3, 5), weight=W, stride=2, padding=1),
         hyper + ["input_shape", "weight", "max_nnz"]),
        (stc.conv_transpose_matrix, dict(input_shape=(2, 4), weight=W, stride=2,
                                         output_padding=1),
         hyper + ["output_padding", "input_shape", "weight", "max_nnz"]),
        (stc.conv_output_size, dict(input_size=(5, 6), kernel_size=3, stride=2, padding=1),
         ["input_size", "kernel_size", "stride", "padding", "dilation"]),
        (stc.conv_transpose_output_size, dict(input_size=4, kernel_size=3, stride=2),
         ["input_size", "kernel_size", "stride", "padding", "output_padding", "dilation"]),
        (stc.output_padding_for, dict(input_size=4, output_size=8, kernel_size=3, stride=2,
                                      padding=1),
         ["input_size", "output_size", "kernel_size", "stride", "padding", "dilation"]),
        (stc.inverse_conv_params, dict(conv_input_size=(7,), kernel_size=3, stride=2),
         ["conv_input_size", "kernel_size", "stride", "padding", "dilation"]),
        (stc.explain, dict(input_size=(2, 3), kernel_size=2, stride=2, padding=1),
         ["input_size", "kernel_size", "stride", "padding", "output_padding", "dilation"]),
        (stc.contributions, dict(input=np.ones((2, 2)), weight=np.ones((2, 2)), stride=2),
         ["input", "weight", "stride", "padding", "output_padding", "dilation"]),
        (stc.output_terms, dict(input=np.ones(3), weight=np.ones(2), index=2, stride=2),
         ["input", "weight", "index", "stride", "padding", "output_padding", "dilation"]),
        (stc.Conv2d, dict(in_channels=2, out_channels=2, kernel_size=3, stride=1, rng=0),
         ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
          "groups"]),
        (stc.ConvTranspose1d, dict(in_channels=2, out_channels=4, kernel_size=3, stride=2,
                                   rng=0),
         ["in_channels", "out_channels", "kernel_size", "stride", "padding",
          "output_padding", "dilation", "groups"]),
        (stc.set_num_threads, dict(n=1), ["n"]),
    ]


SPEC = _spec()
ARRAY_ARGUMENTS = {"input", "weight", "bias", "grad_output"}
# Errors about a convolution's input size call it input_size, whatever the parameter.
ALIASES = {"conv_input_size": ("input_size",)}


@pytest.mark.parametrize("function, kwargs", [(f, k) for f, k, _ in SPEC],
                         ids=[f.__name__ for f, _, _ in SPEC])
def test_the_starting_calls_are_valid(function, kwargs):
    previous = stc.get_num_threads()
    function(**kwargs)
    stc.set_num_threads(previous)


def _snapshot(kwargs):
    return {k: np.array(v, copy=True) for k, v in kwargs.items()
            if isinstance(v, np.ndarray) and v.dtype != object}


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_adversarial_arguments(data):
    function, base, names = data.draw(st.sampled_from(SPEC), label="function")
    name = data.draw(st.sampled_from(names), label="argument")
    kwargs = dict(base)
    if name in ARRAY_ARGUMENTS:
        value = data.draw(odd_arrays(np.shape(base.get(name, np.ones(3)))), label=name)
    else:
        value = data.draw(odd_values, label=name)
    kwargs[name] = value
    before = _snapshot(kwargs)
    previous_threads = stc.get_num_threads()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # NumPy's casts of odd dtypes may warn
            function(**kwargs)
    except (ValueError, TypeError) as error:
        names = (name,) + ALIASES.get(name, ())
        assert any(n in str(error) for n in names), (
            f"{type(error).__name__} does not name {name!r}: {error}")
    except MemoryError as error:
        assert "needs" in str(error) or "allocate" in str(error), error
    finally:
        if function is stc.set_num_threads:
            stc.set_num_threads(previous_threads)
    for key, array in before.items():
        np.testing.assert_array_equal(kwargs[key], array, err_msg=f"{key} was modified")


@pytest.mark.parametrize("value", [0, -1, 2**63, 1.5, True, "2", None, 10**6])
def test_threads_context_refuses_odd_counts(value):
    before = stc.get_num_threads()
    with pytest.raises((ValueError, TypeError), match="n"):
        with stc.threads(value):
            pass
    assert stc.get_num_threads() == before
