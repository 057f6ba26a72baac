"""Command line: ``python -m sparsetconv {shape,explain,bench} ...`` (or ``sparsetconv``).

    sparsetconv shape --input 12 16 12 --kernel 3 --stride 2 --padding 1 --output-padding 1
    sparsetconv shape --input 12 --kernel 3 --stride 2 --padding 1 --target 24
    sparsetconv explain --input 2 2 --kernel 2 --stride 2 --padding 1 [--plot out.png]
    sparsetconv bench --input 16 128 16 16 --out-channels 64 --kernel 4 --stride 2 --padding 1

Argument errors print one line and exit with status 2.
"""

import argparse
import sys
import time

import numpy as np

from .explain import explain, plot_contributions
from .shapes import conv_output_size, conv_transpose_output_size, output_padding_for


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit status 2."""

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


def _geometry_arguments(parser):
    parser.add_argument("--input", nargs="+", type=int, required=True, metavar="SIZE",
                        help="spatial input size, one number per axis (1 to 3)")
    parser.add_argument("--kernel", nargs="+", type=int, required=True, metavar="K",
                        help="kernel size: one number, or one per axis")
    parser.add_argument("--stride", nargs="+", type=int, default=[1], metavar="S")
    parser.add_argument("--padding", nargs="+", default=["0"], metavar="P",
                        help="ints (per axis), BEGIN:END pairs, 'same' or 'valid'")
    parser.add_argument("--output-padding", nargs="+", type=int, default=[0], metavar="OP")
    parser.add_argument("--dilation", nargs="+", type=int, default=[1], metavar="D")


def _per_axis(values):
    return values[0] if len(values) == 1 else tuple(values)


def _geometry(args):
    return dict(input_size=tuple(args.input), kernel_size=_per_axis(args.kernel),
                stride=_per_axis(args.stride), padding=_padding(args.padding),
                dilation=_per_axis(args.dilation))


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
    size = conv_transpose_output_size(output_padding=_per_axis(args.output_padding), **geometry)
    print(f"transposed convolution output size: {'x'.join(map(str, size))}")
    print()
    print(explain(output_padding=_per_axis(args.output_padding), **geometry))


def _explain(args):
    geometry = _geometry(args)
    print(explain(output_padding=_per_axis(args.output_padding), **geometry))
    if args.plot:
        rank = len(args.input)
        kernel_shape = ((args.kernel[0],) * rank if len(args.kernel) == 1
                        else tuple(args.kernel))
        x = np.arange(1, np.prod(args.input) + 1, dtype=float).reshape(args.input)
        w = np.arange(1, np.prod(kernel_shape) + 1, dtype=float).reshape(kernel_shape)
        plot_contributions(x, w, geometry["stride"], geometry["padding"],
                           _per_axis(args.output_padding), geometry["dilation"],
                           filename=args.plot)
        print(f"\nwrote {args.plot}: input 1..{x.size}, kernel 1..{w.size}; one panel per "
              f"input element shows its buffer on the uncropped output grid, the outlined "
              f"part survives the padding crop, the last panel is their sum")


def _bench(args):
    from . import functional
    from ._threads import threads
    rank = len(args.input) - 2
    if rank not in (1, 2, 3):
        raise _UsageError("--input must be N C and 1 to 3 spatial sizes")
    for name in ("groups", "out_channels", "threads", "repeat"):
        if getattr(args, name) < 1:
            raise _UsageError(f"--{name.replace('_', '-')} must be >= 1, got "
                              f"{getattr(args, name)}")
    if args.out_channels % args.groups or args.input[1] % args.groups:
        raise _UsageError(f"--groups {args.groups} must divide the input channels "
                          f"({args.input[1]}) and --out-channels ({args.out_channels})")
    kernel = ((args.kernel[0],) * rank if len(args.kernel) == 1 else tuple(args.kernel))
    rng = np.random.default_rng(0)
    dtype = np.dtype(args.dtype)
    x = rng.standard_normal(args.input).astype(dtype)
    w = rng.standard_normal((args.input[1], args.out_channels // args.groups) + kernel).astype(dtype)
    kwargs = dict(stride=_per_axis(args.stride), padding=_padding(args.padding),
                  output_padding=_per_axis(args.output_padding), groups=args.groups,
                  dilation=_per_axis(args.dilation))
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
    print(f"conv_transpose on input {tuple(args.input)}, weight {w.shape}, {kwargs}, "
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


def build_parser():
    parser = _Parser(prog="sparsetconv", description="Transposed convolution: shapes, "
                     "explanations and timings.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    shape = commands.add_parser("shape", help="output sizes (and output_padding for a target)")
    _geometry_arguments(shape)
    shape.add_argument("--conv", action="store_true",
                       help="the convolution's output size instead")
    shape.add_argument("--target", nargs="+", type=int, metavar="SIZE",
                       help="print the output_padding that reaches this output size")
    shape.set_defaults(run=_shape)
    explain_cmd = commands.add_parser("explain", help="explain the shape arithmetic in words")
    _geometry_arguments(explain_cmd)
    explain_cmd.add_argument("--plot", metavar="FILE",
                             help="also draw each input element's contribution (PNG)")
    explain_cmd.set_defaults(run=_explain)
    bench = commands.add_parser("bench", help="time conv_transpose on each backend")
    bench.add_argument("--input", nargs="+", type=int, required=True, metavar="SIZE",
                       help="N C and the spatial sizes")
    bench.add_argument("--out-channels", type=int, required=True)
    bench.add_argument("--kernel", nargs="+", type=int, required=True)
    bench.add_argument("--stride", nargs="+", type=int, default=[1])
    bench.add_argument("--padding", nargs="+", default=["0"])
    bench.add_argument("--output-padding", nargs="+", type=int, default=[0])
    bench.add_argument("--dilation", nargs="+", type=int, default=[1])
    bench.add_argument("--groups", type=int, default=1)
    bench.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    bench.add_argument("--threads", type=int, default=1)
    bench.add_argument("--repeat", type=int, default=20)
    bench.set_defaults(run=_bench)
    return parser


def main(argv=None):
    """Entry point; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    except (_UsageError, ValueError, TypeError, ImportError) as error:
        print(f"sparsetconv: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
