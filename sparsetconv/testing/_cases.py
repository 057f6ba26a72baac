"""One configuration of a (transposed) convolution, how to draw one, and how to simplify one.

:class:`Case` holds everything that decides one call: the operation, rank, batch,
channels, sizes, hyper-parameters in the form they are passed, dtype, memory order and
the seed of the arrays.  :func:`draw_case` draws a valid one from any source of random
choices -- a seeded NumPy generator for the checks, hypothesis's ``draw`` for the
strategies -- so both use the same generator.  :func:`simplifications` lists the
smaller cases a failing one can shrink to.
"""

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..shapes import conv_output_size, conv_transpose_output_size, resolve_conv, \
    resolve_conv_transpose

PADDING_KINDS = ("int", "ints", "pairs", "same", "valid")
SYMMETRIC_PADDING_KINDS = ("int", "ints")
MEMORY_ORDERS = ("C", "F", "strided")


class Rejected(Exception):
    """Raised by a source's ``reject()``: the draw so far cannot give a valid case."""


class NumpySource:
    """Random choices from a ``numpy.random.Generator`` (uniform over each range)."""

    def __init__(self, rng):
        self.rng = rng

    def integer(self, low, high):
        return int(self.rng.integers(low, high + 1))

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def boolean(self):
        return bool(self.rng.integers(2))

    def reject(self):
        raise Rejected


def per_axis(value, rank):
    """An int or a sequence, as a tuple of ``rank`` ints."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    return tuple(int(v) for v in value)


@dataclass(frozen=True)
class Case:
    """One call of a transposed convolution (``transposed=True``) or a convolution.

    Channel counts are per group; hyper-parameters are kept in the form they are passed
    (an int, a tuple per axis, ``(begin, end)`` pairs, ``"same"``, ``"valid"``).  The
    arrays are drawn from ``seed`` (see :mod:`sparsetconv.testing`); ``batch=None`` is
    an unbatched call.
    """

    transposed: bool
    rank: int
    batch: Optional[int]
    groups: int
    in_per_group: int
    out_per_group: int
    in_size: tuple
    kernel: tuple
    stride: object = 1
    padding: object = 0
    output_padding: object = 0
    dilation: object = 1
    bias: bool = False
    dtype: str = "float64"
    memory: str = "C"
    seed: int = 0

    @property
    def in_channels(self):
        return self.groups * self.in_per_group

    @property
    def out_channels(self):
        return self.groups * self.out_per_group

    @property
    def input_shape(self):
        """Channels-first input shape, ``(N, C_in, *in)`` or ``(C_in, *in)``."""
        lead = () if self.batch is None else (self.batch,)
        return lead + (self.in_channels,) + tuple(self.in_size)

    @property
    def weight_shape(self):
        """PyTorch's weight layout for the operation."""
        if self.transposed:
            return (self.in_channels, self.out_per_group) + tuple(self.kernel)
        return (self.out_channels, self.in_per_group) + tuple(self.kernel)

    @property
    def out_size(self):
        if self.transposed:
            return conv_transpose_output_size(self.in_size, self.kernel, self.stride,
                                              self.padding, self.output_padding,
                                              self.dilation)
        return conv_output_size(self.in_size, self.kernel, self.stride, self.padding,
                                self.dilation)

    @property
    def output_shape(self):
        lead = () if self.batch is None else (self.batch,)
        return lead + (self.out_channels,) + tuple(self.out_size)

    def geometry(self):
        """The library's resolved geometry (``pad_begin``, ``pad_end`` per axis, ...)."""
        if self.transposed:
            return resolve_conv_transpose(self.in_size, self.kernel, self.stride,
                                          self.padding, self.output_padding, self.dilation)
        return resolve_conv(self.in_size, self.kernel, self.stride, self.padding,
                            self.dilation)

    def hyper(self):
        """The keyword arguments of ``sparsetconv.conv_transpose`` / ``conv``."""
        kw = dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                  groups=self.groups)
        if self.transposed:
            kw["output_padding"] = self.output_padding
        return kw

    def valid(self):
        """Whether the library accepts this case with a non-empty output."""
        try:
            return min(self.out_size) >= 1
        except ValueError:
            return False

    def arrays(self, dtype=None):
        """``(input, weight, bias)`` drawn from ``seed`` (channels-first, PyTorch's weight
        layout, the case's memory order); ``bias`` is ``None`` without one.  The same
        arrays the checks give ``fn`` in their default conventions.

        >>> case = Case(transposed=True, rank=1, batch=1, groups=1, in_per_group=1,
        ...             out_per_group=1, in_size=(3,), kernel=(2,), seed=7)
        >>> [a.shape for a in case.arrays()[:2]], case.arrays()[2]
        ([(1, 1, 3), (1, 1, 2)], None)
        """
        dtype = self.dtype if dtype is None else np.dtype(dtype).name
        rng = np.random.default_rng(self.seed)
        x = make_array(rng, self.input_shape, dtype, self.memory)
        w = make_array(rng, self.weight_shape, dtype, self.memory)
        b = make_array(rng, (self.out_channels,), dtype, "C") if self.bias else None
        return x, w, b

    def size(self):
        """A rough measure of how big the case is (for tests of the shrinker)."""
        return (int(np.prod(self.input_shape)) + int(np.prod(self.weight_shape)))

    def describe(self):
        """One line in words."""
        batch = "unbatched" if self.batch is None else f"batch {self.batch}"
        channels = (f"{self.in_channels} input / {self.out_channels} output channels, "
                    f"groups {self.groups}")
        parts = [("conv_transpose" if self.transposed else "conv") + f", {self.rank}-D",
                 batch, channels, f"input size {_axes_text(self.in_size)}",
                 f"kernel {_axes_text(self.kernel)}", f"stride={self.stride!r}",
                 f"padding={self.padding!r}"]
        if self.transposed:
            parts.append(f"output_padding={self.output_padding!r}")
        parts += [f"dilation={self.dilation!r}", "bias" if self.bias else "no bias",
                  self.dtype, {"C": "C-contiguous", "F": "Fortran-ordered",
                               "strided": "non-contiguous (strided views)"}[self.memory]]
        return ", ".join(parts)


# ---------------------------------------------------------------------------
# Arrays from a seed, and the Python that rebuilds them

def array_code(shape, dtype, memory):
    shape = tuple(int(s) for s in shape)
    if memory == "strided" and shape:
        drawn = shape[:-1] + (2 * shape[-1],)
    else:
        drawn = shape
    code = f"rng.standard_normal({drawn!r})"
    if dtype != "float64":
        code += f".astype(np.{dtype})"
    if memory == "strided" and shape:
        code += "[..., ::2]"
    elif memory == "F":
        code = f"np.asfortranarray({code})"
    return code


def make_array(rng, shape, dtype, memory):
    """Exactly what :func:`array_code` writes, evaluated."""
    shape = tuple(int(s) for s in shape)
    strided = memory == "strided" and shape
    drawn = shape[:-1] + (2 * shape[-1],) if strided else shape
    array = rng.standard_normal(drawn)
    if dtype != "float64":
        array = array.astype(dtype)
    if strided:
        return array[..., ::2]
    if memory == "F":
        return np.asfortranarray(array)
    return array



def _axes_text(values):
    return "x".join(map(str, values))


def _compact(src, values):
    """An int where all axes agree (half the time), else the tuple."""
    values = tuple(values)
    if len(set(values)) == 1 and src.boolean():
        return values[0]
    return values


def _ceil_div(a, b):
    return -(-a // b)


def _draw_padding(src, kind, rank, transposed, capacity, need, limit, spread):
    """A padding of ``kind`` that keeps the output non-empty.

    ``capacity[a]``: the most total crop a transposed convolution allows on axis a;
    ``need[a]``: the least total padding a convolution needs.  ``limit`` caps each
    amount, ``spread`` how far above its minimum a convolution's padding goes.
    """
    if kind in ("same", "valid"):
        return kind
    if kind == "int":
        if transposed:
            p = src.integer(0, min(limit, min(c // 2 for c in capacity)))
        else:
            low = max(_ceil_div(n, 2) for n in need)
            p = src.integer(low, low + spread)
        return p if src.boolean() else (p,) * rank
    if kind == "ints":
        if transposed:
            return tuple(src.integer(0, min(limit, c // 2)) for c in capacity)
        return tuple(src.integer(_ceil_div(n, 2), _ceil_div(n, 2) + spread) for n in need)
    pairs = []  # "pairs": (begin, end) per axis; a symmetric axis sometimes as an int
    for a in range(rank):
        if transposed:
            begin = src.integer(0, min(limit, capacity[a]))
            end = src.integer(0, min(limit, capacity[a] - begin))
        else:
            begin = src.integer(0, limit)
            low = max(0, need[a] - begin)
            end = src.integer(low, low + spread)
        pairs.append(begin if begin == end and src.boolean() else (begin, end))
    return tuple(pairs)


def _limit(value, rank):
    """A bound given as an int or as ``{rank: int}``."""
    return value[rank] if isinstance(value, dict) else value


def draw_case(src, *, transposed=True, ranks=(1, 2, 3), padding_kinds=PADDING_KINDS,
              groups=True, dilation=True, output_padding=True, unbatched=False, bias=None,
              dtypes=("float64",), memory_orders=("C",), same_needs_stride_one=False,
              max_batch=2, max_groups=3, max_channels=3, max_kernel=3, max_stride=3,
              max_dilation=3, max_size=None, max_padding=3, padding_spread=2,
              max_seed=2**32 - 1, filter_invalid=True):
    """Draw one valid :class:`Case` from ``src`` (see :class:`NumpySource`).

    Every draw is a call to ``src.integer(low, high)``, ``src.choice(options)`` or
    ``src.boolean()``, lowest (simplest) values first, so that hypothesis shrinks
    towards simple cases.  ``src.reject()`` is called when the output would be empty.
    Bounds (``max_*``) are ints or ``{rank: int}`` dicts; ``max_size`` defaults to 5
    (4 in 3-D).  ``filter_invalid=False`` skips the final check of the output size by
    the library's own formula (the paddings drawn keep it non-empty by construction),
    for tests of that formula.
    """
    rank = src.choice(tuple(ranks))
    size_cap = _limit(max_size, rank) if max_size is not None else (4 if rank == 3 else 5)
    kernel_cap = _limit(max_kernel, rank)
    batch = src.integer(1, _limit(max_batch, rank))
    if unbatched and src.integer(0, 3) == 0:
        batch = None
    n_groups = src.integer(1, _limit(max_groups, rank)) if groups else 1
    channels_cap = _limit(max_channels, rank)
    in_per_group = src.integer(1, channels_cap)
    out_per_group = src.integer(1, channels_cap)
    kind = src.choice(tuple(padding_kinds))
    kernel = tuple(src.integer(1, kernel_cap) for _ in range(rank))
    if kind == "same" and same_needs_stride_one:
        stride = (1,) * rank
    else:
        stride = tuple(src.integer(1, _limit(max_stride, rank)) for _ in range(rank))
    if dilation:
        dil = tuple(src.integer(1, _limit(max_dilation, rank)) for _ in range(rank))
    else:
        dil = (1,) * rank
    if kind == "valid" and not transposed:
        # Keep the dilated kernel within the largest input so "valid" is possible.
        dil = tuple(d if k == 1 else max(1, min(d, (size_cap - 1) // (k - 1)))
                    for k, d in zip(kernel, dil))
    span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dil))
    if transposed and output_padding:
        op = tuple(src.integer(0, max(s, d) - 1) for s, d in zip(stride, dil))
    else:
        op = (0,) * rank
    if kind == "valid" and not transposed:
        in_size = tuple(src.integer(min(sp, size_cap), size_cap) for sp in span)
        if any(n < sp for n, sp in zip(in_size, span)):
            src.reject()
    else:
        in_size = tuple(src.integer(1, size_cap) for _ in range(rank))
    # Per axis: the least total padding a convolution needs, the most total crop a
    # transposed convolution allows, both for a non-empty output.
    need = [max(0, sp - n) for sp, n in zip(span, in_size)]
    capacity = [(n - 1) * s + sp + o - 1 for n, s, sp, o in zip(in_size, stride, span, op)]
    padding = _draw_padding(src, kind, rank, transposed, capacity, need,
                            _limit(max_padding, rank), padding_spread)
    case = Case(
        transposed=transposed, rank=rank, batch=batch, groups=n_groups,
        in_per_group=in_per_group, out_per_group=out_per_group, in_size=in_size,
        kernel=kernel, stride=_compact(src, stride), padding=padding,
        output_padding=_compact(src, op) if transposed else 0,
        dilation=_compact(src, dil),
        bias=src.boolean() if bias is None else bool(bias),
        dtype=np.dtype(src.choice(tuple(dtypes))).name,
        memory=src.choice(tuple(memory_orders)),
        seed=src.integer(0, max_seed),
    )
    if filter_invalid and not case.valid():
        src.reject()
    return case


# ---------------------------------------------------------------------------
# Shrinking: each candidate is one step simpler; the shrinker keeps a step only while
# the failure persists.

def _with_axis(value, rank, axis, new):
    values = list(per_axis(value, rank))
    values[axis] = new
    return tuple(values)


def _fix_output_padding(case):
    """Clamp output_padding into ``[0, max(stride, dilation))`` after a change."""
    if not case.transposed:
        return case
    stride, dil = per_axis(case.stride, case.rank), per_axis(case.dilation, case.rank)
    op = per_axis(case.output_padding, case.rank)
    fixed = tuple(min(o, max(s, d) - 1) for o, s, d in zip(op, stride, dil))
    if fixed == op:
        return case
    return dataclasses.replace(case, output_padding=fixed)


def _padding_axis_items(padding, rank):
    """Per-axis items of an explicit padding: ints or ``(begin, end)`` pairs."""
    if isinstance(padding, (int, np.integer)):
        return [int(padding)] * rank
    return [p if isinstance(p, (int, np.integer)) else tuple(p) for p in padding]


def _padding_candidates(case):
    padding, rank = case.padding, case.rank
    if padding == 0:
        return
    yield 0
    if isinstance(padding, str):
        if padding == "same":
            pairs = tuple(zip(case.geometry().pad_begin, case.geometry().pad_end))
            if all(p >= 0 for pair in pairs for p in pair):
                yield tuple(b if b == e else (b, e) for b, e in pairs)
        return
    items = _padding_axis_items(padding, rank)
    if isinstance(padding, (int, np.integer)):
        if padding > 1:
            yield padding - 1
        return
    if all(isinstance(p, int) for p in items) and len(set(items)) == 1:
        yield items[0]                               # (p, p) -> p
    for a, item in enumerate(items):
        simpler = []
        if isinstance(item, int):
            simpler += [0, item - 1] if item > 0 else []
        else:
            b, e = item
            simpler += [0, min(b, e), (b - 1, e) if b else None, (b, e - 1) if e else None,
                        b, e]
        for new in simpler:
            if new is None or new == item or (isinstance(new, int) and new < 0):
                continue
            changed = list(items)
            changed[a] = new
            yield tuple(changed)


def _drop_axis(case, axis):
    rank = case.rank

    def drop(value):
        if isinstance(value, (int, np.integer, str)):
            return value
        return tuple(v for i, v in enumerate(value) if i != axis)

    return dataclasses.replace(
        case, rank=rank - 1, in_size=drop(case.in_size), kernel=drop(case.kernel),
        stride=drop(case.stride), padding=drop(case.padding),
        output_padding=drop(case.output_padding), dilation=drop(case.dilation))


def simplifications(case, *, ranks=(1, 2, 3), dtypes=("float64",)):
    """The cases one step simpler than ``case`` (valid ones only), most drastic first."""
    replace = dataclasses.replace
    rank = case.rank
    candidates = []
    if case.batch is None or case.batch > 1:
        candidates.append(replace(case, batch=1))
    if case.groups > 1:
        candidates += [replace(case, groups=1), replace(case, groups=case.groups - 1)]
    for field in ("in_per_group", "out_per_group"):
        value = getattr(case, field)
        if value > 1:
            candidates += [replace(case, **{field: 1}), replace(case, **{field: value - 1})]
    if rank - 1 in ranks:
        candidates += [_drop_axis(case, a) for a in range(rank)]
    if case.bias:
        candidates.append(replace(case, bias=False))
    simplest_dtype = "float64" if "float64" in dtypes else np.dtype(dtypes[0]).name
    if case.dtype != simplest_dtype:
        candidates.append(replace(case, dtype=simplest_dtype))
    if case.memory != "C":
        candidates.append(replace(case, memory="C"))
    # Whole hyper-parameters to their simplest value, then one axis at a time.
    for field, simplest in (("stride", 1), ("dilation", 1), ("output_padding", 0)):
        if case.transposed or field != "output_padding":
            if per_axis(getattr(case, field), rank) != (simplest,) * rank:
                candidates.append(replace(case, **{field: simplest}))
    for padding in _padding_candidates(case):
        candidates.append(replace(case, padding=padding))
    for field in ("in_size", "kernel"):
        if getattr(case, field) != (1,) * rank:
            candidates.append(replace(case, **{field: (1,) * rank}))
    for a, field in itertools.product(range(rank), ("in_size", "kernel", "stride",
                                                    "dilation", "output_padding")):
        if field == "output_padding" and not case.transposed:
            continue
        value = per_axis(getattr(case, field), rank)[a]
        floor = 0 if field == "output_padding" else 1
        for new in sorted({floor, value - 1}):
            if floor <= new < value:
                changed = _with_axis(getattr(case, field), rank, a, new)
                candidates.append(replace(case, **{field: changed}))
    # The int form of a tuple whose axes agree.
    for field in ("stride", "dilation", "output_padding"):
        value = getattr(case, field)
        if isinstance(value, tuple) and len(set(value)) == 1 and rank > 0:
            candidates.append(replace(case, **{field: value[0]}))
    seen = set()
    for candidate in candidates:
        candidate = _fix_output_padding(candidate)
        if candidate != case and candidate not in seen and candidate.valid():
            seen.add(candidate)
            yield candidate
