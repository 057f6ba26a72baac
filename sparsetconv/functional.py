"""Functional API: ``conv_transpose*`` and ``conv*`` on NumPy arrays.

(A dask array argument is handed to :mod:`sparsetconv._dask` before anything else,
which computes the same thing blockwise and lazily; dask is imported only then.)

Each call is validated and normalised once into a :class:`~sparsetconv._plan.ConvPlan`
(cached by shapes and arguments), then handed to a backend:

- ``"sparse"``: the scipy.sparse matrix of :mod:`sparsetconv.matrix`, applied to the
  whole batch as one sparse-times-dense product;
- ``"direct"``: the compiled Cython/OpenMP kernels (:mod:`sparsetconv._compiled`);
- ``"auto"``: the fastest correct path: the compiled kernels, with the algorithm
  chosen by :func:`sparsetconv._compiled.choose_algorithm`.

Non-finite values (the rule every backend follows): an output is the sum of the
products of weights with *real* input elements.  Padding is not data: a weight tap
that lands in the padding contributes nothing -- it is not multiplied by a zero --
even when it is NaN or inf.  Everything else is IEEE arithmetic: a NaN or inf that
meets a real element (a zero included) propagates.  This is the matrix view: the
matrix never stores padding.  The compiled kernels multiply some padding zeros, so a
convolution with padding checks its weight (once per call, about half a
microsecond) and sends a non-finite one to :mod:`sparsetconv._taps`, which forms
only real products.

The 1-D/2-D/3-D names are thin aliases of the N-d functions that only pin the rank.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Optional, Sequence

import numpy as np

from . import _compiled, _kernels
from ._plan import _plain, check_backend, make_plan, prepared_call, remember_call
from ._typing import ArrayLike, Backend, IntOrTuple, Padding
from ._taps import operator_by_taps
from ._threads import available_cpus, current_threads
from ._validation import check_memory, memory_limit
from .matrix import _operator_matrix

__all__ = [
    "conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv", "conv1d", "conv2d", "conv3d",
]


def conv_transpose(input: ArrayLike, weight: ArrayLike, bias: Optional[ArrayLike] = None,
                   stride: IntOrTuple = 1, padding: Padding = 0,
                   output_padding: IntOrTuple = 0, groups: int = 1,
                   dilation: IntOrTuple = 1, *, output_size: Optional[Sequence[int]] = None,
                   backend: Backend = "auto", chunks: Optional[object] = None) -> np.ndarray:
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
    chunks : optional
        Only for a ``dask.array.Array`` argument: the result's chunks, anything
        :meth:`dask.array.Array.rechunk` takes (a dict leaves the axes it does not name
        at the default).  The channel axis stays whole.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``(N, C_out, *out)``, or ``(C_out, *out)`` for an unbatched input, where
        ``out = (in - 1)*stride - pad_begin - pad_end + dilation*(kernel - 1)
        + output_padding + 1``.  dtype: float32 or float64 (integers and bools
        compute in float64, float16 in float32).

    Notes
    -----
    The input is batched when it has ``weight.ndim`` dimensions and unbatched when
    it has one fewer (as in PyTorch).  NaN and inf follow IEEE arithmetic over the
    products of input elements with weights; products that land in the cropped
    padding are dropped, so they never reach an output (see :func:`conv`).

        If ``input`` (or ``weight`` or ``bias``) is a dask array, the result is a lazy
        dask array, equal to the NumPy result once computed.  Its batch chunks are the
        input's, its channel axis is one chunk, and each spatial axis's chunk
        boundaries are the input's scaled by ``out / in`` and rounded down.  Each
        output block reads only the input window that reaches it (its halo), so no
        task needs memory proportional to the whole array.

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
                  groups, dilation, output_size, backend, chunks)


def conv(input: ArrayLike, weight: ArrayLike, bias: Optional[ArrayLike] = None,
         stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
         groups: int = 1, *, backend: Backend = "auto", chunks: Optional[object] = None) -> np.ndarray:
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
    chunks : optional
        Only for a dask array argument: the result's chunks (see
        :func:`conv_transpose`).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``(N, C_out, *out)`` (or unbatched), ``out = floor((in + pad_begin + pad_end
        - dilation*(kernel - 1) - 1) / stride) + 1``.  For a dask input: a lazy dask
        array, chunked as :func:`conv_transpose` describes.

    Notes
    -----
    The input is batched when it has ``weight.ndim`` dimensions and unbatched when
    it has one fewer (as in PyTorch): with a 5-D weight, a 4-D input is one
    ``(C, D, H, W)`` sample, not a batch of 2-D images.

    NaN and inf follow IEEE arithmetic over the products of weights with real input
    elements; padding is never multiplied, so a NaN or inf weight tap that only meets
    padding leaves that output finite (the matrix of :func:`conv_matrix` gives the
    same numbers).  Every backend follows this rule.

    >>> import numpy as np
    >>> conv(np.ones((1, 1, 3)), np.array([[[np.nan, 1.0, 1.0]]]), padding=1)
    array([[[ 2., nan, nan]]])

    Examples
    --------
    >>> import numpy as np
    >>> conv(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 3)), stride=2)
    array([[[3., 9.]]])
    """
    return _apply(False, None, input, weight, bias, stride, padding, 0, groups,
                  dilation, None, backend, chunks)


def as_array(value, name):
    """``np.asarray(value)`` with an error that names the argument."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged lists, odd objects
        raise type(error)(f"{name} could not be converted to an array: {error}") from None


def _is_dask(obj):
    """True for a ``dask.array.Array``, without importing dask: while ``dask.array`` is
    not loaded, no object can be one."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(obj, module.Array)


def _apply(transposed, rank, input, weight, bias, stride, padding, output_padding, groups,
           dilation, output_size, backend, chunks=None):
    if type(input) is np.ndarray and type(weight) is np.ndarray and chunks is None:
        x, w = input, weight
    elif chunks is not None or _is_dask(input) or _is_dask(weight) or _is_dask(bias):
        # Checked before np.asarray, which would compute a dask array.
        return _lazy(transposed, rank, input, weight, bias, stride, padding,
                     output_padding, groups, dilation, output_size, backend, chunks)
    else:
        x, w = as_array(input, "input"), as_array(weight, "weight")
    if bias is None:
        b, bias_key = None, None
    else:
        if type(bias) is np.ndarray:
            b = bias
        elif _is_dask(bias):
            return _lazy(transposed, rank, input, weight, bias, stride, padding,
                         output_padding, groups, dilation, output_size, backend, chunks)
        else:
            b = as_array(bias, "bias")
        bias_key = (b.shape, b.dtype)
    key = ("forward", transposed, rank, x.shape, x.dtype, w.shape, w.dtype, bias_key, stride,
           padding, output_padding, groups, dilation, output_size, backend)
    # Only plain ints, strs and tuples may be looked up: 2.0 == 2 and True == 1 as dict
    # keys, and those must still reach validation (and its TypeError).
    plain = ((type(stride) is int and type(padding) is int and type(output_padding) is int
              and type(groups) is int and type(dilation) is int and output_size is None
              and type(backend) is str)
             or _plain((stride, padding, output_padding, groups, dilation, output_size,
                        backend)))
    call = prepared_call(key) if plain else None
    if call is None:
        call = _prepare(transposed, rank, x, w, b, stride, padding, output_padding, groups,
                        dilation, output_size, backend)
        if plain:
            remember_call(key, call)
    return call(x, w, b)


def _lazy(transposed, rank, input, weight, bias, stride, padding, output_padding, groups,
          dilation, output_size, backend, chunks):
    """A dask array among the arguments: the lazy blockwise computation."""
    if not (_is_dask(input) or _is_dask(weight) or _is_dask(bias)):
        raise TypeError(
            f"chunks= applies to dask array input only, got input of type "
            f"{type(input).__name__}; pass dask.array.from_array(input) to get a lazy "
            f"result"
        )
    from . import _dask

    return _dask.apply(transposed, rank, input, weight, bias, stride, padding,
                       output_padding, groups, dilation, output_size, backend, chunks)


def _prepare(transposed, rank, x, w, b, stride, padding, output_padding, groups, dilation,
             output_size, backend):
    """Validate one call signature and return the function that computes it."""
    check_backend(backend)
    plan = make_plan(
        transposed, rank, x.shape, x.dtype, w.shape, w.dtype,
        None if b is None else b.shape, None if b is None else b.dtype,
        stride, padding, output_padding, groups, dilation, output_size,
    )
    check_memory("the output", plan.output_shape, plan.dtype)
    if plan.batch == 0:
        return lambda x, w, b: np.zeros(plan.output_shape, dtype=plan.dtype)
    if backend == "sparse":
        return functools.partial(_sparse, plan)
    return compiled(plan)


def compiled(plan):
    """The compiled operator of ``plan``, held to the non-finite rule (module docstring).

    Returns a callable ``(x, w, b)``.  Where the kernels' workspace would not fit in
    memory (absurd strides), the exact tap-by-tap path serves instead.
    """
    executor = _compiled.Executor(plan)
    if _workspace_bytes(executor) > memory_limit() // 2:
        return functools.partial(operator_by_taps, plan)
    kernel_plan = executor.kernel_plan  # the map as the kernels compute it
    if kernel_plan.transposed or not any(kernel_plan.geometry.pad_begin
                                         + kernel_plan.geometry.pad_end):
        return executor  # every product it forms is a real one

    def guarded(x, w, b):
        if all_finite(w):
            return executor(x, w, b)
        return operator_by_taps(plan, x, w, b)

    guarded.executor = executor
    return guarded


def all_finite(array):
    """True when no element is NaN or inf: exact, and tens of nanoseconds for a small
    weight.

    A C-contiguous float32/float64 array is tested by its exponent bits in the compiled
    extension (one vectorised pass, no temporary).  Otherwise ``sum(w**2)`` (one BLAS
    dot) is finite only if every element is -- NaN and inf make it NaN or inf without
    a floating-point warning -- and only when it is not (or overflows, for elements
    beyond 1e154) is the elementwise test run.
    """
    if array.dtype.kind != "f":
        return True  # integers and bools are always finite
    finite = _kernels.finite_floats(array)
    if finite is not None:
        return finite
    return math.isfinite(np.vdot(array, array)) or bool(np.isfinite(array).all())


def _workspace_bytes(executor):
    """The compiled kernels' workspace for one call, at the thread count it would run
    with here (the setting or the CPUs, whichever is larger, capped by the work)."""
    return executor.workspace_bytes(max(current_threads(), available_cpus()))


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
              backend: Backend = "auto", chunks: Optional[object] = None) -> np.ndarray:
        return _apply(True, rank, input, weight, bias, stride, padding, output_padding,
                      groups, dilation, output_size, backend, chunks)
    return _named(alias, "conv_transpose", rank)


def _conv_ranked(rank):
    def alias(input: ArrayLike, weight: ArrayLike, bias: Optional[ArrayLike] = None,
              stride: IntOrTuple = 1, padding: Padding = 0, dilation: IntOrTuple = 1,
              groups: int = 1, *, backend: Backend = "auto", chunks: Optional[object] = None) -> np.ndarray:
        return _apply(False, rank, input, weight, bias, stride, padding, 0, groups,
                      dilation, None, backend, chunks)
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
