"""Verifying a transposed convolution: the dot test and gradcheck.

A transposed convolution is the adjoint of the convolution with the same weight:
``<conv(x), y> == <x, conv_transpose(y)>`` for every ``x`` and ``y``.
:func:`adjoint_check` tests exactly that on random arrays (the "dot test" of PyLops and
seismic imaging); :func:`gradcheck` compares any analytic gradient with central finite
differences, in the manner of ``torch.autograd.gradcheck``.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Callable, Optional, Sequence, Union

import numpy as np
from numpy.typing import DTypeLike

from ._typing import ArrayLike, Backend, IntOrTuple, Padding
from .functional import conv, conv_transpose
from .shapes import resolve_conv

__all__ = ["AdjointCheck", "adjoint_check", "gradcheck"]

AdjointCheck = namedtuple("AdjointCheck", "lhs rhs rel_gap ok")
AdjointCheck.__doc__ = """Result of :func:`adjoint_check`.

lhs : float
    ``<conv(x), y>``.
rhs : float
    ``<x, conv_transpose(y)>``.
rel_gap : float
    ``|lhs - rhs| / max(||conv(x)|| ||y||, ||x|| ||conv_transpose(y)||)``: the gap
    relative to the Cauchy-Schwarz bound of either side, so cancellation inside the
    sums cannot inflate it.
ok : bool
    ``rel_gap`` is within the tolerance (1e-12 in float64, 1e-5 in float32).
"""

_TOLERANCE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


def adjoint_check(input_shape: Sequence[int], weight: ArrayLike, stride: IntOrTuple = 1,
                  padding: Padding = 0, dilation: IntOrTuple = 1, groups: int = 1, *,
                  dtype: DTypeLike = np.float64, backend: Backend = "auto",
                  rng: Union[None, int, np.random.Generator] = None,
                  forward: Optional[Callable[..., np.ndarray]] = None,
                  adjoint: Optional[Callable[..., np.ndarray]] = None) -> AdjointCheck:
    """The dot test: is the transposed convolution the adjoint of the convolution?

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)``: the convolution's input ``x`` (the transposed convolution's
        output).
    weight : array_like
        One array for both operators: ``(C_out, C / groups, *kernel)`` as a convolution
        weight, which is ``(C_in, C_out / groups, *kernel)`` of the transposed one.
    stride, padding, dilation, groups
        Shared by both operators.  The transposed convolution gets the
        ``output_padding`` that makes its output exactly ``input_shape``.
    dtype : {numpy.float64, numpy.float32}
    backend : {"auto", "direct", "sparse"}
    rng : None, int or numpy.random.Generator
    forward, adjoint : callable, optional
        Replace ``x -> conv(x)`` or ``y -> conv_transpose(y)`` (unbatched arrays), to
        check a pairing of your own -- e.g. a hand-written adjoint.

    Returns
    -------
    AdjointCheck
        ``(lhs, rhs, rel_gap, ok)``.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> adjoint_check((3, 9, 8), w, stride=2, padding=1, rng=1).ok
    True
    >>> flipped = w[..., ::-1, ::-1]          # a hand-written adjoint's classic slip
    >>> broken = lambda y: conv_transpose(y, flipped, stride=2, padding=1, output_size=(9, 8))
    >>> adjoint_check((3, 9, 8), w, stride=2, padding=1, rng=1, adjoint=broken).ok
    False
    """
    dtype = np.dtype(dtype)
    if dtype not in _TOLERANCE:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    rng = np.random.default_rng(rng)
    input_shape = tuple(input_shape)
    weight = np.asarray(weight)
    if forward is None:
        def forward(x):
            return conv(x, weight, None, stride, padding, dilation, groups, backend=backend)
    if adjoint is None:
        # The adjoint gets the convolution's padding resolved to (begin, end) pairs:
        # "same" means something else for a transposed convolution (see conv_transpose).
        geometry = resolve_conv(input_shape[1:], weight.shape[2:], stride, padding, dilation)
        pairs = tuple(zip(geometry.pad_begin, geometry.pad_end))

        def adjoint(y):
            return conv_transpose(y, weight, None, stride, pairs, 0, groups, dilation,
                                  output_size=input_shape[1:], backend=backend)
    x = rng.standard_normal(input_shape).astype(dtype)
    ax = np.asarray(forward(x))
    y = rng.standard_normal(ax.shape).astype(dtype)
    aty = np.asarray(adjoint(y))
    if aty.shape != x.shape:
        raise ValueError(f"the adjoint returned shape {aty.shape}, the input has {x.shape}")
    lhs = float(np.vdot(ax.astype(np.float64), y.astype(np.float64)))
    rhs = float(np.vdot(x.astype(np.float64), aty.astype(np.float64)))
    scale = max(np.linalg.norm(ax) * np.linalg.norm(y), np.linalg.norm(x) * np.linalg.norm(aty),
                np.finfo(np.float64).tiny)
    rel_gap = float(abs(lhs - rhs) / scale)
    return AdjointCheck(lhs, rhs, rel_gap, rel_gap <= _TOLERANCE[dtype])


def gradcheck(fn: Callable[..., ArrayLike], inputs: Sequence[ArrayLike],
              grad_fn: Callable[..., Sequence[Optional[ArrayLike]]], *, eps: float = 1e-6,
              atol: float = 1e-5, rtol: float = 1e-3,
              rng: Union[None, int, np.random.Generator] = None) -> bool:
    """Compare analytic gradients with central finite differences.

    For a random ``grad_output`` of ``fn(*inputs)``'s shape, the scalar
    ``phi(inputs) = <fn(*inputs), grad_output>`` has gradient
    ``grad_fn(grad_output, *inputs)``; each element is compared with
    ``(phi(x + eps e_j) - phi(x - eps e_j)) / (2 eps)``.  Inputs are taken as float64
    copies (never modified); every element costs two calls of ``fn``.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs) -> array``.
    inputs : sequence of array_like
    grad_fn : callable
        ``grad_fn(grad_output, *inputs) -> sequence`` with one gradient per input, or
        ``None`` for an input not to check.
    eps, atol, rtol : float
        Step, and the test ``|numerical - analytic| <= atol + rtol * |numerical|``.
    rng : None, int or numpy.random.Generator

    Returns
    -------
    True

    Raises
    ------
    AssertionError
        Naming the input, the worst element and both values.

    Examples
    --------
    >>> import numpy as np
    >>> from sparsetconv import conv_transpose_backward
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((2, 2, 3, 3))
    >>> fn = lambda x, w: conv_transpose(x, w, stride=2, padding=1)
    >>> grads = lambda g, x, w: conv_transpose_backward(g, x, w, stride=2, padding=1)[:2]
    >>> gradcheck(fn, (x, w), grads)
    True
    """
    rng = np.random.default_rng(rng)
    inputs = [np.array(a, dtype=np.float64, copy=True) for a in inputs]
    grad_output = rng.standard_normal(np.shape(fn(*inputs)))
    analytic = grad_fn(grad_output, *inputs)
    if len(analytic) != len(inputs):
        raise ValueError(f"grad_fn returned {len(analytic)} gradients for {len(inputs)} inputs")

    def phi():
        return float(np.vdot(np.asarray(fn(*inputs), dtype=np.float64), grad_output))

    for position, (value, gradient) in enumerate(zip(inputs, analytic)):
        if gradient is None:
            continue
        gradient = np.asarray(gradient, dtype=np.float64)
        if gradient.shape != value.shape:
            raise ValueError(f"gradient {position} has shape {gradient.shape}, "
                             f"input {position} has {value.shape}")
        flat = value.reshape(-1)  # a view: the copy above is contiguous
        numerical = np.empty(flat.size)
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = phi()
            flat[j] = original - eps
            minus = phi()
            flat[j] = original
            numerical[j] = (plus - minus) / (2 * eps)
        numerical = numerical.reshape(value.shape)
        excess = np.abs(numerical - gradient) - (atol + rtol * np.abs(numerical))
        if np.any(excess > 0):
            worst = np.unravel_index(np.argmax(excess), value.shape)
            raise AssertionError(
                f"gradcheck failed for input {position} at element {tuple(map(int, worst))}: "
                f"numerical {float(numerical[worst])!r}, analytic {float(gradient[worst])!r} "
                f"(|difference| {abs(numerical[worst] - gradient[worst]):.3g} > atol + "
                f"rtol * |numerical| = {atol + rtol * abs(numerical[worst]):.3g}); "
                f"{int(np.sum(excess > 0))} of {value.size} elements fail"
            )
    return True
