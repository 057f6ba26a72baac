"""The layer suite: sparsetconv against PyTorch and ONNX Runtime.

Every case is a float32 transposed convolution with bias.  For each thread count the
script builds every competitor once, checks every output against one oracle (PyTorch
float64 when installed, else sparsetconv's sparse backend in float64), then times
them in interleaved rounds (each round runs each competitor once, in turn) after a
warm-up, and reports medians:

    median ms, GFLOP/s (useful FLOPs = 2 N C_in (C_out/groups) prod(kernel) prod(in)),
    ratio to PyTorch, ratio to the best peer (the faster of PyTorch and ONNX Runtime),
    and the geometric mean of each ratio column.

Competitors: ``torch`` (NCHW, ``torch.no_grad``), ``ort`` (one ConvTranspose node),
ours ``auto``, ``direct`` (the compiled kernels with the direct algorithm forced), ``gemm``
(the GEMM algorithm forced), ``sparse`` (CSR matrix times the batch; the matrix build
is timed separately and reported in its own column).  Missing peers are skipped, and
the script says so.

    python benchmarks/bench_suite.py                      # 1 and 2 threads, float32
    python benchmarks/bench_suite.py --threads 1 --cases dcgan2 fcn32
    python benchmarks/bench_suite.py --float64            # auto vs PyTorch in float64
    python benchmarks/bench_suite.py --conv               # forward convolution (adjoint shapes)
    python benchmarks/bench_suite.py --backward           # input/weight gradients vs autograd
"""

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

import sparsetconv as stc
from sparsetconv import _compiled
from sparsetconv._plan import make_plan


@dataclass(frozen=True)
class Case:
    name: str
    input: tuple
    weight: tuple
    stride: int
    padding: int
    output_padding: int
    dilation: int
    groups: int

    @property
    def rank(self):
        return len(self.weight) - 2

    @property
    def flops(self):
        n, c_in = self.input[:2]
        return (2 * n * c_in * self.weight[1] * math.prod(self.weight[2:])
                * math.prod(self.input[2:]))


SUITE = [
    Case("dcgan1", (16, 100, 1, 1), (100, 512, 4, 4), 1, 0, 0, 1, 1),
    Case("dcgan2", (16, 512, 4, 4), (512, 256, 4, 4), 2, 1, 0, 1, 1),
    Case("dcgan3", (16, 256, 8, 8), (256, 128, 4, 4), 2, 1, 0, 1, 1),
    Case("dcgan4", (16, 128, 16, 16), (128, 64, 4, 4), 2, 1, 0, 1, 1),
    Case("dcgan5", (16, 64, 32, 32), (64, 3, 4, 4), 2, 1, 0, 1, 1),
    Case("unet_up1", (4, 256, 32, 32), (256, 128, 2, 2), 2, 0, 0, 1, 1),
    Case("unet_up2", (4, 128, 64, 64), (128, 64, 2, 2), 2, 0, 0, 1, 1),
    Case("fcn32", (1, 21, 16, 16), (21, 21, 64, 64), 32, 16, 0, 1, 1),
    Case("melgan1d", (8, 512, 256), (512, 256, 16), 8, 4, 0, 1, 1),
    Case("vnet3d", (2, 64, 12, 16, 12), (64, 32, 3, 3, 3), 2, 1, 1, 1, 1),
    Case("depthwise", (8, 64, 32, 32), (64, 1, 4, 4), 2, 1, 0, 1, 64),
    Case("dilated", (8, 32, 32, 32), (32, 32, 3, 3), 1, 2, 0, 2, 1),
    Case("tiny_seed", (1, 1, 2, 2), (1, 1, 2, 2), 2, 0, 0, 1, 1),
    Case("small_seed", (1, 1, 4, 4), (1, 1, 4, 4), 2, 1, 0, 1, 1),
]
CASES = {case.name: case for case in SUITE}


def arrays(case, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.input).astype(dtype)
    w = (rng.standard_normal(case.weight) / math.sqrt(case.weight[0] * math.prod(case.weight[2:]))).astype(dtype)
    b = rng.standard_normal(case.weight[1] * case.groups).astype(dtype)
    return x, w, b


def kwargs(case):
    return dict(stride=case.stride, padding=case.padding, output_padding=case.output_padding,
                groups=case.groups, dilation=case.dilation)


# ---------------------------------------------------------------------------
# Competitors: each maker returns a zero-argument callable, or raises Skip.

class Skip(Exception):
    pass


def make_torch(case, x, w, b, n_threads, conv=False):
    try:
        import torch
    except ImportError:
        raise Skip("PyTorch not installed") from None
    torch.set_num_threads(n_threads)
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    fn = getattr(torch.nn.functional, f"{'conv' if conv else 'conv_transpose'}{case.rank}d")
    if conv:
        args = (case.stride, case.padding, case.dilation, case.groups)
    else:
        args = (case.stride, case.padding, case.output_padding, case.groups, case.dilation)

    def call():
        with torch.no_grad():
            return fn(tx, tw, tb, *args).numpy()
    return call


def make_ort(case, x, w, b, n_threads):
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        raise Skip("ONNX Runtime not installed") from None
    rank = case.rank
    node = helper.make_node(
        "ConvTranspose", ["x", "w", "b"], ["y"], strides=[case.stride] * rank,
        pads=[case.padding] * (2 * rank), output_padding=[case.output_padding] * rank,
        dilations=[case.dilation] * rank, group=case.groups, kernel_shape=list(case.weight[2:]))
    graph = helper.make_graph(
        [node], "convtranspose", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, list(w.shape), w.ravel()),
                     helper.make_tensor("b", TensorProto.FLOAT, list(b.shape), b)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)  # accepted by every ORT release we meet
    options = ort.SessionOptions()
    options.intra_op_num_threads = n_threads
    options.inter_op_num_threads = 1
    # ORT's workers otherwise spin ~45 ms after each run, stealing the next library's
    # cores (see time_interleaved); after the idle gap it would have to wake them anyway.
    options.add_session_config_entry("session.intra_op.allow_spinning",
                                     "1" if make_ort.spinning else "0")
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"x": x}
    return lambda: session.run(None, feed)[0]


def make_ours(backend, algorithm=None, conv=False):
    def maker(case, x, w, b, n_threads):
        function = getattr(stc, f"{'conv' if conv else 'conv_transpose'}{case.rank}d")
        if conv:
            extra = dict(stride=case.stride, padding=case.padding, dilation=case.dilation,
                         groups=case.groups)
        else:
            extra = kwargs(case)
        if algorithm is None:
            return lambda: function(x, w, b, backend=backend, **extra)
        plan = make_plan(not conv, case.rank, x.shape, x.dtype, w.shape, w.dtype, b.shape,
                         b.dtype, extra["stride"], extra["padding"],
                         extra.get("output_padding", 0), extra["groups"], extra["dilation"], None)
        if algorithm == _compiled.GEMM and not _compiled._blas_sizes_ok(plan):
            raise Skip("too large for BLAS int sizes")
        return lambda: _compiled.run(plan, x, w, b, algorithm)
    return maker


make_ort.spinning = False


def make_sparse(case, x, w, b, n_threads):
    """CSR matrix times the batch; the build is timed once and reported apart."""
    start = time.perf_counter()
    try:
        matrix = stc.conv_transpose_matrix(x.shape[1:], w, **kwargs(case))
    except ValueError as error:
        raise Skip(str(error).split(";")[0]) from None
    make_sparse.build_seconds[case.name] = time.perf_counter() - start
    shape = (x.shape[0],) + stc.conv_transpose_output_size(x.shape[2:], w.shape[2:], case.stride, case.padding, case.output_padding, case.dilation)
    bias = b.reshape((-1,) + (1,) * case.rank)

    def call():
        out = (matrix @ x.reshape(x.shape[0], -1).T).T.reshape(shape[:1] + (-1,) + shape[1:])
        return out + bias
    return call


make_sparse.build_seconds = {}


# ---------------------------------------------------------------------------

def time_interleaved(callables, budget_seconds, gap_seconds, block_seconds=0.02,
                     min_rounds=7, max_rounds=25, max_block=200):
    """Median seconds per call of each callable, in interleaved rounds of blocks.

    Each round gives every competitor, in turn, one block: an idle gap, one untimed
    warm-up call, then back-to-back timed calls filling about ``block_seconds``.

    The gap matters on a 2-core machine: thread pools spin-wait after a call
    (measured here: ONNX Runtime's ~45 ms unless told not to, PyTorch's OpenMP
    ~10 ms, ours ~8 ms), and a spinning pool steals the cores of whichever library
    runs next.  After the gap every pool is quiet; the warm-up call then absorbs the
    cost of waking threads and vCPUs (after ~50 ms idle this VM's second vCPU wakes
    slowly), so the timed calls are warm, as in a real loop.
    """
    estimates = {}
    for name, call in callables.items():
        call()
        start = time.perf_counter()
        call()
        estimates[name] = max(time.perf_counter() - start, 1e-7)
    one_round = sum(max(e, min(block_seconds, e * max_block)) + gap_seconds + e
                    for e in estimates.values())
    rounds = int(min(max_rounds, max(min_rounds, budget_seconds / one_round)))
    samples = {name: [] for name in callables}
    for _ in range(rounds):
        for name, call in callables.items():
            if gap_seconds:
                time.sleep(gap_seconds)
            call()
            for _ in range(int(min(max_block, max(1, block_seconds / estimates[name])))):
                t0 = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) for name, s in samples.items()}, rounds


def oracle(case, x, w, b, conv=False):
    try:
        import torch
        tx, tw, tb = (torch.from_numpy(a.astype(np.float64)) for a in (x, w, b))
        fn = getattr(torch.nn.functional, f"{'conv' if conv else 'conv_transpose'}{case.rank}d")
        with torch.no_grad():
            if conv:
                return fn(tx, tw, tb, case.stride, case.padding, case.dilation, case.groups).numpy()
            return fn(tx, tw, tb, case.stride, case.padding, case.output_padding, case.groups,
                      case.dilation).numpy()
    except ImportError:
        function = stc.conv if conv else stc.conv_transpose
        extra = kwargs(case)
        if conv:
            extra.pop("output_padding")
        return function(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                        backend="sparse", **extra)


def verify(name, got, want, dtype):
    scale = max(1.0, float(np.abs(want).max()))
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    error = float(np.abs(np.asarray(got, dtype=np.float64) - want).max()) / scale
    if not error <= tolerance:
        raise AssertionError(f"{name}: max error {error:.3g} of scale exceeds {tolerance}")


def machine_sgemm_gflops(n=4096, repeats=5):
    """numpy's ``a @ b`` on n x n float32 with one BLAS thread (a fresh process, so the
    thread count is set before numpy loads its BLAS): the machine's sgemm rate."""
    import os
    import subprocess
    code = (
        "import numpy as np, time\n"
        f"a = np.random.rand({n}, {n}).astype(np.float32); b = a.copy(); a @ b\n"
        "best = float('inf')\n"
        f"for _ in range({repeats}):\n"
        "    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)\n"
        f"print(2 * {n}**3 / best / 1e9)\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout)


GEMM_CASES = ("dcgan2", "dcgan3", "dcgan4", "unet_up1", "melgan1d")


def print_scaling(results, sgemm):
    """auto's 1-thread GFLOP/s against the machine's sgemm, and its 2-thread speedup."""
    if 1 not in results or 2 not in results:
        return
    print(f"\n## scaling of auto (machine sgemm, numpy 4096^2 on 1 thread: {sgemm:.1f} GFLOP/s)\n")
    print("| case | 1 thread ms | GFLOP/s | % of sgemm | 2 threads ms | speedup |")
    print("|---|---|---|---|---|---|")
    for name in GEMM_CASES:
        if name in results[1] and name in results[2]:
            one, two = results[1][name], results[2][name]
            gflops = CASES[name].flops / one / 1e9
            print(f"| {name} | {one * 1e3:.2f} | {gflops:.1f} | {100 * gflops / sgemm:.0f}% | "
                  f"{two * 1e3:.2f} | {one / two:.2f}x |")


def run_backward_table(cases, n_threads, budget, gap):
    """Input and weight gradients of every layer: ours against PyTorch's autograd."""
    import torch
    torch.set_num_threads(n_threads)
    print(f"\n## backward (float32), {n_threads} thread{'s' if n_threads > 1 else ''}: "
          f"ours vs torch.autograd.grad on the same layer\n")
    print("| case | torch input ms | ours input ms | input ratio | torch weight ms | "
          "ours weight ms | weight ratio |")
    print("|---|---|---|---|---|---|---|")
    ratios = {"input": [], "weight": []}
    for case in cases:
        x, w, b = arrays(case, np.float32)
        out_shape = (x.shape[0], w.shape[1] * case.groups) + stc.conv_transpose_output_size(
            x.shape[2:], w.shape[2:], case.stride, case.padding, case.output_padding,
            case.dilation)
        g = np.random.default_rng(3).standard_normal(out_shape).astype(np.float32)
        fn = getattr(torch.nn.functional, f"conv_transpose{case.rank}d")
        tx, tw = (torch.from_numpy(a).requires_grad_() for a in (x, w))
        ty = fn(tx, tw, torch.from_numpy(b), case.stride, case.padding, case.output_padding,
                case.groups, case.dilation)
        tg = torch.from_numpy(g)
        calls = {
            "torch input": lambda: torch.autograd.grad(ty, tx, tg, retain_graph=True)[0],
            "ours input": lambda: stc.conv_transpose_backward(g, x, w, needs=("input",),
                                                              **kwargs(case))[0],
            "torch weight": lambda: torch.autograd.grad(ty, tw, tg, retain_graph=True)[0],
            "ours weight": lambda: stc.conv_transpose_backward(g, x, w, needs=("weight",),
                                                               **kwargs(case))[1],
        }
        want_input, want_weight = (a.detach().double().numpy() for a in torch.autograd.grad(
            fn(tx.double(), tw.double(), None, case.stride, case.padding, case.output_padding,
               case.groups, case.dilation), (tx, tw), tg.double()))
        verify(f"{case.name}/input gradient", calls["ours input"](), want_input, np.float32)
        verify(f"{case.name}/weight gradient", calls["ours weight"](), want_weight, np.float32)
        with stc.threads(n_threads):
            medians, _ = time_interleaved(calls, budget, gap)
        r_in = medians["ours input"] / medians["torch input"]
        r_w = medians["ours weight"] / medians["torch weight"]
        ratios["input"].append(r_in)
        ratios["weight"].append(r_w)
        print(f"| {case.name} | {medians['torch input'] * 1e3:.3f} | "
              f"{medians['ours input'] * 1e3:.3f} | {r_in:.2f} | "
              f"{medians['torch weight'] * 1e3:.3f} | {medians['ours weight'] * 1e3:.3f} | "
              f"{r_w:.2f} |", flush=True)
    print(f"| **geomean** | | | **{geomean(ratios['input']):.2f}** | | | "
          f"**{geomean(ratios['weight']):.2f}** |")


def geomean(values):
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def run_table(cases, n_threads, competitors, dtype, budget, gap, conv=False):
    print(f"\n## {'convolution' if conv else 'transposed convolution'}, {np.dtype(dtype).name}, "
          f"{n_threads} thread{'s' if n_threads > 1 else ''}\n")
    names = list(competitors)
    ours = [n for n in names if n not in ("torch", "ort")]
    header = (f"| case | GFLOP | " + " | ".join(f"{n} ms" for n in names)
              + " | auto GFLOP/s | auto/torch | auto/best peer |"
              + (" sparse build ms |" if "sparse" in names else ""))
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    ratios_torch, ratios_best = [], []
    skipped = {}
    auto_seconds = {}
    for case in cases:
        x, w, b = arrays(case, dtype)
        if conv:
            # The adjoint convolution: from the transposed convolution's output back.
            out_size = stc.conv_transpose_output_size(case.input[2:], case.weight[2:], case.stride,
                                                      case.padding, case.output_padding, case.dilation)
            x = np.random.default_rng(1).standard_normal(
                (case.input[0], case.weight[1] * case.groups) + out_size).astype(dtype)
            w = np.ascontiguousarray(w)
            b = np.random.default_rng(2).standard_normal(case.weight[0]).astype(dtype)
        want = oracle(case, x, w, b, conv)
        callables = {}
        for name, maker in competitors.items():
            try:
                call = maker(case, x, w, b, n_threads)
                verify(f"{case.name}/{name}", call(), want, dtype)
                callables[name] = call
            except Skip as why:
                skipped.setdefault(name, set()).add(f"{case.name}: {why}")
        with stc.threads(n_threads):
            medians, rounds = time_interleaved(callables, budget, gap)
        auto = medians.get("auto")
        auto_seconds[case.name] = auto
        peers = [medians[p] for p in ("torch", "ort") if p in medians]
        r_torch = auto / medians["torch"] if auto and "torch" in medians else None
        r_best = auto / min(peers) if auto and peers else None
        ratios_torch.append(r_torch)
        ratios_best.append(r_best)
        cells = [f"{medians[n] * 1e3:.3f}" if n in medians else "—" for n in names]
        gflops = case.flops / auto / 1e9 if auto else None
        row = (f"| {case.name} | {case.flops / 1e9:.3f} | " + " | ".join(cells)
               + f" | {gflops:.1f} | " + (f"{r_torch:.2f}" if r_torch else "—") + " | "
               + (f"{r_best:.2f}" if r_best else "—") + " |")
        if "sparse" in names:
            build = make_sparse.build_seconds.get(case.name)
            row += f" {build * 1e3:.1f} |" if build else " — |"
        print(row, flush=True)
    gt, gb = geomean(ratios_torch), geomean(ratios_best)
    print(f"| **geomean** | | " + " | ".join("" for _ in names) + " | | "
          + (f"**{gt:.2f}**" if gt else "—") + " | " + (f"**{gb:.2f}**" if gb else "—") + " |"
          + (" |" if "sparse" in names else ""))
    for name, why in skipped.items():
        print(f"\n{name} skipped: " + "; ".join(sorted(why)))
    return auto_seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=[c.name for c in SUITE])
    parser.add_argument("--float64", action="store_true", help="auto vs PyTorch, float64")
    parser.add_argument("--conv", action="store_true", help="forward convolution instead")
    parser.add_argument("--backward", action="store_true",
                        help="input and weight gradients against PyTorch autograd")
    parser.add_argument("--no-sparse", action="store_true", help="skip the sparse backend")
    parser.add_argument("--algorithms", action="store_true",
                        help="also time the direct and GEMM algorithms forced")
    parser.add_argument("--budget", type=float, default=3.0,
                        help="seconds per case and thread count (roughly)")
    parser.add_argument("--ort-spinning", action="store_true",
                        help="leave ONNX Runtime's spin-waiting on (its default)")
    parser.add_argument("--gap", type=float, default=0.02,
                        help="idle seconds before each timed call (lets thread pools settle)")
    args = parser.parse_args(argv)
    cases = [CASES[name] for name in args.cases]
    make_ort.spinning = args.ort_spinning
    if args.backward:
        print(f"sparsetconv {stc.__version__}, OpenMP {stc.openmp_enabled()}")
        for n_threads in args.threads:
            run_backward_table(cases, n_threads, args.budget, args.gap)
        return
    dtype = np.float64 if args.float64 else np.float32
    print(f"sparsetconv {stc.__version__}, OpenMP {stc.openmp_enabled()}, numpy {np.__version__}")
    try:
        import torch
        print(f"torch {torch.__version__}")
    except ImportError:
        print("torch: not installed (its columns are empty)")
    competitors = {"torch": make_torch}
    if not args.float64 and not args.conv:
        try:
            import onnxruntime
            print(f"onnxruntime {onnxruntime.__version__}")
        except ImportError:
            print("onnxruntime: not installed (its columns are empty)")
        competitors["ort"] = make_ort
    if args.conv:
        competitors["torch"] = lambda c, x, w, b, n: make_torch(c, x, w, b, n, conv=True)
    competitors["auto"] = make_ours("auto", conv=args.conv)
    if args.algorithms:
        competitors["direct"] = make_ours("direct", _compiled.DIRECT, conv=args.conv)
        competitors["gemm"] = make_ours("direct", _compiled.GEMM, conv=args.conv)
    if not (args.no_sparse or args.float64 or args.conv):
        competitors["sparse"] = make_sparse
    sgemm = machine_sgemm_gflops()
    print(f"machine sgemm (numpy 4096^2, 1 thread): {sgemm:.1f} GFLOP/s")
    results = {}
    for n_threads in args.threads:
        results[n_threads] = run_table(cases, n_threads, competitors, dtype, args.budget,
                                       args.gap, conv=args.conv)
    if not args.float64 and not args.conv:
        print_scaling(results, sgemm)


class TransposedSuite:
    """asv: ``auto`` on every suite case (float32, default threads)."""

    params = [c.name for c in SUITE]
    param_names = ["case"]

    def setup(self, name):
        self.case = CASES[name]
        self.x, self.w, self.b = arrays(self.case, np.float32)
        self.function = getattr(stc, f"conv_transpose{self.case.rank}d")

    def time_conv_transpose(self, name):
        self.function(self.x, self.w, self.b, **kwargs(self.case))


if __name__ == "__main__":
    sys.exit(main())
