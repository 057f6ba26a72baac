"""Independent reference implementations, written from the definitions.

Nothing here imports sparsetconv.  Slow is fine; obvious is required.

Transposed convolution, by definition: every input element ``x[n, ci, i]`` scatters
``x[n, ci, i] * w[ci, :, k]`` into the output at ``o = i*stride - pad_begin + k*dilation``
for every kernel tap ``k``, in the output channels of ``ci``'s group; positions that fall
outside the output are dropped (that is what padding crops).

Convolution, by definition: every output element is the sum over its group's input
channels and the kernel taps of ``x[n, ci, o*stride - pad_begin + k*dilation] * w[co, ci, k]``,
with zero where that index falls outside the input (that is the zero padding).

Padding is given explicitly as per-axis ``(begin, end)`` pairs; sizes come from the
textbook formulas written out here again.
"""

import itertools

import numpy as np


def _pairs(padding, rank):
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def _tuple(value, rank):
    return (value,) * rank if isinstance(value, int) else tuple(value)


def conv_transpose_reference(x, w, bias=None, stride=1, padding=0, output_padding=0,
                             groups=1, dilation=1):
    """Scatter form.  ``x``: (N, C_in, *in); ``w``: (C_in, C_out // groups, *kernel)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    rank = w.ndim - 2
    stride, dilation = _tuple(stride, rank), _tuple(dilation, rank)
    output_padding = _tuple(output_padding, rank)
    pads = _pairs(padding, rank)
    n, c_in = x.shape[:2]
    in_size, kernel = x.shape[2:], w.shape[2:]
    c_out_per_group = w.shape[1]
    c_in_per_group = c_in // groups
    out_size = [
        (in_size[a] - 1) * stride[a] - pads[a][0] - pads[a][1]
        + dilation[a] * (kernel[a] - 1) + output_padding[a] + 1
        for a in range(rank)
    ]
    out = np.zeros((n, c_out_per_group * groups, *out_size))
    for b in range(n):
        for ci in range(c_in):
            group = ci // c_in_per_group
            channels = slice(group * c_out_per_group, (group + 1) * c_out_per_group)
            for i in itertools.product(*map(range, in_size)):
                value = x[(b, ci) + i]
                for k in itertools.product(*map(range, kernel)):
                    o = tuple(i[a] * stride[a] - pads[a][0] + k[a] * dilation[a]
                              for a in range(rank))
                    if all(0 <= o[a] < out_size[a] for a in range(rank)):
                        out[(b, channels) + o] += value * w[(ci, slice(None)) + k]
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * rank)
    return out


def conv_reference(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Gather form.  ``x``: (N, C_in, *in); ``w``: (C_out, C_in // groups, *kernel)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    rank = w.ndim - 2
    stride, dilation = _tuple(stride, rank), _tuple(dilation, rank)
    pads = _pairs(padding, rank)
    n = x.shape[0]
    in_size, kernel = x.shape[2:], w.shape[2:]
    c_out, c_in_per_group = w.shape[0], w.shape[1]
    c_out_per_group = c_out // groups
    out_size = [
        (in_size[a] + pads[a][0] + pads[a][1] - dilation[a] * (kernel[a] - 1) - 1)
        // stride[a] + 1
        for a in range(rank)
    ]
    out = np.zeros((n, c_out, *out_size))
    for b in range(n):
        for co in range(c_out):
            group = co // c_out_per_group
            for o in itertools.product(*map(range, out_size)):
                total = 0.0
                for cl in range(c_in_per_group):
                    ci = group * c_in_per_group + cl
                    for k in itertools.product(*map(range, kernel)):
                        i = tuple(o[a] * stride[a] - pads[a][0] + k[a] * dilation[a]
                                  for a in range(rank))
                        if all(0 <= i[a] < in_size[a] for a in range(rank)):
                            total += x[(b, ci) + i] * w[(co, cl) + k]
                out[(b, co) + o] = total
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * rank)
    return out


def weight_gradient_reference(small, large, kernel, stride=1, padding=0, groups=1,
                              dilation=1):
    """Gradient of ``<large, conv_transpose(small, w)>`` (= ``<conv(large, w), small>``)
    with respect to ``w``, from the definition: ``w[cs, cl, k]`` multiplies
    ``small[n, cs, i]`` into ``large[n, group*C_l + cl, i*stride - pad_begin + k*dilation]``.

    ``small``: (N, C_small, *S) -- the transposed convolution's input, or a
    convolution's output gradient; ``large``: (N, C_large, *L); result
    ``(C_small, C_large // groups, *kernel)``.
    """
    small = np.asarray(small, dtype=np.float64)
    large = np.asarray(large, dtype=np.float64)
    rank = len(kernel)
    stride, dilation = _tuple(stride, rank), _tuple(dilation, rank)
    pads = _pairs(padding, rank)
    c_small, c_large = small.shape[1], large.shape[1]
    per_small, per_large = c_small // groups, c_large // groups
    grad = np.zeros((c_small, per_large) + tuple(kernel))
    for b in range(small.shape[0]):
        for cs in range(c_small):
            group = cs // per_small
            for i in itertools.product(*map(range, small.shape[2:])):
                value = small[(b, cs) + i]
                for k in itertools.product(*map(range, kernel)):
                    o = tuple(i[a] * stride[a] - pads[a][0] + k[a] * dilation[a]
                              for a in range(rank))
                    if all(0 <= o[a] < large.shape[2 + a] for a in range(rank)):
                        grad[(cs, slice(None)) + k] += (
                            value * large[(b, slice(group * per_large, (group + 1) * per_large)) + o])
    return grad
