"""Backward passes: gradients of ``conv_transpose`` and ``conv``.

A transposed convolution and a convolution with the same weight are adjoint, so each
one's input gradient is the other one -- computed by the same kernels as the forward
passes, on the same geometry (so even the rows a strided convolution drops, or the
positions ``output_padding`` adds, come out right).  The weight gradient is one
correlation of the small side (the transposed convolution's input, or the
convolution's output gradient) with the large side, shared by both directions
(``_compiled.WeightGradient``); on the sparse backend it is read off the matrix itself:
every stored entry of the operator's matrix names the weight element it holds, so
``grad_w[e] = sum over entries with index e of grad_output[row] * input[col]``.

Non-finite values follow the forward rule (:mod:`sparsetconv.functional`): a gradient
sums products of real elements only, never a product with padding.  The compiled
weight gradient multiplies padding zeros, so where its result is not finite and a
padding exists, it is recomputed tap by tap (:mod:`sparsetconv._taps`): a product with
padding could only have turned a finite element into NaN.
"""

from __future__ import annotations

import functools
from typing import Iterable, Optional, Tuple

import numpy as np

from . import _compiled
from ._plan import _plain, adjoint_plan, check_backend, make_plan, prepared_call, remember_call
from ._taps import weight_gradient_by_taps
from ._validation import compute_dtype
from .functional import _is_dask, _sparse, all_finite, as_array, compiled
from .matrix import _operator_matrix
from ._typing import ArrayLike, Backend, IntOrTuple, Padding

__all__ = ["conv_transpose_backward", "conv_backward"]

NEEDS = ("input", "weight", "bias")


def conv_transpose_backward(
    grad_output: ArrayLike, input: ArrayLike, weight: ArrayLike, stride: IntOrTuple = 1,
    padding: Padding = 0, output_padding: IntOrTuple = 0, groups: int = 1,
    dilation: IntOrTuple = 1, *, needs: Iterable[str] = NEEDS, backend: Backend = "auto",
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """Gradients of ``conv_transpose(input, weight, bias, ...)`` for ``grad_output``.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to the output, shaped like the output.
    input, weight, stride, padding, output_padding, groups, dilation
        As given to :func:`sparsetconv.conv_transpose`.
    needs : iterable of {"input", "weight", "bias"}
        The gradients to compute; the others are returned as ``None``.
    backend : {"auto", "direct", "sparse"}

    Returns
    -------
    (grad_input, grad_weight, grad_bias)
        ``grad_input`` is the convolution of ``grad_output`` with the same weight
        (the adjoint), ``grad_weight`` has the weight's shape, ``grad_bias`` is
        ``grad_output`` summed over every axis but the channel.

        If any argument is a dask array, all three are lazy dask arrays:
        ``grad_input`` computed blockwise like the forward pass and chunked like
        ``input`` along the batch and spatial axes (channels whole); ``grad_weight``
        and ``grad_bias`` sums of per-block partials (a tree reduction).

    Examples
    --------
    >>> import numpy as np
    >>> x, w = np.ones((1, 1, 2)), np.array([[[1.0, 2.0]]])
    >>> g = np.array([[[1.0, 0.0, 0.0]]])          # d loss / d output[0]
    >>> gi, gw, gb = conv_transpose_backward(g, x, w)
    >>> gi, gw, gb
    (array([[[1., 0.]]]), array([[[1., 0.]]]), array([1.]))
    """
    return _backward(True, grad_output, input, weight, stride, padding, output_padding,
                     groups, dilation, needs, backend)


def conv_backward(
    grad_output: ArrayLike, input: ArrayLike, weight: ArrayLike, stride: IntOrTuple = 1,
    padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *,
    needs: Iterable[str] = NEEDS, backend: Backend = "auto",
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """Gradients of ``conv(input, weight, bias, ...)`` for ``grad_output``.

    ``grad_input`` is the transposed convolution of ``grad_output`` with the same weight,
    sized like ``input`` (input rows a strided convolution never read get zeros).  See
    :func:`conv_transpose_backward` for the rest.

    Examples
    --------
    >>> import numpy as np
    >>> x, w = np.arange(3.0).reshape(1, 1, 3), np.array([[[1.0, 2.0]]])
    >>> gi, gw, gb = conv_backward(np.ones((1, 1, 2)), x, w)
    >>> gi, gw, gb
    (array([[[1., 3., 2.]]]), array([[[1., 3.]]]), array([2.]))
    """
    return _backward(False, grad_output, input, weight, stride, padding, 0, groups,
                     dilation, needs, backend)


def _check_needs(needs):
    if isinstance(needs, str):
        needs = (needs,)
    try:
        needs = frozenset(needs)
    except TypeError:
        raise TypeError(f"needs must be an iterable of {NEEDS}, got {needs!r}") from None
    unknown = needs - set(NEEDS)
    if unknown:
        raise ValueError(f"needs may only name {NEEDS}, got unknown "
                         f"{sorted(unknown, key=repr)}")
    return needs


def _backward(transposed, grad_output, input, weight, stride, padding, output_padding,
              groups, dilation, needs, backend):
    # Only plain ints, strs and tuples may be looked up (see functional._apply).
    plain = (type(grad_output) is np.ndarray and type(input) is np.ndarray
             and type(weight) is np.ndarray and type(backend) is str and _plain(needs)
             and type(needs) is tuple
             and ((type(stride) is int and type(padding) is int
                   and type(output_padding) is int and type(groups) is int
                   and type(dilation) is int)
                  or _plain((stride, padding, output_padding, groups, dilation))))
    if plain:
        key = ("backward", transposed, grad_output.shape, grad_output.dtype, input.shape,
               input.dtype, weight.shape, weight.dtype, stride, padding, output_padding,
               groups, dilation, needs, backend)
        prepared = prepared_call(key)
        if prepared is not None:
            return prepared(grad_output, input, weight)
    needs_set = _check_needs(needs)
    check_backend(backend)
    if _is_dask(grad_output) or _is_dask(input) or _is_dask(weight):
        from . import _dask

        return _dask.backward(transposed, grad_output, input, weight, stride, padding,
                              output_padding, groups, dilation, needs_set, backend)
    x, w = as_array(input, "input"), as_array(weight, "weight")
    g = as_array(grad_output, "grad_output")
    plan = _backward_plan(transposed, g.shape, g.dtype, x.shape, x.dtype, w.shape, w.dtype,
                          stride, padding, output_padding, groups, dilation)
    gradients = Gradients(plan, needs_set, backend)
    if plain:
        remember_call(key, gradients)
    return gradients(g, x, w)


class Gradients:
    """The gradients of one validated call, resolved once: calling it with
    ``(grad_output, input, weight)`` returns ``(grad_input, grad_weight, grad_bias)``,
    running only what ``needs`` names, on ``backend``."""

    __slots__ = ("plan", "bias_axes", "input_gradient", "weight_gradient", "check_weight")

    def __init__(self, plan, needs, backend):
        self.plan = plan
        channel_axis = 0 if plan.batch is None else 1
        rank = len(plan.output_shape)
        self.bias_axes = (tuple(a for a in range(rank) if a != channel_axis)
                          if "bias" in needs else None)
        self.input_gradient = self.weight_gradient = None
        sparse = backend == "sparse"
        if "input" in needs:
            self.input_gradient = (functools.partial(_sparse, adjoint_plan(plan, plan.batch))
                                   if sparse else _input_gradient(plan))
        if "weight" in needs:
            self.weight_gradient = (functools.partial(_sparse_weight_gradient, plan)
                                    if sparse else _weight_gradient(plan))
        # the compiled weight gradient multiplies padding zeros (module docstring)
        self.check_weight = not sparse and any(plan.geometry.pad_begin
                                               + plan.geometry.pad_end)

    def __call__(self, g, x, w):
        plan = self.plan
        grad_input = grad_weight = grad_bias = None
        if self.bias_axes is not None:
            grad_bias = g.sum(axis=self.bias_axes, dtype=plan.dtype)
        if plan.batch == 0:
            return (None if self.input_gradient is None else np.zeros(x.shape, plan.dtype),
                    None if self.weight_gradient is None else np.zeros(w.shape, plan.dtype),
                    grad_bias)
        if self.input_gradient is not None:
            grad_input = self.input_gradient(g, w, None)
        if self.weight_gradient is not None:
            small, large = (x, g) if plan.transposed else (g, x)
            grad_weight = self.weight_gradient(small, large)
            if self.check_weight and not all_finite(grad_weight):
                grad_weight = weight_gradient_by_taps(plan, small, large)
        return grad_input, grad_weight, grad_bias


def _backward_plan(transposed, grad_shape, grad_dtype, input_shape, input_dtype,
                   weight_shape, weight_dtype, stride, padding, output_padding, groups,
                   dilation):
    """Validate a backward call from shapes and dtypes alone (NumPy and dask alike)."""
    dtype = np.result_type(compute_dtype(input_dtype, "input"),
                           compute_dtype(grad_dtype, "grad_output"))
    plan = make_plan(transposed, None, input_shape, dtype, weight_shape, weight_dtype, None,
                     None, stride, padding, output_padding, groups, dilation, None)
    if tuple(grad_shape) != plan.output_shape:
        geo = plan.geometry
        extra = f", output_padding={geo.output_padding}" if transposed else ""
        raise ValueError(
            f"grad_output must have the output's shape {plan.output_shape}, got "
            f"grad_output.shape={tuple(grad_shape)} (the output of input.shape="
            f"{tuple(input_shape)} and weight.shape={tuple(weight_shape)} with stride="
            f"{geo.stride}, padding={tuple(zip(geo.pad_begin, geo.pad_end))}{extra}, "
            f"dilation={geo.dilation}, groups={plan.groups})"
        )
    return plan


@functools.lru_cache(maxsize=256)
def _input_gradient(plan):
    """The compiled adjoint operator of ``plan`` (prepared once per plan), held to the
    non-finite rule like the forward functions."""
    return compiled(adjoint_plan(plan, plan.batch))


@functools.lru_cache(maxsize=256)
def _weight_gradient(plan):
    return _compiled.WeightGradient(plan)


def _sparse_weight_gradient(plan, small, large):
    """Weight gradient read off the operator's matrix: ``out = M @ in``, and each stored
    entry of ``M`` holds one weight element, so ``d loss / d w[e]`` sums
    ``grad_output[row] * input[col]`` over the entries that hold ``w[e]``."""
    x, g = (small, large) if plan.transposed else (large, small)
    weight_shape = ((plan.small_channels, plan.large_channels // plan.groups)
                    + plan.geometry.kernel)
    size = int(np.prod(weight_shape))
    index = np.arange(size, dtype=np.float64).reshape(weight_shape)  # exact below 2**53
    matrix = _operator_matrix(plan, index).tocsr()
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    batch = 1 if plan.batch is None else plan.batch
    g_flat = g.reshape(batch, -1).astype(plan.dtype, copy=False)
    x_flat = x.reshape(batch, -1).astype(plan.dtype, copy=False)
    products = np.einsum("nk,nk->k", g_flat[:, rows], x_flat[:, matrix.indices])
    return np.bincount(matrix.data.astype(np.intp), weights=products,
                       minlength=size).reshape(weight_shape).astype(plan.dtype)
