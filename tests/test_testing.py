"""sparsetconv.testing: the checks pass on correct implementations, and on planted
defects fail with the right kind and a minimal configuration."""

import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings

import sparsetconv as stc
from sparsetconv.testing import (KINDS, Case, CheckFailure, check_conv, check_conv_backward,
                                 check_conv_transpose, check_conv_transpose_backward)
from sparsetconv.testing import _zero_stuffing as zs
from sparsetconv.testing import strategies
from sparsetconv.testing._cases import NumpySource, Rejected, draw_case, per_axis
from sparsetconv.testing._check import CONV, CONV_TRANSPOSE, CONV_TRANSPOSE_BACKWARD, \
    make_arrays, setup_code
from sparsetconv.testing._conventions import Convention

FLOATS = (np.float32, np.float64)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def failure_of(check, fn, **options):
    with pytest.raises(CheckFailure) as info:
        check(fn, **options)
    failure = info.value
    assert isinstance(failure, AssertionError)
    message = str(failure)
    assert message.startswith(failure.kind + ": "), message
    assert failure.reproducer in message
    return failure


def assert_minimal(case, **allowed):
    """Every feature of ``case`` at its simplest, except those in ``allowed``
    (name -> predicate or value)."""
    simplest = dict(rank=1, batch=1, groups=1, in_per_group=1, out_per_group=1,
                    in_size=(1,), kernel=(1,), stride=1, padding=0, output_padding=0,
                    dilation=1, bias=False, memory="C")
    for name, want in simplest.items():
        value = getattr(case, name)
        if name in ("stride", "dilation", "output_padding", "padding") \
                and not isinstance(value, str):
            value = per_axis(value, case.rank) if not (
                name == "padding" and isinstance(value, tuple)
                and any(isinstance(p, tuple) for p in value)) else value
            want = (want,) * case.rank
        rule = allowed.get(name)
        if rule is None:
            assert value == want, (name, value, case)
        elif callable(rule):
            assert rule(value), (name, value, case)
        else:
            assert value == rule, (name, value, case)


# ---------------------------------------------------------------------------
# Correct implementations pass.

def test_library_passes_every_check_on_every_backend(backend):
    for check, function in ((check_conv_transpose, stc.conv_transpose), (check_conv, stc.conv),
                            (check_conv_transpose_backward, stc.conv_transpose_backward),
                            (check_conv_backward, stc.conv_backward)):
        def fn(*args, _function=function):
            return _function(*args, backend=backend)
        assert check(fn, n_cases=60, seed=3, dtypes=FLOATS) is None


def test_zero_stuffing_reference_passes():
    assert check_conv_transpose(zs.conv_transpose, dtypes=FLOATS) is None
    assert check_conv(zs.conv, n_cases=100, dtypes=FLOATS) is None


def test_zero_stuffing_matches_the_plain_loop_reference():
    # Independent of the library altogether: the zero-stuffed form against tests/reference.
    from reference import conv_transpose_reference

    src = NumpySource(np.random.default_rng(5))
    for _ in range(40):
        try:
            case = draw_case(src, padding_kinds=("int", "ints", "pairs"))
        except Rejected:
            continue
        x, w, b = case.arrays()
        if case.batch is None:
            continue
        pairs = zs.padding_pairs(case.padding, case.in_size, case.kernel,
                                 per_axis(case.stride, case.rank),
                                 per_axis(case.dilation, case.rank), transposed=True)
        want = conv_transpose_reference(x, w, b, case.stride, [list(p) for p in pairs],
                                        case.output_padding, case.groups, case.dilation)
        np.testing.assert_allclose(zs.conv_transpose(x, w, b, **case.hyper()), want,
                                   rtol=1e-12, atol=1e-12)


def test_zero_stuffing_pair_passes_the_dot_test():
    w = np.random.default_rng(0).standard_normal((4, 2, 3, 2))
    forward = lambda x: zs.conv(x, w, None, 2, 1, 1, 2)  # noqa: E731
    adjoint = lambda y: zs.conv_transpose(y, w, None, 2, 1, 0, 2, 1)  # noqa: E731
    check = stc.adjoint_check((4, 7, 6), w, stride=2, padding=1, groups=2, rng=1,
                              forward=forward, adjoint=adjoint)
    assert check.ok, check


TORCH_TRANSPOSE = ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
TORCH_CONV = ("conv1d", "conv2d", "conv3d")


def _torch_functions():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    return torch, F


def test_torch_functional_passes():
    torch, F = _torch_functions()

    def conv_transpose(x, w, b, *args):
        return getattr(F, TORCH_TRANSPOSE[w.ndim - 3])(x, w, b, *args)

    def conv(x, w, b, *args):
        return getattr(F, TORCH_CONV[w.ndim - 3])(x, w, b, *args)

    # PyTorch takes neither (begin, end) pairs nor "same" for a transposed convolution.
    assert check_conv_transpose(conv_transpose, n_cases=100, dtypes=FLOATS,
                                asymmetric_padding=False, convert=torch.from_numpy) is None
    assert check_conv(conv, n_cases=60, dtypes=FLOATS, asymmetric_padding=False,
                      convert=torch.from_numpy) is None


def test_torch_autograd_passes_the_backward_check():
    torch, F = _torch_functions()

    def backward(g, x, w, stride, padding, output_padding, groups, dilation):
        x = torch.from_numpy(x).requires_grad_()
        w = torch.from_numpy(w).requires_grad_()
        b = torch.zeros(w.shape[1] * groups, dtype=w.dtype, requires_grad=True)
        out = getattr(F, TORCH_TRANSPOSE[w.ndim - 3])(x, w, b, stride, padding,
                                                      output_padding, groups, dilation)
        out.backward(torch.from_numpy(g))
        return x.grad.numpy(), w.grad.numpy(), b.grad.numpy()

    assert check_conv_transpose_backward(backward, n_cases=40, dtypes=FLOATS,
                                         asymmetric_padding=False) is None


# ---------------------------------------------------------------------------
# Adapters

def test_channels_last_tensorflow_weights_and_output_shape():
    def tf_style(x, w, b, stride, padding, output_shape, groups, dilation):
        rank = w.ndim - 2
        x = np.moveaxis(x, -1, x.ndim - rank - 1)
        w = np.moveaxis(w, (-1, -2), (0, 1))               # (*k, C_out, C_in) -> torch's
        size = output_shape[-rank - 1:-1]
        out = stc.conv_transpose(x, w, b, stride, padding, 0, groups, dilation,
                                 output_size=size)
        return np.moveaxis(out, out.ndim - rank - 1, -1)

    options = dict(layout="channels_last", weight_layout="tensorflow", output_shape=True)
    assert check_conv_transpose(tf_style, n_cases=100, **options) is None
    # The same function checked under the default conventions fails.
    failure = failure_of(check_conv_transpose, tf_style, n_cases=20)
    assert failure.kind in ("raised on a valid input", "wrong shape")


@pytest.mark.parametrize("weight_layout, perm", [("IO...", None), ("...IO", (2, 3, 0, 1)),
                                                 ("O...I", (1, 2, 3, 0))])
def test_weight_layout_strings(weight_layout, perm):
    def fn(x, w, b, *args):
        w = w if perm is None else np.transpose(w, np.argsort(perm))
        return stc.conv_transpose(x, w, b, *args)

    assert check_conv_transpose(fn, n_cases=40, ranks=(2,), weight_layout=weight_layout) is None
    assert Convention(weight_layout=weight_layout).weight_axes(True, 2) == (perm or (0, 1, 2, 3))


def test_conv_weight_layout_and_channels_last():
    def fn(x, w, b, stride, padding, dilation, groups):
        rank = w.ndim - 2
        x = np.moveaxis(x, -1, x.ndim - rank - 1)
        out = stc.conv(x, np.moveaxis(w, (-1, -2), (0, 1)), b, stride, padding, dilation, groups)
        return np.moveaxis(out, out.ndim - rank - 1, -1)

    assert check_conv(fn, n_cases=80, layout="channels_last", weight_layout="...IO") is None


@pytest.mark.parametrize("bad, error", [
    (dict(layout="NHWC"), ValueError), (dict(weight_layout="HWIO"), ValueError),
    (dict(ranks=(4,)), ValueError), (dict(n_cases=0), ValueError),
    (dict(dtypes=(np.int32,)), TypeError), (dict(convert=3), TypeError),
    (dict(rtol=-1.0), ValueError),
])
def test_bad_switches_are_refused(bad, error):
    name = next(iter(bad))
    with pytest.raises(error, match=name):
        check_conv_transpose(stc.conv_transpose, **bad)
    with pytest.raises(TypeError, match="fn"):
        check_conv_transpose(None)


# ---------------------------------------------------------------------------
# The configurations

def _recorded_calls(check, n_cases=200, **options):
    calls = []

    def fn(*args):
        calls.append(args)
        forward = stc.conv_transpose if check is check_conv_transpose else stc.conv
        return forward(*args)

    check(fn, n_cases=n_cases, **options)
    return calls


def test_default_draws_cover_every_feature():
    calls = _recorded_calls(check_conv_transpose, dtypes=FLOATS)
    assert len(calls) == 200
    ranks = {w.ndim - 2 for x, w, *_ in calls}
    assert ranks == {1, 2, 3}
    assert any(g > 1 for *_, g, d in calls)
    assert any(max(per_axis(d, w.ndim - 2)) > 1 for x, w, b, s, p, op, g, d in calls)
    assert any(max(per_axis(op, w.ndim - 2)) > 0 for x, w, b, s, p, op, g, d in calls)
    paddings = [p for x, w, b, s, p, *_ in calls]
    assert "same" in paddings and "valid" in paddings
    assert any(isinstance(p, tuple) and any(isinstance(q, tuple) for q in p) for p in paddings)
    assert any(x.ndim == w.ndim - 1 for x, w, *_ in calls)          # unbatched
    assert any(b is not None for x, w, b, *_ in calls) and any(b is None for _, _, b, *_ in calls)
    assert any(x.flags.f_contiguous and not x.flags.c_contiguous for x, *_ in calls)
    assert any(not (x.flags.c_contiguous or x.flags.f_contiguous) for x, *_ in calls)
    assert {x.dtype for x, *_ in calls} == {np.dtype(np.float32), np.dtype(np.float64)}


def test_switches_restrict_the_draws():
    calls = _recorded_calls(check_conv_transpose, ranks=(2,), groups=False, dilation=False,
                            output_padding=False, asymmetric_padding=False, unbatched=False,
                            noncontiguous=False, bias=False)
    for x, w, b, stride, padding, op, groups, dilation in calls:
        assert w.ndim == 4 and x.ndim == 4 and b is None and groups == 1
        assert per_axis(dilation, 2) == (1, 1) and per_axis(op, 2) == (0, 0)
        assert isinstance(padding, int) or all(isinstance(p, int) for p in padding)
        assert x.flags.c_contiguous and w.flags.c_contiguous
    calls = _recorded_calls(check_conv, padding_strings=False)
    assert all(not isinstance(p, str) for x, w, b, s, p, *_ in calls)


def test_draws_are_deterministic_for_a_seed():
    first = _recorded_calls(check_conv_transpose, n_cases=30, seed=11)
    again = _recorded_calls(check_conv_transpose, n_cases=30, seed=11)
    other = _recorded_calls(check_conv_transpose, n_cases=30, seed=12)
    shapes = lambda calls: [(x.shape, w.shape, *rest[1:]) for x, w, *rest in calls]  # noqa: E731
    assert shapes(first) == shapes(again) != shapes(other)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(first, again))


@pytest.mark.parametrize("op", [CONV_TRANSPOSE, CONV, CONV_TRANSPOSE_BACKWARD])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_setup_code_rebuilds_the_arrays(op, layout):
    src = NumpySource(np.random.default_rng(2))
    convention = Convention(layout=layout, weight_layout="tensorflow")
    for _ in range(60):
        try:
            case = draw_case(src, transposed=op.transposed, unbatched=True,
                             dtypes=("float32", "float64"), memory_orders=("C", "F", "strided"))
        except Rejected:
            continue
        arrays = make_arrays(op, case, convention)
        namespace = {}
        exec(setup_code(op, case, convention), namespace)
        for name, short in (("input", "x"), ("weight", "w"), ("bias", "b"), ("grad_output", "g")):
            if name not in arrays:
                continue
            got, want = namespace[short], arrays[name]
            if want is None:
                assert got is None
                continue
            assert got.shape == want.shape and got.dtype == want.dtype
            assert got.strides == want.strides
            np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------
# Planted defects: each fails with its kind and a minimal configuration.

def _zero_stuffed(x, w, b, stride, padding, output_padding, groups, dilation, *,
                  amounts=None, flip=True, stuff=None, dilate=True, dtype=None):
    """The zero-stuffing reference with one step replaceable (batched, float)."""
    rank = w.ndim - 2
    stride, dilation = per_axis(stride, rank), per_axis(dilation, rank)
    output_padding = per_axis(output_padding, rank)
    kernel = w.shape[2:]
    pairs = zs.padding_pairs(padding, x.shape[2:], kernel, stride, dilation, transposed=True)
    work = np.result_type(x, w) if dtype is None else dtype
    x, w = x.astype(work), w.astype(work)
    stuffed = zs.zero_stuff(x, stuff(stride, dilation) if stuff else stride)
    if amounts is None:
        amounts = lambda k, d, b, e, op: (d * (k - 1) - b, d * (k - 1) - e + op)  # noqa: E731
    padded = zs.pad_or_crop(stuffed, [amounts(k, d if dilate else 1, pb, pe, op)
                                      for k, d, (pb, pe), op in zip(kernel, dilation, pairs,
                                                                    output_padding)])
    c_in = w.shape[0] // groups
    swapped = np.concatenate([np.swapaxes(w[g * c_in:(g + 1) * c_in], 0, 1)
                              for g in range(groups)], axis=0)
    if flip:
        swapped = swapped[(slice(None), slice(None)) + (slice(None, None, -1),) * rank]
    kernel_w = zs.dilate_kernel(swapped, dilation) if dilate else swapped
    out = zs.correlate(padded, kernel_w, groups)
    if b is not None:
        out = out + b.astype(work).reshape((-1,) + (1,) * rank)
    return out.astype(np.result_type(x.dtype, np.float32) if dtype is not None else out.dtype)


BATCHED = dict(unbatched=False)


def test_planted_padding_off_by_one_on_one_side():
    def fn(*args):   # the crop at the beginning one short, one extra at the end
        return _zero_stuffed(*args, amounts=lambda k, d, b, e, op: (d * (k - 1) - b - 1,
                                                                    d * (k - 1) - e + op + 1))
    failure = failure_of(check_conv_transpose, fn, **BATCHED)
    assert failure.kind == "wrong values"
    assert_minimal(failure.case)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_output_padding_ignored(seed):
    def fn(*args):
        return _zero_stuffed(*args, amounts=lambda k, d, b, e, op: (d * (k - 1) - b,
                                                                    d * (k - 1) - e))
    failure = failure_of(check_conv_transpose, fn, seed=seed, **BATCHED)
    case = failure.case
    assert "output_padding=1" in str(failure)
    if failure.kind == "wrong shape":
        assert_minimal(case, output_padding=(1,), stride=lambda v: v in ((1,), (2,)),
                       dilation=lambda v: v in ((1,), (2,)))
        assert max(per_axis(case.stride, 1) + per_axis(case.dilation, 1)) == 2
    else:
        # Where the output without output_padding is empty, the zero-stuffing code raises
        # (its window is larger than the cropped input): the smallest such case needs
        # padding that crops all of a length-2 input's full output.
        assert failure.kind == "raised on a valid input"
        assert_minimal(case, output_padding=(1,), in_size=(2,), stride=lambda v: True,
                       padding=lambda v: True, dilation=lambda v: True)
        full = (2 - 1) * per_axis(case.stride, 1)[0] + 1
        assert sum(zs.padding_pairs(case.padding, (2,), (1,), (1,), (1,),
                                    transposed=True)[0]) == full


def test_planted_groups_mixing_channels():
    def fn(x, w, b, stride, padding, output_padding, groups, dilation):
        # Each group reads the input channels of the next group.
        x = np.roll(x, x.shape[1] // groups, axis=1)
        return stc.conv_transpose(x, w, b, stride, padding, output_padding, groups, dilation)

    failure = failure_of(check_conv_transpose, fn, **BATCHED)
    assert failure.kind == "wrong values"
    assert_minimal(failure.case, groups=2)


def test_planted_kernel_not_flipped():
    failure = failure_of(check_conv_transpose, lambda *a: _zero_stuffed(*a, flip=False),
                         **BATCHED)
    assert failure.kind == "wrong values"
    assert_minimal(failure.case, kernel=(2,))
    message = str(failure)
    assert "Terms of output[0, 0, " in message and "x[0, 0, 0] * w[0, 0, " in message


def test_planted_dilation_applied_as_stride():
    def fn(*args):   # dilation stuffs the input instead of spreading the kernel
        return _zero_stuffed(*args, stuff=lambda s, d: tuple(a * b for a, b in zip(s, d)),
                             dilate=False)
    failure = failure_of(check_conv_transpose, fn, **BATCHED)
    assert failure.kind in ("wrong shape", "wrong values")
    case = failure.case
    assert_minimal(case, dilation=(2,), in_size=lambda v: v in ((1,), (2,)),
                   kernel=lambda v: v in ((1,), (2,)))
    assert case.in_size[0] + case.kernel[0] == 3


def test_planted_float16_accumulation():
    def fn(*args):
        return _zero_stuffed(*args, dtype=np.float16)

    assert check_conv_transpose(fn, n_cases=30, dtypes=(np.float32,), rtol=1e-2,
                                **BATCHED) is None  # within a float16 tolerance, it passes
    failure = failure_of(check_conv_transpose, fn, dtypes=(np.float32,), **BATCHED)
    assert failure.kind == "wrong values"
    case = failure.case
    assert case.dtype == "float32"
    assert_minimal(case, in_size=lambda v: v[0] <= 2, kernel=lambda v: v[0] <= 2,
                   padding=lambda v: True, stride=lambda v: True, dilation=lambda v: True,
                   output_padding=lambda v: True)
    assert np.prod(case.input_shape) * np.prod(case.weight_shape) <= 4


def test_planted_input_modification():
    def fn(x, w, b, *args):
        out = stc.conv_transpose(x, w, b, *args)
        x *= 0.5                                     # "normalises" its input in place
        return out

    failure = failure_of(check_conv_transpose, fn)
    assert failure.kind == "modified its input"
    assert_minimal(failure.case)
    assert "input changed at [0, 0, 0]" in str(failure)


def test_planted_raise_and_wrong_dtype_are_told_apart():
    def no_groups(x, w, b, stride, padding, output_padding, groups, dilation):
        if groups > 1:
            raise NotImplementedError("groups")
        return stc.conv_transpose(x, w, b, stride, padding, output_padding, groups, dilation)

    failure = failure_of(check_conv_transpose, no_groups)
    assert failure.kind == "raised on a valid input"
    assert isinstance(failure.__cause__, NotImplementedError)
    assert_minimal(failure.case, groups=2)
    assert check_conv_transpose(no_groups, groups=False, n_cases=50) is None

    def float64_out(*args):
        return stc.conv_transpose(*args).astype(np.float64)

    failure = failure_of(check_conv_transpose, float64_out, dtypes=(np.float32,))
    assert failure.kind == "wrong dtype" and "float64" in str(failure)
    assert_minimal(failure.case)
    assert check_conv_transpose(float64_out, dtypes=(np.float32,), check_dtype=False,
                                n_cases=50) is None


def test_planted_conv_defect():
    def fn(x, w, b, stride, padding, dilation, groups):   # dilation dropped
        return stc.conv(x, w, b, stride, padding, 1, groups)

    failure = failure_of(check_conv, fn, **BATCHED)
    assert failure.kind in ("wrong shape", "wrong values")
    assert_minimal(failure.case, dilation=(2,), in_size=lambda v: v[0] <= 3,
                   kernel=(2,), padding=lambda v: True)
    assert "Output size, axis 0" in str(failure)


def test_the_kinds_are_the_documented_five():
    assert KINDS == ("wrong values", "wrong shape", "wrong dtype", "raised on a valid input",
                     "modified its input")


# ---------------------------------------------------------------------------
# The reproducer is runnable and reproduces

def test_reproducer_reproduces_the_reported_values():
    def fn(*args):
        return _zero_stuffed(*args, flip=False)

    failure = failure_of(check_conv_transpose, fn, **BATCHED)
    message = str(failure)
    index, expected, got = re.search(
        r"First differing element: output\[([\d, ]+)\]: expected (\S+), got (\S+) ",
        message).groups()
    namespace = {"fn": fn}
    exec(failure.reproducer, namespace)
    out = namespace["out"]
    position = tuple(int(i) for i in index.split(","))
    assert out[position] == float(got)
    x, w, b = namespace["x"], namespace["w"], namespace["b"]
    reference = stc.conv_transpose(x, w, b, **failure.case.hyper())
    assert reference[position] == pytest.approx(float(expected), rel=1e-12)
    # The terms listed sum to the expected value.
    terms = [float(v) for v in re.findall(r"= \S+ \* \S+ = (\S+)$", message, re.M)]
    assert sum(terms) == pytest.approx(float(expected), rel=1e-4)


def test_failure_message_with_channels_shows_terms_of_each_input_channel():
    def fn(x, w, b, stride, padding, output_padding, groups, dilation):
        out = stc.conv_transpose(x, w, b, stride, padding, output_padding, groups, dilation)
        if x.shape[1] // groups >= 2:
            out[(0,) * out.ndim] += 1.0        # wrong only with two input channels per group
        return out

    failure = failure_of(check_conv_transpose, fn, **BATCHED)
    assert failure.kind == "wrong values"
    assert_minimal(failure.case, in_per_group=2)
    assert "from input channel 0:" in str(failure) and "from input channel 1:" in str(failure)


# ---------------------------------------------------------------------------
# Backward

def test_planted_wrong_weight_gradient():
    def fn(*args):
        gi, gw, gb = stc.conv_transpose_backward(*args)
        return gi, gw[..., ::-1], gb                  # kernel axis reversed

    failure = failure_of(check_conv_transpose_backward, fn, **BATCHED)
    assert failure.kind == "wrong values"
    assert "grad_weight differs" in str(failure).splitlines()[0]
    assert_minimal(failure.case, kernel=(2,))


def test_planted_missing_bias_gradient():
    def fn(*args):
        gi, gw, gb = stc.conv_transpose_backward(*args)
        return gi, gw, None

    failure = failure_of(check_conv_transpose_backward, fn)
    assert failure.kind == "wrong shape" and "grad_bias" in str(failure).splitlines()[0]
    assert_minimal(failure.case)
    assert check_conv_transpose_backward(fn, bias=False, n_cases=40) is None


def test_planted_conv_grad_input_wrong_for_strides():
    def fn(g, x, w, stride, padding, dilation, groups):
        gi, gw, gb = stc.conv_backward(g, x, w, stride, padding, dilation, groups)
        if max(per_axis(stride, w.ndim - 2)) > 1:
            gi = gi * 2.0
        return gi, gw, gb

    failure = failure_of(check_conv_backward, fn, **BATCHED)
    assert failure.kind == "wrong values" and "grad_input" in str(failure).splitlines()[0]
    assert_minimal(failure.case, stride=(2,), in_size=lambda v: v[0] <= 2)


# ---------------------------------------------------------------------------
# Strategies

@settings(max_examples=40, deadline=None)
@given(strategies.conv_transpose_args(unbatched=True))
def test_strategy_arguments_are_valid_calls(drawn):
    case, args = drawn
    out = stc.conv_transpose(*args)
    assert out.shape == case.output_shape
    assert isinstance(case, Case)


@settings(max_examples=30, deadline=None)
@given(strategies.conv_args(padding_kinds=("same", "valid"), groups=False))
def test_strategy_conv_arguments(drawn):
    case, (x, w, b, stride, padding, dilation, groups) = drawn
    assert padding in ("same", "valid") and groups == 1
    assert stc.conv(x, w, b, stride, padding, dilation, groups).shape == case.output_shape


def test_import_needs_no_hypothesis_and_sparsetconv_does_not_import_testing():
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import sparsetconv\n"
        "assert 'sparsetconv.testing' not in sys.modules\n"
        "import sparsetconv.testing as t\n"
        "t.check_conv_transpose(sparsetconv.conv_transpose, n_cases=5)\n"
        "try:\n"
        "    import sparsetconv.testing.strategies\n"
        "except ImportError as e:\n"
        "    assert 'pip install hypothesis' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('strategies imported without hypothesis')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_case_arrays_match_what_the_checks_give():
    case = Case(transposed=True, rank=2, batch=2, groups=2, in_per_group=1, out_per_group=2,
                in_size=(3, 2), kernel=(2, 2), stride=2, bias=True, seed=9)
    given_arrays = make_arrays(CONV_TRANSPOSE, case, Convention())
    for mine, theirs in zip(case.arrays(), (given_arrays["input"], given_arrays["weight"],
                                            given_arrays["bias"])):
        np.testing.assert_array_equal(mine, theirs)
    assert dataclasses.replace(case, in_size=(0, 2)).valid() is False


# ---------------------------------------------------------------------------
# The docs page's examples run (JAX's where JAX is installed, PyTorch's where PyTorch is)

def _python_blocks(path):
    lines = open(path, encoding="utf-8").read().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == ".. code-block:: python":
            i += 1
            body = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                body.append(lines[i][4:])
                i += 1
            blocks.append("\n".join(body).strip("\n"))
        else:
            i += 1
    return blocks


def test_docs_examples_run():
    import importlib.util

    blocks = _python_blocks(os.path.join(ROOT, "docs", "testing.rst"))
    assert len(blocks) >= 8
    namespace = {}
    ran = skipped = 0
    for block in blocks:
        if ("import jax" in block or "without_transpose_kernel" in block) \
                and importlib.util.find_spec("jax") is None:
            skipped += 1
            continue
        if "import torch" in block and importlib.util.find_spec("torch") is None:
            skipped += 1
            continue
        if "check_conv_transpose(unflipped" in block or \
                "check_conv_transpose(without_transpose_kernel" in block:
            # The page shows these failing; the message must be the one printed there.
            with pytest.raises(CheckFailure) as info:
                exec(block, namespace)
            assert str(info.value).splitlines()[0] == "wrong values: output differs from " \
                                                      "the float64 reference at 2 of 2 elements"
            assert info.value.case.kernel == (2,)
            ran += 1
            continue
        exec(block, namespace)
        ran += 1
    # every block ran but those whose optional framework is missing
    assert ran == len(blocks) - skipped and ran >= 6
