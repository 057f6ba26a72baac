"""Understanding transposed convolution: words, buffers and pictures.

- :func:`explain` derives the output size with your numbers, shows the equivalent
  stride-1 convolution over a zero-stuffed input, and names the convolution whose
  shape change this one undoes (and whether ``output_padding`` is needed for that).
- :func:`contributions` returns, for a single-channel input, the "buffer" each input
  element writes -- ``input[i] * kernel`` placed at ``i*stride - padding`` -- whose sum
  is the output.
- :func:`output_terms` lists, for one output element, the (input, kernel) products
  that sum to it.
- :func:`plot_zero_stuffed`, :func:`animate_zero_stuffed`, :func:`plot_contributions`
  and :func:`plot_matrix` draw them (:mod:`sparsetconv.plotting`; matplotlib, the
  optional ``plot`` extra).
"""

from __future__ import annotations

import itertools
from typing import List, Sequence, Tuple, Union

import numpy as np

from ._typing import ArrayLike, IntOrTuple, Padding, Size
from ._validation import as_int, check_bytes, compute_dtype, is_sequence, padding_spec
from .matrix import conv_transpose_matrix
from .shapes import resolve_conv_transpose

__all__ = ["explain", "contributions", "output_terms", "plot_zero_stuffed",
           "animate_zero_stuffed", "plot_contributions", "plot_matrix"]


def explain(input_size: Size, kernel_size: IntOrTuple, stride: IntOrTuple = 1,
            padding: Padding = 0, output_padding: IntOrTuple = 0,
            dilation: IntOrTuple = 1) -> str:
    """Explain, with the numbers filled in, what a transposed convolution does to shapes.

    Parameters are those of :func:`sparsetconv.conv_transpose_output_size`.

    Returns
    -------
    str

    Examples
    --------
    >>> print(explain((2, 2), 2, stride=2, padding=1))   # doctest: +ELLIPSIS
    Transposed convolution of a 2x2 input: kernel 2, stride 2, padding 1, ...
    <BLANKLINE>
    Output size (each axis):
      out = (in - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1
          = (2 - 1)*2 - 2*1 + 1*(2 - 1) + 0 + 1 = 2
    ...
    """
    geometry = resolve_conv_transpose(input_size, kernel_size, stride, padding,
                                      output_padding, dilation)
    spec = padding_spec(padding, geometry.rank)
    axes = [_axis_facts(geometry, a) for a in range(geometry.rank)]
    shown = ("length-" + str(geometry.small[0]) if geometry.rank == 1
             else "x".join(map(str, geometry.small)))
    padding_text = spec if isinstance(spec, str) else _pairs_text(spec)
    lines = [
        f"Transposed convolution of a {shown} input: kernel {_join(geometry.kernel)}, "
        f"stride {_join(geometry.stride)}, padding {padding_text}, output_padding "
        f"{_join(geometry.output_padding)}, dilation {_join(geometry.dilation)}.",
        f"Output: {'x'.join(map(str, geometry.large))}.",
    ]
    groups = _group_axes(axes)
    for members, facts in groups:
        lines += [""] + _explain_axis(facts, members, geometry.rank, spec)
    return "\n".join(lines)


def _join(values):
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _signed(value):
    return f" - {-value}" if value < 0 else f" + {value}"


def _pairs_text(pairs):
    if all(b == e for b, e in pairs):
        return _join(tuple(b for b, _ in pairs))
    return " ".join(f"({b}, {e})" for b, e in pairs)


def _axis_facts(g, a):
    return dict(i=g.small[a], k=g.kernel[a], s=g.stride[a], d=g.dilation[a],
                pb=g.pad_begin[a], pe=g.pad_end[a], op=g.output_padding[a], out=g.large[a])


def _group_axes(axes):
    groups = []
    for a, facts in enumerate(axes):
        for members, seen in groups:
            if seen == facts:
                members.append(a)
                break
        else:
            groups.append(([a], facts))
    return groups


def _explain_axis(f, members, rank, spec):
    i, k, s, d, pb, pe, op, out = (f[n] for n in ("i", "k", "s", "d", "pb", "pe", "op", "out"))
    span = d * (k - 1) + 1
    full = (i - 1) * s + span
    if rank == 1 or len(members) == rank:
        where = "each axis" if rank > 1 else "the axis"
    else:
        where = "axis " + ", ".join(map(str, members))
    lines = [f"Output size ({where}):"]
    if pb == pe:
        lines += [
            "  out = (in - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1",
            f"      = ({i} - 1)*{s} - 2*{pb} + {d}*({k} - 1) + {op} + 1 = {out}",
        ]
    else:
        lines += [
            "  out = (in - 1)*stride - pad_begin - pad_end + dilation*(kernel - 1)"
            " + output_padding + 1",
            f"      = ({i} - 1)*{s} - {pb} - {pe} + {d}*({k} - 1) + {op} + 1 = {out}",
        ]
        if spec == "same":
            lines.append(f"  (padding 'same': output = input*stride = {i * s}; the crop "
                         f"dilation*(kernel-1) + 1 - stride = {span - s} is split "
                         f"{pb} before, {pe} after -- negative means extended at the end)")
    stuffed = (i - 1) * s + 1
    pad_each = [d * (k - 1) - pb, d * (k - 1) - pe]
    lines += [
        "",
        "The same as a stride-1 convolution over a zero-stuffed input:",
        f"  1. put stride - 1 = {s - 1} zero{'s' if s != 2 else ''} between neighbouring "
        f"input elements: {i} -> {stuffed}",
    ]
    if pb == pe:
        lines.append(f"  2. pad each side with dilation*(kernel - 1) - padding = "
                     f"{d}*({k} - 1) - {pb} = {pad_each[0]}")
    else:
        lines.append(f"  2. pad with dilation*(kernel - 1) - pad_begin = {pad_each[0]} before "
                     f"and dilation*(kernel - 1) - pad_end = {pad_each[1]} after")
    if d == 1:
        lines.append("     (dilation 1 means the kernel taps touch -- no gaps; 'no dilation' "
                     "is dilation=1, not 0)")
    if op:
        lines.append(f"     and add output_padding = {op} more zero{'s' if op > 1 else ''} "
                     f"at the end")
    lines.append(f"  3. slide the kernel, flipped (and with input/output channels swapped), "
                 f"one step at a time: {stuffed}{_signed(pad_each[0])}{_signed(pad_each[1])}"
                 f"{_signed(op)} - {span} + 1 = {out}")
    negative = [p for p in pad_each if p < 0]
    if negative:
        lines.append(
            f"  A negative amount ({negative[0]}) means no zeros are added there: instead "
            f"{-negative[0]} position{'s are' if negative[0] < -1 else ' is'} cut off that "
            f"side of the full output.  In a transposed convolution, padding *crops* the "
            f"output -- which is why a larger padding gives a smaller output.")
    elif pb:
        lines.append(f"  (padding {pb} removes that much of the full, uncropped output of "
                     f"{full}: larger padding, smaller output)")
    # The convolution this one undoes in shape.
    lowest, highest = max(full - pb - pe, 1), full - pb - pe + s - 1
    pad_words = str(pb) if pb == pe else f"({pb}, {pe})"
    conv_words = (f"a convolution with kernel {k}, stride {s}, padding {pad_words}, "
                  f"dilation {d}")
    lines.append("")
    if s == 1:
        lines.append(f"It undoes the shape change of {conv_words}: that maps {out - op} -> "
                     f"{i}, and this maps {i} back to {out - op}; with stride 1 there is "
                     f"nothing to choose, so output_padding is not needed.")
    else:
        lines.append(
            f"It undoes the shape change of {conv_words}.  With stride {s} that convolution "
            f"gives the same output size {i} for every input size from {lowest} through "
            f"{highest} (leftover positions that do not fit another stride are ignored), "
            f"so the transposed convolution cannot know which one to go back to: "
            f"output_padding picks it, 0 for {lowest} ... {s - 1} for {highest}.  Here "
            f"output_padding = {op} gives {out}"
            + ("." if op < s else f" (beyond those sizes: allowed because dilation {d} > "
                                   f"stride {s}, those positions get only the bias)."))
        lines.append(f"  To restore a given size, use inverse_conv_params(size, {k}, "
                     f"stride={s}, padding={pad_words}) or output_size=.")
    return lines


def contributions(input: ArrayLike, weight: ArrayLike, stride: IntOrTuple = 1,
                  padding: Padding = 0, output_padding: IntOrTuple = 0,
                  dilation: IntOrTuple = 1) -> np.ndarray:
    """The buffer each input element contributes; their sum is the transposed convolution.

    For a single channel: input element ``i`` writes ``input[i] * weight`` into the
    output at positions ``i*stride - pad_begin + k*dilation`` (what falls into the
    padding is cropped away).  This is the "coloured buffers" picture of a transposed
    convolution, in any rank.

    Parameters
    ----------
    input : array_like
        ``spatial`` (no batch or channel axes), 1 to 3 dimensions.
    weight : array_like
        ``kernel``, same number of dimensions.
    stride, padding, output_padding, dilation
        As for :func:`sparsetconv.conv_transpose`.

    Returns
    -------
    numpy.ndarray
        Shape ``(*input.shape, *output_spatial)``: ``result[i]`` is element ``i``'s buffer;
        ``result.sum(axis=tuple(range(input.ndim)))`` equals the transposed convolution.

    Examples
    --------
    >>> import numpy as np
    >>> buffers = contributions(np.array([[2.0, 4.0], [0.0, 1.0]]),
    ...                         np.array([[3.0, 1.0], [1.0, 5.0]]))
    >>> buffers[0, 0]                      # 2 * kernel, in the top-left corner
    array([[ 6.,  2.,  0.],
           [ 2., 10.,  0.],
           [ 0.,  0.,  0.]])
    >>> buffers.sum(axis=(0, 1))
    array([[ 6., 14.,  4.],
           [ 2., 17., 21.],
           [ 0.,  1.,  5.]])
    """
    x, w = _single_channel(input, weight)
    sizes = resolve_conv_transpose(x.shape, w.shape, stride, padding, output_padding,
                                   dilation)
    check_bytes(f"contributions of shape {x.shape + sizes.large}",
                2 * x.size * int(np.prod(sizes.large, dtype=object)) * 8)
    matrix = conv_transpose_matrix((1,) + x.shape, w[None, None], stride, padding,
                                   output_padding, 1, dilation)
    out_shape = resolve_conv_transpose(x.shape, w.shape, stride, padding, output_padding,
                                       dilation).large
    dense = matrix.toarray()                           # (outputs, inputs)
    buffers = dense * x.reshape(1, -1).astype(dense.dtype)
    return np.ascontiguousarray(buffers.T).reshape(x.shape + out_shape)


def _single_channel(input, weight):
    """The arrays of :func:`contributions` and :func:`output_terms`, checked."""
    from .functional import as_array

    x, w = as_array(input, "input"), as_array(weight, "weight")
    compute_dtype(x.dtype, "input")
    compute_dtype(w.dtype, "weight")
    if not 1 <= x.ndim <= 3 or w.ndim != x.ndim:
        raise ValueError(f"input and weight must have the same number (1-3) of spatial "
                         f"dimensions and no channel axes, got input.shape={x.shape}, "
                         f"weight.shape={w.shape}")
    if x.size == 0 or w.size == 0:
        raise ValueError(f"input and weight must not be empty, got input.shape={x.shape}, "
                         f"weight.shape={w.shape}")
    return x, w


def output_terms(
    input: ArrayLike, weight: ArrayLike, index: Union[int, Sequence[int]],
    stride: IntOrTuple = 1, padding: Padding = 0, output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
) -> List[Tuple[Tuple[int, ...], Tuple[int, ...], float, float]]:
    """The terms whose sum is one output element of a transposed convolution.

    For a single channel, output position ``o`` receives ``input[i] * weight[k]`` for
    every input index ``i`` and kernel index ``k`` with ``i*stride - pad_begin +
    k*dilation == o`` on every axis.  This lists them, so that any output number can be
    recomputed by hand.

    Parameters
    ----------
    input : array_like
        ``spatial`` (no batch or channel axes), 1 to 3 dimensions.
    weight : array_like
        ``kernel``, same number of dimensions (not flipped: ``weight[kernel_index]``).
    index : int or tuple of int
        The output element, one index per spatial axis (an int for 1-D).
    stride, padding, output_padding, dilation
        As for :func:`sparsetconv.conv_transpose`.

    Returns
    -------
    list of tuple
        ``(input_index, kernel_index, input_value, weight_value)`` per term, in row-major
        order of ``input_index``; empty where only padding or output_padding reaches
        that output.  ``sum(v * w for _, _, v, w in terms)`` is ``output[index]``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[2.0, 4.0], [0.0, 1.0]])
    >>> w = np.array([[3.0, 1.0], [1.0, 5.0]])
    >>> for term in output_terms(x, w, (1, 1)):
    ...     print(term)
    ((0, 0), (1, 1), 2.0, 5.0)
    ((0, 1), (1, 0), 4.0, 1.0)
    ((1, 0), (0, 1), 0.0, 1.0)
    ((1, 1), (0, 0), 1.0, 3.0)
    """
    x, w = _single_channel(input, weight)
    g = resolve_conv_transpose(x.shape, w.shape, stride, padding, output_padding, dilation)
    if isinstance(index, (str, bytes)):
        raise TypeError(f"index must be an int or a tuple of ints, got {index!r}")
    position = tuple(index) if is_sequence(index) else (index,)
    if len(position) != g.rank:
        raise ValueError(f"index must give {g.rank} output indices, got index={index!r}")
    per_axis = []
    for axis, value in enumerate(position):
        value = as_int(value, f"index[{axis}]")
        if not 0 <= value < g.large[axis]:
            raise ValueError(
                f"index[{axis}]={value} is outside the output, whose size on that axis is "
                f"{g.large[axis]} (the output {g.large} of input.shape={x.shape} and "
                f"weight.shape={w.shape} with stride={g.stride}, padding="
                f"{tuple(zip(g.pad_begin, g.pad_end))}, output_padding={g.output_padding}, "
                f"dilation={g.dilation})")
        n, s, d, pb = g.small[axis], g.stride[axis], g.dilation[axis], g.pad_begin[axis]
        # Input i and tap k meet at value when i*stride = value + pad_begin - k*dilation
        # (plain Python ints: any geometry the shape arithmetic accepts).
        reach = [(value + pb - k * d, k) for k in range(g.kernel[axis])]
        per_axis.append(sorted((r // s, k) for r, k in reach if r % s == 0 and 0 <= r < n * s))
    terms = []
    for pairs in itertools.product(*per_axis):
        i = tuple(p[0] for p in pairs)
        k = tuple(p[1] for p in pairs)
        terms.append((i, k, x[i].item(), w[k].item()))
    return terms


# ---------------------------------------------------------------------------
# The pictures live in sparsetconv.plotting (matplotlib is imported only when drawing).

from .plotting import (  # noqa: E402  (re-exported here, where they were first)
    animate_zero_stuffed, plot_contributions, plot_matrix, plot_zero_stuffed)
