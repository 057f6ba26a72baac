"""Argument checking shared by every public function.

Everything here turns user input (ints, tuples, pairs, strings, dtypes) into plain
tuples of Python ints or NumPy dtypes, or raises an error that names the argument,
the axis and the offending values.  Nothing here touches array data.
"""

import functools
import operator
import os
from math import prod

import numpy as np

PADDING_STRINGS = ("valid", "same")

# Sizes, strides, paddings, dilations and the positions they produce must stay below
# this, so that a sum of two of them still fits a signed 64-bit integer (the index
# type of the kernels and of the matrix builder).
MAX_EXTENT = 2**62


def is_sequence(value):
    """True for tuples, lists, ranges and arrays of at least one dimension.

    Strings and bytes are not sequences of numbers here, and a 0-d array is a scalar.
    """
    if isinstance(value, np.ndarray):
        return value.ndim > 0
    return isinstance(value, (tuple, list, range))


def as_int(value, name, kind="an int"):
    """``operator.index(value)`` with an error that names the argument; bools refused.

    Anything integer-like works: Python and NumPy integers, 0-d integer arrays.
    ``kind`` says what the argument may be, for the message.
    """
    if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, np.ndarray) and value.dtype == np.bool_):
        raise TypeError(f"{name} must be {kind}, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be {kind}, got {type(value).__name__} {_show(value)}"
        ) from None


_EXTENT_RULE = (f"sizes, strides, paddings, dilations and the positions they reach must "
                f"be below 2**62 = {MAX_EXTENT}, so that positions fit 64-bit integers")


def check_extent(values, name):
    """Raise ``ValueError`` if an argument's value is too large for 64-bit indices."""
    for axis, v in enumerate(values):
        if abs(v) >= MAX_EXTENT:
            where = f" ({v} on axis {axis})" if len(values) > 1 else ""
            raise ValueError(f"{name}={_show(values if len(values) > 1 else v)} is too "
                             f"large{where}: {_EXTENT_RULE}")


def check_derived_extent(value, description):
    """Raise ``ValueError`` if a size derived from the arguments is too large."""
    if abs(value) >= MAX_EXTENT:
        raise ValueError(f"{description} would be {value}, too large: {_EXTENT_RULE}")


def as_shape(value, name, *, low=1):
    """A shape argument (an int or a sequence of ints, each >= ``low``) as a tuple."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an int or a tuple of ints, got "
                        f"{type(value).__name__} {value!r}")
    if is_sequence(value):
        sizes = tuple(as_int(v, f"{name}[axis {axis}]") for axis, v in enumerate(value))
    else:
        sizes = (as_int(value, name, "an int or a tuple of ints"),)
    check_at_least(sizes, low, name)
    check_extent(sizes, name)
    return sizes


def as_tuple(value, rank, name):
    """An int (same on every axis) or a length-``rank`` sequence, as a tuple of ints."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an int or a tuple of {rank} ints, got "
                        f"{type(value).__name__} {value!r}")
    if is_sequence(value):
        values = tuple(value)
        if len(values) != rank:
            raise ValueError(
                f"{name} must be an int or a tuple of {rank} ints (one per spatial axis), "
                f"got {len(values)} values {_show(value)}"
            )
        values = tuple(as_int(v, f"{name}[axis {axis}]") for axis, v in enumerate(values))
    else:
        values = (as_int(value, name, f"an int or a tuple of {rank} ints"),) * rank
    check_extent(values, name)
    return values


def check_at_least(values, minimum, name, why=""):
    """Raise ``ValueError`` naming the first axis where ``values[axis] < minimum``."""
    for axis, v in enumerate(values):
        if v < minimum:
            raise ValueError(
                f"{name} must be >= {minimum} on every axis, got {name}={_show(values)} "
                f"({v} on axis {axis}){why}"
            )


def padding_spec(padding, rank):
    """Normalise ``padding`` to ``"valid"``, ``"same"`` or a tuple of ``(begin, end)`` pairs.

    Accepted: an int (both sides of every axis), ``"valid"``, ``"same"``, or a
    length-``rank`` tuple whose items are ints (symmetric) or ``(begin, end)`` pairs.
    Negative amounts are refused here.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in PADDING_STRINGS:
            raise ValueError(
                f"padding must be an int, a tuple, 'valid' or 'same', got {padding!r}"
            )
        return mode
    if isinstance(padding, bytes):
        raise TypeError(f"padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
    if is_sequence(padding):
        items = tuple(padding)
        if len(items) != rank:
            hint = ""
            if rank == 1 and len(items) == 2:
                hint = f"; for asymmetric 1-D padding write (({items[0]}, {items[1]}),)"
            raise ValueError(
                f"padding must be an int, 'valid', 'same' or a tuple of {rank} items "
                f"(an int or a (begin, end) pair per spatial axis), got {_show(padding)}{hint}"
            )
        pairs = []
        for axis, item in enumerate(items):
            if is_sequence(item):
                if len(item) != 2:
                    raise ValueError(
                        f"padding[axis {axis}] must be an int or a (begin, end) pair, "
                        f"got {_show(item)}"
                    )
                pair = (
                    as_int(item[0], f"padding[axis {axis}][begin]"),
                    as_int(item[1], f"padding[axis {axis}][end]"),
                )
            else:
                amount = as_int(item, f"padding[axis {axis}]", "an int or a (begin, end) pair")
                pair = (amount, amount)
            pairs.append(pair)
        pairs = tuple(pairs)
    else:
        amount = as_int(padding, "padding", "an int, a tuple, 'valid' or 'same'")
        pairs = ((amount, amount),) * rank
    for axis, (begin, end) in enumerate(pairs):
        if begin < 0 or end < 0:
            raise ValueError(
                f"padding must be >= 0, got {_show(padding)} "
                f"(begin={begin}, end={end} on axis {axis})"
            )
        check_extent((begin, end), f"padding[axis {axis}]")
    return pairs


def padding_for_display(pairs):
    """``((1, 1), (0, 1))`` -> ``(1, (0, 1))``: ints where symmetric, pairs elsewhere."""
    shown = tuple(b if b == e else (b, e) for b, e in pairs)
    if all(isinstance(p, int) for p in shown) and len(set(shown)) == 1:
        return shown[0] if len(shown) == 1 else shown
    return shown


# ---------------------------------------------------------------------------
# dtypes: one table, used by every entry point.

def compute_dtype(dtype, name):
    """Map one array's dtype to the dtype it is computed in (float32 or float64)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype.kind == "f":
        if dtype.itemsize <= 4:
            return np.dtype(np.float32)
        if dtype.itemsize == 8:
            return np.dtype(np.float64)
    raise TypeError(
        f"{name} has unsupported dtype {dtype}: sparsetconv computes in float32 or "
        f"float64 (integers and bools are taken as float64, float16 as float32); "
        f"complex, object, string and extended-precision arrays are refused"
    )


def result_dtype(*named_dtypes):
    """The common computing dtype of ``(name, dtype)`` pairs; ``None`` dtypes skipped."""
    mapped = [compute_dtype(dt, name) for name, dt in named_dtypes if dt is not None]
    return np.result_type(*mapped)


# ---------------------------------------------------------------------------
# Memory: refuse, naming what is needed, what cannot be allocated.

@functools.lru_cache(maxsize=1)
def memory_limit():
    """Bytes of memory this process may use: physical memory, capped by a cgroup limit."""
    limit = None
    try:
        limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                cap = int(f.read())
        except (OSError, ValueError):  # absent, or "max"
            continue
        limit = cap if limit is None else min(limit, cap)
    return limit if limit and limit > 0 else 2**63


def format_bytes(n):
    """``1536 -> '1.5 KiB'``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def check_memory(what, shape, dtype):
    """Raise ``MemoryError`` naming the need when ``what``, an array of ``shape``,
    cannot fit in this process's memory."""
    check_bytes(f"{what} of shape {tuple(shape)} ({np.dtype(dtype)})",
                prod(shape) * np.dtype(dtype).itemsize)


def check_bytes(description, needed):
    """Raise ``MemoryError`` when ``needed`` bytes exceed this process's memory."""
    limit = memory_limit()
    if needed > limit:
        raise MemoryError(f"{description} needs {format_bytes(needed)}, more than the "
                          f"{format_bytes(limit)} of memory this process may use")


def _show(value):
    """Short, stable text for a value in an error message."""
    if isinstance(value, np.ndarray):
        value = value.tolist() if value.size <= 64 else value
    if isinstance(value, list):
        value = tuple(value)
    text = repr(value)
    return text if len(text) <= 200 else text[:150] + " ... " + text[-40:]
