"""Understanding the operation (SPEC section 7): ``explain``, ``contributions`` and the
pictures, checked against the size formulas written out here, ``tests/reference.py``
and ``stc.conv_transpose``, and against the seed questions (000, 001, 003, 004).
"""

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
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
    # dilation*(kernel - 1) - padding = 1*(2 - 1) - 1 = 0, not the -1 of seed 000's
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
    rank = draw(st.integers(1, 3))
    per_axis = lambda lo, hi: tuple(draw(st.integers(lo, hi)) for _ in range(rank))  # noqa: E731
    in_size = per_axis(1, 12)
    kernel = per_axis(1, 4)
    stride = per_axis(1, 4)
    dilation = per_axis(1, 3)
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                           for s, d in zip(stride, dilation))
    kind = draw(st.sampled_from(["int", "ints", "pairs", "same", "valid"]))
    if kind == "int":
        padding = draw(st.integers(0, 4))
    elif kind == "ints":
        padding = per_axis(0, 4)
    elif kind == "pairs":
        padding = tuple((draw(st.integers(0, 4)), draw(st.integers(0, 4)))
                        for _ in range(rank))
    else:
        padding = kind
    pairs = explicit_padding(padding, in_size, kernel, stride, dilation, transposed=True)
    out = output_spatial(in_size, kernel, stride, pairs, dilation, output_padding,
                         transposed=True)
    assume(all(o >= 1 for o in out))

    def compact(values):
        return values[0] if len(set(values)) == 1 and draw(st.booleans()) else values

    kwargs = dict(input_size=in_size if rank > 1 or draw(st.booleans()) else in_size[0],
                  kernel_size=compact(kernel), stride=compact(stride), padding=padding,
                  output_padding=compact(output_padding), dilation=compact(dilation))
    facts = dict(rank=rank, in_size=in_size, kernel=kernel, stride=stride,
                 dilation=dilation, output_padding=output_padding, pairs=pairs, out=out)
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
# Pictures

def assert_png(path, returned):
    assert str(returned) == str(path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and data[:8] == PNG_SIGNATURE
    assert len(data) > 2000


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
def test_plot_contributions_writes_png(tmp_path, x, w, kw):
    pytest.importorskip("matplotlib")
    path = tmp_path / "contributions.png"
    assert_png(path, stc.plot_contributions(x, w, filename=str(path), **kw))


@pytest.mark.parametrize("kw", [
    dict(stride=2, padding="same"),
    dict(stride=2, padding=((1, 2),)),
    dict(stride=2, padding=(1,)),
    dict(stride=(2,), padding=1, dilation=(2,)),
], ids=["same", "pair", "per-axis-int", "per-axis-stride"])
def test_plot_contributions_1d_accepts_every_parameter_form(tmp_path, kw):
    """The parameter forms ``contributions`` (and conv_transpose) accept in 1-D."""
    pytest.importorskip("matplotlib")
    x, w = np.array([1.0, 2.0, 3.0]), np.array([1.0, -1.0, 2.0])
    assert stc.contributions(x, w, **kw).ndim == 2
    path = tmp_path / "c.png"
    assert_png(path, stc.plot_contributions(x, w, filename=str(path), **kw))


@pytest.mark.parametrize("input_shape, w, kw", [
    ((1, 5), np.arange(1.0, 4.0).reshape(1, 1, 3), dict(stride=2)),
    ((1, 4, 4), np.ones((2, 1, 3, 3)), dict(stride=2, padding=1)),
    ((2, 5), np.ones((2, 1, 3)), dict(groups=2, padding="same")),
], ids=["1d", "2d", "1d-groups-same"])
def test_plot_matrix_writes_png(tmp_path, input_shape, w, kw):
    pytest.importorskip("matplotlib")
    path = tmp_path / "matrix.png"
    assert_png(path, stc.plot_matrix(input_shape, w, filename=str(path), **kw))


def test_without_matplotlib_pictures_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError) as error:
        stc.plot_contributions(np.ones(3), np.ones(2), filename=str(tmp_path / "a.png"))
    assert "sparsetconv[plot]" in str(error.value)
    with pytest.raises(ImportError) as error:
        stc.plot_matrix((1, 4), np.ones((1, 1, 2)), filename=str(tmp_path / "b.png"))
    assert "sparsetconv[plot]" in str(error.value)
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()
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
        "    stc.plot_contributions(np.ones(2), np.ones(2), filename='never.png')\n"
        "except ImportError as e:\n"
        "    print('sparsetconv[plot]' in str(e))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "[1.0,", "2.0,", "1.0]", "True"]


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
