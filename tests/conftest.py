"""Shared pieces of the test suite.

- ``BACKENDS``: every functional backend the library reports
  (``sparsetconv._plan.BACKENDS``), listed by :func:`available_backends` for tests
  that loop over backends to share one reference computation; the ``backend`` fixture
  parametrises over "auto", "sparse" and "direct" with each compiled algorithm forced
  (:func:`forced_algorithm`).
- ``conv_configs(rank)``: a hypothesis strategy drawing one random valid (transposed)
  convolution, small enough for the plain-loop reference of ``reference.py``.
- :func:`explicit_padding`: ``"same"``/``"valid"``/ints/pairs turned into per-axis
  ``(begin, end)`` pairs for the reference, written from SPEC section 1.
- :func:`transposed_size`, :func:`conv_size` (one axis) and :func:`output_spatial`
  (every axis): SPEC section 2's size formulas, written once for every test file.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------
# The seeds' printed answers (../shared/seeds/), written down once.

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
    from sparsetconv import _compiled, functional, gradients

    def clear():
        functional._CALLS.clear()
        gradients._input_gradient.cache_clear()
        gradients._weight_gradient.cache_clear()

    saved = _compiled.choose_algorithm, _compiled.weight_grad_algorithm
    forward = _compiled.ALGORITHMS[name]
    weight = {"direct": _compiled.WEIGHT_GRAD_DIRECT, "gemm": _compiled.WEIGHT_GRAD_GEMM}

    def choose(plan):
        if forward == _compiled.KERNEL_ROWS and not (plan.transposed and
                                                     plan.geometry.dilation[-1] == 1):
            return saved[0](plan)
        return forward

    clear()
    _compiled.choose_algorithm = choose
    _compiled.weight_grad_algorithm = lambda plan: weight.get(name, saved[1](plan))
    try:
        yield
    finally:
        _compiled.choose_algorithm, _compiled.weight_grad_algorithm = saved
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
# Padding and sizes, from SPEC sections 1 and 2 (independent of the library)

def _per_axis(value, rank):
    return (value,) * rank if isinstance(value, int) else tuple(value)


def ceil_div(a, b):
    return -(-a // b)


_ceil_div = ceil_div


def transposed_size(n, k, s, pb, pe, op, d):
    """SPEC section 2, one axis: the transposed convolution's output size."""
    return (n - 1) * s - pb - pe + d * (k - 1) + op + 1


def conv_size(n, k, s, pb, pe, d):
    """SPEC section 2, one axis: the convolution's output size."""
    return (n + pb + pe - d * (k - 1) - 1) // s + 1


def explicit_padding(padding, in_size, kernel, stride=1, dilation=1, *, transposed):
    """Per-axis ``(begin, end)`` pairs for the reference.

    ``in_size`` is the spatial size of the operation's own input.  Conv ``"same"``:
    total = max((ceil(in/s) - 1)*s + d*(k - 1) + 1 - in, 0), smaller half first.
    Conv-transpose ``"same"``: crop = d*(k - 1) + 1 - s, smaller half first; a negative
    crop is an extension at the end (``end`` negative), so that output = in * stride.
    """
    rank = len(in_size)
    kernel = _per_axis(kernel, rank)
    stride = _per_axis(stride, rank)
    dilation = _per_axis(dilation, rank)
    if isinstance(padding, str):
        if padding == "valid":
            return tuple((0, 0) for _ in range(rank))
        assert padding == "same", padding
        pairs = []
        for n, k, s, d in zip(in_size, kernel, stride, dilation):
            if transposed:
                crop = d * (k - 1) + 1 - s
                pairs.append((crop // 2, crop - crop // 2) if crop >= 0 else (0, crop))
            else:
                total = max((_ceil_div(n, s) - 1) * s + d * (k - 1) + 1 - n, 0)
                pairs.append((total // 2, total - total // 2))
        return tuple(pairs)
    if isinstance(padding, int):
        return tuple((padding, padding) for _ in range(rank))
    return tuple((p, p) if isinstance(p, int) else (p[0], p[1]) for p in padding)


def output_spatial(in_size, kernel, stride, pairs, dilation, output_padding=0, *,
                   transposed):
    """SPEC section 2's output-size formulas, per axis."""
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

PADDING_KINDS = ("int", "ints", "pairs", "same", "valid")
SYMMETRIC_PADDING_KINDS = ("int", "ints")


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
    out_size: tuple         # expected output spatial size (SPEC formula)
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

    def reference(self, x, w, b):
        """The plain-loop reference (float64) for these arrays."""
        from reference import conv_reference, conv_transpose_reference

        if self.transposed:
            return conv_transpose_reference(
                x, w, b, self.stride, [list(p) for p in self.pairs], self.output_padding,
                self.groups, self.dilation)
        return conv_reference(x, w, b, self.stride, [list(p) for p in self.pairs],
                              self.dilation, self.groups)


def _compact(draw, values):
    """An int where all axes agree (sometimes), else a tuple."""
    values = tuple(values)
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return values


def draw_padding(draw, kind, rank, transposed, capacity, need, limit=3, spread=2):
    """Draw a padding of ``kind`` that keeps the output non-empty.

    ``capacity[a]``: the most total crop a transposed convolution allows on axis a;
    ``need[a]``: the least total padding a convolution needs.  ``limit`` caps each
    amount drawn, ``spread`` how far above the minimum a convolution's padding goes.
    """
    if kind in ("same", "valid"):
        return kind
    if kind == "int":
        if transposed:
            p = draw(st.integers(0, min(limit, min(c // 2 for c in capacity))))
        else:
            low = max(_ceil_div(n, 2) for n in need)
            p = draw(st.integers(low, low + spread))
        return p if draw(st.booleans()) else (p,) * rank
    if kind == "ints":
        if transposed:
            return tuple(draw(st.integers(0, min(limit, c // 2))) for c in capacity)
        return tuple(draw(st.integers(_ceil_div(n, 2), _ceil_div(n, 2) + spread))
                     for n in need)
    pairs = []  # "pairs"
    for a in range(rank):
        if transposed:
            begin = draw(st.integers(0, min(limit, capacity[a])))
            end = draw(st.integers(0, min(limit, capacity[a] - begin)))
        else:
            begin = draw(st.integers(0, limit))
            low = max(0, need[a] - begin)
            end = draw(st.integers(low, low + 2))
        pairs.append((begin, end))
    return tuple(pairs)


@st.composite
def conv_configs(draw, rank=None, *, transposed=True, padding_kinds=PADDING_KINDS,
                 same_needs_stride_one=False, max_batch=2):
    """A random valid configuration of a convolution (``transposed=False``) or a
    transposed convolution: rank 1-3, batch 1-``max_batch``, groups 1-3, 1-3 channels
    per group, kernel 1-3, stride 1-3, dilation 1-3, padding of one of
    ``padding_kinds``, valid output_padding, spatial sizes 1-5 (1-4 in 3-D), and a
    non-empty output.  ``same_needs_stride_one``: ``"same"`` only with stride 1
    (PyTorch's restriction).
    """
    if rank is None:
        rank = draw(st.integers(1, 3))
    max_size = 4 if rank == 3 else 5
    batch = draw(st.integers(1, max_batch))
    groups = draw(st.integers(1, 3))
    in_per_group = draw(st.integers(1, 3))
    out_per_group = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(padding_kinds))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    if kind == "same" and same_needs_stride_one:
        stride = (1,) * rank
    else:
        stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    if kind == "valid" and not transposed:
        # Keep the dilated kernel within the largest input so "valid" is possible.
        dilation = tuple(d if k == 1 else min(d, (max_size - 1) // (k - 1))
                         for k, d in zip(kernel, dilation))
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))

    if transposed:
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1))
                               for s, d in zip(stride, dilation))
    else:
        output_padding = (0,) * rank

    if kind == "valid" and not transposed:
        # A "valid" convolution needs input >= dilated kernel.
        in_size = tuple(draw(st.integers(min(sp, max_size), max_size)) for sp in span)
        assume(all(n >= sp for n, sp in zip(in_size, span)))
    else:
        in_size = tuple(draw(st.integers(1, max_size)) for _ in range(rank))

    # Per axis: the least total padding a convolution needs, the most total crop a
    # transposed convolution allows, both for a non-empty output.
    need = [max(0, sp - n) for sp, n in zip(span, in_size)]
    capacity = [(n - 1) * s + sp + op - 1
                for n, s, sp, op in zip(in_size, stride, span, output_padding)]

    padding = draw_padding(draw, kind, rank, transposed, capacity, need)
    pairs = explicit_padding(padding, in_size, kernel, stride, dilation,
                             transposed=transposed)
    out_size = output_spatial(in_size, kernel, stride, pairs, dilation, output_padding,
                              transposed=transposed)
    assume(all(o >= 1 for o in out_size))
    return ConvConfig(
        transposed=transposed, rank=rank, batch=batch, groups=groups,
        in_per_group=in_per_group, out_per_group=out_per_group, in_size=in_size,
        kernel=kernel, stride=_compact(draw, stride), dilation=_compact(draw, dilation),
        padding=padding,
        output_padding=_compact(draw, output_padding) if transposed else 0,
        pairs=pairs, out_size=out_size, bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def tolerance(dtype, reference):
    """SPEC section 3's tolerance: ``(rtol, atol)`` for a result of ``dtype``."""
    scale = max(1.0, float(np.max(np.abs(reference), initial=0.0)))
    if np.dtype(dtype) == np.float64:
        return 1e-12, 1e-12 * scale
    return 0.0, 1e-5 * scale


def assert_matches(got, reference, dtype=None):
    """``got`` equals the float64 ``reference`` within the tolerance of its dtype."""
    dtype = got.dtype if dtype is None else dtype
    rtol, atol = tolerance(dtype, reference)
    np.testing.assert_allclose(got, reference, rtol=rtol, atol=atol)
