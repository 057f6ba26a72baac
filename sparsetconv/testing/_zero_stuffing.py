"""A transposed convolution written the textbook way, independent of sparsetconv's kernels.

The formulation the PyTorch documentation describes (and that people who want to
avoid it start from): insert ``stride - 1`` zeros between neighbouring input elements,
pad each side with ``dilation*(kernel - 1) - padding`` zeros (a negative amount crops)
plus ``output_padding`` more at the end, then run a stride-1 convolution with the kernel
dilated, flipped, and its channel axes swapped.  It uses NumPy only
(``sliding_window_view`` and ``tensordot``); it serves as a second, independent
implementation for :mod:`sparsetconv.testing` and as the worked example of its docs.
Slow and memory-hungry by design: it multiplies by every inserted zero.

Each step is its own function, so that a variant with one step changed is easy to
write.
"""

import numpy as np

__all__ = ["conv_transpose", "conv", "zero_stuff", "pad_or_crop", "dilate_kernel",
           "correlate", "padding_pairs"]


def _per_axis(value, rank):
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    return tuple(int(v) for v in value)


def padding_pairs(padding, in_size, kernel, stride, dilation, *, transposed):
    """``(begin, end)`` per axis, from an int, ints, pairs, ``"valid"`` or ``"same"``.

    ``"same"``: a convolution's output is ``ceil(in / stride)``; a transposed
    convolution's is ``in * stride``, by cropping ``dilation*(kernel - 1) + 1 - stride``
    (the smaller half first; a negative crop extends the end).
    """
    rank = len(in_size)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * rank
        pairs = []
        for n, k, s, d in zip(in_size, kernel, stride, dilation):
            if transposed:
                crop = d * (k - 1) + 1 - s
                pairs.append((crop // 2, crop - crop // 2) if crop >= 0 else (0, crop))
            else:
                total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
                pairs.append((total // 2, total - total // 2))
        return tuple(pairs)
    if isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)),) * rank
    return tuple((int(p), int(p)) if isinstance(p, (int, np.integer)) else (int(p[0]), int(p[1]))
                 for p in padding)


def zero_stuff(x, stride):
    """Insert ``stride - 1`` zeros between neighbouring elements of every spatial axis.

    ``x``: ``(N, C, *spatial)``.
    """
    spatial = x.shape[2:]
    out = np.zeros(x.shape[:2] + tuple((n - 1) * s + 1 for n, s in zip(spatial, stride)),
                   dtype=x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)] = x
    return out


def pad_or_crop(x, amounts):
    """Pad each spatial axis with ``(begin, end)`` zeros; a negative amount crops."""
    widths = [(0, 0), (0, 0)] + [(max(b, 0), max(e, 0)) for b, e in amounts]
    x = np.pad(x, widths)
    crop = tuple(slice(max(-b, 0), x.shape[2 + a] - max(-e, 0))
                 for a, (b, e) in enumerate(amounts))
    return x[(slice(None), slice(None)) + crop]


def dilate_kernel(w, dilation):
    """Insert ``dilation - 1`` zeros between the taps of ``w`` (``(O, I, *kernel)``)."""
    return zero_stuff(w, dilation)


def correlate(x, w, groups):
    """Stride-1 "valid" cross-correlation: ``x`` ``(N, C_in, *n)``, ``w``
    ``(C_out, C_in // groups, *k)``, result ``(N, C_out, *(n - k + 1))``."""
    rank = w.ndim - 2
    spatial = tuple(range(2, 2 + rank))
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=spatial)
    c_in, c_out = x.shape[1] // groups, w.shape[0] // groups
    parts = []
    for g in range(groups):
        part = windows[:, g * c_in:(g + 1) * c_in]       # (N, c_in, *out, *k)
        kernel = w[g * c_out:(g + 1) * c_out]              # (c_out, c_in, *k)
        axes = ([1] + [2 + rank + a for a in range(rank)], [1] + [2 + a for a in range(rank)])
        parts.append(np.moveaxis(np.tensordot(part, kernel, axes=axes), -1, 1))
    return np.concatenate(parts, axis=1)


def _batched(x, rank):
    return (x, True) if x.ndim == rank + 2 else (x[None], False)


def _operands(input, weight, bias):
    """``(x, w, dtype, batched, rank)``: the arrays batched and in the result dtype."""
    w = np.asarray(weight)
    rank = w.ndim - 2
    x, batched = _batched(np.asarray(input), rank)
    dtype = _dtype(x, w, None if bias is None else np.asarray(bias))
    return x.astype(dtype), w.astype(dtype), dtype, batched, rank


def _dtype(*arrays):
    dtypes = [np.float32 if a.dtype == np.float16 else a.dtype for a in arrays
              if a is not None]
    return np.result_type(np.float32, *dtypes) if all(
        np.dtype(d).kind == "f" for d in dtypes) else np.float64


def conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                   groups=1, dilation=1):
    """Transposed convolution as a stride-1 convolution over the zero-stuffed input.

    PyTorch's signature and layouts: ``input`` ``(N, C_in, *spatial)`` or
    ``(C_in, *spatial)``, ``weight`` ``(C_in, C_out // groups, *kernel)``; padding also
    as ``(begin, end)`` pairs, ``"same"`` or ``"valid"``.

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
    x, w, dtype, batched, rank = _operands(input, weight, bias)
    stride, dilation = _per_axis(stride, rank), _per_axis(dilation, rank)
    output_padding = _per_axis(output_padding, rank)
    kernel = w.shape[2:]
    pairs = padding_pairs(padding, x.shape[2:], kernel, stride, dilation, transposed=True)
    # 1. zero-stuff; 2. pad by dilation*(kernel - 1) - padding, output_padding at the end
    stuffed = zero_stuff(x, stride)
    amounts = [(d * (k - 1) - b, d * (k - 1) - e + op)
               for k, d, (b, e), op in zip(kernel, dilation, pairs, output_padding)]
    padded = pad_or_crop(stuffed, amounts)
    # 3. the kernel of the equivalent convolution: per group, channels swapped, flipped
    c_in = w.shape[0] // groups
    swapped = np.concatenate([np.swapaxes(w[g * c_in:(g + 1) * c_in], 0, 1)
                              for g in range(groups)], axis=0)
    flipped = swapped[(slice(None), slice(None)) + (slice(None, None, -1),) * rank]
    out = correlate(padded, dilate_kernel(flipped, dilation), groups)
    if bias is not None:
        out = out + np.asarray(bias).astype(dtype).reshape((-1,) + (1,) * rank)
    out = out.astype(dtype, copy=False)
    return out if batched else out[0]


def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Convolution: pad, stride-1 correlation with the dilated kernel, keep every
    ``stride``-th position.  PyTorch's signature and layouts.

    Examples
    --------
    >>> import numpy as np
    >>> conv(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 3)), stride=2)
    array([[[3., 9.]]])
    """
    x, w, dtype, batched, rank = _operands(input, weight, bias)
    stride, dilation = _per_axis(stride, rank), _per_axis(dilation, rank)
    pairs = padding_pairs(padding, x.shape[2:], w.shape[2:], stride, dilation,
                          transposed=False)
    full = correlate(pad_or_crop(x, pairs), dilate_kernel(w, dilation), groups)
    out = full[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)]
    if bias is not None:
        out = out + np.asarray(bias).astype(dtype).reshape((-1,) + (1,) * rank)
    out = np.ascontiguousarray(out, dtype=dtype)
    return out if batched else out[0]
