"""Verify your own transposed convolution (or convolution, or their gradients).

In the spirit of :mod:`numpy.testing`: each check draws configurations -- rank, batch,
channels, groups, kernel, stride, padding in every form, output_padding, dilation,
dtype, memory order -- deterministically from ``seed``, calls your function ``fn`` with
``torch.nn.functional``'s positional signature, and compares with sparsetconv's own
float64 result.  On the first failure it *shrinks* the configuration (fewest channels
and groups, batch 1, smallest sizes and kernel, stride and dilation 1, simplest
padding, output_padding 0), keeping each simplification only while ``fn`` still fails
the same way, and raises :class:`CheckFailure` (an ``AssertionError``) whose message
starts with the kind of failure:

- ``wrong values``: the output differs beyond the tolerance;
- ``wrong shape``: the output (or a gradient) has the wrong shape, or is ``None``;
- ``wrong dtype``: float32 in should give float32 out, float64 float64 (float16 in
  gives float32, as in sparsetconv);
- ``raised on a valid input``: ``fn`` raised on an argument combination it claims to
  support;
- ``modified its input``: an input array was written to.

The message then gives one line of Python that rebuilds the arrays from a seed and
calls ``fn`` (the reproducer), the shapes, the first differing element with the
expected and the actual value, the products of input and weight elements that sum to
it (:func:`sparsetconv.output_terms`) and the derivation of the output shape
(:func:`sparsetconv.explain`).

Switches restrict the draws to what ``fn`` supports; adapters (``layout``,
``weight_layout``, ``output_shape``, ``convert``) let it take other frameworks'
conventions.  :mod:`sparsetconv.testing.strategies` exports the same configurations as
hypothesis strategies (hypothesis is needed by that module only).

Examples
--------
>>> import numpy as np
>>> import sparsetconv
>>> from sparsetconv.testing import check_conv_transpose
>>> check_conv_transpose(sparsetconv.conv_transpose, n_cases=20)   # passes: None
>>> def forgets_bias(x, w, b, stride, padding, output_padding, groups, dilation):
...     return sparsetconv.conv_transpose(x, w, None, stride, padding, output_padding,
...                                       groups, dilation)
>>> check_conv_transpose(forgets_bias, n_cases=20)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
sparsetconv.testing.CheckFailure: wrong values: output differs from the float64 reference at 1 of 1 elements
...
"""

import numpy as np

from ._cases import Case
from ._check import (CONV, CONV_BACKWARD, CONV_TRANSPOSE, CONV_TRANSPOSE_BACKWARD, KINDS,
                     CheckFailure, run_check)
from ._conventions import WEIGHT_LAYOUTS

CheckFailure.__module__ = __name__

__all__ = ["check_conv_transpose", "check_conv", "check_conv_transpose_backward",
           "check_conv_backward", "CheckFailure", "Case", "KINDS", "WEIGHT_LAYOUTS"]

_SWITCHES_DOC = """
    fn : callable
        Your implementation.  Arrays are NumPy arrays (or whatever ``convert`` makes of
        them); it returns an array-like.
    n_cases : int
        How many configurations to draw.
    seed : int
        The draws are a deterministic function of ``seed`` and the switches.
    ranks : tuple of int
        Spatial ranks to draw, among 1, 2, 3.
    dtypes : tuple of dtype
        dtypes of the arrays given to ``fn`` (all arrays of one call share one dtype).
    groups, dilation{output_padding} : bool
        ``False``: always 1{op_zero}.
    asymmetric_padding : bool
        ``False``: symmetric padding only, an int or a tuple of ints; ``True`` also
        draws ``(begin, end)`` pairs per axis and, with ``padding_strings``,
        ``"same"`` and ``"valid"``.
    unbatched : bool
        ``True``: some inputs come without the batch axis, ``(C, *spatial)``.
    layout : {{"channels_first", "channels_last"}}
        The layout of the input, the output{grad_layout}: ``(N, C, *spatial)`` or
        ``(N, *spatial, C)``.
    rtol : float, optional
        Tolerance relative to the scale of the result, ``|got - expected| <= rtol *
        max(1, max|expected|)``; default 1e-12 for a float64 result, 1e-5 for
        float32.
    padding_strings : bool
        ``False``: never ``"same"`` or ``"valid"``.
    bias : bool
        {bias_doc}
    noncontiguous : bool
        ``True``: some arrays are Fortran-ordered or strided views; ``False``:
        C-contiguous only.
    weight_layout : str
        The order of the weight's axes: ``"torch"`` (default) or ``"onnx"``
        ({torch_layout}), ``"tensorflow"`` or ``"jax"`` ({tf_layout}: the forward
        convolution's ``(*kernel, in, out)`` kernel{tf_note}), or a string of ``I``
        (the operation's input channels), ``O`` (its output channels) and ``...`` (the
        kernel axes), e.g. ``"...IO"``.  Channel axes keep PyTorch's sizes (the one that
        PyTorch divides by ``groups`` stays divided).{output_shape_doc}
    convert : callable, optional
        Applied to every array before the call, e.g. ``torch.from_numpy`` or
        ``jax.numpy.asarray``.  (With ``torch.from_numpy`` the tensors share memory with
        the arrays, so writes to them are still detected.)
    check_dtype : bool
        ``False``: do not report ``wrong dtype`` (values are still compared).

    Returns
    -------
    None
        When every case passes.

    Raises
    ------
    CheckFailure
        An ``AssertionError`` for the first failing case, shrunk to a minimal one; the
        message starts with its kind and contains a one-line reproducer.
        ``.kind``, ``.case`` (a :class:`Case`), ``.original`` and ``.reproducer`` carry
        the same facts.
"""


def _doc(transposed, backward):
    return _SWITCHES_DOC.format(
        output_padding=", output_padding" if transposed else "",
        op_zero=" (output_padding 0)" if transposed else "",
        grad_layout=" and the gradients" if backward else "",
        bias_doc=("``False``: ``grad_bias`` is not checked (``fn`` may return ``None``)."
                  if backward else "``False``: bias is always ``None``; else half the "
                                   "cases have one."),
        torch_layout="``(C_in, C_out // groups, *kernel)``" if transposed
        else "``(C_out, C_in // groups, *kernel)``",
        tf_layout="``(*kernel, C_out // groups, C_in)``" if transposed
        else "``(*kernel, C_in // groups, C_out)``",
        tf_note=(": ``tf.nn.conv2d_transpose``'s filters and ``jax.lax.conv_transpose``'s "
                 "kernel with ``transpose_kernel=True``" if transposed else ""),
        output_shape_doc=(
            "\n    output_shape : bool\n        ``True``: ``fn`` takes the output's full "
            "shape (in ``layout``, with the batch\n        axis when batched), as "
            "``tf.nn.conv2d_transpose`` does, where PyTorch takes\n        "
            "``output_padding``." if transposed else ""),
    )


def check_conv_transpose(fn, *, n_cases=200, seed=0, ranks=(1, 2, 3), dtypes=(np.float64,),
                         groups=True, dilation=True, output_padding=True,
                         asymmetric_padding=True, unbatched=True, layout="channels_first",
                         rtol=None, padding_strings=True, bias=True, noncontiguous=True,
                         weight_layout="torch", output_shape=False, convert=None,
                         check_dtype=True):
    return run_check(CONV_TRANSPOSE, fn, **_options(locals()))


def check_conv(fn, *, n_cases=200, seed=0, ranks=(1, 2, 3), dtypes=(np.float64,),
               groups=True, dilation=True, asymmetric_padding=True, unbatched=True,
               layout="channels_first", rtol=None, padding_strings=True, bias=True,
               noncontiguous=True, weight_layout="torch", convert=None, check_dtype=True):
    return run_check(CONV, fn, output_padding=False, output_shape=False,
                     **_options(locals()))


def check_conv_transpose_backward(fn, *, n_cases=200, seed=0, ranks=(1, 2, 3),
                                  dtypes=(np.float64,), groups=True, dilation=True,
                                  output_padding=True, asymmetric_padding=True,
                                  unbatched=True, layout="channels_first", rtol=None,
                                  padding_strings=True, bias=True, noncontiguous=True,
                                  weight_layout="torch", output_shape=False, convert=None,
                                  check_dtype=True):
    return run_check(CONV_TRANSPOSE_BACKWARD, fn, **_options(locals()))


def check_conv_backward(fn, *, n_cases=200, seed=0, ranks=(1, 2, 3), dtypes=(np.float64,),
                        groups=True, dilation=True, asymmetric_padding=True, unbatched=True,
                        layout="channels_first", rtol=None, padding_strings=True, bias=True,
                        noncontiguous=True, weight_layout="torch", convert=None,
                        check_dtype=True):
    return run_check(CONV_BACKWARD, fn, output_padding=False, output_shape=False,
                     **_options(locals()))


def _options(names):
    return {k: v for k, v in names.items() if k != "fn"}


check_conv_transpose.__doc__ = """Check ``fn``, a transposed convolution, over random configurations.

    ``fn(input, weight, bias, stride, padding, output_padding, groups, dilation)`` --
    ``torch.nn.functional.conv_transpose*d``'s positional signature -- must return
    what ``sparsetconv.conv_transpose`` returns.

    Parameters
    ----------""" + _doc(True, False) + """
    Examples
    --------
    >>> import numpy as np
    >>> import sparsetconv
    >>> check_conv_transpose(sparsetconv.conv_transpose, n_cases=50, seed=1)
    >>> from sparsetconv.testing._zero_stuffing import conv_transpose as zero_stuffed
    >>> check_conv_transpose(zero_stuffed, n_cases=50, dtypes=(np.float32, np.float64))
    """

check_conv.__doc__ = """Check ``fn``, a convolution, over random configurations.

    ``fn(input, weight, bias, stride, padding, dilation, groups)`` --
    ``torch.nn.functional.conv*d``'s positional signature -- must return what
    ``sparsetconv.conv`` returns.

    Parameters
    ----------""" + _doc(False, False) + """
    Examples
    --------
    >>> import sparsetconv
    >>> check_conv(sparsetconv.conv, n_cases=50)
    """

check_conv_transpose_backward.__doc__ = """Check ``fn``, the gradients of a transposed convolution.

    ``fn(grad_output, input, weight, stride, padding, output_padding, groups, dilation)``
    returns ``(grad_input, grad_weight, grad_bias)``: the gradients, for
    ``grad_output``, of ``conv_transpose(input, weight, bias, ...)`` with respect to
    each argument (as ``sparsetconv.conv_transpose_backward`` computes them).

    Parameters
    ----------""" + _doc(True, True) + """
    Examples
    --------
    >>> import sparsetconv
    >>> check_conv_transpose_backward(sparsetconv.conv_transpose_backward, n_cases=30)
    """

check_conv_backward.__doc__ = """Check ``fn``, the gradients of a convolution.

    ``fn(grad_output, input, weight, stride, padding, dilation, groups)`` returns
    ``(grad_input, grad_weight, grad_bias)`` of ``conv(input, weight, bias, ...)``.

    Parameters
    ----------""" + _doc(False, True) + """
    Examples
    --------
    >>> import sparsetconv
    >>> check_conv_backward(sparsetconv.conv_backward, n_cases=30)
    """
