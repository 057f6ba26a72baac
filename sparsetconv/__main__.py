"""Command line: ``python -m sparsetconv {shape,explain,bench} ...`` (or ``sparsetconv``).

    sparsetconv shape --input 12 16 12 --kernel 3 --stride 2 --padding 1 --output-padding 1
    sparsetconv shape --input 12 --kernel 3 --stride 2 --padding 1 --target 24
    sparsetconv explain --input 4 4 --kernel 4 --stride 2 --padding 1 --terms 0 1
    sparsetconv explain --input 3 --kernel 3 --stride 2 --zero-stuffed steps.gif
    sparsetconv bench --input-shape 16 128 16 16 --out-channels 64 --kernel 4 --stride 2

``--input`` is always the spatial size of the transposed convolution's input;
``bench`` takes the whole array shape as ``--input-shape N C SIZE...``.  Every bad
argument prints one line, ``sparsetconv: error: ...``, and exits with status 2.
"""

import argparse
import math
import os
import sys
import time

import numpy as np

from . import __version__
from .explain import explain, output_terms
from .shapes import conv_output_size, conv_transpose_output_size, output_padding_for

# The compiled kernels index with 64-bit integers.
_INDEX_LIMIT = np.iinfo(np.int64).max


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)   # `bench --input` must not mean --input-shape
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _padding(values):
    """--padding: ints per axis, 'same' or 'valid', or BEGIN:END pairs."""
    if len(values) == 1 and values[0] in ("same", "valid"):
        return values[0]
    parsed = []
    for value in values:
        try:
            if ":" in value:
                begin, end = value.split(":", 1)
                parsed.append((int(begin), int(end)))
            else:
                parsed.append(int(value))
        except ValueError:
            raise _UsageError(f"--padding takes ints, BEGIN:END pairs, 'same' or 'valid', "
                              f"got {value!r}") from None
    return parsed[0] if len(parsed) == 1 and isinstance(parsed[0], int) else tuple(parsed)


def _hyper_arguments(parser):
    parser.add_argument("--kernel", nargs="+", type=int, required=True, metavar="K",
                        help="kernel size: one number, or one per axis")
    parser.add_argument("--stride", nargs="+", type=int, default=[1], metavar="S")
    parser.add_argument("--padding", nargs="+", default=["0"], metavar="P",
                        help="ints (per axis), BEGIN:END pairs, 'same' or 'valid'")
    parser.add_argument("--output-padding", nargs="+", type=int, default=[0], metavar="OP")
    parser.add_argument("--dilation", nargs="+", type=int, default=[1], metavar="D")


def _geometry_arguments(parser):
    parser.add_argument("--input", nargs="+", type=int, required=True, metavar="SIZE",
                        help="spatial input size, one number per axis (1 to 3)")
    _hyper_arguments(parser)


def _per_axis(values):
    return values[0] if len(values) == 1 else tuple(values)


def _geometry(args):
    return dict(input_size=tuple(args.input), kernel_size=_per_axis(args.kernel),
                stride=_per_axis(args.stride), padding=_padding(args.padding),
                dilation=_per_axis(args.dilation))


def _kernel_shape(kernel, rank):
    return (kernel[0],) * rank if len(kernel) == 1 else tuple(kernel)


def _size_text(nbytes):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.3g} {unit}"
        nbytes /= 1024


def _available_memory():
    """Bytes this process could allocate now (MemAvailable; physical memory if unknown)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(arrays):
    """Refuse, before allocating, ``[(what, shape, itemsize)]`` that cannot fit."""
    for what, shape, _ in arrays:
        for size in shape:
            if size > _INDEX_LIMIT:
                raise _UsageError(f"the {what} would have {size} elements on one axis, beyond "
                                  f"the 64-bit index range")
    parts = [(what, shape, math.prod(shape) * itemsize) for what, shape, itemsize in arrays]
    need = sum(nbytes for _, _, nbytes in parts)
    available = _available_memory()
    if available is not None and need > available:
        detail = ", ".join(f"{what} {shape}: {_size_text(nbytes)}" for what, shape, nbytes in parts)
        raise _UsageError(f"this needs {_size_text(need)} ({detail}), more than the "
                          f"{_size_text(available)} of memory available")


def _check_index_range(args, names):
    for name in names:
        values = getattr(args, name)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, int) and abs(value) > _INDEX_LIMIT:
                raise _UsageError(f"--{name.replace('_', '-')} {value} is beyond the 64-bit "
                                  f"index range the kernels compute in")


def _shape(args):
    geometry = _geometry(args)
    if args.conv:
        size = conv_output_size(**geometry)
        print(f"convolution output size: {'x'.join(map(str, size))}")
        return
    if args.target:
        target = tuple(args.target)
        op = output_padding_for(geometry["input_size"], target, geometry["kernel_size"],
                                geometry["stride"], geometry["padding"], geometry["dilation"])
        print(f"output_padding {_per_axis(list(op))} gives {'x'.join(map(str, target))}")
        return
    output_padding = _per_axis(args.output_padding)
    size = conv_transpose_output_size(output_padding=output_padding, **geometry)
    print(f"transposed convolution output size: {'x'.join(map(str, size))}")
    if args.explain:
        print()
        print(explain(output_padding=output_padding, **geometry))


def _values(given, shape, default, option):
    """The array for ``--input-values``/``--kernel-values`` (row-major; one value fills)."""
    _check_memory([(option[2:].replace("-values", ""), shape, 8)])
    if given is None:
        return default(shape)
    count = math.prod(shape)
    if len(given) not in (1, count):
        raise _UsageError(f"{option} takes 1 or {count} numbers (shape {shape}, row-major), "
                          f"got {len(given)}")
    return np.broadcast_to(np.asarray(given, dtype=float), (count,)).reshape(shape).copy()


def _number(value):
    return f"{value:g}"


def _terms_lines(x, w, index, kwargs):
    terms = output_terms(x, w, index, **kwargs)
    total = sum(v * k for _, _, v, k in terms)
    head = f"output[{', '.join(map(str, index))}] = {_number(total)}"
    if not terms:
        return [f"{head}: no input element reaches it (only padding or output_padding)"]
    return [head + " = " + " + ".join(
                f"input[{', '.join(map(str, i))}]*kernel[{', '.join(map(str, k))}]"
                for i, k, _, _ in terms),
            " " * len(head) + " = " + " + ".join(f"{_number(v)}*{_number(k)}"
                                                 for _, _, v, k in terms)]


def _picture_file(path, option, animation_ok=False):
    """Fail early (before any work or output) when ``path`` cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise _UsageError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise _UsageError(f"{option} {path}: the folder {folder} is not writable")
    from matplotlib.backend_bases import FigureCanvasBase
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    formats = set(FigureCanvasBase.get_supported_filetypes()) | ({"gif"} if animation_ok else set())
    if extension not in formats:
        raise _UsageError(f"{option} {path}: matplotlib cannot write {extension!r} files "
                          f"(use one of {', '.join(sorted(formats))})")


def _explain(args):
    geometry = _geometry(args)
    output_padding = _per_axis(args.output_padding)
    if args.plot or args.zero_stuffed:
        try:
            import matplotlib
        except ImportError:
            from .plotting import _MISSING
            raise ImportError(_MISSING) from None
        matplotlib.use("Agg")            # files only: no window, whatever the display
    if args.plot:
        _picture_file(args.plot, "--plot")
    if args.zero_stuffed:
        _picture_file(args.zero_stuffed, "--zero-stuffed", animation_ok=True)
    text = explain(output_padding=output_padding, **geometry)   # validates the geometry
    rank = len(args.input)
    kernel_shape = _kernel_shape(args.kernel, rank)
    kwargs = dict(stride=geometry["stride"], padding=geometry["padding"],
                  output_padding=output_padding, dilation=geometry["dilation"])
    # Everything that can fail is done before anything is printed or written.
    lines = []
    if args.terms or args.plot:
        x = _values(args.input_values, tuple(args.input), np.ones, "--input-values")
        w = _values(args.kernel_values, kernel_shape,
                    lambda shape: np.arange(1.0, math.prod(shape) + 1).reshape(shape),
                    "--kernel-values")
        values = ("input " + ("ones" if args.input_values is None else "as given")
                  + ", kernel " + (f"1..{w.size} row-major" if args.kernel_values is None
                                   else "as given"))
    if args.terms:
        lines += ["", f"The terms that sum to each output ({values}):"]
        for index in args.terms:
            if len(index) != rank:
                raise _UsageError(f"--terms takes {rank} output "
                                  f"ind{'ex' if rank == 1 else 'ices'} (one per axis), got "
                                  f"{' '.join(map(str, index))}")
            lines += _terms_lines(x, w, tuple(index), kwargs)
    figures = []
    if args.plot or args.zero_stuffed:
        from . import plotting
    if args.plot:
        figures.append((plotting.plot_contributions(x, w, **kwargs), args.plot,
                        f"{values}; one panel per input element shows its buffer on the "
                        f"uncropped output grid, the outlined part survives the padding "
                        f"crop, the last panel is their sum"))
    movie = None
    if args.zero_stuffed:
        sizes = dict(input_size=geometry["input_size"], kernel_size=kernel_shape, **kwargs)
        words = "the equivalent stride-1 convolution over the zero-stuffed, padded input"
        if args.zero_stuffed.lower().endswith(".gif"):
            layout = plotting._zero_stuffed(**sizes)          # too big: refused here
            if len(layout.indices()) > plotting._MAX_FRAMES:
                raise _UsageError(f"--zero-stuffed {args.zero_stuffed}: "
                                  f"{len(layout.indices())} output positions, more than the "
                                  f"{plotting._MAX_FRAMES} frames an animation may have")
            movie = sizes, f"{words}, one frame per output position"
        else:
            index = tuple(args.terms[0]) if args.terms else None
            figures.append((plotting.plot_zero_stuffed(**sizes, index=index),
                            args.zero_stuffed,
                            f"{words}, the kernel over output {index or (0,) * rank}"))
    print(text)
    for line in lines:
        print(line)
    for fig, path, what in figures:
        _save(fig, path)
        print(f"\nwrote {path}: {what}")
    if movie is not None:
        try:
            plotting.animate_zero_stuffed(**movie[0], path=args.zero_stuffed)
        except OSError as error:
            raise _UsageError(f"cannot write {args.zero_stuffed}: {error}") from None
        print(f"\nwrote {args.zero_stuffed}: {movie[1]}")


def _save(fig, path):
    import matplotlib.pyplot as plt
    try:
        fig.savefig(path, dpi=110)
    except (OSError, ValueError) as error:
        raise _UsageError(f"cannot write {path}: {error}") from None
    finally:
        plt.close(fig)


def _bench(args):
    from . import functional
    from ._threads import get_num_threads, threads
    if args.input_shape is None:
        if args.input is not None:
            raise _UsageError("bench takes the whole input shape as --input-shape N C "
                              "SIZE... (--input is the spatial size in shape and explain)")
        raise _UsageError("the following arguments are required: --input-shape")
    rank = len(args.input_shape) - 2
    if rank not in (1, 2, 3):
        raise _UsageError("--input-shape must be N C and 1 to 3 spatial sizes")
    if args.threads is None:
        args.threads = get_num_threads()
    for name in ("groups", "out_channels", "threads", "repeat"):
        if getattr(args, name) < 1:
            raise _UsageError(f"--{name.replace('_', '-')} must be >= 1, got "
                              f"{getattr(args, name)}")
    if min(args.input_shape) < 1:
        raise _UsageError(f"--input-shape must be >= 1 everywhere, got "
                          f"{' '.join(map(str, args.input_shape))}")
    if args.out_channels % args.groups or args.input_shape[1] % args.groups:
        raise _UsageError(f"--groups {args.groups} must divide the input channels "
                          f"({args.input_shape[1]}) and --out-channels ({args.out_channels})")
    _check_index_range(args, ("input_shape", "out_channels", "kernel", "stride",
                              "output_padding", "dilation", "groups"))
    kernel = _kernel_shape(args.kernel, rank)
    kwargs = dict(stride=_per_axis(args.stride), padding=_padding(args.padding),
                  output_padding=_per_axis(args.output_padding), groups=args.groups,
                  dilation=_per_axis(args.dilation))
    for value in np.ravel(np.array(kwargs["padding"], dtype=object)):
        if isinstance(value, int) and abs(value) > _INDEX_LIMIT:
            raise _UsageError(f"--padding {value} is beyond the 64-bit index range the "
                              f"kernels compute in")
    # The shape arithmetic first (plain ints: any size), then the memory it needs.
    spatial = conv_transpose_output_size(tuple(args.input_shape[2:]), kernel,
                                         kwargs["stride"], kwargs["padding"],
                                         kwargs["output_padding"], kwargs["dilation"])
    dtype = np.dtype(args.dtype)
    weight_shape = (args.input_shape[1], args.out_channels // args.groups) + kernel
    output_shape = (args.input_shape[0], args.out_channels) + spatial
    _check_memory([("input", tuple(args.input_shape), dtype.itemsize),
                   ("weight", weight_shape, dtype.itemsize),
                   ("output", output_shape, dtype.itemsize)])
    rng = np.random.default_rng(0)
    x = rng.standard_normal(tuple(args.input_shape), dtype=dtype)
    w = rng.standard_normal(weight_shape, dtype=dtype)
    calls = {backend: (lambda b=backend: functional.conv_transpose(x, w, backend=b, **kwargs))
             for backend in ("auto", "direct", "sparse")}
    functional.conv_transpose(x[:1], w, **kwargs)  # invalid arguments fail here, exit 2
    try:
        import torch
        torch.set_num_threads(args.threads)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        fn = getattr(torch.nn.functional, f"conv_transpose{rank}d")
        padding = kwargs["padding"]
        if isinstance(padding, (str, tuple)) and not all(isinstance(p, int) for p in np.atleast_1d(padding)):
            raise ImportError  # PyTorch has no asymmetric or string padding here
        calls["torch"] = lambda: fn(tx, tw, None, kwargs["stride"], padding,
                                    kwargs["output_padding"], args.groups, kwargs["dilation"])
        calls["torch"]()
    except ImportError:
        pass
    except RuntimeError as error:  # arguments PyTorch does not take (e.g. its own limits)
        calls.pop("torch", None)
        print(f"(torch skipped: {str(error).splitlines()[0]})")
    print(f"conv_transpose on input {tuple(args.input_shape)}, weight {w.shape}, {kwargs}, "
          f"{dtype}, {args.threads} thread(s)")
    print(f"{'backend':<8} {'median ms':>10}")
    with threads(args.threads):
        for name, call in calls.items():
            try:
                call()
            except ValueError as error:  # e.g. the sparse matrix over max_nnz
                print(f"{name:<8} {'-':>10}  ({str(error).split(';')[0]})")
                continue
            samples = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                call()
                samples.append(time.perf_counter() - start)
            print(f"{name:<8} {np.median(samples) * 1e3:>10.3f}")


def _default_threads_text():
    try:
        from ._threads import get_num_threads
        return f"{get_num_threads()} here"
    except Exception:  # noqa: BLE001 -- only for the help text
        return "see sparsetconv.get_num_threads()"


def build_parser():
    parser = _Parser(prog="sparsetconv", description="Transposed convolution: shapes, "
                     "explanations and timings.")
    parser.add_argument("--version", action="version", version=f"sparsetconv {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    shape = commands.add_parser("shape", help="output sizes (and output_padding for a target)",
                                description="Print the transposed convolution's output size "
                                            "(one line); --explain adds the derivation.")
    _geometry_arguments(shape)
    shape.add_argument("--conv", action="store_true",
                       help="the convolution's output size instead")
    shape.add_argument("--target", nargs="+", type=int, metavar="SIZE",
                       help="print the output_padding that reaches this output size")
    shape.add_argument("--explain", action="store_true",
                       help="also print the explanation behind the size (as `explain`)")
    shape.set_defaults(run=_shape)
    explain_cmd = commands.add_parser(
        "explain", help="explain the shape arithmetic in words (and show the terms)",
        description="Explain the shape arithmetic; --terms lists the products that sum to "
                    "given outputs, for the input and kernel values given (default: input "
                    "ones, kernel 1..K row-major).")
    _geometry_arguments(explain_cmd)
    explain_cmd.add_argument("--terms", nargs="+", type=int, action="append", metavar="I",
                             help="an output index (one number per axis): print the "
                                  "input*kernel terms that sum to it; repeat for more")
    explain_cmd.add_argument("--input-values", nargs="+", type=float, metavar="V",
                             help="input values, row-major (one value fills); default ones")
    explain_cmd.add_argument("--kernel-values", nargs="+", type=float, metavar="V",
                             help="kernel values, row-major (one value fills); default 1..K")
    explain_cmd.add_argument("--plot", metavar="FILE",
                             help="also draw each input element's contribution (PNG)")
    explain_cmd.add_argument("--zero-stuffed", metavar="FILE",
                             help="also draw the equivalent stride-1 convolution over the "
                                  "zero-stuffed input (PNG; a .gif animates every output)")
    explain_cmd.set_defaults(run=_explain)
    bench = commands.add_parser("bench", help="time conv_transpose on each backend")
    bench.add_argument("--input-shape", nargs="+", type=int, metavar="SIZE",
                       help="the input array's shape: N C and 1 to 3 spatial sizes "
                            "(required)")
    bench.add_argument("--input", nargs="+", help=argparse.SUPPRESS)  # a hint, below
    bench.add_argument("--out-channels", type=int, required=True)
    _hyper_arguments(bench)
    bench.add_argument("--groups", type=int, default=1)
    bench.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    bench.add_argument("--threads", type=int, default=None,
                       help="threads for sparsetconv and torch; default: the library's "
                            "default, sparsetconv.get_num_threads() (OMP_NUM_THREADS or "
                            f"the CPUs available: {_default_threads_text()})")
    bench.add_argument("--repeat", type=int, default=20)
    bench.set_defaults(run=_bench)
    return parser


def main(argv=None):
    """Entry point; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except (_UsageError, ValueError, TypeError, ImportError, OverflowError) as error:
        print(f"sparsetconv: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except MemoryError as error:   # a size the checks above did not foresee
        print(f"sparsetconv: error: not enough memory: {_one_line(error)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        sys.stderr.close()
        return 0
    return 0


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
