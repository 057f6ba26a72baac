"""Shape arithmetic of convolution and transposed convolution.

Every convolution in this library is described by one :class:`Geometry`: a "large"
side (the convolution's input, the transposed convolution's output) and a "small"
side (the convolution's output, the transposed convolution's input), joined per axis by

    large = small * stride - pad_begin + tap * dilation,   0 <= tap < kernel.

A convolution gathers along that relation (large -> small) and a transposed
convolution scatters along it (small -> large); the two are adjoint because the
relation is the same.  ``pad_end`` and ``output_padding`` only decide how many
positions each side has, so a resolved Geometry keeps the sizes and ``pad_begin``.

Sizes are tuples of ints, one per spatial axis; a bare int means a 1-D size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from ._validation import (
    as_shape,
    as_tuple,
    check_at_least,
    check_derived_extent,
    padding_for_display,
    padding_spec,
)
from ._typing import IntOrTuple, Padding, Size

__all__ = [
    "Geometry",
    "conv_output_size",
    "conv_transpose_output_size",
    "output_padding_for",
    "inverse_conv_params",
]


@dataclass(frozen=True)
class Geometry:
    """Resolved per-axis description shared by a convolution and its transpose.

    Attributes
    ----------
    small : tuple of int
        Spatial size of the convolution's output (= transposed convolution's input).
    large : tuple of int
        Spatial size of the convolution's input (= transposed convolution's output).
    kernel, stride, dilation : tuple of int
    pad_begin : tuple of int
        Zero padding before the first large-side position (a crop, for the transpose).
    pad_end : tuple of int
        Padding after the end, as the caller resolved it (may be negative for a
        transposed ``"same"`` that extends the output); informational only.
    output_padding : tuple of int
        Extra transposed-output positions at the end (0 for a convolution).
    """

    small: tuple
    large: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pad_begin: tuple
    pad_end: tuple
    output_padding: tuple

    @property
    def rank(self):
        return len(self.kernel)

    def lifted(self, rank=3):
        """The same geometry with leading unit axes up to ``rank`` (one N-d kernel)."""
        lead = rank - self.rank
        ones, zeros = (1,) * lead, (0,) * lead
        return Geometry(
            small=ones + self.small, large=ones + self.large, kernel=ones + self.kernel,
            stride=ones + self.stride, dilation=ones + self.dilation,
            pad_begin=zeros + self.pad_begin, pad_end=zeros + self.pad_end,
            output_padding=zeros + self.output_padding,
        )

    def live_taps(self, axis):
        """``(lo, hi)``: taps ``lo <= t < hi`` on ``axis`` run from the first to the last
        that meets a real large position for some small index; taps outside meet only
        padding (or the cropped part of a transposed output) and add nothing.
        ``(0, 0)`` when no tap meets one."""
        small, large, stride = self.small[axis], self.large[axis], self.stride[axis]
        dilation, pad = self.dilation[axis], self.pad_begin[axis]

        def live(t):
            shift = t * dilation - pad               # large = j*stride + shift
            j = max(0, -(shift // stride))           # the first j with large >= 0
            return j < small and j * stride + shift < large

        taps = range(self.kernel[axis])
        lo = next((t for t in taps if live(t)), None)
        if lo is None:
            return 0, 0
        hi = next(t for t in reversed(taps) if live(t)) + 1
        return lo, hi

    def axis_relation(self, axis):
        """The per-axis relation of :class:`AxisRelation` for spatial axis ``axis``."""
        return _axis_relation(self.small[axis], self.large[axis], self.kernel[axis],
                              self.stride[axis], self.dilation[axis], self.pad_begin[axis])


@dataclass(frozen=True, eq=False)
class AxisRelation:
    """One axis of a Geometry as index tables: which (small index j, tap t) pairs meet
    which large position ``p = j*stride - pad_begin + t*dilation``, and where ``p``
    lives in the large side's *phase-major* layout.

    Phase-major layout: the large positions ordered by phase ``p mod stride``, then by
    ``p div stride`` -- phase ``r`` holds the ``ceil((large - r) / stride)`` positions
    ``r, r + stride, ...``, so the layout is a permutation of ``range(large)``.  A tap
    then maps consecutive ``j`` to consecutive layout positions: the kernels add or
    read contiguous runs, with no modulo and no inserted zeros, and positions in the
    padding are simply never part of a run.

    Every array is int64 and computed with Python integers, so no intermediate
    position can overflow whatever the stride or padding.

    Attributes
    ----------
    first, stop : ndarray, shape (kernel,)
        Tap ``t`` reaches a real large position exactly for ``first[t] <= j < stop[t]``.
    offset : ndarray, shape (kernel,)
        Layout position of ``(j, t)`` is ``offset[t] + j`` (for ``j`` in that range).
    source : ndarray, shape (kernel, small)
        Natural large position of ``(j, t)``, or -1 where it falls in the padding.
    layout : ndarray, shape (large,)
        Layout position of each natural large position.
    """

    first: object
    stop: object
    offset: object
    source: object
    layout: object


def _axis_relation(small, large, kernel, stride, dilation, pad_begin):
    import numpy as np  # shapes.py stays importable without running numpy at import

    counts = [-(-(large - r) // stride) for r in range(min(stride, large))]
    starts = [0]
    for count in counts[:-1]:
        starts.append(starts[-1] + count)
    first, stop, offset = [], [], []
    source = np.full((kernel, small), -1, dtype=np.int64)
    for t in range(kernel):
        shift = t * dilation - pad_begin          # p = j*stride + shift
        phase, lead = shift % stride, shift // stride   # p = (j + lead)*stride + phase
        count = counts[phase] if phase < len(counts) else 0
        j0 = min(max(0, -lead), small)
        j1 = max(j0, min(small, count - lead))
        first.append(j0)
        stop.append(j1)
        # offset + j lies in [0, large) for the j of the run: every entry stays within
        # the sizes (an empty run's offset is unused, and 0)
        offset.append(starts[phase] + lead if j1 > j0 else 0)
        if j1 > j0:  # (j + lead) < count, so these products stay below large
            source[t, j0:j1] = (np.arange(j0, j1, dtype=np.int64) + lead) * stride + phase
    positions = np.arange(large, dtype=np.int64)
    if stride >= large:
        layout = positions  # every phase holds one position: the identity
    else:
        layout = np.asarray(starts, dtype=np.int64)[positions % stride] + positions // stride
    as_array = lambda values: np.asarray(values, dtype=np.int64)  # noqa: E731
    return AxisRelation(first=as_array(first), stop=as_array(stop), offset=as_array(offset),
                        source=source, layout=layout)


# ---------------------------------------------------------------------------
# Per-axis resolution.  These are the only places that know the size formulas.

def _sizes(value, name):
    """A size argument: an int (1-D) or a sequence of ints, each >= 1."""
    sizes = as_shape(value, name)
    if not 1 <= len(sizes) <= 3:
        raise ValueError(f"{name} must have 1, 2 or 3 spatial sizes, got {sizes}")
    return sizes


def _hyper(rank, kernel_size, stride, dilation):
    kernel = as_tuple(kernel_size, rank, "kernel_size")
    stride = as_tuple(stride, rank, "stride")
    dilation = as_tuple(dilation, rank, "dilation")
    check_at_least(kernel, 1, "kernel_size")
    check_at_least(stride, 1, "stride")
    check_at_least(dilation, 1, "dilation", why=" (dilation=1 means no gaps between taps)")
    return kernel, stride, dilation


def _check_output_padding(output_padding, stride, dilation):
    for axis, (op, s, d) in enumerate(zip(output_padding, stride, dilation)):
        limit = max(s, d)
        if not 0 <= op < limit:
            raise ValueError(
                f"output_padding must satisfy 0 <= output_padding < max(stride, dilation) "
                f"on every axis, got output_padding={op} on axis {axis} with stride={s}, "
                f"dilation={d}: allowed values there are 0..{limit - 1}. A convolution with "
                f"stride {s} maps {s} consecutive input sizes to one output size and "
                f"output_padding only picks which of them the transposed convolution "
                f"produces, so it must be smaller than the stride (or the dilation)"
            )


def _same_conv_pads(size, kernel, stride, dilation):
    """TensorFlow's "same": output ceil(size / stride), smaller half of padding first."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def _same_transpose_pads(kernel, stride, dilation):
    """Keras/ONNX SAME_UPPER: output size * stride; crop split smaller half first.

    A negative crop becomes an extension at the end (negative ``pad_end``).
    """
    crop = dilation * (kernel - 1) + 1 - stride
    if crop >= 0:
        return crop // 2, crop - crop // 2
    return 0, crop


def resolve_conv(input_size, kernel_size, stride=1, padding=0, dilation=1):
    """Geometry of a convolution whose input (large side) has ``input_size``."""
    large = _sizes(input_size, "input_size")
    rank = len(large)
    kernel, stride, dilation = _hyper(rank, kernel_size, stride, dilation)
    spec = padding_spec(padding, rank)
    if spec == "valid":
        pairs = ((0, 0),) * rank
    elif spec == "same":
        pairs = tuple(_same_conv_pads(*a) for a in zip(large, kernel, stride, dilation))
    else:
        pairs = spec
    small = []
    for axis in range(rank):
        (pb, pe), span = pairs[axis], dilation[axis] * (kernel[axis] - 1) + 1
        padded = large[axis] + pb + pe
        if padded < span:
            raise ValueError(
                f"convolution output would be empty on axis {axis}: the padded input "
                f"(input_size {large[axis]} + padding {pb} + {pe} = {padded}) is smaller "
                f"than the dilated kernel (dilation*(kernel_size-1)+1 = "
                f"{dilation[axis]}*({kernel[axis]}-1)+1 = {span})"
            )
        check_derived_extent(padded, f"the padded input size on axis {axis} (input_size "
                                     f"{large[axis]} + padding {pb} + {pe})")
        small.append((padded - span) // stride[axis] + 1)
    return Geometry(
        small=tuple(small), large=large, kernel=kernel, stride=stride, dilation=dilation,
        pad_begin=tuple(p[0] for p in pairs), pad_end=tuple(p[1] for p in pairs),
        output_padding=(0,) * rank,
    )


def resolve_conv_transpose(input_size, kernel_size, stride=1, padding=0,
                           output_padding=0, dilation=1):
    """Geometry of a transposed convolution whose input (small side) has ``input_size``."""
    small = _sizes(input_size, "input_size")
    rank = len(small)
    kernel, stride, dilation = _hyper(rank, kernel_size, stride, dilation)
    output_padding = as_tuple(output_padding, rank, "output_padding")
    _check_output_padding(output_padding, stride, dilation)
    spec = padding_spec(padding, rank)
    if spec == "valid":
        pairs = ((0, 0),) * rank
    elif spec == "same":
        pairs = tuple(_same_transpose_pads(*a) for a in zip(kernel, stride, dilation))
    else:
        pairs = spec
    large = []
    for axis in range(rank):
        (pb, pe), op = pairs[axis], output_padding[axis]
        full = (small[axis] - 1) * stride[axis] + dilation[axis] * (kernel[axis] - 1) + 1
        size = full - pb - pe + op
        if size < 1:
            raise ValueError(
                f"transposed convolution output would be empty on axis {axis}: "
                f"(input_size - 1)*stride - pad_begin - pad_end + dilation*(kernel_size - 1) "
                f"+ output_padding + 1 = ({small[axis]} - 1)*{stride[axis]} - {pb} - {pe} + "
                f"{dilation[axis]}*({kernel[axis]} - 1) + {op} + 1 = {size}: padding "
                f"crops more than the full output of {full}"
            )
        check_derived_extent(full, f"the transposed convolution's uncropped output size "
                                   f"on axis {axis} ((input_size - 1)*stride + "
                                   f"dilation*(kernel_size - 1) + 1)")
        check_derived_extent(size, f"the transposed convolution's output size on axis {axis}")
        large.append(size)
    return Geometry(
        small=small, large=tuple(large), kernel=kernel, stride=stride, dilation=dilation,
        pad_begin=tuple(p[0] for p in pairs), pad_end=tuple(p[1] for p in pairs),
        output_padding=output_padding,
    )


# ---------------------------------------------------------------------------
# Public functions.

def conv_output_size(input_size: Size, kernel_size: IntOrTuple, stride: IntOrTuple = 1,
                     padding: Padding = 0, dilation: IntOrTuple = 1) -> Tuple[int, ...]:
    """Spatial output size of a convolution.

    ``out = floor((in + pad_begin + pad_end - dilation*(kernel - 1) - 1) / stride) + 1``

    Parameters
    ----------
    input_size : int or tuple of int
        Spatial input size; a bare int means 1-D.
    kernel_size, stride, dilation : int or tuple of int
    padding : int, tuple, "valid" or "same"
        Per axis an int or a ``(begin, end)`` pair.  ``"same"`` gives
        ``ceil(in / stride)`` (TensorFlow's rule).

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> conv_output_size((28, 28), 5, stride=2)
    (12, 12)
    >>> conv_output_size(7, 3, stride=2, padding="same")
    (4,)
    """
    return resolve_conv(input_size, kernel_size, stride, padding, dilation).small


def conv_transpose_output_size(input_size: Size, kernel_size: IntOrTuple,
                               stride: IntOrTuple = 1, padding: Padding = 0,
                               output_padding: IntOrTuple = 0,
                               dilation: IntOrTuple = 1) -> Tuple[int, ...]:
    """Spatial output size of a transposed convolution.

    ``out = (in - 1)*stride - pad_begin - pad_end + dilation*(kernel - 1) + output_padding + 1``

    ``padding`` *removes* positions from the transposed convolution's output: it is
    the padding of the convolution this one is the adjoint of, so larger padding means
    a smaller output.  ``"same"`` gives ``in * stride``.

    Examples
    --------
    >>> conv_transpose_output_size((2, 2), 2, stride=2, padding=1)
    (2, 2)
    >>> conv_transpose_output_size((2, 2), 2, stride=2, padding=0)
    (4, 4)
    >>> conv_transpose_output_size((12, 16, 12), 3, stride=2, padding=1, output_padding=1)
    (24, 32, 24)
    """
    return resolve_conv_transpose(
        input_size, kernel_size, stride, padding, output_padding, dilation
    ).large


def output_padding_for(input_size: Size, output_size: Size, kernel_size: IntOrTuple,
                       stride: IntOrTuple = 1, padding: Padding = 0,
                       dilation: IntOrTuple = 1) -> Tuple[int, ...]:
    """The ``output_padding`` that makes a transposed convolution produce ``output_size``.

    This is what ``torch.nn.ConvTranspose2d.forward(x, output_size=...)`` computes.
    The reachable sizes on an axis are those of every output_padding the validity
    rule ``0 <= output_padding < max(stride, dilation)`` allows.

    Raises
    ------
    ValueError
        If ``output_size`` is out of reach on some axis; the message gives the
        reachable range.

    Examples
    --------
    >>> output_padding_for((12, 16, 12), (24, 32, 24), 3, stride=2, padding=1)
    (1, 1, 1)
    """
    small = _sizes(input_size, "input_size")
    rank = len(small)
    target = _sizes(output_size, "output_size")
    if len(target) != rank:
        raise ValueError(
            f"output_size must have one size per spatial axis of input_size={small} "
            f"({rank}), got output_size={target}"
        )
    kernel, stride, dilation = _hyper(rank, kernel_size, stride, dilation)
    spec = padding_spec(padding, rank)
    if spec == "valid":
        pairs = ((0, 0),) * rank
    elif spec == "same":
        pairs = tuple(_same_transpose_pads(*a) for a in zip(kernel, stride, dilation))
    else:
        pairs = spec
    result = []
    for axis in range(rank):
        (pb, pe), s, d, k = pairs[axis], stride[axis], dilation[axis], kernel[axis]
        base = (small[axis] - 1) * s - pb - pe + d * (k - 1) + 1
        limit = max(s, d)
        lowest, highest = max(base, 1), base + limit - 1
        op = target[axis] - base
        if not (0 <= op < limit and target[axis] >= 1):
            reach = (
                f"{lowest}..{highest}" if lowest <= highest else "nothing (padding crops it all)"
            )
            raise ValueError(
                f"output_size {target[axis]} on axis {axis} is out of reach: with "
                f"input_size {small[axis]}, kernel_size {k}, stride {s}, padding "
                f"{padding_for_display((pairs[axis],))}, dilation {d} the transposed "
                f"convolution can produce sizes {reach} (output_padding 0..{limit - 1})"
            )
        result.append(op)
    return tuple(result)


def inverse_conv_params(conv_input_size: Size, kernel_size: IntOrTuple,
                        stride: IntOrTuple = 1, padding: Padding = 0,
                        dilation: IntOrTuple = 1) -> Dict[str, Tuple]:
    """Arguments of the transposed convolution that undoes a convolution's shape change.

    A strided convolution maps several input sizes to the same output size; the
    returned ``output_padding`` picks ``conv_input_size`` among them.  Padding is
    returned resolved (``"same"`` becomes numbers), as an int per axis where it is
    symmetric and a ``(begin, end)`` pair where it is not.

    Returns
    -------
    dict
        ``kernel_size, stride, padding, output_padding, dilation`` (tuples), ready
        for ``ConvTranspose*d(..., **params)`` or, without ``kernel_size``, for
        ``conv_transpose``.

    Examples
    --------
    >>> params = inverse_conv_params((28, 28), 5, stride=2)
    >>> params["output_padding"]
    (1, 1)
    >>> conv_transpose_output_size(conv_output_size((28, 28), 5, stride=2), **params)
    (28, 28)
    """
    conv_input_size = _sizes(conv_input_size, "conv_input_size")
    geometry = resolve_conv(conv_input_size, kernel_size, stride, padding, dilation)
    pairs = tuple(zip(geometry.pad_begin, geometry.pad_end))
    output_padding = []
    for axis in range(geometry.rank):
        s, d, k = geometry.stride[axis], geometry.dilation[axis], geometry.kernel[axis]
        pb, pe = pairs[axis]
        reached = (geometry.small[axis] - 1) * s - pb - pe + d * (k - 1) + 1
        output_padding.append(geometry.large[axis] - reached)
    return {
        "kernel_size": geometry.kernel,
        "stride": geometry.stride,
        "padding": tuple(b if b == e else (b, e) for b, e in pairs),
        "output_padding": tuple(output_padding),
        "dilation": geometry.dilation,
    }
