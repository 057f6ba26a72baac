"""Functional API: ``conv_transpose*`` and ``conv*`` on NumPy arrays.

Each call is validated and normalised once into a :class:`~sparsetconv._plan.ConvPlan`
(cached by shapes and arguments), then handed to a backend:

- ``"sparse"``: the scipy.sparse matrix of :mod:`sparsetconv.matrix`, applied to the
  whole batch as one sparse-times-dense product;
- ``"direct"``: the compiled Cython/OpenMP kernels (:mod:`sparsetconv._compiled`);
- ``"auto"``: the fastest correct path: the compiled kernels, with the algorithm
  chosen by :func:`sparsetconv._compiled.choose_algorithm`.

The 1-D/2-D/3-D names are thin aliases of the N-d functions that only pin the rank.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np

from . import _compiled
from ._plan import _plain, check_backend, make_plan
from ._typing import ArrayLike, Backend, IntOrTuple, Padding
from .matrix import _operator_matrix

__all__ = [
    "conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv", "conv1d", "conv2d", "conv3d",
]


def conv_transpose(input: ArrayLike, weight: ArrayLike, bias: Optional[ArrayLike] = None,
                   stride: IntOrTuple = 1, padding: Padding = 0,
                   output_padding: IntOrTuple = 0, groups: int = 1,
                   dilation: IntOrTuple = 1, *, output_size: Optional[Sequence[int]] = None,
                   backend: Backend = "auto") -> np.ndarray:
    """Transposed convolution ("fractionally-strided convolution"), N-d.

    Every input element ``x[n, ci, i]`` adds ``x[n, ci, i] * weight[ci, :, k]`` into
    the output at ``o = i*stride - pad_begin + k*dilation`` for each kernel tap ``k``;
    outputs that fall in the padding are cropped away.  It is the adjoint (transpose)
    of :func:`conv` with the same weight, not its inverse (see ``deconvolve``).

    Parameters
    ----------
    input : array_like
        ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``.
    weight : array_like
        ``(C_in, C_out // groups, *kernel)`` (PyTorch's layout); the spatial rank is
        ``weight.ndim - 2``, 1 to 3.
    bias : array_like, optional
        ``(C_out,)``.
    stride, output_padding, dilation : int or tuple of int
        ``0 <= output_padding < max(stride, dilation)``.
    padding : int, tuple, "valid" or "same"
        An int or ``(begin, end)`` pair per axis: the padding of the convolution this
        is the transpose of, so it *crops* the output.  ``"same"`` gives
        ``output = input * stride`` (Keras / ONNX ``SAME_UPPER``).
    groups : int
    output_size : tuple of int, optional
        Target spatial size (optionally with the leading N, C): picks
        ``output_padding`` as ``torch.nn.ConvTranspose*d`` does.  If a non-zero
        ``output_padding`` is given too, the two must agree.
    backend : {"auto", "direct", "sparse"}

    Returns
    -------
    numpy.ndarray
        ``(N, C_out, *out)``, or ``(C_out, *out)`` for an unbatched input, where
        ``out = (in - 1)*stride - pad_begin - pad_end + dilation*(kernel - 1)
        + output_padding + 1``.  dtype: float32 or float64 (integers and bools
        compute in float64, float16 in float32).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[[[0.0, 1.0], [2.0, 3.0]]]])
    >>> w = np.array([[[[4.0, 1.0], [2.0, 3.0]]]])
    >>> conv_transpose(x, w, stride=2)
    array([[[[ 0.,  0.,  4.,  1.],
             [ 0.,  0.,  2.,  3.],
             [ 8.,  2., 12.,  3.],
             [ 4.,  6.,  6.,  9.]]]])
    """
    return _apply(True, None, input, weight, bias, stride, padding, output_padding,
                  groups, dilation, output_size, backend)


def conv(input: ArrayLike, weight: ArrayLike, bias: Optional[ArrayLike] = None,
         stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
         groups: int = 1, *, backend: Backend = "auto") -> np.ndarray:
    """Convolution (cross-correlation, as in deep learning), N-d.

    ``out[n, co, o] = bias[co] + sum over ci in co's group and taps k of
    x[n, ci, o*stride - pad_begin + k*dilation] * weight[co, ci % (C_in/groups), k]``,
    reading zeros in the padding.

    Parameters
    ----------
    input : array_like
        ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``.
    weight : array_like
        ``(C_out, C_in // groups, *kernel)``.
    bias : array_like, optional
        ``(C_out,)``.
    stride, dilation : int or tuple of int
    padding : int, tuple, "valid" or "same"
        An int or ``(begin, end)`` pair per axis.  ``"same"`` gives
        ``output = ceil(input / stride)``, the smaller half of the padding first.
    groups : int
    backend : {"auto", "direct", "sparse"}

    Returns
    -------
    numpy.ndarray
        ``(N, C_out, *out)`` (or unbatched), ``out = floor((in + pad_begin + pad_end
        - dilation*(kernel - 1) - 1) / stride) + 1``.

    Examples
    --------
    >>> import numpy as np
    >>> conv(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 3)), stride=2)
    array([[[3., 9.]]])
    """
    return _apply(False, None, input, weight, bias, stride, padding, 0, groups,
                  dilation, None, backend)


# Prepared calls, keyed by everything but the array data: a repeated call costs one
# dictionary look-up on top of the kernel.  Bounded; cleared when full.
_CALLS = {}
_MAX_CALLS = 2048


def _apply(transposed, rank, input, weight, bias, stride, padding, output_padding, groups,
           dilation, output_size, backend):
    x = input if type(input) is np.ndarray else np.asarray(input)
    w = weight if type(weight) is np.ndarray else np.asarray(weight)
    if bias is None:
        b, bias_key = None, None
    else:
        b = bias if type(bias) is np.ndarray else np.asarray(bias)
        bias_key = (b.shape, b.dtype)
    key = (transposed, rank, x.shape, x.dtype, w.shape, w.dtype, bias_key, stride, padding,
           output_padding, groups, dilation, output_size, backend)
    # Only plain ints, strs and tuples may be looked up: 2.0 == 2 and True == 1 as dict
    # keys, and those must still reach validation (and its TypeError).
    plain = ((type(stride) is int and type(padding) is int and type(output_padding) is int
              and type(groups) is int and type(dilation) is int and output_size is None
              and type(backend) is str)
             or _plain((stride, padding, output_padding, groups, dilation, output_size,
                        backend)))
    call = _CALLS.get(key) if plain else None
    if call is None:
        call = _prepare(transposed, rank, x, w, b, stride, padding, output_padding, groups,
                        dilation, output_size, backend)
        if plain:
            if len(_CALLS) >= _MAX_CALLS:
                _CALLS.clear()
            _CALLS[key] = call
    return call(x, w, b)


def _prepare(transposed, rank, x, w, b, stride, padding, output_padding, groups, dilation,
             output_size, backend):
    """Validate one call signature and return the function that computes it."""
    check_backend(backend)
    plan = make_plan(
        transposed, rank, x.shape, x.dtype, w.shape, w.dtype,
        None if b is None else b.shape, None if b is None else b.dtype,
        stride, padding, output_padding, groups, dilation, output_size,
    )
    if plan.batch == 0:
        return lambda x, w, b: np.zeros(plan.output_shape, dtype=plan.dtype)
    if backend == "sparse":
        return functools.partial(_sparse, plan)
    return _compiled.Executor(plan)


def _sparse(plan, x, w, b):
    """Backend "sparse": one CSR matrix times the whole batch (columns = samples)."""
    matrix = _operator_matrix(plan, w.astype(plan.dtype, copy=False))
    batch = 1 if plan.batch is None else plan.batch
    columns = x.reshape(batch, matrix.shape[1]).astype(plan.dtype, copy=False).T
    out = np.ascontiguousarray((matrix @ columns).T).reshape(plan.output_shape)
    if b is not None:
        out += b.astype(plan.dtype, copy=False).reshape((-1,) + (1,) * plan.rank)
    return out


# The ranked names: real functions with the N-d signature (so introspection, help() and
# argument errors read as for the N-d function), built once per rank by these factories.

def _conv_transpose_ranked(rank):
    def alias(input: ArrayLike, weight: ArrayLike, bias: Optional[ArrayLike] = None,
              stride: IntOrTuple = 1, padding: Padding = 0,
              output_padding: IntOrTuple = 0, groups: int = 1,
              dilation: IntOrTuple = 1, *, output_size: Optional[Sequence[int]] = None,
              backend: Backend = "auto") -> np.ndarray:
        return _apply(True, rank, input, weight, bias, stride, padding, output_padding,
                      groups, dilation, output_size, backend)
    return _named(alias, "conv_transpose", rank)


def _conv_ranked(rank):
    def alias(input: ArrayLike, weight: ArrayLike, bias: Optional[ArrayLike] = None,
              stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
              groups: int = 1, *, backend: Backend = "auto") -> np.ndarray:
        return _apply(False, rank, input, weight, bias, stride, padding, 0, groups,
                      dilation, None, backend)
    return _named(alias, "conv", rank)


def _named(alias, base, rank):
    name = alias.__name__ = alias.__qualname__ = f"{base}{rank}d"
    # Argument errors name the code object ("conv2d() got an unexpected keyword ...").
    names = {"co_name": name}
    if hasattr(alias.__code__, "co_qualname"):  # Python 3.11+
        names["co_qualname"] = name
    alias.__code__ = alias.__code__.replace(**names)
    alias.__module__ = __name__
    alias.__doc__ = (
        f"{rank}-D :func:`{base}`: the same function, with a weight of "
        f"{rank + 2} dimensions required.\n\nSee :func:`sparsetconv.{base}` "
        f"for the parameters, shapes and dtypes."
    )
    return alias


conv_transpose1d = _conv_transpose_ranked(1)
conv_transpose2d = _conv_transpose_ranked(2)
conv_transpose3d = _conv_transpose_ranked(3)
conv1d = _conv_ranked(1)
conv2d = _conv_ranked(2)
conv3d = _conv_ranked(3)
