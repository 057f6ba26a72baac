"""One resolved, immutable description of a (transposed) convolution call.

The public functions validate and normalise their arguments exactly once, here,
into a :class:`ConvPlan`; every backend consumes the plan and never re-parses
arguments.  Plans depend only on shapes, dtypes and hyper-parameters, so they are
cached: a repeated call with the same shapes costs a dictionary look-up.
"""

from dataclasses import dataclass
from functools import lru_cache
from math import prod

import numpy as np

from ._validation import as_int, as_shape, as_tuple, is_sequence, result_dtype
from .shapes import Geometry, output_padding_for, resolve_conv, resolve_conv_transpose

BACKENDS = ("auto", "direct", "sparse")


@dataclass(frozen=True)
class ConvPlan:
    """A validated call: which direction, the geometry, channels, batch and dtype.

    The weight is always laid out ``(small_channels, large_channels // groups, *kernel)``:
    for a convolution the small side is the output, for a transposed convolution
    it is the input, which is why both use the same weight array for adjoint maps.
    """

    transposed: bool
    geometry: Geometry
    batch: object  # int, or None for an unbatched call
    small_channels: int
    large_channels: int
    groups: int
    dtype: np.dtype
    has_bias: bool

    @property
    def rank(self):
        return self.geometry.rank

    @property
    def in_channels(self):
        return self.small_channels if self.transposed else self.large_channels

    @property
    def out_channels(self):
        return self.large_channels if self.transposed else self.small_channels

    @property
    def in_spatial(self):
        return self.geometry.small if self.transposed else self.geometry.large

    @property
    def out_spatial(self):
        return self.geometry.large if self.transposed else self.geometry.small

    @property
    def output_shape(self):
        lead = () if self.batch is None else (self.batch,)
        return lead + (self.out_channels,) + self.out_spatial

    @property
    def flops(self):
        """Useful multiply-adds times two (as the benchmarks count them)."""
        n = 1 if self.batch is None else self.batch
        per_group = self.large_channels // self.groups
        return (2 * n * self.small_channels * per_group * prod(self.geometry.kernel)
                * prod(self.geometry.small))


def check_backend(backend):
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def _rank_of(weight_shape, rank):
    ndim = len(weight_shape)
    if rank is not None and ndim != rank + 2:
        raise ValueError(
            f"weight must have {rank + 2} dimensions (out/in channels and {rank} kernel "
            f"sizes) for a {rank}-D operation, got weight.shape={tuple(weight_shape)}"
        )
    if ndim not in (3, 4, 5):
        raise ValueError(
            f"weight must have 3, 4 or 5 dimensions (1-, 2- or 3-D kernels), got "
            f"weight.shape={tuple(weight_shape)}"
        )
    return ndim - 2


def _shape_text(name, shape):
    """``input.shape=(1, 2)`` for an array argument, ``input_shape=(1, 2)`` for a shape."""
    return f"{name}.shape={tuple(shape)}" if name == "input" else f"{name}={tuple(shape)}"


def _channels(input_shape, weight_shape, bias_shape, groups, transposed, rank, name="input"):
    """Check ranks, channels and groups; return ``(batch, small_channels, large_channels)``."""
    if len(input_shape) not in (rank + 1, rank + 2):
        raise ValueError(
            f"{name} must have {rank + 2} dimensions (N, C, *spatial) or {rank + 1} "
            f"(C, *spatial) for a weight of shape {tuple(weight_shape)}, got "
            f"{_shape_text(name, input_shape)}"
        )
    groups = as_int(groups, "groups")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got groups={groups}")
    small, per_group = weight_shape[0], weight_shape[1]
    for axis, k in enumerate(weight_shape[2:]):
        if k < 1:
            raise ValueError(
                f"weight kernel size must be >= 1 on every axis, got weight.shape="
                f"{tuple(weight_shape)} ({k} on spatial axis {axis})"
            )
    if small < 1 or per_group < 1:
        raise ValueError(f"weight must have non-empty channel axes, got weight.shape="
                         f"{tuple(weight_shape)}")
    if small % groups:
        which = "in_channels (weight.shape[0])" if transposed else "out_channels (weight.shape[0])"
        raise ValueError(
            f"groups={groups} must divide {which}={small}"
        )
    batched = len(input_shape) == rank + 2
    channels = input_shape[1] if batched else input_shape[0]
    large = per_group * groups
    expected = small if transposed else large
    if channels != expected:
        if transposed:
            why = f"weight.shape[0]={small}"
        else:
            why = f"weight.shape[1] * groups = {per_group} * {groups} = {large}"
        raise ValueError(
            f"{name} has {channels} channels ({_shape_text(name, input_shape)}"
            f"{'' if batched else ', read as one unbatched sample (C, *spatial)'}) but the "
            f"weight expects {why}"
            + _channel_hints(input_shape, weight_shape, groups, transposed, rank, batched,
                             expected)
        )
    if bias_shape is not None:
        out_channels = large if transposed else small
        if tuple(bias_shape) != (out_channels,):
            source = (f"weight.shape[1] * groups = {per_group} * {groups}" if transposed
                      else f"weight.shape[0]")
            raise ValueError(
                f"bias must have shape ({out_channels},) (one value per output channel, "
                f"{source} = {out_channels}), got bias.shape={tuple(bias_shape)}"
            )
    return (input_shape[0] if batched else None), small, large, groups


def _channel_hints(input_shape, weight_shape, groups, transposed, rank, batched, expected):
    """Likely causes of a channel mismatch, each with the fix, as message text."""
    hints = []
    channel_axis = 1 if batched else 0
    if input_shape[-1] == expected and len(input_shape) > channel_axis + 1:
        layout = "(N, *spatial, C)" if batched else "(*spatial, C)"
        hints.append(
            f"the input looks channels-last {layout}, its last axis has {expected}: "
            f"sparsetconv wants channels first, np.moveaxis(input, -1, {channel_axis})"
        )
    small, per_group = weight_shape[0], weight_shape[1]
    channels = input_shape[channel_axis]
    if transposed and channels == per_group * groups:
        fix = _swap_layout_text(weight_shape, groups)
        hints.append(
            f"the weight looks like a convolution's (C_out, C_in // groups, *kernel); "
            f"conv_transpose wants (C_in, C_out // groups, *kernel): {fix}"
        )
    if not transposed and channels == small:
        fix = _swap_layout_text(weight_shape, groups)
        hints.append(
            f"the weight looks like a transposed convolution's (C_in, C_out // groups, "
            f"*kernel); conv wants (C_out, C_in // groups, *kernel): {fix}"
        )
    if not batched and rank >= 2:
        hints.append(
            f"an input with {rank + 1} dimensions and a {rank + 2}-D weight is one "
            f"unbatched {rank}-D sample (C, *spatial); for a batch of {rank - 1}-D inputs "
            f"use a {rank + 1}-D weight"
        )
    return "".join(f"; {hint}" for hint in hints)


def _swap_layout_text(weight_shape, groups):
    """The expression that turns a weight into the other direction's layout."""
    if groups == 1:
        return "weight.swapaxes(0, 1)"
    small, per_group, kernel = weight_shape[0], weight_shape[1], tuple(weight_shape[2:])
    k = ", ".join(map(str, kernel))
    return (f"weight.reshape({groups}, {small // groups}, {per_group}, {k}).swapaxes(1, 2)"
            f".reshape({per_group * groups}, {small // groups}, {k})")


def _output_size_to_padding(output_size, input_shape, rank, small, kernel, stride,
                            padding, dilation, output_padding):
    """Turn ``output_size=`` into ``output_padding`` (and check it agrees with one given)."""
    sizes = as_shape(output_size, "output_size")
    if len(sizes) == len(input_shape):
        sizes = sizes[-rank:]
    elif len(sizes) != rank:
        raise ValueError(
            f"output_size must give the {rank} spatial sizes (optionally preceded by the "
            f"batch and channel sizes), got output_size={sizes}"
        )
    computed = output_padding_for(small, sizes, kernel, stride, padding, dilation)
    given = as_tuple(output_padding, rank, "output_padding")
    if any(given) and given != computed:
        raise ValueError(
            f"output_padding={given} disagrees with output_size={sizes}, which needs "
            f"output_padding={computed}; give only one of them"
        )
    return computed


@lru_cache(maxsize=1024)
def _plan_cached(*key):
    return _make_plan(*key)


def _make_plan(transposed, rank, input_shape, input_dtype, weight_shape, weight_dtype,
               bias_shape, bias_dtype, stride, padding, output_padding, groups, dilation,
               output_size, input_name="input"):
    # dtypes first: a string or object array is a TypeError, whatever its shape.
    dtype = result_dtype(("input", input_dtype), ("weight", weight_dtype), ("bias", bias_dtype))
    rank = _rank_of(weight_shape, rank)
    batch, small, large, groups = _channels(
        input_shape, weight_shape, bias_shape, groups, transposed, rank, input_name
    )
    spatial = tuple(input_shape[-rank:])
    kernel = tuple(weight_shape[2:])
    for axis, size in enumerate(spatial):
        if size < 1:
            raise ValueError(
                f"{input_name} spatial sizes must be >= 1, got "
                f"{_shape_text(input_name, input_shape)} "
                f"({size} on spatial axis {axis})"
            )
    if transposed:
        if output_size is not None:
            output_padding = _output_size_to_padding(
                output_size, input_shape, rank, spatial, kernel, stride, padding,
                dilation, output_padding,
            )
        geometry = resolve_conv_transpose(spatial, kernel, stride, padding, output_padding,
                                          dilation)
    else:
        geometry = resolve_conv(spatial, kernel, stride, padding, dilation)
    return ConvPlan(
        transposed=transposed, geometry=geometry, batch=batch, small_channels=small,
        large_channels=large, groups=groups, dtype=dtype, has_bias=bias_shape is not None,
    )


# Prepared calls of the public functions (forward and backward alike), keyed by the
# function and everything but the array data: a repeated call costs one dictionary
# look-up on top of the kernel.  Bounded; cleared when full.
_PREPARED_CALLS = {}
_MAX_PREPARED_CALLS = 2048


def prepared_call(key):
    """The prepared call stored under ``key`` (from :func:`remember_call`), or None."""
    return _PREPARED_CALLS.get(key)


def remember_call(key, prepared):
    """Store ``prepared`` under ``key`` (a tuple led by the function's name)."""
    if len(_PREPARED_CALLS) >= _MAX_PREPARED_CALLS:
        _PREPARED_CALLS.clear()
    _PREPARED_CALLS[key] = prepared


def forget_prepared_calls():
    """Drop every prepared call (tests that swap the algorithm choice use it)."""
    _PREPARED_CALLS.clear()


def make_plan(transposed, rank, input_shape, input_dtype, weight_shape, weight_dtype,
              bias_shape, bias_dtype, stride, padding, output_padding, groups, dilation,
              output_size, input_name="input"):
    """Validate one call's shapes, dtypes and hyper-parameters; return its ConvPlan.

    ``input_name`` is what messages call the input (``"input_shape"`` for the matrices).
    """
    key = (transposed, rank, tuple(input_shape), input_dtype, tuple(weight_shape),
           weight_dtype, None if bias_shape is None else tuple(bias_shape), bias_dtype,
           stride, padding, output_padding, groups, dilation, output_size, input_name)
    # Only plain ints/strs/tuples are cache keys: 2.0 == 2 and True == 1 as dict
    # keys, and those must still reach validation (and its TypeError).
    if _plain((stride, padding, output_padding, groups, dilation, output_size)):
        return _plan_cached(*key)
    return _make_plan(*key)


def _plain(value):
    kind = type(value)
    if kind is int or kind is str or value is None:
        return True
    if kind is not tuple:
        return False
    for item in value:  # loops, not all(generator): this runs on every call
        kind = type(item)
        if kind is int or kind is str or item is None:
            continue
        if kind is not tuple:
            return False
        for inner in item:  # sizes and padding pairs inline; deeper nesting recurses
            kind = type(inner)
            if not (kind is int or kind is str or inner is None
                    or (kind is tuple and _plain(inner))):
                return False
    return True


def live_plan(plan):
    """``(plan, taps)`` with the kernel cut to its live taps, or None when every tap
    is live.

    A tap outside :meth:`~sparsetconv.shapes.Geometry.live_taps` meets only padding on
    that axis -- a 7x7 "same" convolution on a 2x4 plane has 3 live rows of 7 -- so
    the kernels would multiply zeros there (GEMM: a third of its reduction).  The cut
    plan has the same sizes and relation for the taps it keeps: padding shrinks by
    the taps cut before (it may go negative), ``taps`` is the slice per axis that
    :func:`live_weight` applies.  Dropping those taps is exact, non-finite weights
    included: they never meet a real element.
    """
    g = plan.geometry
    ranges = tuple(g.live_taps(axis) for axis in range(g.rank))
    if all(hi - lo == k for (lo, hi), k in zip(ranges, g.kernel)):
        return None
    if any(hi <= lo for lo, hi in ranges):
        return None  # nothing meets the input: the kernels' empty runs handle it
    geometry = Geometry(
        small=g.small, large=g.large, kernel=tuple(hi - lo for lo, hi in ranges),
        stride=g.stride, dilation=g.dilation,
        pad_begin=tuple(p - lo * d for p, (lo, _), d in zip(g.pad_begin, ranges, g.dilation)),
        pad_end=tuple(p - (k - hi) * d
                      for p, (_, hi), k, d in zip(g.pad_end, ranges, g.kernel, g.dilation)),
        output_padding=g.output_padding,
    )
    cut = ConvPlan(transposed=plan.transposed, geometry=geometry, batch=plan.batch,
                   small_channels=plan.small_channels, large_channels=plan.large_channels,
                   groups=plan.groups, dtype=plan.dtype, has_bias=plan.has_bias)
    return cut, (slice(None), slice(None)) + tuple(slice(lo, hi) for lo, hi in ranges)


def live_weight(weight, taps):
    """The weight of :func:`live_plan`'s plan: its live taps, contiguous (a copy)."""
    return np.ascontiguousarray(weight[taps])


def gather_plan(plan):
    """A stride-1 transposed convolution as the convolution it equals, or None.

    With stride 1, ``out[o] = sum_t x[o + pad - t*d] w[t]`` is a convolution of ``x``
    with the kernel flipped (:func:`gather_weight`) and padding ``d*(k-1) - pad``
    before (the rest after, up to the output size): the compiled convolution then
    gathers each output row in registers instead of scattering input rows into it.
    None when the plan is not such a call or the equivalent padding would be negative.
    """
    g = plan.geometry
    if not plan.transposed or any(s != 1 for s in g.stride):
        return None
    reach = tuple(d * (k - 1) for d, k in zip(g.dilation, g.kernel))
    pad_begin = tuple(r - p for r, p in zip(reach, g.pad_begin))
    pad_end = tuple(out - n - p + r for out, n, p, r in zip(g.large, g.small, pad_begin, reach))
    if min(pad_begin + pad_end) < 0:
        return None
    geometry = Geometry(small=g.large, large=g.small, kernel=g.kernel, stride=g.stride,
                        dilation=g.dilation, pad_begin=pad_begin, pad_end=pad_end,
                        output_padding=(0,) * g.rank)
    return ConvPlan(transposed=False, geometry=geometry, batch=plan.batch,
                    small_channels=plan.large_channels, large_channels=plan.small_channels,
                    groups=plan.groups, dtype=plan.dtype, has_bias=plan.has_bias)


def gather_weight(weight, groups):
    """A transposed convolution's weight ``(C_in, C_out / groups, *kernel)`` as the
    weight of :func:`gather_plan`'s convolution: ``(C_out, C_in / groups, *kernel)``,
    each group's channel axes swapped and the kernel reversed on every axis (a copy)."""
    c_in, cout_g = weight.shape[:2]
    kernel = weight.shape[2:]
    grouped = weight.reshape((groups, c_in // groups, cout_g) + kernel).swapaxes(1, 2)
    flipped = grouped[(Ellipsis,) + (slice(None, None, -1),) * len(kernel)]
    return np.ascontiguousarray(flipped).reshape((groups * cout_g, c_in // groups) + kernel)


def adjoint_plan(plan, batch=None):
    """The plan of the operator adjoint to ``plan`` (same geometry, other direction)."""
    return ConvPlan(
        transposed=not plan.transposed, geometry=plan.geometry, batch=batch,
        small_channels=plan.small_channels, large_channels=plan.large_channels,
        groups=plan.groups, dtype=plan.dtype, has_bias=False,
    )
