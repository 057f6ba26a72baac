"""The checking engine: draw cases, call the user's function, compare, shrink, report."""

import itertools
from dataclasses import dataclass, field

import numpy as np

from .._validation import result_dtype
from ..explain import explain, output_terms
from ..functional import conv, conv_transpose
from ..gradients import conv_backward, conv_transpose_backward
from ._cases import MEMORY_ORDERS, PADDING_KINDS, SYMMETRIC_PADDING_KINDS, NumpySource, \
    Rejected, array_code, draw_case, make_array, simplifications
from ._conventions import Convention

KINDS = ("wrong values", "wrong shape", "wrong dtype", "raised on a valid input",
         "modified its input")

# The tolerance of each result dtype, relative to the output's scale: what the library
# itself promises against PyTorch.
DEFAULT_RTOL = {"float64": 1e-12, "float32": 1e-5, "float16": 1e-2}

_MAX_SHRINK_CALLS = 600


class CheckFailure(AssertionError):
    """Raised by the checks: an ``AssertionError`` that also carries the minimal case.

    Attributes
    ----------
    kind : str
        ``"wrong values"``, ``"wrong shape"``, ``"wrong dtype"``,
        ``"raised on a valid input"`` or ``"modified its input"``.
    case : Case
        The shrunk, minimal failing configuration.
    original : Case
        The configuration that first failed, before shrinking.
    reproducer : str
        One line of Python that rebuilds the arrays and calls ``fn`` on them.
    """

    def __init__(self, message, *, kind, case, original, reproducer):
        super().__init__(message)
        self.kind = kind
        self.case = case
        self.original = original
        self.reproducer = reproducer


@dataclass(frozen=True)
class Operation:
    name: str
    transposed: bool
    backward: bool

    @property
    def signature(self):
        if self.backward:
            lead = "grad_output, input, weight"
        else:
            lead = "input, weight, bias"
        if self.transposed:
            return f"fn({lead}, stride, padding, output_padding, groups, dilation)"
        return f"fn({lead}, stride, padding, dilation, groups)"


CONV_TRANSPOSE = Operation("conv_transpose", True, False)
CONV = Operation("conv", False, False)
CONV_TRANSPOSE_BACKWARD = Operation("conv_transpose_backward", True, True)
CONV_BACKWARD = Operation("conv_backward", False, True)

_SHORT = {"input": "x", "weight": "w", "bias": "b", "grad_output": "g"}


@dataclass
class Outcome:
    """One failed call: its kind, what failed (an output or input name, an exception
    type) and the facts for the message."""

    kind: str
    what: str
    details: dict = field(default_factory=dict)

    def same_as(self, other):
        return self.kind == other.kind and self.what == other.what


@dataclass(frozen=True)
class Settings:
    rtol: object
    bias: bool
    check_dtype: bool


# ---------------------------------------------------------------------------
# Arrays, and the line of Python that rebuilds them

def _array_specs(op, case, convention):
    """``(name, user-layout shape, memory)`` of each array, in drawing order."""
    rank = case.rank
    specs = [("input", convention.activation_shape(case.input_shape, rank), case.memory),
             ("weight", convention.weight_shape(case.weight_shape, case.transposed, rank),
              case.memory)]
    if op.backward:
        specs.append(("grad_output", convention.activation_shape(case.output_shape, rank),
                      case.memory))
    elif case.bias:
        specs.append(("bias", (case.out_channels,), "C"))
    return specs


def make_arrays(op, case, convention):
    rng = np.random.default_rng(case.seed)
    arrays = {name: make_array(rng, shape, case.dtype, memory)
              for name, shape, memory in _array_specs(op, case, convention)}
    if not op.backward and not case.bias:
        arrays["bias"] = None
    return arrays


def setup_code(op, case, convention):
    parts = ["import numpy as np", f"rng = np.random.default_rng({case.seed})"]
    for name, shape, memory in _array_specs(op, case, convention):
        parts.append(f"{_SHORT[name]} = {array_code(shape, case.dtype, memory)}")
    if not op.backward and not case.bias:
        parts.append("b = None")
    return "; ".join(parts)


def _hyper_args(op, case, convention):
    if not case.transposed:
        return (case.stride, case.padding, case.dilation, case.groups)
    third = case.output_padding
    if convention.output_shape:
        third = convention.activation_shape(case.output_shape, case.rank)
    return (case.stride, case.padding, third, case.groups, case.dilation)


def _array_names(op):
    return ("grad_output", "input", "weight") if op.backward else ("input", "weight", "bias")


def call_args(op, case, convention, arrays):
    convert = convention.convert
    args = []
    for name in _array_names(op):
        value = arrays[name]
        args.append(value if value is None or convert is None else convert(value))
    return tuple(args) + _hyper_args(op, case, convention)


def reproducer(op, case, convention):
    """One runnable line: build the arrays, call ``fn``."""
    names = []
    for name in _array_names(op):
        short = _SHORT[name]
        if convention.convert is not None and not (name == "bias" and not case.bias):
            short = f"convert({short})"
        names.append(short)
    args = ", ".join(names + [repr(v) for v in _hyper_args(op, case, convention)])
    result = "gi, gw, gb" if op.backward else "out"
    return f"{setup_code(op, case, convention)}; {result} = fn({args})"


# ---------------------------------------------------------------------------
# The reference: the library's own float64 result

def reference(op, case, convention, arrays):
    """``[(name, expected array in the user's layout, expected dtype)]``."""
    rank, transposed = case.rank, case.transposed
    x = convention.from_user(arrays["input"], rank).astype(np.float64)
    w = convention.weight_from_user(arrays["weight"], transposed, rank).astype(np.float64)
    kw = case.hyper()
    if not op.backward:
        b = arrays["bias"]
        dtype = result_dtype(("input", arrays["input"].dtype),
                             ("weight", arrays["weight"].dtype),
                             ("bias", None if b is None else b.dtype))
        forward = conv_transpose if transposed else conv
        out = forward(x, w, None if b is None else b.astype(np.float64), **kw)
        return [("output", convention.to_user(out, rank), dtype)]
    g = convention.from_user(arrays["grad_output"], rank).astype(np.float64)
    dtype = result_dtype(("grad_output", arrays["grad_output"].dtype),
                         ("input", arrays["input"].dtype), ("weight", arrays["weight"].dtype))
    backward = conv_transpose_backward if transposed else conv_backward
    gi, gw, gb = backward(g, x, w, **kw)
    return [("grad_input", convention.to_user(gi, rank), dtype),
            ("grad_weight", convention.weight_to_user(gw, transposed, rank), dtype),
            ("grad_bias", gb, dtype)]


def _tolerance(settings, dtype, expected):
    rtol = settings.rtol
    if rtol is None:
        rtol = DEFAULT_RTOL.get(np.dtype(dtype).name, 1e-12)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    return rtol * scale


def _first_index(mask):
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _compare(name, got, expected, dtype, settings):
    if got is None:
        return Outcome("wrong shape", name, dict(got_shape=None, shape=expected.shape))
    try:
        got = np.asarray(got)
    except Exception as exc:  # noqa: BLE001 - any unconvertible result is reported
        return Outcome("wrong dtype", name, dict(got_dtype=f"unconvertible ({exc!r})",
                                                 dtype=dtype))
    if got.shape != expected.shape:
        return Outcome("wrong shape", name, dict(got_shape=got.shape, shape=expected.shape,
                                                 got=got))
    if got.dtype.kind not in "fiub":
        return Outcome("wrong dtype", name, dict(got_dtype=got.dtype, dtype=dtype, got=got))
    if settings.check_dtype and got.dtype != dtype:
        return Outcome("wrong dtype", name, dict(got_dtype=got.dtype, dtype=dtype, got=got))
    tolerance = _tolerance(settings, dtype, expected)
    bad = ~(np.abs(got.astype(np.float64) - expected) <= tolerance)  # NaN counts as bad
    if bad.any():
        index = _first_index(bad)
        return Outcome("wrong values", name, dict(
            index=index, expected=float(expected[index]), got=float(got[index]),
            tolerance=tolerance, count=int(bad.sum()), size=bad.size, got_array=got))
    return None


def evaluate(op, fn, case, convention, settings):
    """Run one case; ``None`` if ``fn`` got it right, else the :class:`Outcome`."""
    arrays = make_arrays(op, case, convention)
    saved = {name: a.copy() for name, a in arrays.items() if a is not None}
    expected = reference(op, case, convention, arrays)
    try:
        result = fn(*call_args(op, case, convention, arrays))
    except Exception as exc:  # noqa: BLE001 - any exception on valid input is a finding
        return Outcome("raised on a valid input", type(exc).__name__, dict(exception=exc))
    for name, before in saved.items():
        after = arrays[name]
        if not np.array_equal(after, before, equal_nan=True):
            index = _first_index(~((after == before) | (np.isnan(after) & np.isnan(before))))
            return Outcome("modified its input", name, dict(
                index=index, before=float(before[index]), after=float(after[index])))
    if op.backward:
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            return Outcome("wrong shape", "result", dict(result=result))
        results = list(result)
    else:
        results = [result]
    for (name, want, dtype), got in zip(expected, results):
        if name == "grad_bias" and not settings.bias:
            continue
        outcome = _compare(name, got, want, dtype, settings)
        if outcome is not None:
            outcome.details["arrays"] = arrays
            return outcome
    return None


def shrink(op, fn, case, outcome, convention, settings, *, ranks, dtypes):
    """Greedy: take the first simpler case that still fails the same way; repeat."""
    steps = calls = 0
    improved = True
    while improved and calls < _MAX_SHRINK_CALLS:
        improved = False
        for candidate in simplifications(case, ranks=ranks, dtypes=dtypes):
            calls += 1
            found = evaluate(op, fn, candidate, convention, settings)
            if found is not None and found.same_as(outcome):
                case, outcome, improved = candidate, found, True
                steps += 1
                break
            if calls >= _MAX_SHRINK_CALLS:
                break
    return case, outcome, steps


# ---------------------------------------------------------------------------
# The message

def _index_text(index):
    return ", ".join(map(str, index))


def _cf_index(index, rank, convention):
    """A user-layout activation index, channels first."""
    if convention.layout == "channels_first":
        return tuple(index)
    lead = len(index) - rank - 1
    return tuple(index[:lead]) + (index[-1],) + tuple(index[lead:-1])


def _term_lines(pairs, limit=8):
    """``[(x index, w index, x value, w value)]`` as lines."""
    lines = [f"x[{_index_text(xi)}] * w[{_index_text(wi)}] = {xv:.6g} * {wv:.6g} = "
             f"{xv * wv:.6g}" for xi, wi, xv, wv in pairs[:limit]]
    if len(pairs) > limit:
        lines.append(f"... and {len(pairs) - limit} more terms")
    return lines


def _terms_section(op, case, convention, arrays, index, expected):
    """The (input, weight) products that sum to the expected output element."""
    rank, transposed = case.rank, case.transposed
    x = convention.from_user(arrays["input"], rank)
    w = convention.weight_from_user(arrays["weight"], transposed, rank)
    cf = _cf_index(index, rank, convention)
    batched = case.batch is not None
    n, co, o = (cf[0], cf[1], cf[2:]) if batched else (None, cf[0], cf[1:])
    lead = (n,) if batched else ()
    group = co // case.out_per_group
    in_channels = range(group * case.in_per_group, (group + 1) * case.in_per_group)
    lines = []
    shown = list(in_channels)[:3]
    geometry = case.geometry()
    for ci in shown:
        if transposed:
            col = co % case.out_per_group
            spatial = output_terms(x[lead + (ci,)], w[ci, col], o, case.stride, case.padding,
                                   case.output_padding, case.dilation)
            w_lead = (ci, col)
        else:
            cil = ci - group * case.in_per_group
            spatial = []
            for k in itertools.product(*map(range, case.kernel)):
                i = tuple(o[a] * geometry.stride[a] - geometry.pad_begin[a]
                          + k[a] * geometry.dilation[a] for a in range(rank))
                if all(0 <= i[a] < case.in_size[a] for a in range(rank)):
                    spatial.append((i, k, float(x[lead + (ci,) + i]),
                                    float(w[(co, cil) + k])))
            w_lead = (co, cil)
        pairs = [(convention.activation_index(lead + (ci,) + i, rank),
                  convention.weight_index(w_lead + k, transposed, rank), xv, wv)
                 for i, k, xv, wv in spatial]
        if len(in_channels) > 1:
            lines.append(f"from input channel {ci}:")
        lines += _term_lines(pairs) if pairs else [
            "(no terms: only padding or output_padding reaches this element)"]
    if len(in_channels) > len(shown):
        lines.append(f"... and input channels {shown[-1] + 1}..{in_channels[-1]}")
    if arrays.get("bias") is not None:
        lines.append(f"+ b[{co}] = {float(arrays['bias'][co]):.6g}")
    lines.append(f"sum = {expected:.6g} (the expected value)")
    return lines


def _conv_shape_lines(case):
    g = case.geometry()
    lines = []
    for a in range(case.rank):
        n, k, s, d = case.in_size[a], g.kernel[a], g.stride[a], g.dilation[a]
        pb, pe = g.pad_begin[a], g.pad_end[a]
        lines += [f"Output size, axis {a}:",
                  "  out = floor((in + pad_begin + pad_end - dilation*(kernel - 1) - 1)"
                  "/stride) + 1",
                  f"      = floor(({n} + {pb} + {pe} - {d}*({k} - 1) - 1)/{s}) + 1 = "
                  f"{case.out_size[a]}"]
    return lines


_GRADIENT_WORDS = {
    ("grad_input", True): "grad_input is the convolution of grad_output with the same "
                          "weight (the adjoint of the transposed convolution)",
    ("grad_input", False): "grad_input is the transposed convolution of grad_output with "
                           "the same weight (the adjoint of the convolution)",
    ("grad_weight", True): "grad_weight[ci, co, k] = sum over n, i of input[n, ci, i] * "
                           "grad_output[n, co', i*stride - pad_begin + k*dilation]",
    ("grad_weight", False): "grad_weight[co, ci, k] = sum over n, o of grad_output[n, co, o]"
                            " * input[n, ci', o*stride - pad_begin + k*dilation]",
    ("grad_bias", True): "grad_bias[co] = sum of grad_output[:, co] over the batch and "
                         "every spatial position",
    ("grad_bias", False): "grad_bias[co] = sum of grad_output[:, co] over the batch and "
                          "every spatial position",
}


def _shape(array):
    return None if array is None else tuple(array.shape)


def report(op, case, outcome, convention, settings, *, original, origin, steps):
    """The message of :class:`CheckFailure`."""
    details = outcome.details
    arrays = details.get("arrays") or make_arrays(op, case, convention)
    expected = {name: (want, dtype)
                for name, want, dtype in reference(op, case, convention, arrays)}
    out_name = "grad_input" if op.backward else "output"
    d = details
    if outcome.kind == "wrong values":
        headline = (f"{outcome.what} differs from the float64 reference at {d['count']} of "
                    f"{d['size']} elements")
    elif outcome.kind == "wrong shape":
        if outcome.what == "result":
            headline = (f"returned {type(d['result']).__name__}, expected a tuple "
                        f"(grad_input, grad_weight, grad_bias)")
        else:
            headline = (f"{outcome.what} has shape {d['got_shape']}, expected "
                        f"{tuple(d['shape'])}")
    elif outcome.kind == "wrong dtype":
        headline = f"{outcome.what} has dtype {d['got_dtype']}, expected {d['dtype']}"
    elif outcome.kind == "raised on a valid input":
        exc = d["exception"]
        headline = f"{type(exc).__name__}: {exc}"
    else:
        headline = (f"{outcome.what} changed at [{_index_text(d['index'])}]: "
                    f"{d['before']!r} before the call, {d['after']!r} after")
    first = headline.splitlines()[0] if headline else ""
    lines = [f"{outcome.kind}: {first}", ""]
    if case == original:
        lines.append(f"Failing case ({origin}; no simpler case fails the same way):")
    else:
        lines.append(f"Minimal failing case (shrunk in {steps} steps from {origin}: "
                     f"{original.describe()}):")
    lines += [f"  {case.describe()}", "", f"Reproduce ({op.signature}):",
              f"  {reproducer(op, case, convention)}", ""]
    shapes = ", ".join(f"{name} {_shape(arrays.get(name))}" for name in _array_names(op)
                       if name in arrays)
    lines.append(f"Shapes: {shapes}; expected {out_name} "
                 f"{tuple(expected[out_name][0].shape)}"
                 + (f", grad_weight {tuple(expected['grad_weight'][0].shape)}, grad_bias "
                    f"{tuple(expected['grad_bias'][0].shape)}" if op.backward else "")
                 + f", dtype {expected[out_name][1]}.")
    if convention != Convention():
        lines.append(f"Conventions: layout={convention.layout!r}, weight_layout="
                     f"{convention.weight_layout!r}, output_shape={convention.output_shape}"
                     + (", convert=" + getattr(convention.convert, "__name__", "...")
                        if convention.convert is not None else ""))
    if outcome.kind == "wrong values":
        index = d["index"]
        lines += ["", f"First differing element: {outcome.what}[{_index_text(index)}]: "
                      f"expected {d['expected']!r}, got {d['got']!r} "
                      f"(|difference| {abs(d['got'] - d['expected']):.3g} > tolerance "
                      f"{d['tolerance']:.3g})"]
        want = expected[outcome.what][0]
        if want.size <= 24:
            show = lambda a: np.array2string(np.asarray(a, dtype=np.float64).ravel(),  # noqa: E731
                                             precision=4, separator=", ")
            lines += [f"  expected (flattened): {show(want)}",
                      f"  got      (flattened): {show(d['got_array'])}"]
        if not op.backward:
            lines.append(f"Terms of output[{_index_text(index)}] (x = input, w = weight, "
                         f"indices in your layouts):")
            lines += ["  " + t for t in _terms_section(op, case, convention, arrays, index,
                                                       d["expected"])]
        else:
            lines.append(f"  ({_GRADIENT_WORDS[(outcome.what, case.transposed)]})")
    elif outcome.kind == "raised on a valid input":
        text = str(d["exception"])
        if "\n" in text:
            lines += ["", "The exception:"] + ["  " + t for t in text.splitlines()]
    lines += ["", "How the output shape arises:" if case.transposed
              else "How the output shape arises (convolution):"]
    if case.transposed:
        text = explain(case.in_size, case.kernel, case.stride, case.padding,
                       case.output_padding, case.dilation)
        lines += ["  " + t if t else "" for t in text.splitlines()]
    else:
        lines += ["  " + t for t in _conv_shape_lines(case)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The check

def _check_switches(fn, n_cases, seed, ranks, dtypes, rtol):
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    if isinstance(n_cases, bool) or not isinstance(n_cases, (int, np.integer)) or n_cases < 1:
        raise ValueError(f"n_cases must be a positive int, got {n_cases!r}")
    ranks = tuple(ranks)
    if not ranks or any(r not in (1, 2, 3) for r in ranks):
        raise ValueError(f"ranks must be a non-empty subset of (1, 2, 3), got {ranks!r}")
    names = []
    for dtype in dtypes:
        dt = np.dtype(dtype)
        if dt.kind != "f" or dt.itemsize > 8:
            raise TypeError(f"dtypes must be NumPy float dtypes (float16/32/64), "
                            f"got {dtype!r}")
        names.append(dt.name)
    if not names:
        raise ValueError("dtypes must not be empty")
    if rtol is not None and not rtol > 0:
        raise ValueError(f"rtol must be positive or None, got {rtol!r}")
    return ranks, tuple(names)


def run_check(op, fn, *, n_cases, seed, ranks, dtypes, groups, dilation, output_padding,
              asymmetric_padding, unbatched, layout, rtol, padding_strings, bias,
              noncontiguous, weight_layout, output_shape, convert, check_dtype):
    ranks, dtypes = _check_switches(fn, n_cases, seed, ranks, dtypes, rtol)
    convention = Convention(layout=layout, weight_layout=weight_layout,
                            output_shape=bool(output_shape), convert=convert)
    settings = Settings(rtol=rtol, bias=bool(bias), check_dtype=bool(check_dtype))
    kinds = PADDING_KINDS if asymmetric_padding else SYMMETRIC_PADDING_KINDS
    if not padding_strings:
        kinds = tuple(k for k in kinds if k not in ("same", "valid"))
    draw_options = dict(
        transposed=op.transposed, ranks=ranks, padding_kinds=kinds, groups=bool(groups),
        dilation=bool(dilation), output_padding=bool(output_padding),
        unbatched=bool(unbatched), bias=None if bias else False, dtypes=dtypes,
        memory_orders=MEMORY_ORDERS if noncontiguous else ("C",), max_seed=9999)
    src = NumpySource(np.random.default_rng(seed))
    for number in range(int(n_cases)):
        while True:
            try:
                case = draw_case(src, **draw_options)
                break
            except Rejected:
                continue
        outcome = evaluate(op, fn, case, convention, settings)
        if outcome is None:
            continue
        small, small_outcome, steps = shrink(op, fn, case, outcome, convention, settings,
                                             ranks=ranks, dtypes=dtypes)
        message = report(op, small, small_outcome, convention, settings, original=case,
                         origin=f"case {number} of {n_cases}, seed={seed}", steps=steps)
        failure = CheckFailure(message, kind=small_outcome.kind, case=small, original=case,
                               reproducer=reproducer(op, small, convention))
        cause = small_outcome.details.get("exception")
        raise failure from cause
    return None
