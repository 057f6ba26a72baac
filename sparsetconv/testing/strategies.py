"""Hypothesis strategies for (transposed) convolution configurations and their arrays.

The same generator as the checks of :mod:`sparsetconv.testing`, driven by hypothesis
instead of a seeded NumPy generator, so hypothesis shrinks the configurations towards
simple ones: for writing your own properties.  This module needs hypothesis
(``pip install hypothesis``); nothing else in sparsetconv does.

- :func:`cases`: a :class:`~sparsetconv.testing.Case` (sizes, channels, groups, kernel,
  stride, padding in every form, output_padding, dilation, bias, seed);
- :func:`arrays`: ``(input, weight, bias)`` for a case, elements drawn by hypothesis;
- :func:`conv_transpose_args`, :func:`conv_args`: a whole positional argument tuple
  for ``torch.nn.functional``-style functions.

Examples
--------
>>> import numpy as np
>>> from hypothesis import given, settings
>>> import sparsetconv
>>> from sparsetconv.testing import strategies
>>> @settings(max_examples=20, deadline=None)
... @given(strategies.cases(ranks=(2,)))
... def test_output_shape(case):
...     x, w, b = case.arrays()
...     out = sparsetconv.conv_transpose(x, w, b, **case.hyper())
...     assert out.shape == case.output_shape
>>> test_output_shape()
"""

import numpy as np

try:
    from hypothesis import assume
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sparsetconv.testing.strategies needs hypothesis: pip install hypothesis "
        "(the checks of sparsetconv.testing do not)") from exc

from ._cases import MEMORY_ORDERS, PADDING_KINDS, SYMMETRIC_PADDING_KINDS, draw_case

__all__ = ["cases", "arrays", "conv_transpose_args", "conv_args", "PADDING_KINDS",
           "SYMMETRIC_PADDING_KINDS", "MEMORY_ORDERS"]


class _HypothesisSource:
    """The random choices of :func:`~sparsetconv.testing._cases.draw_case`, as draws."""

    def __init__(self, draw):
        self._draw = draw

    def integer(self, low, high):
        return self._draw(st.integers(low, high))

    def choice(self, options):
        return self._draw(st.sampled_from(options))

    def boolean(self):
        return self._draw(st.booleans())

    def reject(self):
        assume(False)


@st.composite
def cases(draw, *, transposed=True, ranks=(1, 2, 3), padding_kinds=PADDING_KINDS,
          groups=True, dilation=True, output_padding=True, unbatched=False, bias=None,
          dtypes=(np.float64,), memory_orders=("C",), same_needs_stride_one=False,
          max_batch=2, max_groups=3, max_channels=3, max_kernel=3, max_stride=3,
          max_dilation=3, max_size=None, max_padding=3, padding_spread=2,
          filter_invalid=True):
    """A valid :class:`~sparsetconv.testing.Case`.

    Parameters
    ----------
    transposed : bool
        A transposed convolution (default) or a convolution.
    ranks : tuple of int
    padding_kinds : tuple of str
        Among ``"int"`` (one int), ``"ints"`` (an int per axis), ``"pairs"`` (a
        ``(begin, end)`` pair per axis, a symmetric one sometimes as an int), ``"same"``,
        ``"valid"``.
    groups, dilation, output_padding : bool
        ``False``: always 1 (output_padding 0).
    unbatched : bool
        Some cases without the batch axis (``batch=None``).
    bias : bool or None
        ``None``: either.
    dtypes, memory_orders : tuple
        dtypes of the arrays; memory orders among ``"C"``, ``"F"``, ``"strided"``.
    same_needs_stride_one : bool
        ``"same"`` only with stride 1 (PyTorch's restriction for a convolution).
    max_batch, max_groups, max_channels, max_kernel, max_stride, max_dilation, max_size, max_padding : int or dict
        Upper bounds (``max_channels`` per group), an int or ``{rank: int}``;
        ``max_size`` (spatial input size) defaults to 5, 4 in 3-D.
    padding_spread : int
        How far above the least padding a convolution's padding goes.
    filter_invalid : bool
        ``False``: skip the final check of the output size by the library's formula.
    """
    return draw_case(
        _HypothesisSource(draw), transposed=transposed, ranks=ranks,
        padding_kinds=padding_kinds, groups=groups, dilation=dilation,
        output_padding=output_padding, unbatched=unbatched, bias=bias, dtypes=dtypes,
        memory_orders=memory_orders, same_needs_stride_one=same_needs_stride_one,
        max_batch=max_batch, max_groups=max_groups, max_channels=max_channels,
        max_kernel=max_kernel, max_stride=max_stride, max_dilation=max_dilation,
        max_size=max_size, max_padding=max_padding, padding_spread=padding_spread,
        filter_invalid=filter_invalid)


def arrays(case, *, dtype=None, elements=None):
    """``(input, weight, bias)`` for ``case`` with hypothesis-drawn elements.

    ``elements`` defaults to finite floats in [-10, 10]; ``dtype`` to the case's.
    (``case.arrays()`` gives seeded standard-normal arrays instead.)
    """
    dtype = np.dtype(case.dtype if dtype is None else dtype)
    if elements is None:
        elements = st.floats(-10, 10, allow_nan=False, width=min(64, 8 * dtype.itemsize))
    parts = [hnp.arrays(dtype, case.input_shape, elements=elements),
             hnp.arrays(dtype, case.weight_shape, elements=elements),
             hnp.arrays(dtype, (case.out_channels,), elements=elements) if case.bias
             else st.none()]
    return st.tuples(*parts)


@st.composite
def conv_transpose_args(draw, **options):
    """``(case, args)``: ``args`` is ``(input, weight, bias, stride, padding,
    output_padding, groups, dilation)``, ``torch.nn.functional.conv_transpose*d``'s
    positional order.  ``options`` go to :func:`cases`."""
    case = draw(cases(transposed=True, **options))
    x, w, b = draw(arrays(case))
    return case, (x, w, b, case.stride, case.padding, case.output_padding, case.groups,
                  case.dilation)


@st.composite
def conv_args(draw, **options):
    """``(case, args)``: ``args`` is ``(input, weight, bias, stride, padding, dilation,
    groups)``, ``torch.nn.functional.conv*d``'s positional order."""
    case = draw(cases(transposed=False, **options))
    x, w, b = draw(arrays(case))
    return case, (x, w, b, case.stride, case.padding, case.dilation, case.groups)


