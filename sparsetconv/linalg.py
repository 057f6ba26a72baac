"""Transposed convolution as a linear operator, and the true "deconvolution".

:func:`as_linear_operator` wraps a convolution (or its transpose) as a
``scipy.sparse.linalg.LinearOperator`` computed by the fast kernels -- no matrix is
stored -- so every scipy solver and eigen-solver works with it.  :func:`deconvolve`
uses it to invert a convolution in the least-squares sense: what people who call the
transposed convolution "deconvolution" usually want.
"""

import inspect
import math
import numbers
import warnings

import numpy as np
import scipy.sparse.linalg

from ._validation import as_int, as_tuple, compute_dtype
from .functional import _is_dask, conv, conv_transpose
from .shapes import resolve_conv, resolve_conv_transpose

__all__ = ["as_linear_operator", "deconvolve", "ConvergenceWarning"]

# SciPy 1.12 renamed cg's relative tolerance ``tol`` to ``rtol`` (and 1.14 removed ``tol``).
_CG_RTOL = "rtol" if "rtol" in inspect.signature(scipy.sparse.linalg.cg).parameters else "tol"

# The default iteration cap of deconvolve (see its docstring).
_MAXITER_FLOOR, _MAXITER_CAP = 100, 1000


class ConvergenceWarning(RuntimeWarning):
    """:func:`deconvolve` stopped before its solver reached the tolerance."""


def _input_shape(input_shape, rank):
    if isinstance(input_shape, (str, bytes)) or not isinstance(
            input_shape, (tuple, list, np.ndarray)):
        raise TypeError(f"input_shape must be a tuple of ints (C, *spatial), got "
                        f"{type(input_shape).__name__} {input_shape!r}")
    shape = tuple(as_int(v, f"input_shape[{axis}]") for axis, v in enumerate(input_shape))
    if len(shape) != rank + 1:
        raise ValueError(f"input_shape must be (C, *spatial) with {rank} spatial sizes for "
                         f"a weight with {rank} kernel axes, got input_shape={shape}")
    for axis, size in enumerate(shape):
        if size < 1:
            raise ValueError(f"input_shape must be >= 1 on every axis, got "
                             f"input_shape={shape} ({size} on axis {axis})")
    return shape


def as_linear_operator(input_shape, weight, *, stride=1, padding=0, output_padding=0,
                       groups=1, dilation=1, transpose=False, dtype=np.float64):
    """A ``LinearOperator`` for one sample's convolution or transposed convolution.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)`` of the operator's own input.
    weight : array_like
        Convolution layout ``(C_out, C / groups, *kernel)``, or with ``transpose=True``
        the transposed layout ``(C, C_out / groups, *kernel)`` -- the same array serves
        an operator and its adjoint.
    stride, padding, output_padding, groups, dilation
        Keyword-only (the two directions order them differently in
        :func:`conv` and :func:`conv_transpose`); ``output_padding`` only with
        ``transpose=True``.
    transpose : bool
        ``False``: ``matvec`` is :func:`conv`, ``rmatvec`` the transposed convolution
        back to ``input_shape``.  ``True``: ``matvec`` is :func:`conv_transpose`,
        ``rmatvec`` the convolution, restricted to ``input_shape``.
    dtype : {numpy.float64, numpy.float32}

    Returns
    -------
    scipy.sparse.linalg.LinearOperator
        Shape ``(prod(output_shape), prod(input_shape))``; ``matvec``, ``rmatvec``,
        ``matmat`` and ``rmatmat`` run on the compiled kernels (``matmat`` as one batch).
        A complex vector is applied exactly: the operator is real, so it maps the real
        and the imaginary part separately.

    Examples
    --------
    >>> import numpy as np
    >>> A = as_linear_operator((1, 3), np.array([[[1.0, 2.0]]]))
    >>> A.shape, A @ np.array([1.0, 0.0, 0.0]), A.T @ np.array([1.0, 1.0])
    ((2, 3), array([1., 0.]), array([1., 3., 2.]))
    >>> A @ np.array([1j, 0.0, 0.0])
    array([0.+1.j, 0.+0.j])
    """
    weight = np.asarray(weight)
    compute_dtype(weight.dtype, "weight")
    if not 3 <= weight.ndim <= 5:
        raise ValueError(f"weight must have 3 to 5 dimensions (two channel axes and 1 to 3 "
                         f"kernel axes), got weight.shape={weight.shape}")
    rank = weight.ndim - 2
    input_shape = _input_shape(input_shape, rank)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    if not isinstance(transpose, (bool, np.bool_)):
        raise TypeError(f"transpose must be True or False, got {transpose!r}")
    spatial = input_shape[1:]
    if transpose:
        geometry = resolve_conv_transpose(spatial, weight.shape[2:], stride, padding,
                                          output_padding, dilation)
        output_shape = (weight.shape[1] * as_int(groups, "groups"),) + geometry.large

        def forward(x):
            return conv_transpose(x, weight, None, stride, padding, output_padding, groups,
                                  dilation)

        # The adjoint convolution gets the resolved pads ("same" means something else
        # for a convolution); a negative end (a "same" extension) reads nothing: 0.
        pairs = tuple((b, max(e, 0)) for b, e in zip(geometry.pad_begin, geometry.pad_end))

        def backward(y):
            # With output_padding >= stride (or a clipped end) the convolution has
            # extra trailing positions the transposed convolution never read: drop them.
            out = conv(y, weight, None, stride, pairs, dilation, groups)
            return out[(Ellipsis,) + tuple(slice(0, s) for s in spatial)]
    else:
        if any(as_tuple(output_padding, rank, "output_padding")):
            raise ValueError("output_padding applies to transpose=True only; a "
                             "convolution's adjoint gets the output_padding that "
                             "restores input_shape automatically")
        geometry = resolve_conv(spatial, weight.shape[2:], stride, padding, dilation)
        output_shape = (weight.shape[0],) + geometry.small

        def forward(x):
            return conv(x, weight, None, stride, padding, dilation, groups)

        pairs = tuple(zip(geometry.pad_begin, geometry.pad_end))  # "same" resolved

        def backward(y):
            return conv_transpose(y, weight, None, stride, pairs, 0, groups, dilation,
                                  output_size=spatial)

    forward(np.zeros((1,) + input_shape, dtype))  # validate channels and groups now
    n_in, n_out = math.prod(input_shape), math.prod(output_shape)

    def batched(function, shape_in):
        def apply(matrix):
            matrix = np.asarray(matrix)
            if matrix.dtype.kind == "c":
                # A real operator maps real and imaginary parts separately: exact.
                return apply(matrix.real) + 1j * apply(matrix.imag)
            if matrix.dtype.kind not in "biuf":
                raise TypeError(f"the operator applies to real or complex vectors, got "
                                f"dtype {matrix.dtype}")
            matrix = matrix.astype(dtype, copy=False)
            columns = matrix.reshape(matrix.shape[0], -1)
            batch = np.ascontiguousarray(columns.T).reshape((columns.shape[1],) + shape_in)
            return function(batch).reshape(columns.shape[1], -1).T.astype(dtype, copy=False)
        return apply

    apply_forward = batched(forward, input_shape)
    apply_backward = batched(backward, output_shape)
    return scipy.sparse.linalg.LinearOperator(
        shape=(n_out, n_in), dtype=dtype,
        matvec=lambda v: apply_forward(np.reshape(v, (n_in, 1)))[:, 0],
        rmatvec=lambda v: apply_backward(np.reshape(v, (n_out, 1)))[:, 0],
        matmat=apply_forward, rmatmat=apply_backward,
    )


def _real_number(value, name, minimum=0.0):
    """A finite real number >= minimum, as a float; bools and None refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= minimum):
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")
    return value


def deconvolve(y, weight, stride=1, padding=0, dilation=1, groups=1, *, input_size=None,
               method="lsqr", damp=0.0, tol=1e-10, maxiter=None, x0=None, callback=None,
               return_info=False):
    """Least-squares inverse of a convolution: find ``x`` with ``conv(x, weight) ~= y``.

    A transposed convolution only undoes a convolution's *shape*; this undoes its
    values, as far as they can be undone.  It minimises
    ``||conv(x) - y||^2 + damp^2 ||x||^2`` with ``scipy.sparse.linalg`` through
    :func:`as_linear_operator` (no matrix is formed).

    When is it ill-posed?  A strided convolution has fewer outputs than inputs, and
    even at stride 1 a kernel can cancel some patterns (its frequency response has
    zeros), so many ``x`` give the same ``y``.  Started from zero, both methods then
    converge to the *minimum-norm* least-squares solution (started from ``x0``, to the
    one nearest ``x0``); when the problem is merely ill-conditioned (near-zero
    response, e.g. a blur), convergence is slow and noise in ``y`` is amplified.
    ``damp > 0`` (Tikhonov regularisation) trades a small bias for stability and
    speed: directions the convolution barely sees are shrunk towards zero.

    Parameters
    ----------
    y : array_like
        ``(N, C_out, *out)`` or ``(C_out, *out)``: a convolution's output.
    weight, stride, padding, dilation, groups
        The convolution's arguments (weight ``(C_out, C_in / groups, *kernel)``).
    input_size : tuple of int, optional
        The spatial size of ``x``.  A strided convolution maps several input sizes to
        the same output size; the default is the smallest (output_padding 0).
    method : {"lsqr", "cg"}
        ``"lsqr"``: LSQR on the operator (numerically the safer);
        ``"cg"``: conjugate gradients on the normal equations
        ``(A^T A + damp^2 I) x = A^T y``.
    damp : float
        Regularisation strength (see above), ``>= 0``.
    tol : float
        Relative tolerance of the solver (LSQR's ``atol`` and ``btol``, CG's relative
        residual of the normal equations), ``>= 0``.
    maxiter : int, optional
        Iteration limit.  The default is twice the number of unknowns (LSQR's own
        default: in exact arithmetic both methods finish within as many iterations as
        there are unknowns, and rounding costs some more), clipped to 100 ... 1000.  A
        well-conditioned convolution converges in tens to a few hundred iterations; an
        ill-conditioned one (a blur) creeps on for tens of thousands (minutes for a
        128x128 image) while fitting more and more noise, so the default stops at 1000
        (about a second there) and warns -- ``damp > 0`` helps such a problem more than
        iterations do.
    x0 : array_like, optional
        Starting point, shaped like the result; zeros by default.
    callback : callable, optional
        ``callback(xk)`` after every iteration, ``xk`` the current solution shaped like
        the result (a copy).  ``method="cg"`` only: SciPy's LSQR does not report its
        iterates.
    return_info : bool
        Also return ``{"method", "iterations", "residual_norm", "converged"}``.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``x``, shaped ``(N, C_in, *input_size)`` (or unbatched like ``y``); float64.

        For a dask array ``y``, the same solver runs with every vector a dask array,
        persisted each iteration (so the task graph stays one iteration deep, and on a
        ``dask.distributed`` cluster the vectors stay on the workers); only scalars
        come back each step.  ``x`` is a dask array, chunked like ``y`` along the batch
        axis and proportionally along the spatial axes.

    Warns
    -----
    ConvergenceWarning
        When the solver stops before reaching ``tol`` (the iteration limit, or LSQR's
        condition-number limit); the result is the last iterate.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([[[1.0, 0.5]]])
    >>> x = np.array([[[1.0, -2.0, 3.0, 0.5]]])
    >>> y = conv(x, w)                                  # 4 -> 3 values: underdetermined
    >>> x_hat = deconvolve(y, w, input_size=(4,))
    >>> bool(np.allclose(conv(x_hat, w), y))            # reproduces y exactly ...
    True
    >>> bool(np.linalg.norm(x_hat) <= np.linalg.norm(x))   # ... with the smallest norm
    True
    """
    lazy = _is_dask(y) or _is_dask(weight)   # before np.asarray, which would compute
    if lazy:
        from . import _dask

        y = _dask._as_dask(y, "y")
    else:
        y, weight = np.asarray(y), np.asarray(weight)
    rank = weight.ndim - 2
    compute_dtype(y.dtype, "y")
    compute_dtype(weight.dtype, "weight")
    if not 3 <= weight.ndim <= 5:
        raise ValueError(f"weight must have 3 to 5 dimensions (C_out, C_in / groups, "
                         f"*kernel), got weight.shape={weight.shape}")
    rank = weight.ndim - 2
    unbatched = y.ndim == rank + 1
    if unbatched:
        y = y[None]
    if y.ndim != rank + 2:
        raise ValueError(f"y must have {rank + 2} or {rank + 1} dimensions for "
                         f"weight.shape={weight.shape}, got y.shape={y.shape}")
    if y.shape[1] != weight.shape[0]:
        raise ValueError(
            f"y has {y.shape[1]} channels (y.shape={y.shape[1 if unbatched else 0:]}), but "
            f"weight.shape={weight.shape} is a convolution with weight.shape[0] = "
            f"{weight.shape[0]} output channels: y must be that convolution's output")
    if not isinstance(method, str) or method not in ("lsqr", "cg"):
        raise ValueError(f"method must be 'lsqr' or 'cg', got {method!r}")
    damp = _real_number(damp, "damp")
    tol = _real_number(tol, "tol")
    if maxiter is not None:
        maxiter = as_int(maxiter, "maxiter")
        if maxiter < 1:
            raise ValueError(f"maxiter must be >= 1 or None, got {maxiter}")
    if callback is not None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        if method != "cg":
            raise ValueError("callback needs method='cg': SciPy's LSQR does not report "
                             "its iterates")
    out_size = y.shape[2:]
    if input_size is None:
        input_size = resolve_conv_transpose(out_size, weight.shape[2:], stride, padding, 0,
                                            dilation).large
    input_size = tuple(as_tuple(input_size, rank, "input_size"))
    expected = resolve_conv(input_size, weight.shape[2:], stride, padding, dilation).small
    if expected != tuple(out_size):
        raise ValueError(f"a convolution of input_size {input_size} gives spatial size "
                         f"{expected}, but y has {tuple(out_size)}")
    if lazy:
        if x0 is not None or callback is not None:
            raise ValueError("x0= and callback= are not available for dask arrays")
        return _dask.deconvolve(y, weight, stride, padding, dilation, groups, input_size,
                                method, damp, tol, maxiter, return_info, unbatched)
    batch, channels_in = y.shape[0], weight.shape[1] * as_int(groups, "groups")
    operator = as_linear_operator((channels_in,) + input_size, weight, stride=stride,
                                  padding=padding, dilation=dilation, groups=groups)
    result_shape = (batch, channels_in) + input_size
    shown_shape = result_shape[1:] if unbatched else result_shape
    if x0 is not None:
        x0 = np.asarray(x0)
        compute_dtype(x0.dtype, "x0")
        if x0.shape != shown_shape:
            raise ValueError(f"x0 must have the shape of the result, {shown_shape}, got "
                             f"x0.shape={x0.shape}")
        x0 = x0.astype(np.float64).ravel()
    # All samples at once: one block-diagonal operator on the concatenated vector.
    n_in, n_out = operator.shape[1], operator.shape[0]
    stacked = scipy.sparse.linalg.LinearOperator(
        shape=(batch * n_out, batch * n_in), dtype=np.float64,
        matvec=lambda v: operator.matmat(np.reshape(v, (batch, n_in)).T).T.ravel(),
        rmatvec=lambda v: operator.rmatmat(np.reshape(v, (batch, n_out)).T).T.ravel(),
    )
    rhs = y.astype(np.float64).ravel()
    limit = (min(max(2 * batch * n_in, _MAXITER_FLOOR), _MAXITER_CAP) if maxiter is None
             else maxiter)
    if method == "lsqr":
        system, b, lsqr_damp = stacked, rhs, damp
        if x0 is not None and damp:
            # LSQR's own damp would regularise x - x0; the stacked system [A; damp I]
            # keeps the objective ||A x - y||^2 + damp^2 ||x||^2 whatever the start.
            system = scipy.sparse.linalg.LinearOperator(
                shape=(batch * (n_out + n_in), batch * n_in), dtype=np.float64,
                matvec=lambda v: np.concatenate([stacked.matvec(v), damp * v]),
                rmatvec=lambda u: stacked.rmatvec(u[:batch * n_out]) + damp * u[batch * n_out:])
            b, lsqr_damp = np.concatenate([rhs, np.zeros(batch * n_in)]), 0.0
        result = scipy.sparse.linalg.lsqr(system, b, damp=lsqr_damp, atol=tol, btol=tol,
                                          iter_lim=limit, x0=x0)
        solution, stop, iterations = result[0], int(result[1]), int(result[2])
        # istop 0: x = 0 is exact; 1, 2, 4, 5: a tolerance reached; 3, 6: condition
        # number limit; 7: iteration limit.
        converged = stop in (0, 1, 2, 4, 5)
        why = ("the condition-number estimate passed LSQR's limit" if stop in (3, 6)
               else f"{iterations} iterations (maxiter={limit})")
    else:
        normal = scipy.sparse.linalg.LinearOperator(
            shape=(batch * n_in, batch * n_in), dtype=np.float64,
            matvec=lambda v: stacked.rmatvec(stacked.matvec(v)) + damp**2 * v)
        counted = [0]

        def each_iteration(xk):
            counted[0] += 1
            if callback is not None:
                callback(np.array(xk).reshape(shown_shape))

        solution, status = scipy.sparse.linalg.cg(
            normal, stacked.rmatvec(rhs), x0=x0, atol=0.0, maxiter=limit,
            callback=each_iteration, **{_CG_RTOL: tol})
        iterations, converged = counted[0], status == 0
        why = f"{iterations} iterations (maxiter={limit})"
    residual = float(np.linalg.norm(stacked.matvec(solution) - rhs))
    if not converged:
        warnings.warn(
            f"deconvolve(method={method!r}) stopped unconverged after {why}, short of "
            f"tol={tol:g} (residual norm {residual:.3g}, |y| {np.linalg.norm(rhs):.3g}); "
            f"the result is the last iterate.  Raise maxiter, loosen tol, or regularise "
            f"with damp > 0", ConvergenceWarning, stacklevel=2)
    info = {"method": method, "iterations": iterations, "residual_norm": residual,
            "converged": bool(converged)}
    x = solution.reshape(result_shape)
    if unbatched:
        x = x[0]
    return (x, info) if return_info else x
