"""Shape arithmetic, checked against the formulas written out here."""

import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import ceil_div, conv_size, transposed_size


# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Strategies.

@st.composite
def configs(draw, max_size=12, asymmetric=None):
    """Per-axis sizes and hyper-parameters, plus the padding argument in user form."""
    rank = draw(st.integers(1, 3))
    axes = st.lists(st.integers(1, 4), min_size=rank, max_size=rank)
    kernel = draw(axes)
    stride = draw(axes)
    dilation = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    sizes = draw(st.lists(st.integers(1, max_size), min_size=rank, max_size=rank))
    if asymmetric is None:
        asymmetric = draw(st.booleans())
    if asymmetric:
        pairs = [tuple(draw(st.lists(st.integers(0, 4), min_size=2, max_size=2)))
                 for _ in range(rank)]
        padding = tuple(pairs)
    else:
        if draw(st.booleans()):
            p = draw(st.integers(0, 4))
            pairs, padding = [(p, p)] * rank, p
        else:
            ps = draw(st.lists(st.integers(0, 4), min_size=rank, max_size=rank))
            pairs, padding = [(p, p) for p in ps], tuple(ps)
    # Hyper-parameters: a bare int when all axes agree (sometimes), else a tuple.
    def arg(values):
        if len(set(values)) == 1 and draw(st.booleans()):
            return values[0]
        return tuple(values)
    return dict(
        rank=rank, sizes=tuple(sizes), kernel=tuple(kernel), stride=tuple(stride),
        dilation=tuple(dilation), pairs=pairs, padding=padding,
        kernel_arg=arg(kernel), stride_arg=arg(stride), dilation_arg=arg(dilation),
    )


# ---------------------------------------------------------------------------
# The forum question about padding that shrinks, and the 28x28 round trip.

def test_seed000_padding_shrinks_transposed_output():
    assert stc.conv_transpose_output_size((2, 2), 2, stride=2, padding=1) == (2, 2)
    assert stc.conv_transpose_output_size((2, 2), 2, stride=2, padding=0) == (4, 4)


def test_seed000_stride2_round_trip_needs_output_padding():
    small = stc.conv_output_size((28, 28), 5, stride=2)
    assert small == (12, 12)
    # Same k/s/p, no output_padding: 27x27, not 28x28.
    assert stc.conv_transpose_output_size(small, 5, stride=2) == (27, 27)
    params = stc.inverse_conv_params((28, 28), 5, stride=2)
    assert tuple(params["output_padding"]) == (1, 1)
    assert stc.conv_transpose_output_size(small, **params) == (28, 28)


def test_seed000_stride1_round_trip_is_exact():
    small = stc.conv_output_size((28, 28), 5, stride=1)
    assert small == (24, 24)
    assert stc.conv_transpose_output_size(small, 5, stride=1) == (28, 28)
    params = stc.inverse_conv_params((28, 28), 5, stride=1)
    assert tuple(params["output_padding"]) == (0, 0)
    assert stc.conv_transpose_output_size(small, **params) == (28, 28)


# ---------------------------------------------------------------------------
# The 3-D decoder question: ConvTranspose3d(128, 256, 3, 2, padding=1, output_padding=1).

def test_seed001_3d_output_size():
    assert stc.conv_transpose_output_size(
        (12, 16, 12), 3, stride=2, padding=1, output_padding=1) == (24, 32, 24)
    assert stc.conv_transpose_output_size(
        (12, 16, 12), 3, stride=2, padding=1) == (23, 31, 23)


def test_seed001_output_padding_for():
    assert stc.output_padding_for((12, 16, 12), (24, 32, 24), 3, 2, 1) == (1, 1, 1)
    assert stc.output_padding_for((12, 16, 12), (23, 31, 23), 3, 2, 1) == (0, 0, 0)
    assert stc.output_padding_for((12, 16, 12), (24, 31, 23), 3, 2, 1) == (1, 0, 0)


def test_seed001_inverse_of_the_conv():
    # The Conv3d(3, stride 2, padding 1) that maps 24x32x24 to 12x16x12 is undone by it.
    assert stc.conv_output_size((24, 32, 24), 3, stride=2, padding=1) == (12, 16, 12)
    params = stc.inverse_conv_params((24, 32, 24), 3, stride=2, padding=1)
    assert tuple(params["output_padding"]) == (1, 1, 1)
    assert stc.conv_transpose_output_size((12, 16, 12), **params) == (24, 32, 24)


# ---------------------------------------------------------------------------
# Argument forms.

def test_bare_int_input_size_is_1d_and_results_are_tuples():
    assert stc.conv_transpose_output_size(2, 2, stride=2) == (4,)
    assert stc.conv_output_size(7, 3, stride=2) == (3,)
    assert stc.output_padding_for(3, 7, 3, stride=2) == (0,)
    assert stc.output_padding_for(3, 8, 3, stride=2) == (1,)
    for result in (stc.conv_transpose_output_size(2, 2), stc.conv_output_size(7, 3),
                   stc.output_padding_for(3, 5, 3)):
        assert isinstance(result, tuple)
        assert all(type(v) is int for v in result)
    params = stc.inverse_conv_params(8, 3, stride=2)
    assert tuple(params["output_padding"]) == (1,)
    assert stc.conv_transpose_output_size(stc.conv_output_size(8, 3, stride=2), **params) == (8,)


def test_per_axis_hyper_parameters():
    sizes, k, s, p, op, d = (2, 3, 4), (2, 3, 1), (2, 1, 3), (0, 1, 0), (1, 0, 2), (1, 2, 1)
    expected = tuple(transposed_size(*a) for a in zip(sizes, k, s, p, p, op, d))
    assert expected == (5, 5, 12)
    assert stc.conv_transpose_output_size(sizes, k, stride=s, padding=p,
                                          output_padding=op, dilation=d) == expected
    expected_conv = tuple(conv_size(*a) for a in zip((9, 10, 11), k, s, p, p, d))
    assert stc.conv_output_size((9, 10, 11), k, stride=s, padding=p, dilation=d) == expected_conv


def test_lists_and_numpy_ints_are_accepted():
    assert stc.conv_transpose_output_size([3, 4], [2, 3], stride=[2, 1]) == (6, 6)
    assert stc.conv_transpose_output_size(
        (np.int64(3),), np.int32(2), stride=np.int64(2)) == (6,)


def test_asymmetric_padding_pairs():
    # (begin, end) per axis: each side removes its own amount.
    assert stc.conv_transpose_output_size((4, 4), 3, stride=2, padding=((0, 1), (2, 0))) \
        == (transposed_size(4, 3, 2, 0, 1, 0, 1), transposed_size(4, 3, 2, 2, 0, 0, 1))
    assert stc.conv_output_size((8,), 3, stride=2, padding=((1, 0),)) == (4,)
    assert stc.conv_output_size((8,), 3, stride=2, padding=((0, 2),)) == (4,)
    assert stc.conv_output_size((8,), 3, stride=1, padding=((1, 2),)) == (9,)


def test_valid_padding_string():
    assert stc.conv_output_size((7, 8), 3, stride=2, padding="valid") == (3, 3)
    assert stc.conv_transpose_output_size((3, 3), 3, stride=2, padding="valid") == (7, 7)


def test_same_padding_examples():
    assert stc.conv_output_size(7, 3, stride=2, padding="same") == (4,)
    assert stc.conv_output_size((28, 28), 5, stride=1, padding="same") == (28, 28)
    assert stc.conv_transpose_output_size((7, 5), 3, stride=2, padding="same") == (14, 10)
    # Negative crop (kernel 1, stride 3): the output is extended at the end.
    assert stc.conv_transpose_output_size(4, 1, stride=3, padding="same") == (12,)


def test_output_padding_up_to_dilation_minus_one_when_dilation_exceeds_stride():
    # Beyond PyTorch: 0 <= output_padding < max(stride, dilation).
    for op in range(3):
        assert stc.conv_transpose_output_size(3, 3, stride=1, output_padding=op,
                                              dilation=3) == (transposed_size(3, 3, 1, 0, 0, op, 3),)
        assert stc.output_padding_for(3, transposed_size(3, 3, 1, 0, 0, op, 3), 3,
                                      stride=1, dilation=3) == (op,)
    with pytest.raises(ValueError, match="output_padding"):
        stc.conv_transpose_output_size(3, 3, stride=1, output_padding=3, dilation=3)
    # Stride 2, dilation 4: up to 3.
    assert stc.conv_transpose_output_size((3, 3), 2, stride=2, output_padding=(3, 0),
                                          dilation=(4, 1)) == (12, 6)


# ---------------------------------------------------------------------------
# Properties.

@settings(max_examples=200, deadline=None)
@given(configs(), st.data())
def test_transposed_formula(cfg, data):
    op = tuple(data.draw(st.integers(0, max(s, d) - 1))
               for s, d in zip(cfg["stride"], cfg["dilation"]))
    expected = tuple(transposed_size(n, k, s, pb, pe, o, d) for n, k, s, (pb, pe), o, d in zip(
        cfg["sizes"], cfg["kernel"], cfg["stride"], cfg["pairs"], op, cfg["dilation"]))
    assume(min(expected) >= 1)
    got = stc.conv_transpose_output_size(cfg["sizes"], cfg["kernel_arg"], cfg["stride_arg"],
                                         cfg["padding"], op, cfg["dilation_arg"])
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(configs())
def test_conv_formula(cfg):
    expected = tuple(conv_size(n, k, s, pb, pe, d) for n, k, s, (pb, pe), d in zip(
        cfg["sizes"], cfg["kernel"], cfg["stride"], cfg["pairs"], cfg["dilation"]))
    # The padded input must hold the dilated kernel.
    assume(all(n + pb + pe >= d * (k - 1) + 1 for n, k, (pb, pe), d in zip(
        cfg["sizes"], cfg["kernel"], cfg["pairs"], cfg["dilation"])))
    got = stc.conv_output_size(cfg["sizes"], cfg["kernel_arg"], cfg["stride_arg"],
                               cfg["padding"], cfg["dilation_arg"])
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(configs())
def test_inverse_conv_params_restores_the_conv_input(cfg):
    assume(all(n + pb + pe >= d * (k - 1) + 1 for n, k, (pb, pe), d in zip(
        cfg["sizes"], cfg["kernel"], cfg["pairs"], cfg["dilation"])))
    args = (cfg["kernel_arg"], cfg["stride_arg"], cfg["padding"], cfg["dilation_arg"])
    small = stc.conv_output_size(cfg["sizes"], *args)
    params = stc.inverse_conv_params(cfg["sizes"], *args)
    assert set(params) == {"kernel_size", "stride", "padding", "output_padding", "dilation"}
    assert tuple(params["kernel_size"]) == cfg["kernel"]
    assert tuple(params["stride"]) == cfg["stride"]
    assert tuple(params["dilation"]) == cfg["dilation"]
    op = tuple(params["output_padding"])
    for n, k, s, (pb, pe), d, o, m in zip(cfg["sizes"], cfg["kernel"], cfg["stride"],
                                          cfg["pairs"], cfg["dilation"], op, small):
        assert 0 <= o < max(s, d)
        # Written out: the transposed formula with this output_padding gives n back.
        assert transposed_size(m, k, s, pb, pe, o, d) == n
    assert stc.conv_transpose_output_size(small, **params) == cfg["sizes"]


@settings(max_examples=200, deadline=None)
@given(configs(max_size=8))
def test_output_padding_for_inverts_every_valid_output_padding(cfg):
    args = (cfg["kernel_arg"], cfg["stride_arg"], cfg["padding"])
    limits = [max(s, d) for s, d in zip(cfg["stride"], cfg["dilation"])]
    checked = 0
    for op_axis0 in range(limits[0]):
        # Every valid value on axis 0, the largest valid value elsewhere (and 0 elsewhere).
        for rest in ([lim - 1 for lim in limits[1:]], [0] * (cfg["rank"] - 1)):
            op = (op_axis0, *rest)
            sizes = tuple(transposed_size(n, k, s, pb, pe, o, d) for n, k, s, (pb, pe), o, d
                          in zip(cfg["sizes"], cfg["kernel"], cfg["stride"], cfg["pairs"],
                                 op, cfg["dilation"]))
            if min(sizes) < 1:
                continue
            out = stc.conv_transpose_output_size(cfg["sizes"], *args, op, cfg["dilation_arg"])
            assert out == sizes
            assert stc.output_padding_for(cfg["sizes"], out, *args, cfg["dilation_arg"]) == op
            checked += 1
    assume(checked)


@settings(max_examples=200, deadline=None)
@given(configs(max_size=8), st.data())
def test_output_padding_for_out_of_reach_names_the_range(cfg, data):
    axis = data.draw(st.integers(0, cfg["rank"] - 1))
    n, k, s, d = (cfg[key][axis] for key in ("sizes", "kernel", "stride", "dilation"))
    pb, pe = cfg["pairs"][axis]
    lowest = max(transposed_size(n, k, s, pb, pe, 0, d), 1)
    highest = transposed_size(n, k, s, pb, pe, max(s, d) - 1, d)
    # Every other axis gets a reachable size (its largest), so only `axis` is out of reach.
    reachable = [transposed_size(n_, k_, s_, pb_, pe_, max(s_, d_) - 1, d_)
                 for n_, k_, s_, (pb_, pe_), d_ in zip(cfg["sizes"], cfg["kernel"],
                                                       cfg["stride"], cfg["pairs"],
                                                       cfg["dilation"])]
    assume(min(reachable) >= 1)
    target = list(reachable)
    bad = data.draw(st.sampled_from([v for v in (lowest - 1, highest + 1, highest + 5)
                                     if v >= 1]))
    target[axis] = bad
    with pytest.raises(ValueError, match="output_size") as info:
        stc.output_padding_for(cfg["sizes"], tuple(target), cfg["kernel_arg"],
                               cfg["stride_arg"], cfg["padding"], cfg["dilation_arg"])
    message = str(info.value)
    assert re.search(rf"\b{lowest}\b", message), message
    assert re.search(rf"\b{highest}\b", message), message
    assert f"axis {axis}" in message, message


@settings(max_examples=200, deadline=None)
@given(configs(asymmetric=False))
def test_same_padding_rules(cfg):
    k, s, d = cfg["kernel_arg"], cfg["stride_arg"], cfg["dilation_arg"]
    sizes = cfg["sizes"]
    assert stc.conv_output_size(sizes, k, s, "same", d) == tuple(
        ceil_div(n, ss) for n, ss in zip(sizes, cfg["stride"]))
    assert stc.conv_transpose_output_size(sizes, k, s, "same", 0, d) == tuple(
        n * ss for n, ss in zip(sizes, cfg["stride"]))
    # output_padding_for agrees with the "same" rule of the transposed convolution.
    assert stc.output_padding_for(sizes, tuple(n * ss for n, ss in zip(sizes, cfg["stride"])),
                                  k, s, "same", d) == (0,) * cfg["rank"]
    # And the conv "same" output is mapped back by inverse_conv_params.
    params = stc.inverse_conv_params(sizes, k, s, "same", d)
    assert stc.conv_transpose_output_size(stc.conv_output_size(sizes, k, s, "same", d),
                                          **params) == sizes


# ---------------------------------------------------------------------------
# Validity rules: ValueError naming the argument and the axis.

@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize("bad", [0, -1])
def test_stride_and_dilation_below_one(name, bad):
    values = {"stride": (1, 1), "dilation": (1, 1)}
    values[name] = (2, bad)
    with pytest.raises(ValueError, match=name) as info:
        stc.conv_transpose_output_size((4, 4), 3, stride=values["stride"],
                                       dilation=values["dilation"])
    assert "axis 1" in str(info.value)
    assert str(bad) in str(info.value)
    with pytest.raises(ValueError, match=name) as info:
        stc.conv_output_size((9, 9), 3, stride=values["stride"], dilation=values["dilation"])
    assert "axis 1" in str(info.value)
    with pytest.raises(ValueError, match=name):
        stc.output_padding_for((4, 4), (9, 9), 3, stride=values["stride"],
                               dilation=values["dilation"])
    with pytest.raises(ValueError, match=name):
        stc.inverse_conv_params((9, 9), 3, stride=values["stride"], dilation=values["dilation"])


@pytest.mark.parametrize("bad", [0, -2])
def test_kernel_below_one(bad):
    with pytest.raises(ValueError, match="kernel_size") as info:
        stc.conv_transpose_output_size((4, 4, 4), (3, 3, bad))
    assert "axis 2" in str(info.value)
    with pytest.raises(ValueError, match="kernel_size") as info:
        stc.conv_output_size((4, 4, 4), (bad, 3, 3))
    assert "axis 0" in str(info.value)
    with pytest.raises(ValueError, match="kernel_size"):
        stc.inverse_conv_params(4, bad)


@pytest.mark.parametrize("padding", [(0, -1), (0, (0, -1)), (0, (-1, 0))])
def test_negative_padding(padding):
    with pytest.raises(ValueError, match="padding") as info:
        stc.conv_transpose_output_size((4, 4), 3, stride=2, padding=padding)
    assert "axis 1" in str(info.value)
    with pytest.raises(ValueError, match="padding") as info:
        stc.conv_output_size((8, 8), 3, padding=padding)
    assert "axis 1" in str(info.value)
    with pytest.raises(ValueError, match="padding"):
        stc.output_padding_for((4, 4), (9, 9), 3, stride=2, padding=padding)
    with pytest.raises(ValueError, match="padding"):
        stc.inverse_conv_params((8, 8), 3, padding=padding)


def test_negative_int_padding():
    with pytest.raises(ValueError, match="padding"):
        stc.conv_transpose_output_size((4, 4), 3, padding=-1)
    with pytest.raises(ValueError, match="padding"):
        stc.conv_output_size(4, 3, padding=-1)


@pytest.mark.parametrize("stride, dilation, op", [
    (2, 1, 2), (2, 1, 5), (1, 1, 1), (3, 2, 3), (1, 3, 3), (2, 4, 4), (2, 1, -1),
])
def test_output_padding_out_of_range(stride, dilation, op):
    limit = max(stride, dilation)
    with pytest.raises(ValueError, match="output_padding") as info:
        stc.conv_transpose_output_size((5, 5), 3, stride=stride, output_padding=(0, op),
                                       dilation=dilation)
    message = str(info.value)
    assert "axis 1" in message, message
    assert str(op) in message, message
    # The allowed range is stated: 0..limit-1, "0 to limit-1", or "< limit".
    allowed = (rf"0\s*(?:\.\.\.?|to|-|–|and)\s*{limit - 1}\b"
               rf"|<\s*(?:max\(stride, ?dilation\)\s*=\s*)?{limit}\b")
    assert re.search(allowed, message), message


@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (3, 1), (1, 2), (2, 3)])
def test_every_output_padding_below_max_of_stride_and_dilation_is_accepted(stride, dilation):
    for op in range(max(stride, dilation)):
        assert stc.conv_transpose_output_size(4, 3, stride=stride, output_padding=op,
                                              dilation=dilation) == \
            (transposed_size(4, 3, stride, 0, 0, op, dilation),)


def test_empty_conv_output():
    with pytest.raises(ValueError, match="axis 1") as info:
        stc.conv_output_size((9, 2), 5)
    assert re.search("input_size|kernel|padding", str(info.value))
    # Dilation makes the kernel span too large.
    with pytest.raises(ValueError, match="axis 0"):
        stc.conv_output_size((5,), 3, dilation=3)
    # Padding that rescues it.
    assert stc.conv_output_size((2,), 5, padding=((1, 2),)) == (conv_size(2, 5, 1, 1, 2, 1),)
    with pytest.raises(ValueError, match="axis 0"):
        stc.inverse_conv_params((2,), 5)


def test_empty_transposed_output():
    # (1 - 1)*1 - 1 - 1 + 0 + 0 + 1 = -1
    with pytest.raises(ValueError, match="axis 1") as info:
        stc.conv_transpose_output_size((3, 1), 1, padding=(0, 1))
    assert re.search("padding|empty", str(info.value))
    # Exactly zero: (2 - 1)*2 - 2 - 1 + 0 + 0 + 1 = 0
    with pytest.raises(ValueError, match="axis 0"):
        stc.conv_transpose_output_size(2, 1, stride=2, padding=((2, 1),))
    # One more is fine.
    assert stc.conv_transpose_output_size(2, 1, stride=2, padding=((1, 1),)) == (1,)


@pytest.mark.parametrize("bad", [0, -3])
def test_input_size_below_one(bad):
    with pytest.raises(ValueError, match="input_size"):
        stc.conv_transpose_output_size((4, bad), 3)
    with pytest.raises(ValueError, match="input_size"):
        stc.conv_output_size(bad, 1)


def test_output_padding_for_out_of_reach_example():
    # (3-1)*2 + 2 + 1 = 7 or 8 reachable with stride 2.
    with pytest.raises(ValueError, match="output_size") as info:
        stc.output_padding_for((3, 3), (7, 9), 3, stride=2)
    message = str(info.value)
    assert "axis 1" in message
    assert re.search(r"\b7\b", message) and re.search(r"\b8\b", message), message
    with pytest.raises(ValueError, match="output_size"):
        stc.output_padding_for(3, 6, 3, stride=2)
    with pytest.raises(ValueError, match="output_size"):
        stc.output_padding_for(3, 0, 3, stride=2)


def test_wrong_number_of_axes():
    with pytest.raises(ValueError, match="stride"):
        stc.conv_transpose_output_size((4, 4), 3, stride=(1, 2, 3))
    with pytest.raises(ValueError, match="kernel_size"):
        stc.conv_output_size((4, 4), (3,))
    with pytest.raises(ValueError, match="output_padding"):
        stc.conv_transpose_output_size((4, 4), 3, stride=2, output_padding=(1,))
    with pytest.raises(ValueError, match="padding"):
        stc.conv_output_size((4, 4, 4), 3, padding=(1, 1))
    with pytest.raises(ValueError, match="output_size"):
        stc.output_padding_for((4, 4), (9,), 3, stride=2)


# ---------------------------------------------------------------------------
# Non-int hyper-parameters: TypeError naming the argument.

@pytest.mark.parametrize("bad", [1.5, "x", True, None])
@pytest.mark.parametrize("name", ["kernel_size", "stride", "dilation", "output_padding"])
def test_non_int_hyper_parameter_transposed(name, bad):
    kwargs = dict(kernel_size=3, stride=2, output_padding=0, dilation=1)
    kwargs[name] = bad
    with pytest.raises(TypeError, match=name):
        stc.conv_transpose_output_size((4, 4), **kwargs)
    # Inside a per-axis tuple too.
    kwargs[name] = (1, bad)
    with pytest.raises(TypeError, match=name):
        stc.conv_transpose_output_size((4, 4), **kwargs)


@pytest.mark.parametrize("bad", [1.5, "x", True])
@pytest.mark.parametrize("name", ["kernel_size", "stride", "dilation"])
def test_non_int_hyper_parameter_conv(name, bad):
    kwargs = dict(kernel_size=3, stride=2, dilation=1)
    kwargs[name] = bad
    with pytest.raises(TypeError, match=name):
        stc.conv_output_size((9, 9), **kwargs)
    with pytest.raises(TypeError, match=name):
        stc.inverse_conv_params((9, 9), **kwargs)
    with pytest.raises(TypeError, match=name):
        stc.output_padding_for((4, 4), (9, 9), **kwargs)


@pytest.mark.parametrize("bad", [1.5, True, (1, 2.0), ((0, 1.5), 0)])
def test_non_int_padding(bad):
    with pytest.raises(TypeError, match="padding"):
        stc.conv_transpose_output_size((4, 4), 3, stride=2, padding=bad)
    with pytest.raises(TypeError, match="padding"):
        stc.conv_output_size((9, 9), 3, padding=bad)


@pytest.mark.parametrize("bad", ["full", "x", ""])
def test_unknown_padding_string(bad):
    with pytest.raises(ValueError, match="padding"):
        stc.conv_transpose_output_size((4, 4), 3, stride=2, padding=bad)
    with pytest.raises(ValueError, match="padding"):
        stc.conv_output_size((9, 9), 3, padding=bad)
    with pytest.raises(ValueError, match="padding"):
        stc.inverse_conv_params((9, 9), 3, padding=bad)


@pytest.mark.parametrize("bad", [4.0, "4", True])
def test_non_int_sizes(bad):
    with pytest.raises(TypeError, match="input_size"):
        stc.conv_transpose_output_size((4, bad), 3)
    with pytest.raises(TypeError, match="input_size"):
        stc.conv_output_size(bad, 3)
    with pytest.raises(TypeError, match="output_size"):
        stc.output_padding_for((4, 4), (9, bad), 3, stride=2)


@settings(max_examples=300, deadline=None)
@given(small=st.integers(1, 8), large=st.integers(1, 16), kernel=st.integers(1, 9),
       stride=st.integers(1, 6), dilation=st.integers(1, 4), pad_begin=st.integers(-8, 16))
def test_live_taps_span_every_tap_that_meets_the_large_side(small, large, kernel, stride,
                                                            dilation, pad_begin):
    from sparsetconv.shapes import Geometry
    geometry = Geometry(small=(small,), large=(large,), kernel=(kernel,), stride=(stride,),
                        dilation=(dilation,), pad_begin=(pad_begin,), pad_end=(0,),
                        output_padding=(0,))
    # from the definition: tap t meets position j*stride - pad_begin + t*dilation
    live = [t for t in range(kernel)
            if any(0 <= j * stride - pad_begin + t * dilation < large for j in range(small))]
    assert geometry.live_taps(0) == ((live[0], live[-1] + 1) if live else (0, 0))
