"""Transposed convolution as a linear operator, and the true "deconvolution".

:func:`as_linear_operator` wraps a convolution (or its transpose) as a
``scipy.sparse.linalg.LinearOperator`` computed by the fast kernels -- no matrix is
stored -- so every scipy solver and eigen-solver works with it.  :func:`deconvolve`
uses it to invert a convolution in the least-squares sense: what people who call the
transposed convolution "deconvolution" usually want.
"""

import numpy as np
import scipy.sparse.linalg

from ._validation import as_tuple, compute_dtype
from .functional import _is_dask, conv, conv_transpose
from .shapes import resolve_conv, resolve_conv_transpose

__all__ = ["as_linear_operator", "deconvolve"]


def as_linear_operator(input_shape, weight, stride=1, padding=0, output_padding=0,
                       dilation=1, groups=1, *, transpose=False, dtype=np.float64):
    """A ``LinearOperator`` for one sample's convolution or transposed convolution.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)`` of the operator's own input.
    weight : array_like
        Convolution layout ``(C_out, C / groups, *kernel)``, or with ``transpose=True``
        the transposed layout ``(C, C_out / groups, *kernel)`` -- the same array serves
        an operator and its adjoint.
    stride, padding, output_padding, dilation, groups
        ``output_padding`` only with ``transpose=True``.
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

    Examples
    --------
    >>> import numpy as np
    >>> A = as_linear_operator((1, 3), np.array([[[1.0, 2.0]]]))
    >>> A.shape, A @ np.array([1.0, 0.0, 0.0]), A.T @ np.array([1.0, 1.0])
    ((2, 3), array([1., 0.]), array([1., 3., 2.]))
    """
    weight = np.asarray(weight)
    input_shape = tuple(int(v) for v in input_shape)
    rank = weight.ndim - 2
    if len(input_shape) != rank + 1:
        raise ValueError(f"input_shape must be (C, *spatial) with {rank} spatial sizes for "
                         f"weight.shape={weight.shape}, got input_shape={input_shape}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    channels, spatial = input_shape[0], input_shape[1:]
    if transpose:
        geometry = resolve_conv_transpose(spatial, weight.shape[2:], stride, padding,
                                          output_padding, dilation)
        output_shape = (weight.shape[1] * groups,) + geometry.large

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
    n_in, n_out = int(np.prod(input_shape)), int(np.prod(output_shape))

    def batched(function, shape_in):
        def apply(matrix):
            matrix = np.asarray(matrix, dtype=dtype)
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


def deconvolve(y, weight, stride=1, padding=0, dilation=1, groups=1, *, input_size=None,
               method="lsqr", damp=0.0, tol=1e-10, maxiter=None, return_info=False):
    """Least-squares inverse of a convolution: find ``x`` with ``conv(x, weight) ~= y``.

    A transposed convolution only undoes a convolution's *shape*; this undoes its
    values, as far as they can be undone.  It minimises
    ``||conv(x) - y||^2 + damp^2 ||x||^2`` with ``scipy.sparse.linalg`` through
    :func:`as_linear_operator` (no matrix is formed).

    When is it ill-posed?  A strided convolution has fewer outputs than inputs, and
    even at stride 1 a kernel can cancel some patterns (its frequency response has
    zeros), so many ``x`` give the same ``y``.  Started from zero, both methods then
    converge to the *minimum-norm* least-squares solution; when the problem is merely
    ill-conditioned (near-zero response), noise in ``y`` is amplified.  ``damp > 0``
    (Tikhonov regularisation) trades a small bias for stability: directions the
    convolution barely sees are shrunk towards zero.

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
        Regularisation strength (see above).
    tol : float
        Relative tolerance of the solver (LSQR's ``atol`` and ``btol``, CG's ``rtol``).
    maxiter : int, optional
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
    unbatched = y.ndim == rank + 1
    if unbatched:
        y = y[None]
    if y.ndim != rank + 2:
        raise ValueError(f"y must have {rank + 2} or {rank + 1} dimensions for "
                         f"weight.shape={weight.shape}, got y.shape={y.shape}")
    if method not in ("lsqr", "cg"):
        raise ValueError(f"method must be 'lsqr' or 'cg', got {method!r}")
    if not damp >= 0:
        raise ValueError(f"damp must be >= 0, got {damp!r}")
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
        return _dask.deconvolve(y, weight, stride, padding, dilation, groups, input_size,
                                method, damp, tol, maxiter, return_info, unbatched)
    batch, channels_in = y.shape[0], weight.shape[1] * groups
    operator = as_linear_operator((channels_in,) + input_size, weight, stride, padding, 0,
                                  dilation, groups)
    # All samples at once: one block-diagonal operator on the concatenated vector.
    n_in, n_out = operator.shape[1], operator.shape[0]
    stacked = scipy.sparse.linalg.LinearOperator(
        shape=(batch * n_out, batch * n_in), dtype=np.float64,
        matvec=lambda v: operator.matmat(np.reshape(v, (batch, n_in)).T).T.ravel(),
        rmatvec=lambda v: operator.rmatmat(np.reshape(v, (batch, n_out)).T).T.ravel(),
    )
    rhs = y.astype(np.float64).ravel()
    if method == "lsqr":
        result = scipy.sparse.linalg.lsqr(stacked, rhs, damp=damp, atol=tol, btol=tol,
                                          iter_lim=maxiter)
        solution, info = result[0], {"method": "lsqr", "iterations": int(result[2]),
                                     "residual_norm": float(result[3]),
                                     "converged": result[1] in (1, 2, 4, 5)}
    else:
        normal = scipy.sparse.linalg.LinearOperator(
            shape=(batch * n_in, batch * n_in), dtype=np.float64,
            matvec=lambda v: stacked.rmatvec(stacked.matvec(v)) + damp**2 * v)
        iterations = []
        solution, status = scipy.sparse.linalg.cg(
            normal, stacked.rmatvec(rhs), rtol=tol, atol=0.0, maxiter=maxiter,
            callback=lambda _: iterations.append(1))
        info = {"method": "cg", "iterations": len(iterations),
                "residual_norm": float(np.linalg.norm(stacked.matvec(solution) - rhs)),
                "converged": status == 0}
    x = solution.reshape((batch, channels_in) + input_size)
    if unbatched:
        x = x[0]
    return (x, info) if return_info else x
