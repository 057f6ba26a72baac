"""Understanding the operation: ``explain``, ``contributions`` and the
pictures, checked against the size formulas written out here, ``tests/reference.py``
and ``stc.conv_transpose``, and against the seed questions (000, 001, 003, 004).
"""

import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import sparsetconv as stc
from conftest import (SEED_003_OUT, assert_matches, conv_configs, conv_size, explicit_padding,
                      output_spatial, transposed_size)
from reference import conv_transpose_reference

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _per_axis(value, rank):
    return (value,) * rank if isinstance(value, int) else tuple(value)


# ---------------------------------------------------------------------------
# Reading the explanation.

_ARITHMETIC = re.compile(r"^[\d\s()*+\-]+$")


def _evaluate(expression):
    """Evaluate a filled-in formula such as ``(2 - 1)*2 - 2*1 + 0 + 1``."""
    assert _ARITHMETIC.match(expression), expression
    return eval(expression, {"__builtins__": {}}, {})  # digits and + - * ( ) only


def sections(text, rank):
    """``[(axes, section_text)]`` for each "Output size (...)" section."""
    parts = re.split(r"\n(?=Output size \()", text)[1:]
    result = []
    for part in parts:
        header = re.match(r"Output size \(([^)]*)\):", part)
        assert header, part
        where = header.group(1)
        if where in ("each axis", "the axis"):
            axes = tuple(range(rank))
        else:
            found = re.fullmatch(r"ax(?:is|es) ([\d, ]+)", where)
            assert found, where
            axes = tuple(int(a) for a in re.findall(r"\d+", found.group(1)))
        result.append((axes, part))
    return result


def derivation(section):
    """``(expression, number)`` of the first ``= <numbers filled in> = N`` line."""
    match = re.search(r"^\s*= (.+) = (-?\d+)\s*$", section, re.M)
    assert match, section
    return match.group(1), int(match.group(2))


def padding_amount_lines(text):
    return [line for line in text.splitlines() if "dilation*(kernel - 1) - pad" in line]


# ---------------------------------------------------------------------------
# explain: the seed questions.

def test_explain_seed_000_derivation_with_numbers():
    text = stc.explain((2, 2), 2, stride=2, padding=1)
    assert isinstance(text, str)
    assert "(2 - 1)*2 - 2*1 + 1*(2 - 1) + 0 + 1 = 2" in text
    assert _evaluate("(2 - 1)*2 - 2*1 + 1*(2 - 1) + 0 + 1") == transposed_size(2, 2, 2, 1, 1, 0, 1)
    assert re.search(r"\b2x2\b", text)
    assert re.search(r"Output: 2x2\b", text)
    assert "output_padding" in text


def test_explain_seed_000_padding_amount_is_zero_and_dilation_one_means_no_gaps():
    text = stc.explain((2, 2), 2, stride=2, padding=1)
    amounts = padding_amount_lines(text)
    assert amounts, text
    # dilation*(kernel - 1) - padding = 1*(2 - 1) - 1 = 0, not the -1 of the forum answer's
    # "0*(2-1)-1" (dilation=1 is no dilation).
    for line in amounts:
        assert line.rstrip().endswith("= 0"), line
        assert "-1" not in line.split("=")[-1]
    assert "dilation=1" in text
    assert "= -1" not in text


def test_explain_negative_amount_means_cropping():
    text = stc.explain(4, 3, stride=2, padding=3)
    amount = 1 * (3 - 1) - 3
    assert amount == -1
    lines = padding_amount_lines(text)
    assert any(line.rstrip().endswith(f"= {amount}") for line in lines), text
    assert "-1" in text
    assert "crop" in text.lower()
    expression, number = derivation(text)
    assert number == transposed_size(4, 3, 2, 3, 3, 0, 1) == 3
    assert _evaluate(expression) == number


def test_explain_seed_001_output_padding_picks_the_size():
    text = stc.explain((12, 16, 12), 3, stride=2, padding=1, output_padding=1)
    expected = tuple(transposed_size(n, 3, 2, 1, 1, 1, 1) for n in (12, 16, 12))
    assert expected == (24, 32, 24)
    assert re.search(r"\b24x32x24\b", text)
    assert "output_padding" in text
    # The stride-2 convolution maps 23 and 24 (31 and 32) to 12 (16): output_padding
    # chooses which one to go back to.
    for small, low, high in ((12, 23, 24), (16, 31, 32)):
        assert conv_size(low, 3, 2, 1, 1, 1) == conv_size(high, 3, 2, 1, 1, 1) == small
        assert conv_size(low - 1, 3, 2, 1, 1, 1) != small
        assert conv_size(high + 1, 3, 2, 1, 1, 1) != small
        assert re.search(rf"\b{low}\b\s*(?:through|to|\.\.|-)\s*\b{high}\b", text), text
    assert "output_padding picks" in text or "needed" in text
    numbers = sorted(derivation(sec)[1] for _, sec in sections(text, 3))
    assert numbers == [24, 32]


def test_explain_seed_000_stride_two_reconstruction_needs_output_padding():
    # conv k5 s2 on 28 gives 12; the transpose with the same parameters gives 27, and
    # 27 or 28 is what output_padding picks.
    assert conv_size(28, 5, 2, 0, 0, 1) == conv_size(27, 5, 2, 0, 0, 1) == 12
    text = stc.explain((12, 12), 5, stride=2)
    assert re.search(r"Output: 27x27\b", text)
    assert re.search(r"\b27\b\s*(?:through|to|\.\.|-)\s*\b28\b", text), text
    text1 = stc.explain((12, 12), 5, stride=2, output_padding=1)
    assert re.search(r"Output: 28x28\b", text1)


def test_explain_stride_one_needs_no_output_padding():
    text = stc.explain((28, 28), 5, stride=1)
    assert re.search(r"Output: 32x32\b", text)
    assert "output_padding is not needed" in text
    assert "output_padding picks" not in text


def test_explain_asymmetric_padding_pairs():
    text = stc.explain(5, 3, padding=((1, 2),))
    assert "pad_begin" in text and "pad_end" in text
    expected = transposed_size(5, 3, 1, 1, 2, 0, 1)
    assert expected == 4
    assert "(5 - 1)*1 - 1 - 2 + 1*(3 - 1) + 0 + 1 = 4" in text
    amounts = padding_amount_lines(text)
    joined = " ".join(amounts)
    assert "= 1 before" in joined and "= 0 after" in joined  # 2 - 1 and 2 - 2


def test_explain_same_padding():
    text = stc.explain((5, 6), 3, stride=2, padding="same")
    assert re.search(r"Output: 10x12\b", text)  # "same": input * stride
    assert "pad_begin" in text and "pad_end" in text
    assert "same" in text
    numbers = {axes: derivation(sec) for axes, sec in sections(text, 2)}
    sizes = {}
    for axes, (expression, number) in numbers.items():
        assert _evaluate(expression) == number
        for a in axes:
            sizes[a] = number
    assert sizes == {0: 10, 1: 12}


def test_explain_per_axis_parameters_give_per_axis_sections():
    text = stc.explain((5, 6), (3, 2), stride=(1, 2))
    secs = sections(text, 2)
    assert len(secs) == 2
    by_axis = {}
    for axes, sec in secs:
        assert len(axes) == 1
        by_axis[axes[0]] = sec
    assert set(by_axis) == {0, 1}
    assert derivation(by_axis[0])[1] == transposed_size(5, 3, 1, 0, 0, 0, 1) == 7
    assert derivation(by_axis[1])[1] == transposed_size(6, 2, 2, 0, 0, 0, 1) == 12
    assert "output_padding is not needed" in by_axis[0]      # stride 1
    assert "output_padding is not needed" not in by_axis[1]  # stride 2
    assert re.search(r"Output: 7x12\b", text)


def test_explain_identical_axes_share_one_section():
    text = stc.explain((3, 3, 3), 2, stride=2)
    secs = sections(text, 3)
    assert len(secs) == 1 and secs[0][0] == (0, 1, 2)
    assert derivation(secs[0][1])[1] == 6


INVALID = [
    dict(stride=0),
    dict(stride=-1),
    dict(kernel_size=0),
    dict(dilation=0),
    dict(input_size=0),
    dict(input_size=(4, 0)),
    dict(output_padding=2),            # stride 2: 0..1
    dict(output_padding=-1),
    dict(padding=-1),
    dict(padding="full"),
    dict(padding=(1, 2, 3)),
    dict(padding=9),                   # crops everything
    dict(kernel_size=(2, 2, 2)),
    dict(input_size=(1, 2, 3, 4)),
]


@pytest.mark.parametrize("bad", INVALID, ids=[str(b) for b in INVALID])
def test_explain_rejects_what_the_shape_functions_reject(bad):
    args = dict(input_size=(4, 4), kernel_size=3, stride=2)
    args.update(bad)
    with pytest.raises(ValueError):
        stc.conv_transpose_output_size(**args)
    with pytest.raises(ValueError):
        stc.explain(**args)


@pytest.mark.parametrize("bad", [dict(stride=1.5), dict(kernel_size="3")])
def test_explain_wrong_types_fail_like_the_shape_functions(bad):
    args = dict(input_size=(4, 4), kernel_size=3, stride=2)
    args.update(bad)
    with pytest.raises((TypeError, ValueError)) as shape_error:
        stc.conv_transpose_output_size(**args)
    with pytest.raises(type(shape_error.value)):
        stc.explain(**args)


# ---------------------------------------------------------------------------
# explain: property over random configurations.

@st.composite
def explain_configs(draw):
    """``(kwargs of explain, facts)``, from conftest's ``conv_configs`` (the kit's
    generator) with one channel, sizes up to 12, kernel and stride up to 4."""
    cfg = draw(conv_configs(max_size=12, max_kernel=4, max_stride=4, max_padding=4,
                            max_groups=1, max_channels=1, max_batch=1))
    rank = cfg.rank
    per_axis = lambda v: (v,) * rank if isinstance(v, int) else tuple(v)  # noqa: E731

    def compact(values):
        return values[0] if len(set(values)) == 1 and draw(st.booleans()) else values

    kwargs = dict(input_size=cfg.in_size if rank > 1 or draw(st.booleans()) else cfg.in_size[0],
                  kernel_size=compact(cfg.kernel), stride=cfg.stride, padding=cfg.padding,
                  output_padding=cfg.output_padding, dilation=cfg.dilation)
    facts = dict(rank=rank, in_size=cfg.in_size, kernel=cfg.kernel,
                 stride=per_axis(cfg.stride), dilation=per_axis(cfg.dilation),
                 output_padding=per_axis(cfg.output_padding), pairs=cfg.pairs,
                 out=cfg.out_size)
    return kwargs, facts


@settings(max_examples=100, deadline=None)
@given(explain_configs())
def test_explain_derivation_ends_in_the_output_size(config):
    kwargs, f = config
    text = stc.explain(**kwargs)
    size = stc.conv_transpose_output_size(**kwargs)
    assert size == f["out"]
    assert re.search(rf"Output: {'x'.join(map(str, size))}\.?$", text, re.M), text
    covered = []
    for axes, sec in sections(text, f["rank"]):
        expression, number = derivation(sec)
        covered.extend(axes)
        for a in axes:
            assert number == size[a], (a, sec)
        assert _evaluate(expression) == number, sec
        a = axes[0]
        n, k, s, d = f["in_size"][a], f["kernel"][a], f["stride"][a], f["dilation"][a]
        pb, pe = f["pairs"][a]
        op = f["output_padding"][a]
        # Step 2: the padding of the equivalent stride-1 convolution.
        amounts = " ".join(padding_amount_lines(sec))
        assert str(d * (k - 1) - pb) in amounts, sec
        if pb != pe:
            assert str(d * (k - 1) - pe) in amounts, sec
        # Step 3: the stride-1 convolution's size arithmetic adds up.
        step3 = re.search(r"one step at a time: (.+) = (-?\d+)\s*$", sec, re.M)
        assert step3, sec
        assert int(step3.group(2)) == size[a] == _evaluate(step3.group(1))
        # The convolution this one inverts: the sizes it maps to n.
        if s == 1:
            assert "output_padding is not needed" in sec
        else:
            low = (n - 1) * s + d * (k - 1) + 1 - pb - pe
            if low >= 1:
                span = re.search(r"from (\d+) through (\d+)", sec)
                assert span, sec
                assert (int(span.group(1)), int(span.group(2))) == (low, low + s - 1)
                for m in range(low, low + s):
                    assert conv_size(m, k, s, pb, pe, d) == n
                if op < s:
                    assert low + op == size[a]
    assert sorted(covered) == list(range(f["rank"]))


# ---------------------------------------------------------------------------
# contributions

def place_buffers(x, w, stride, pairs, dilation, out_size):
    """Each input element's buffer, by the definition: ``x[i] * w`` at
    ``i*stride - pad_begin + k*dilation``, what falls outside cropped."""
    rank = x.ndim
    buffers = np.zeros(x.shape + tuple(out_size))
    for i in np.ndindex(x.shape):
        for k in np.ndindex(w.shape):
            o = tuple(i[a] * stride[a] - pairs[a][0] + k[a] * dilation[a] for a in range(rank))
            if all(0 <= o[a] < out_size[a] for a in range(rank)):
                buffers[i + o] += x[i] * w[k]
    return buffers


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_contributions_sum_to_the_transposed_convolution(rank, data):
    cfg = data.draw(conv_configs(rank))
    rng = np.random.default_rng(cfg.seed)
    x = rng.standard_normal(cfg.in_size)
    w = rng.standard_normal(cfg.kernel)
    kw = dict(stride=cfg.stride, padding=cfg.padding, output_padding=cfg.output_padding,
              dilation=cfg.dilation)
    buffers = stc.contributions(x, w, **kw)
    assert buffers.shape == cfg.in_size + cfg.out_size
    total = buffers.sum(axis=tuple(range(rank)))
    reference = conv_transpose_reference(
        x[None, None], w[None, None], None, cfg.stride, [list(p) for p in cfg.pairs],
        cfg.output_padding, 1, cfg.dilation)[0, 0]
    assert_matches(total, reference)
    library = stc.conv_transpose(x[None, None], w[None, None], **kw)[0, 0]
    assert_matches(total, library)
    expected = place_buffers(x, w, _per_axis(cfg.stride, rank), cfg.pairs,
                             _per_axis(cfg.dilation, rank), cfg.out_size)
    assert_matches(buffers, expected)


def test_contributions_one_buffer_is_the_placed_kernel():
    x = np.array([1.0, 2.0, 3.0])
    w = np.array([1.0, 10.0, 100.0])
    # out = (3 - 1)*3 - 2*1 + (3 - 1) + 1 = 7; element i starts at i*3 - 1.
    buffers = stc.contributions(x, w, stride=3, padding=1)
    assert buffers.shape == (3, 7)
    np.testing.assert_array_equal(buffers[0], [10, 100, 0, 0, 0, 0, 0])   # starts at -1
    np.testing.assert_array_equal(buffers[1], [0, 0, 2, 20, 200, 0, 0])   # starts at 2
    np.testing.assert_array_equal(buffers[2], [0, 0, 0, 0, 0, 3, 30])     # starts at 5


def test_contributions_one_buffer_2d_with_dilation():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    # stride 2, dilation 2, padding 1: out = (2-1)*2 - 2 + 2*(2-1) + 1 = 3 per axis.
    buffers = stc.contributions(x, w, stride=2, padding=1, dilation=2)
    assert buffers.shape == (2, 2, 3, 3)
    # input[1, 0] = 3 starts at (1*2 - 1, 0*2 - 1) = (1, -1); taps at +0 and +2.
    expected = np.zeros((3, 3))
    for (kr, kc), value in np.ndenumerate(w):
        r, c = 1 + 2 * kr, -1 + 2 * kc
        if 0 <= r < 3 and 0 <= c < 3:
            expected[r, c] += 3.0 * value
    np.testing.assert_array_equal(buffers[1, 0], expected)
    np.testing.assert_array_equal(expected, [[0, 0, 0], [0, 6, 0], [0, 0, 0]])


def test_contributions_seed_004_coloured_buffers():
    x = np.array([[2.0, 4.0], [0.0, 1.0]])
    k = np.array([[3.0, 1.0], [1.0, 5.0]])
    buffers = stc.contributions(x, k)
    assert buffers.shape == (2, 2, 3, 3)
    np.testing.assert_array_equal(buffers[0, 0], [[6, 2, 0], [2, 10, 0], [0, 0, 0]])
    np.testing.assert_array_equal(buffers[0, 1], [[0, 12, 4], [0, 4, 20], [0, 0, 0]])
    np.testing.assert_array_equal(buffers[1, 0], np.zeros((3, 3)))
    np.testing.assert_array_equal(buffers[1, 1], [[0, 0, 0], [0, 3, 1], [0, 1, 5]])
    expected = np.array([[6, 14, 4], [2, 17, 21], [0, 1, 5]])
    np.testing.assert_array_equal(buffers.sum(axis=(0, 1)), expected)
    # Also as plain lists of ints.
    np.testing.assert_array_equal(
        stc.contributions([[2, 4], [0, 1]], [[3, 1], [1, 5]]).sum(axis=(0, 1)), expected)


def test_contributions_seed_003_stride_and_padding():
    x = np.ones((4, 4))
    w = np.arange(1.0, 17.0).reshape(4, 4)
    buffers = stc.contributions(x, w, stride=2, padding=1)
    assert buffers.shape == (4, 4, 8, 8)
    total = buffers.sum(axis=(0, 1))
    np.testing.assert_array_equal(total, SEED_003_OUT)
    np.testing.assert_allclose(
        total, conv_transpose_reference(x[None, None], w[None, None], None, 2, 1)[0, 0])
    np.testing.assert_allclose(
        total, stc.conv_transpose(x[None, None], w[None, None], stride=2, padding=1)[0, 0])
    # "how the 6 in (0, 0) and the 12 in (0, 1) are computed": input (0, 0) starts at
    # (-1, -1), so output (0, 0) is its tap (1, 1) = 6 alone; output (0, 1) is
    # tap (1, 2) = 7 of input (0, 0) plus tap (1, 0) = 5 of input (0, 1).
    at_00 = buffers[:, :, 0, 0]
    assert at_00[0, 0] == 6 and np.count_nonzero(at_00) == 1
    at_01 = buffers[:, :, 0, 1]
    assert at_01[0, 0] == 7 and at_01[0, 1] == 5 and np.count_nonzero(at_01) == 2


@pytest.mark.parametrize("x_shape, w_shape", [
    ((2, 2), (2,)), ((3,), (2, 2)), ((2, 2, 2), (2, 2)),
    ((1, 1, 2, 2), (1, 1, 2, 2)), ((), ()),
])
def test_contributions_rejects_mismatched_ranks(x_shape, w_shape):
    with pytest.raises(ValueError):
        stc.contributions(np.ones(x_shape), np.ones(w_shape))


def test_contributions_rejects_invalid_geometry():
    with pytest.raises(ValueError):
        stc.contributions(np.ones(3), np.ones(2), stride=0)
    with pytest.raises(ValueError):
        stc.contributions(np.ones(3), np.ones(2), stride=2, output_padding=2)


# ---------------------------------------------------------------------------
# Pictures: drawn with the Agg backend, checked through what the Figure holds.

@pytest.fixture
def plt():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    yield pyplot
    pyplot.close("all")


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 2000


def patches(fig, gid):
    return [p for ax in fig.axes for p in ax.patches if p.get_gid() == gid]


def texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


TERM = re.compile(r"x([\d,]+)\*w([\d,]+)")


def stuffed_title(fig):
    return fig.get_suptitle() or fig.axes[0].get_title(loc="left")


def title_terms(fig):
    """``[(input_index, kernel_index)]`` named on the title's ``output[...] =`` line."""
    line = stuffed_title(fig).splitlines()[-1]
    assert line.startswith("output["), line
    return [(tuple(map(int, i.split(","))), tuple(map(int, k.split(","))))
            for i, k in TERM.findall(line)]


@pytest.mark.parametrize("rank", [1, 2])
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # closed per example
@given(data=st.data())
def test_plot_zero_stuffed_cells_and_kernel(plt, rank, data):
    cfg = data.draw(conv_configs(rank, transposed=True))
    kw = dict(stride=cfg.stride, padding=cfg.padding, output_padding=cfg.output_padding,
              dilation=cfg.dilation)
    index = tuple(data.draw(st.integers(0, o - 1)) for o in cfg.out_size)
    fig = stc.plot_zero_stuffed(cfg.in_size, cfg.kernel, **kw, index=index)
    stride, dilation = _per_axis(cfg.stride, rank), _per_axis(cfg.dilation, rank)
    span = [d * (k - 1) for k, d in zip(cfg.kernel, dilation)]
    # Every input element is drawn exactly once, in the frame or cropped outside it.
    inputs = sorted(t for t in texts(fig) if t.startswith("x"))
    assert inputs == sorted("x" + ",".join(map(str, i)) for i in np.ndindex(cfg.in_size))
    # The frame the stride-1 convolution slides over: output + dilation*(kernel - 1).
    frame, = patches(fig, "frame")
    extent = (frame.get_width(),) if rank == 1 else (frame.get_height(), frame.get_width())
    assert extent == tuple(o + s for o, s in zip(cfg.out_size, span))
    # Zeros, padding and cropping, counted per axis from the padding amounts.
    stuffed = [(n - 1) * s + 1 for n, s in zip(cfg.in_size, stride)]
    before = [s - pb for s, (pb, _) in zip(span, cfg.pairs)]
    inside = [max(0, min(b + n, o + s) - max(b, 0))       # stuffed cells in the frame
              for b, n, o, s in zip(before, stuffed, cfg.out_size, span)]
    n_in_frame = math.prod(inside)
    cells = patches(fig, "input") + patches(fig, "zero")
    assert len(cells) == n_in_frame
    assert len(patches(fig, "padding")) == math.prod(extent) - n_in_frame
    assert len(patches(fig, "cropped")) == math.prod(stuffed) - n_in_frame
    assert len(patches(fig, "input")) == math.prod(
        len([j for j in range(n) if 0 <= b + j * s < o + sp])
        for n, b, s, o, sp in zip(cfg.in_size, before, stride, cfg.out_size, span))
    # One output cell per output, one of them current; one kernel cell per tap.
    assert len(patches(fig, "output")) + 1 == math.prod(cfg.out_size)
    assert len(patches(fig, "output-current")) == 1
    assert len(patches(fig, "kernel")) == math.prod(cfg.kernel)
    # The title's terms are output_terms' (input index, kernel index) pairs.
    x, w = np.ones(cfg.in_size), np.ones(cfg.kernel)
    expected = [(i, k) for i, k, _, _ in stc.output_terms(x, w, index, **kw)]
    got = title_terms(fig)
    plt.close(fig)
    if len(expected) <= 4:
        assert sorted(got) == sorted(expected)
    else:
        assert set(got) <= set(expected) and f"({len(expected)} terms)" in stuffed_title(fig)


def test_plot_zero_stuffed_seed_003(plt, tmp_path):
    path = tmp_path / "zero_stuffed.png"
    fig = stc.plot_zero_stuffed((4, 4), 4, stride=2, padding=1, index=(0, 1), path=path)
    assert_png(path)
    # output (0, 1) = 12 = x[0,0]*w[1,2] + x[0,1]*w[1,0] = 7 + 5 with w = 1..16
    assert title_terms(fig) == [((0, 0), (1, 2)), ((0, 1), (1, 0))]
    w = np.arange(1, 17).reshape(4, 4)
    assert sum(w[k] for _, k in title_terms(fig)) == SEED_003_OUT[0, 1] == 12
    title = stuffed_title(fig)
    assert "4x4 input: kernel 4, stride 2, padding 1" in title
    assert len(patches(fig, "input")) == 16 and not patches(fig, "cropped")
    assert len(patches(fig, "zero")) == 7 * 7 - 16
    assert len(patches(fig, "padding")) == 11 * 11 - 7 * 7   # 2 = 1*(4 - 1) - 1 per side
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "inserted zero (stride - 1 between)" in legend and "implicit zero padding" in legend
    assert not any("cropped" in t for t in legend)


def test_plot_zero_stuffed_negative_amount_is_cropped(plt):
    # padding 3 > dilation*(kernel - 1) = 2: the amount is -1, one stuffed cell cropped
    # each side: x0 and x3 fall outside the frame.
    fig = stc.plot_zero_stuffed(4, 3, stride=2, padding=3, index=1)
    cropped = patches(fig, "cropped")
    assert len(cropped) == 2
    assert sorted(p.get_x() for p in cropped) == [-1, 5]
    assert title_terms(fig) == [((1,), (2,)), ((2,), (0,))]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "cropped (negative padding amount)" in legend
    assert "implicit zero padding" not in legend     # none here
    assert "length-4 input: kernel 3, stride 2, padding 3" in stuffed_title(fig)


def test_plot_zero_stuffed_into_given_axes(plt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fig, (left, right) = plt.subplots(1, 2)
    before = plt.get_fignums()
    returned = stc.plot_zero_stuffed(3, 2, stride=2, ax=right)
    assert returned is fig and plt.get_fignums() == before
    assert right.patches and not left.patches
    assert right.get_title(loc="left").endswith("output[0] = x0*w0") and not fig.get_suptitle()
    assert list(tmp_path.iterdir()) == []           # no file unless path= asks


@pytest.mark.parametrize("args, kwargs, error, match", [
    (((2, 2, 2), 2), {}, ValueError, "1-D and 2-D"),
    (((200, 200), 3), {}, ValueError, "cells"),
    ((4, 3), dict(index=9), ValueError, "index"),
    ((4, 3), dict(index=(0, 0)), ValueError, "index"),
    ((4, 3), dict(index=1.0), TypeError, "index"),
    ((4, 3), dict(stride=0), ValueError, "stride"),
])
def test_plot_zero_stuffed_bad_arguments(plt, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        stc.plot_zero_stuffed(*args, **kwargs)


@pytest.mark.parametrize("args, kwargs, frames", [
    ((3, 3), dict(stride=2, padding=1), 5),
    ((2, 2), dict(stride=3, padding=2), 1),
    (((2, 2), 2), dict(stride=1, padding=((0, 1), 0)), 6),
], ids=["1d", "1d-cropped", "2d"])
def test_animate_zero_stuffed_writes_one_frame_per_output(plt, tmp_path, args, kwargs, frames):
    from PIL import Image

    assert math.prod(stc.conv_transpose_output_size(*args, **kwargs)) == frames
    path = tmp_path / "movie.gif"
    assert stc.animate_zero_stuffed(*args, **kwargs, path=path, fps=4, dpi=40) == str(path)
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == frames
        first = np.asarray(gif.convert("RGB"))
        if frames > 1:
            gif.seek(1)
            assert not np.array_equal(first, np.asarray(gif.convert("RGB")))
    assert plt.get_fignums() == []                  # its figure is closed


def test_animate_zero_stuffed_refuses_too_many_frames(plt, tmp_path):
    with pytest.raises(ValueError, match="frames"):
        stc.animate_zero_stuffed((30, 30), 2, path=tmp_path / "x.gif")
    with pytest.raises(ValueError, match="fps"):
        stc.animate_zero_stuffed(3, 2, path=tmp_path / "x.gif", fps=0)
    assert not (tmp_path / "x.gif").exists()


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def colour_bars(fig):
    return [ax.images[0].colorbar for ax in image_axes(fig) if ax.images[0].colorbar]


@pytest.mark.parametrize("x, w, kw", [
    (np.array([1.0, 2.0, 3.0]), np.array([1.0, -1.0]), dict(stride=2, padding=1)),
    (np.array([1.0, 2.0, 3.0]), np.array([1.0, -1.0, 2.0]),
     dict(stride=2, padding=1, output_padding=1)),
    (np.array([1.0, 2.0]), np.array([1.0, 3.0]), dict(dilation=3, output_padding=2)),
    (np.array([[2.0, 4.0], [0.0, 1.0]]), np.array([[3.0, 1.0], [1.0, 5.0]]), {}),
    (np.ones((4, 4)), np.arange(1.0, 17.0).reshape(4, 4), dict(stride=2, padding=1)),
    (np.ones((2, 3)), np.ones((2, 2)), dict(stride=(2, 1), padding="same")),
    (np.ones((2, 3)), np.ones((2, 2)),
     dict(stride=(2, 3), padding=((1, 0), (0, 2)), output_padding=(1, 2))),
], ids=["1d", "1d-output-padding", "1d-dilation", "2d-seed-004", "2d-seed-003",
        "2d-same", "2d-pairs"])
def test_plot_contributions_panels_one_scale_and_sum(plt, tmp_path, x, w, kw):
    path = tmp_path / "contributions.png"
    fig = stc.plot_contributions(x, w, **kw, path=path)
    assert_png(path)
    panels = image_axes(fig)
    assert len(panels) == x.size + 1                  # one per input element, and the sum
    limits = {(ax.images[0].norm.vmin, ax.images[0].norm.vmax) for ax in panels}
    assert len(limits) == 1                           # one colour scale ...
    assert len(colour_bars(fig)) >= 1                 # ... shown by a colour bar
    vmin, vmax = limits.pop()
    output = stc.conv_transpose(x[None, None], w[None, None], **kw)[0, 0]
    # sequential from 0 without negative values, else symmetric about 0
    negative = (stc.contributions(x, w, **kw) < 0).any()
    assert (vmin == -vmax) if negative else (vmin == 0)
    assert vmax >= np.abs(output).max()
    total, = [ax for ax in panels if ax.get_title() == "sum = output"]
    np.testing.assert_array_equal(total.images[0].get_array(), np.atleast_2d(output))
    titles = {ax.get_title() for ax in panels}
    for index in np.ndindex(x.shape):
        assert f"input[{', '.join(map(str, index))}] = {x[index]:g}" in titles


@pytest.mark.parametrize("kw, words", [
    (dict(stride=2, padding="same"), "stride 2, padding (0, 1)"),
    (dict(stride=2, padding=((1, 2),)), "stride 2, padding (1, 2)"),
    (dict(stride=2, padding=(1,)), "stride 2, padding 1"),
    (dict(stride=(2,), padding=1, dilation=(2,)), "stride 2, padding 1, dilation 2"),
], ids=["same", "pair", "per-axis-int", "per-axis-stride"])
def test_plot_contributions_1d_title_in_1d_terms(plt, kw, words):
    x, w = np.array([1.0, 2.0, 3.0]), np.array([1.0, -1.0, 2.0])
    assert stc.contributions(x, w, **kw).ndim == 2
    fig = stc.plot_contributions(x, w, **kw)
    title = fig.get_suptitle()
    assert f"kernel 3, {words}" in title, title
    assert "((" not in title and "stride (" not in title


def test_plot_contributions_into_a_given_figure(plt):
    fig = plt.figure(layout="constrained")
    left, right = fig.subfigures(1, 2)
    assert stc.plot_contributions(np.ones(2), np.ones(2), fig=right) is right
    assert len(image_axes(fig)) == 3 and not left.axes
    with pytest.raises(ValueError, match="panel"):
        stc.plot_contributions(np.ones((9, 9)), np.ones((2, 2)))


@pytest.mark.parametrize("input_shape, w, kw", [
    ((1, 5), np.arange(1.0, 4.0).reshape(1, 1, 3), dict(stride=2)),
    ((1, 4, 4), np.ones((2, 1, 3, 3)), dict(stride=2, padding=1)),
    ((2, 5), np.ones((2, 1, 3)), dict(groups=2, padding="same")),
], ids=["1d", "2d", "1d-groups-same"])
def test_plot_matrix_two_panels_integer_ticks_clear_titles(plt, tmp_path, input_shape, w, kw):
    path = tmp_path / "matrix.png"
    fig = stc.plot_matrix(input_shape, w, **kw, path=path)
    assert_png(path)
    matrix = stc.conv_matrix(input_shape, w, **kw)
    panels = image_axes(fig)
    assert len(panels) == 2 and len(colour_bars(fig)) >= 1
    assert panels[0].get_title() == f"conv_matrix\n{matrix.shape}"
    assert panels[1].get_title().endswith(f"\n{matrix.shape[::-1]}")
    assert panels[0].images[0].get_array().shape == matrix.shape
    assert panels[1].images[0].get_array().shape == matrix.shape[::-1]
    assert len({(ax.images[0].norm.vmin, ax.images[0].norm.vmax) for ax in panels}) == 1
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in panels:
        for ticks in (ax.get_xticks(), ax.get_yticks()):
            assert np.all(ticks == np.round(ticks)), ticks       # whole element numbers
        title = ax.title.get_window_extent(renderer)
        for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            for tick in axis.get_major_ticks():
                if min(low, high) <= tick.get_loc() <= max(low, high):   # drawn
                    label = tick.label1.get_window_extent(renderer)
                    assert not title.overlaps(label), tick.label1
        for other in panels:            # and no title runs into the other panel
            if other is not ax:
                assert not title.overlaps(other.get_window_extent(renderer))


def test_without_matplotlib_pictures_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    calls = [
        lambda: stc.plot_contributions(np.ones(3), np.ones(2), path=tmp_path / "a.png"),
        lambda: stc.plot_matrix((1, 4), np.ones((1, 1, 2)), path=tmp_path / "b.png"),
        lambda: stc.plot_zero_stuffed(3, 2, path=tmp_path / "c.png"),
        lambda: stc.animate_zero_stuffed(3, 2, path=tmp_path / "d.gif"),
    ]
    for call in calls:
        with pytest.raises(ImportError) as error:
            call()
        assert "sparsetconv[plot]" in str(error.value)
    assert list(tmp_path.iterdir()) == []
    # The rest works without matplotlib.
    text = stc.explain((2, 2), 2, stride=2, padding=1)
    assert "(2 - 1)*2 - 2*1 + 1*(2 - 1) + 0 + 1 = 2" in text
    buffers = stc.contributions(np.array([[2.0, 4.0], [0.0, 1.0]]),
                                np.array([[3.0, 1.0], [1.0, 5.0]]))
    np.testing.assert_array_equal(buffers.sum(axis=(0, 1)),
                                  [[6, 14, 4], [2, 17, 21], [0, 1, 5]])


def test_package_imports_and_explains_without_matplotlib(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "sys.modules['matplotlib.pyplot'] = None\n"
        "import numpy as np, sparsetconv as stc\n"
        "print(stc.explain(4, 3, stride=2, padding=3).count('crop') > 0)\n"
        "print(stc.contributions(np.ones(2), np.ones(2)).sum(axis=0).tolist())\n"
        "try:\n"
        "    stc.plot_contributions(np.ones(2), np.ones(2), path='never.png')\n"
        "except ImportError as e:\n"
        "    print('sparsetconv[plot]' in str(e))\n"
    )
    # Run from elsewhere, importing the package under test (installed or not).
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(stc.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "[1.0,", "2.0,", "1.0]", "True"]
    assert not (tmp_path / "never.png").exists()


# ---------------------------------------------------------------------------
# output_terms


def test_output_terms_seed_003_term_by_term():
    x = np.ones((4, 4))
    w = np.arange(1.0, 17.0).reshape(4, 4)
    # The 6 at (0, 0): kernel taps (1, 1), (1, 2), (2, 1), (2, 2) minus the cropped row
    # and column -- only w[1,1]=6 reaches it, from input (0, 0).
    assert stc.output_terms(x, w, (0, 0), stride=2, padding=1) == [((0, 0), (1, 1), 1.0, 6.0)]
    terms = stc.output_terms(x, w, (0, 1), stride=2, padding=1)
    assert terms == [((0, 0), (1, 2), 1.0, 7.0), ((0, 1), (1, 0), 1.0, 5.0)]
    assert sum(v * k for _, _, v, k in terms) == SEED_003_OUT[0, 1] == 12


@settings(max_examples=60, deadline=None)
@given(data=st.data(), rank=st.integers(1, 3))
def test_output_terms_sum_to_every_output(data, rank):
    config = data.draw(conv_configs(rank, transposed=True))
    rng = np.random.default_rng(config.seed)
    x = rng.integers(-3, 4, size=config.in_size).astype(float)
    w = rng.integers(-3, 4, size=config.kernel).astype(float)
    kwargs = dict(stride=config.stride, padding=config.padding,
                  output_padding=config.output_padding, dilation=config.dilation)
    expected = conv_transpose_reference(x[None, None], w[None, None], None, config.stride,
                                        config.pairs, config.output_padding, 1,
                                        config.dilation)[0, 0]
    for index in np.ndindex(expected.shape):
        terms = stc.output_terms(x, w, index if rank > 1 else index[0], **kwargs)
        for i, k, value, weight in terms:
            assert value == x[i] and weight == w[k]
        assert sum(v * k for _, _, v, k in terms) == expected[index]


def test_output_terms_errors():
    with pytest.raises(ValueError, match="index"):
        stc.output_terms(np.ones(3), np.ones(2), 5)
    with pytest.raises(ValueError, match="index must give 2"):
        stc.output_terms(np.ones((3, 3)), np.ones((2, 2)), 1)
