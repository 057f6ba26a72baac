"""The layer suite: sparsetconv against PyTorch and ONNX Runtime, four operations.

Every case is a float32 transposed convolution with bias.  Each defines four timed
operations on the same weight (``--ops``, default all four):

    transpose    the transposed convolution    peers: PyTorch conv_transpose*d, ORT ConvTranspose
    adjoint      its adjoint convolution        peers: PyTorch conv*d, ORT Conv
    input_grad   its input gradient             peer: torch.ops.aten.convolution_backward
    weight_grad  its weight gradient            peer: torch.ops.aten.convolution_backward

For each operation and thread count the script builds every competitor, checks every
output against one oracle (PyTorch float64 when installed, else sparsetconv's sparse
backend in float64), then times them in interleaved rounds (each round runs each
competitor once, in turn, after an idle gap and a warm-up call) and reports medians:

    median ms, GFLOP/s (useful FLOPs = 2 N C_in (C_out/groups) prod(kernel) prod(in),
    the same for all four operations), ours / PyTorch, ours / the faster peer, the
    geometric mean of each ratio column and the worst layers; then a summary of all
    tables, and for the GEMM-sized cases ours' 1-thread GFLOP/s against the machine's
    single-thread sgemm.

"ours" is sparsetconv's public call with ``backend="auto"``.  Missing peers are skipped,
and the script says so.

    python benchmarks/bench_suite.py                        # 4 operations, 1 and 2 threads
    python benchmarks/bench_suite.py --ops transpose --threads 1 --cases dcgan2 fcn32
    python benchmarks/bench_suite.py --float64              # ours vs PyTorch in float64
    python benchmarks/bench_suite.py --algorithms --sparse  # also forced algorithms, CSR
"""

import sys

import numpy as np

import _harness as h
from _harness import Layer, stc

SUITE = [
    Layer("dcgan1", (16, 100, 1, 1), (100, 512, 4, 4), 1, 0, 0, 1, 1),
    Layer("dcgan2", (16, 512, 4, 4), (512, 256, 4, 4), 2, 1, 0, 1, 1),
    Layer("dcgan3", (16, 256, 8, 8), (256, 128, 4, 4), 2, 1, 0, 1, 1),
    Layer("dcgan4", (16, 128, 16, 16), (128, 64, 4, 4), 2, 1, 0, 1, 1),
    Layer("dcgan5", (16, 64, 32, 32), (64, 3, 4, 4), 2, 1, 0, 1, 1),
    Layer("unet_up1", (4, 256, 32, 32), (256, 128, 2, 2), 2, 0, 0, 1, 1),
    Layer("unet_up2", (4, 128, 64, 64), (128, 64, 2, 2), 2, 0, 0, 1, 1),
    Layer("fcn32", (1, 21, 16, 16), (21, 21, 64, 64), 32, 16, 0, 1, 1),
    Layer("melgan1d", (8, 512, 256), (512, 256, 16), 8, 4, 0, 1, 1),
    Layer("vnet3d", (2, 64, 12, 16, 12), (64, 32, 3, 3, 3), 2, 1, 1, 1, 1),
    Layer("depthwise", (8, 64, 32, 32), (64, 1, 4, 4), 2, 1, 0, 1, 64),
    Layer("dilated", (8, 32, 32, 32), (32, 32, 3, 3), 1, 2, 0, 2, 1),
    Layer("tiny_seed", (1, 1, 2, 2), (1, 1, 2, 2), 2, 0, 0, 1, 1),
    Layer("small_seed", (1, 1, 4, 4), (1, 1, 4, 4), 2, 1, 0, 1, 1),
]
CASES = {case.name: case for case in SUITE}
Case = Layer  # the suite's former name for a layer

GEMM_CASES = ("dcgan2", "dcgan3", "dcgan4", "unet_up1", "melgan1d")


def arrays(case, dtype):
    """The transposed convolution's (input, weight, bias) of ``case``."""
    data = h.make_data(case, dtype)
    return data.x, data.w, data.b


def print_scaling(tables, sgemm):
    """Ours' 1-thread GFLOP/s against the machine's sgemm, and the 2-thread speedup."""
    by_key = {(t.op, t.threads): {row.layer.name: row.medians.get("ours") for row in t.rows}
              for t in tables}
    for op in h.OPERATIONS:
        one, two = by_key.get((op, 1)), by_key.get((op, 2))
        names = [n for n in GEMM_CASES if one and two and one.get(n) and two.get(n)]
        if not names:
            continue
        print(f"\n## scaling of ours, {h.TITLES[op]} (machine sgemm, numpy 4096^2 on 1 thread: "
              f"{sgemm:.1f} GFLOP/s)\n")
        print("| case | 1 thread ms | GFLOP/s | % of sgemm | 2 threads ms | speedup |")
        print("|---|---:|---:|---:|---:|---:|")
        for name in names:
            gflops = CASES[name].flops / one[name] / 1e9
            print(f"| {name} | {h.ms(one[name])} | {gflops:.1f} | {100 * gflops / sgemm:.0f}% | "
                  f"{h.ms(two[name])} | {one[name] / two[name]:.2f}x |")


def main(argv=None):
    parser = h.parser(__doc__)
    h.add_arguments(parser, budget=2.0)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES),
                        default=[c.name for c in SUITE], metavar="CASE",
                        help="suite layers to run (default: all 14)")
    parser.add_argument("--float64", action="store_true", help="ours vs PyTorch, float64")
    parser.add_argument("--algorithms", action="store_true",
                        help="also time each algorithm of the compiled backend forced")
    parser.add_argument("--sparse", action="store_true",
                        help="also time the CSR matrix times the batch (transpose only)")
    parser.add_argument("--conv", action="store_true", help="same as --ops adjoint")
    parser.add_argument("--backward", action="store_true",
                        help="same as --ops input_grad weight_grad")
    args = parser.parse_args(argv)
    h.apply_arguments(args)
    ops = args.ops
    if args.conv or args.backward:
        ops = (["adjoint"] if args.conv else []) + (
            ["input_grad", "weight_grad"] if args.backward else [])
    cases = [CASES[name] for name in args.cases]
    dtype = np.float64 if args.float64 else np.float32
    extras = []
    if args.algorithms:
        from sparsetconv import _compiled
        extras += [(name, h.make_forced(name), h.OPERATIONS) for name in _compiled.ALGORITHMS]
    if args.sparse:
        extras.append(("sparse", h.make_sparse, ("transpose",)))
    h.print_versions()
    scaling = not args.check and dtype == np.float32 and {1, 2} <= set(args.threads) and any(
        name in args.cases for name in GEMM_CASES)
    sgemm = h.machine_sgemm_gflops() if scaling else None
    if sgemm:
        print(f"machine sgemm (numpy 4096^2, 1 thread): {sgemm:.1f} GFLOP/s")
    tables = h.run_operations(cases, ops, args.threads, args.budget, args.gap, dtype, extras,
                               args.check)
    if h.SPARSE_BUILD_SECONDS:
        print("\nsparse matrix build ms: " + ", ".join(
            f"{name} {seconds * 1e3:.1f}" for name, seconds in h.SPARSE_BUILD_SECONDS.items()))
    if sgemm:
        print_scaling(tables, sgemm)
    return 1 if any(t.failures for t in tables) else 0


class TransposedSuite:
    """asv: ``auto`` on every suite case (float32, default threads)."""

    params = [c.name for c in SUITE]
    param_names = ["case"]

    def setup(self, name):
        self.case = CASES[name]
        self.x, self.w, self.b = arrays(self.case, np.float32)
        self.function = getattr(stc, f"conv_transpose{self.case.rank}d")

    def time_conv_transpose(self, name):
        self.function(self.x, self.w, self.b, **self.case.kwargs())


if __name__ == "__main__":
    sys.exit(main())
