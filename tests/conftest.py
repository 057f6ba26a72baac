"""Shared pieces of the test suite.

- ``BACKENDS``: every functional backend the library reports
  (``sparsetconv._plan.BACKENDS``), listed by :func:`available_backends` for tests
  that loop over backends to share one reference computation; the ``backend`` fixture
  parametrises over "auto", "sparse" and "direct" with each compiled algorithm forced
  (:func:`forced_algorithm`).
- ``conv_configs(rank)``: a hypothesis strategy drawing one random valid (transposed)
  convolution, small enough for the plain-loop reference of ``reference.py``.
- :func:`explicit_padding`: ``"same"``/``"valid"``/ints/pairs turned into per-axis
  ``(begin, end)`` pairs for the reference, written from the padding conventions.
- :func:`transposed_size`, :func:`conv_size` (one axis) and :func:`output_spatial`
  (every axis): the size formulas, written once for every test file.
"""

import contextlib
import os
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume
from hypothesis import strategies as st

import sparsetconv._compiled
import sparsetconv._plan
from sparsetconv.testing._zero_stuffing import padding_pairs
from sparsetconv.testing.strategies import PADDING_KINDS, cases
from sparsetconv.testing.strategies import SYMMETRIC_PADDING_KINDS  # noqa: F401 (for the tests)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------
# The printed answers of the users' questions (the README tour), written down once.

SEED_002_OUT = np.array([[0, 0, 4, 1],
                         [0, 0, 2, 3],
                         [8, 2, 12, 3],
                         [4, 6, 6, 9]], dtype=np.float64)

SEED_003_OUT = np.array([[6, 12, 14, 12, 14, 12, 14, 7],
                         [12, 24, 28, 24, 28, 24, 28, 14],
                         [20, 40, 44, 40, 44, 40, 44, 22],
                         [12, 24, 28, 24, 28, 24, 28, 14],
                         [20, 40, 44, 40, 44, 40, 44, 22],
                         [12, 24, 28, 24, 28, 24, 28, 14],
                         [20, 40, 44, 40, 44, 40, 44, 22],
                         [10, 20, 22, 20, 22, 20, 22, 11]], dtype=np.float64)

# ---------------------------------------------------------------------------
# Backends

BACKENDS = tuple(sparsetconv._plan.BACKENDS)


def available_backends():
    """Every backend name the library accepts (all of them always run: the compiled
    kernels are part of the package, serial when built without OpenMP)."""
    return list(BACKENDS)


@contextlib.contextmanager
def forced_algorithm(name):
    """Inside, every compiled call runs algorithm ``name`` of ``_compiled.ALGORITHMS``
    (where it applies: kernel rows serves only transposed convolutions with dilation 1
    on the last axis) and, for "direct" and "gemm", the weight-gradient algorithm of
    that name.  The library's prepared-call caches are cleared on entry and exit."""
    from sparsetconv import _compiled, _plan, gradients

    def clear():
        _plan.forget_prepared_calls()
        gradients._input_gradient.cache_clear()
        gradients._weight_gradient.cache_clear()

    from sparsetconv import _layout

    saved = _compiled.choose_algorithm, _compiled.choose_weight_gradient_algorithm
    forced = _compiled.ALGORITHMS[name]

    def chooser(direction_of, fallback):
        # the forced algorithm where its stated domain includes the plan
        def choose(plan):
            if _layout.unsupported(plan, direction_of(plan), forced) is None:
                return forced
            return fallback(plan)
        return choose

    clear()
    _compiled.choose_algorithm = chooser(
        lambda plan: _layout.TRANSPOSE if plan.transposed else _layout.CONVOLVE, saved[0])
    _compiled.choose_weight_gradient_algorithm = chooser(
        lambda plan: _layout.WEIGHT_GRADIENT, saved[1])
    try:
        yield
    finally:
        _compiled.choose_algorithm, _compiled.choose_weight_gradient_algorithm = saved
        clear()


# "auto" (the algorithm the library picks), "sparse", and "direct" with each compiled
# algorithm forced in turn: "auto" and an unforced "direct" run the same code.
BACKEND_VARIANTS = ("auto", "sparse") + tuple(
    f"direct-{name}" for name in sorted(sparsetconv._compiled.ALGORITHMS))


@pytest.fixture(params=BACKEND_VARIANTS)
def backend(request):
    """A backend name to pass as ``backend=``; for the ``direct-*`` variants the named
    compiled algorithm is forced for the duration of the test."""
    name, _, algorithm = request.param.partition("-")
    if not algorithm:
        yield name
        return
    with forced_algorithm(algorithm):
        yield name


# ---------------------------------------------------------------------------
# Padding and sizes, from the conventions and formulas (independent of the library)

def _per_axis(value, rank):
    return (value,) * rank if isinstance(value, int) else tuple(value)


def ceil_div(a, b):
    return -(-a // b)


_ceil_div = ceil_div


def transposed_size(n, k, s, pb, pe, op, d):
    """One axis: the transposed convolution's output size, from the formula."""
    return (n - 1) * s - pb - pe + d * (k - 1) + op + 1


def conv_size(n, k, s, pb, pe, d):
    """One axis: the convolution's output size, from the formula."""
    return (n + pb + pe - d * (k - 1) - 1) // s + 1


def explicit_padding(padding, in_size, kernel, stride=1, dilation=1, *, transposed):
    """Per-axis ``(begin, end)`` pairs for the reference.

    ``in_size`` is the spatial size of the operation's own input.  Conv ``"same"``:
    total = max((ceil(in/s) - 1)*s + d*(k - 1) + 1 - in, 0), smaller half first.
    Conv-transpose ``"same"``: crop = d*(k - 1) + 1 - s, smaller half first; a negative
    crop is an extension at the end (``end`` negative), so that output = in * stride.
    """
    rank = len(in_size)
    assert not isinstance(padding, str) or padding in ("same", "valid"), padding
    return padding_pairs(padding, in_size, _per_axis(kernel, rank), _per_axis(stride, rank),
                         _per_axis(dilation, rank), transposed=transposed)


def output_spatial(in_size, kernel, stride, pairs, dilation, output_padding=0, *,
                   transposed):
    """The output-size formulas, per axis."""
    rank = len(in_size)
    kernel, stride = _per_axis(kernel, rank), _per_axis(stride, rank)
    dilation = _per_axis(dilation, rank)
    output_padding = _per_axis(output_padding, rank)
    out = []
    for a in range(rank):
        (pb, pe), n, k, s, d = pairs[a], in_size[a], kernel[a], stride[a], dilation[a]
        if transposed:
            out.append(transposed_size(n, k, s, pb, pe, output_padding[a], d))
        else:
            out.append(conv_size(n, k, s, pb, pe, d))
    return tuple(out)


# ---------------------------------------------------------------------------
# Random configurations

# PADDING_KINDS = ("int", "ints", "pairs", "same", "valid") and
# SYMMETRIC_PADDING_KINDS = ("int", "ints") come from sparsetconv.testing.strategies.


@dataclass(frozen=True)
class ConvConfig:
    """One drawn call. ``kwargs`` are the library's keyword arguments."""

    transposed: bool
    rank: int
    batch: int
    groups: int
    in_per_group: int
    out_per_group: int
    in_size: tuple          # spatial size of the operation's input
    kernel: tuple
    stride: object          # as passed: int or tuple
    dilation: object
    padding: object         # as passed: int, tuple of ints / pairs, "same", "valid"
    output_padding: object  # as passed (0 for a convolution)
    pairs: tuple            # explicit (begin, end) per axis, for the reference
    out_size: tuple         # expected output spatial size (the formula)
    bias: bool
    seed: int

    @property
    def in_channels(self):
        return self.groups * self.in_per_group

    @property
    def out_channels(self):
        return self.groups * self.out_per_group

    @property
    def input_shape(self):
        return (self.batch, self.in_channels) + self.in_size

    @property
    def weight_shape(self):
        if self.transposed:
            return (self.in_channels, self.out_per_group) + self.kernel
        return (self.out_channels, self.in_per_group) + self.kernel

    @property
    def output_shape(self):
        return (self.batch, self.out_channels) + self.out_size

    def arrays(self, dtype=np.float64):
        """Random ``(x, w, b)`` (``b`` is ``None`` without bias) of ``dtype``."""
        rng = np.random.default_rng(self.seed)
        x = rng.standard_normal(self.input_shape).astype(dtype)
        w = rng.standard_normal(self.weight_shape).astype(dtype)
        b = rng.standard_normal(self.out_channels).astype(dtype) if self.bias else None
        return x, w, b

    def kwargs(self):
        kw = dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                  groups=self.groups)
        if self.transposed:
            kw["output_padding"] = self.output_padding
        return kw

    def plan(self, x, w, b=None):
        """The library's validated plan of this call on these arrays."""
        kw = self.kwargs()
        return sparsetconv._plan.make_plan(
            self.transposed, None, x.shape, x.dtype, w.shape, w.dtype,
            None if b is None else b.shape, None if b is None else b.dtype, kw["stride"],
            kw["padding"], kw.get("output_padding", 0), kw["groups"], kw["dilation"], None)

    def reference(self, x, w, b):
        """The plain-loop reference (float64) for these arrays."""
        from reference import conv_reference, conv_transpose_reference

        if self.transposed:
            return conv_transpose_reference(
                x, w, b, self.stride, [list(p) for p in self.pairs], self.output_padding,
                self.groups, self.dilation)
        return conv_reference(x, w, b, self.stride, [list(p) for p in self.pairs],
                              self.dilation, self.groups)


def config_from_case(case):
    """A :class:`ConvConfig` for a ``sparsetconv.testing`` case, with the padding pairs
    and the output size worked out here from the size formulas (not by the library)."""
    pairs = explicit_padding(case.padding, case.in_size, case.kernel, case.stride,
                             case.dilation, transposed=case.transposed)
    out_size = output_spatial(case.in_size, case.kernel, case.stride, pairs, case.dilation,
                              case.output_padding, transposed=case.transposed)
    assume(all(o >= 1 for o in out_size))
    return ConvConfig(
        transposed=case.transposed, rank=case.rank, batch=case.batch, groups=case.groups,
        in_per_group=case.in_per_group, out_per_group=case.out_per_group,
        in_size=case.in_size, kernel=case.kernel, stride=case.stride,
        dilation=case.dilation, padding=case.padding,
        output_padding=case.output_padding if case.transposed else 0, pairs=pairs,
        out_size=out_size, bias=case.bias, seed=case.seed,
    )


@st.composite
def conv_configs(draw, rank=None, *, transposed=True, padding_kinds=PADDING_KINDS,
                 same_needs_stride_one=False, max_batch=2, **bounds):
    """A random valid configuration of a convolution (``transposed=False``) or a
    transposed convolution, drawn by ``sparsetconv.testing.strategies.cases`` (the
    generator the verification kit uses): rank 1-3, batch 1-``max_batch``, groups 1-3,
    1-3 channels per group, kernel 1-3, stride 1-3, dilation 1-3, padding of one of
    ``padding_kinds``, valid output_padding, spatial sizes 1-5 (1-4 in 3-D), and a
    non-empty output.  ``same_needs_stride_one``: ``"same"`` only with stride 1
    (PyTorch's restriction).  ``bounds``: the other keywords of ``cases`` (``max_size``,
    ``max_kernel``, ``max_groups``, ``max_channels``, ``max_padding``, ``bias``, ...).
    The library's own output-size formula is not used to filter the draws.
    """
    case = draw(cases(transposed=transposed, ranks=(1, 2, 3) if rank is None else (rank,),
                      padding_kinds=padding_kinds, same_needs_stride_one=same_needs_stride_one,
                      max_batch=max_batch, filter_invalid=False, **bounds))
    return config_from_case(case)


def tolerance(dtype, reference):
    """The tolerance: ``(rtol, atol)`` for a result of ``dtype``."""
    scale = max(1.0, float(np.max(np.abs(reference), initial=0.0)))
    if np.dtype(dtype) == np.float64:
        return 1e-12, 1e-12 * scale
    return 0.0, 1e-5 * scale


def assert_matches(got, reference, dtype=None):
    """``got`` equals the float64 ``reference`` within the tolerance of its dtype."""
    dtype = got.dtype if dtype is None else dtype
    rtol, atol = tolerance(dtype, reference)
    np.testing.assert_allclose(got, reference, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------
# Memory layouts the kernels must accept

LAYOUTS = ("C", "F", "strided", "reversed", "readonly")


def relayout(array, layout):
    """The same values in another memory layout (never C-contiguous but for "C")."""
    if layout == "F":
        return np.asfortranarray(array)
    if layout == "strided":
        wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
        wide[..., ::2] = array
        return wide[..., ::2]
    if layout == "reversed":
        return np.ascontiguousarray(array[..., ::-1])[..., ::-1]
    if layout == "readonly":
        array = array.copy()
        array.setflags(write=False)
    return array
