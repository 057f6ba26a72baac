"""The operators as a sum over kernel taps, in NumPy: exact for any weight and geometry.

For each kernel tap ``t`` (one position in the kernel), the pairs of small-side
positions ``o`` and large-side positions ``o*stride - pad_begin + t*dilation`` that
lie inside the large side form, per axis, two strided slices.  A convolution gathers
``W[:, :, t] @ large[slices]`` into ``small[slices]``; a transposed convolution
scatters ``W[:, :, t].T @ small[slices]`` into ``large[slices]``; the weight gradient
is ``small[slices] @ large[slices].T`` summed over taps.  Only products of weights with
real elements are ever formed -- a tap that lands in the padding is skipped, not
multiplied by zero -- which is the library's rule for non-finite values (see
:mod:`sparsetconv.functional`).  Memory: the arrays themselves plus one tap's slice.

This path serves calls the compiled kernels would get wrong under that rule (a NaN or
inf weight meeting padding) or could not hold a workspace for (absurd strides).
"""

import itertools

import numpy as np

__all__ = ["operator_by_taps", "weight_gradient_by_taps"]


def _axis_slices(geometry, axis, tap):
    """(small slice, large slice) of one axis and tap, or ``None`` when it lands only
    in the padding."""
    small, large = geometry.small[axis], geometry.large[axis]
    stride, offset = geometry.stride[axis], tap * geometry.dilation[axis] - geometry.pad_begin[axis]
    first = max(0, -(offset // stride))              # first o with o*stride + offset >= 0
    last = min(small - 1, (large - 1 - offset) // stride)
    if last < first:
        return None
    return (slice(first, last + 1),
            slice(first * stride + offset, last * stride + offset + 1, stride))


def _taps(geometry):
    """Every kernel tap that reaches the large side: ``(tap, small_slices, large_slices)``."""
    per_axis = []
    for axis in range(geometry.rank):
        hits = [(t, _axis_slices(geometry, axis, t)) for t in range(geometry.kernel[axis])]
        per_axis.append([(t, s) for t, s in hits if s is not None])
    for combination in itertools.product(*per_axis):
        tap = tuple(t for t, _ in combination)
        yield (tap, tuple(s[0] for _, s in combination), tuple(s[1] for _, s in combination))


def _grouped(array, groups, batched):
    """``(N, C, *spatial)`` (or unbatched) as ``(N, groups, C // groups, *spatial)``."""
    if not batched:
        array = array[None]
    return array.reshape((array.shape[0], groups, array.shape[1] // groups) + array.shape[2:])


def operator_by_taps(plan, x, w, b=None):
    """``plan``'s operator (convolution or transposed convolution) of ``x`` with ``w``."""
    with np.errstate(all="ignore"):  # NaN and inf propagate silently, as in the kernels
        return _operator(plan, x, w, b)


def _operator(plan, x, w, b):
    g, groups = plan.geometry, plan.groups
    batched = plan.batch is not None
    x = np.asarray(x, dtype=plan.dtype)
    # Weight as (groups, small per group, large per group, *kernel).
    w = np.asarray(w, dtype=plan.dtype)
    w = w.reshape((groups, w.shape[0] // groups) + w.shape[1:])
    out = np.zeros(plan.output_shape, dtype=plan.dtype)
    source, target = _grouped(x, groups, batched), _grouped(out, groups, batched)
    n = source.shape[0]
    for tap, small_slices, large_slices in _taps(g):
        w_tap = w[(Ellipsis,) + tap]                         # (groups, S_g, L_g)
        if plan.transposed:   # scatter: large[...] += W^T @ small[...]
            read, write, matrix = small_slices, large_slices, w_tap.transpose(0, 2, 1)
        else:                 # gather: small[...] += W @ large[...]
            read, write, matrix = large_slices, small_slices, w_tap
        block = source[(slice(None),) * 3 + read]
        spatial = block.shape[3:]
        columns = block.reshape(block.shape[:3] + (-1,))  # (n, groups, C_g, positions)
        product = np.matmul(matrix, columns)              # (n, groups, C_g', positions)
        target[(slice(None),) * 3 + write] += product.reshape((n,) + product.shape[1:3] + spatial)
    if b is not None:
        out += np.asarray(b, dtype=plan.dtype).reshape((-1,) + (1,) * plan.rank)
    return out


def weight_gradient_by_taps(plan, small, large):
    """``grad_w[cs, cl, t] = sum over n, o of small[n, cs, o] * large[n, cl, o*s - p + t*d]``
    (within each group), in the weight's layout ``(C_small, C_large // groups, *kernel)``."""
    with np.errstate(all="ignore"):
        return _weight_gradient(plan, small, large)


def _weight_gradient(plan, small, large):
    g, groups = plan.geometry, plan.groups
    batched = plan.batch is not None
    s = _grouped(np.asarray(small, dtype=plan.dtype), groups, batched)
    l = _grouped(np.asarray(large, dtype=plan.dtype), groups, batched)
    grad = np.zeros((groups, plan.small_channels // groups, plan.large_channels // groups)
                    + g.kernel, dtype=plan.dtype)
    for tap, small_slices, large_slices in _taps(g):
        a = s[(slice(None),) * 3 + small_slices]
        c = l[(slice(None),) * 3 + large_slices]
        a = a.reshape(a.shape[:3] + (-1,)).transpose(1, 2, 0, 3)   # (groups, S_g, n, P)
        c = c.reshape(c.shape[:3] + (-1,)).transpose(1, 2, 0, 3)   # (groups, L_g, n, P)
        a = a.reshape(a.shape[:2] + (-1,))
        c = c.reshape(c.shape[:2] + (-1,))
        grad[(Ellipsis,) + tap] = np.matmul(a, c.transpose(0, 2, 1))
    return grad.reshape((plan.small_channels,) + grad.shape[2:])
