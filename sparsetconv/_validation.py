"""Argument checking shared by every public function.

Everything here turns user input (ints, tuples, pairs, strings, dtypes) into plain
tuples of Python ints or NumPy dtypes, or raises an error that names the argument,
the axis and the offending values.  Nothing here touches array data.
"""

import operator

import numpy as np

PADDING_STRINGS = ("valid", "same")


def as_int(value, name):
    """``operator.index(value)`` with an error that names the argument; bools refused."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an int or a tuple of ints, got {type(value).__name__} {value!r}"
        ) from None


def as_tuple(value, rank, name):
    """An int (same on every axis) or a length-``rank`` sequence, as a tuple of ints."""
    if isinstance(value, (tuple, list, np.ndarray)):
        values = tuple(value)
        if len(values) != rank:
            raise ValueError(
                f"{name} must be an int or a tuple of {rank} ints (one per spatial axis), "
                f"got {len(values)} values {_show(value)}"
            )
        return tuple(as_int(v, f"{name}[axis {axis}]") for axis, v in enumerate(values))
    return (as_int(value, name),) * rank


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
    if isinstance(padding, (tuple, list, np.ndarray)):
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
            if isinstance(item, (tuple, list, np.ndarray)):
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
                amount = as_int(item, f"padding[axis {axis}]")
                pair = (amount, amount)
            pairs.append(pair)
        pairs = tuple(pairs)
    else:
        amount = as_int(padding, "padding")
        pairs = ((amount, amount),) * rank
    for axis, (begin, end) in enumerate(pairs):
        if begin < 0 or end < 0:
            raise ValueError(
                f"padding must be >= 0, got {_show(padding)} "
                f"(begin={begin}, end={end} on axis {axis})"
            )
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


def _show(value):
    """Short, stable text for a value in an error message."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list):
        value = tuple(value)
    return repr(value)
