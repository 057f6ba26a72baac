"""What the benchmark scripts share: layers, the four operations, the competitors,
interleaved timing, verification against a float64 oracle, and the tables.

A layer is a float32 transposed convolution with bias, weight in PyTorch's layout
``(C_in, C_out // groups, *kernel)``.  Each layer defines four timed operations on the
same weight array:

``transpose``
    the transposed convolution ``y = conv_transpose(x, w, b)``; peers PyTorch
    ``conv_transpose*d`` and ONNX Runtime ``ConvTranspose``;
``adjoint``
    its adjoint convolution ``conv(y, w, c)``, from an input of the transposed layer's
    output shape to an output of its input shape; peers PyTorch ``conv*d`` and ONNX
    Runtime ``Conv``;
``input_grad`` and ``weight_grad``
    the transposed convolution's input and weight gradients for a random output
    gradient; peer ``torch.ops.aten.convolution_backward`` (the kernel PyTorch's
    autograd runs) with ``output_mask`` ``[True, False, False]`` resp.
    ``[False, True, False]`` (ONNX Runtime has no gradients).

All four do the same useful work, ``2 N C_in (C_out / groups) prod(kernel) prod(input)``
FLOPs, whatever an implementation computes.  Each output is checked against one
float64 oracle (PyTorch in float64 when installed, else sparsetconv's sparse backend
in float64) before it is timed; a competitor that fails is reported and left out.
"""

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np


def _import_library():
    """sparsetconv from this checkout when it is built here, else the installed one."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    package = os.path.join(root, "sparsetconv")
    built = os.path.isdir(package) and any(
        name.startswith("_kernels.") and name.endswith((".so", ".pyd"))
        for name in os.listdir(package))
    if built:
        sys.path.insert(0, root)
    import sparsetconv
    return sparsetconv


stc = _import_library()

OPERATIONS = ("transpose", "adjoint", "input_grad", "weight_grad")
TITLES = {"transpose": "transposed convolution", "adjoint": "adjoint convolution",
          "input_grad": "input gradient", "weight_grad": "weight gradient"}
PEERS = {"transpose": ("torch", "ort"), "adjoint": ("torch", "ort"),
         "input_grad": ("torch",), "weight_grad": ("torch",)}


def _axes(value, rank):
    if isinstance(value, (tuple, list)):
        if len(value) != rank:
            raise ValueError(f"expected {rank} values, got {value!r}")
        return tuple(int(v) for v in value)
    return (int(value),) * rank


def compact(values):
    """``(2, 2)`` -> ``"2"``, ``(1, 2)`` -> ``"(1, 2)"``: short cells for the tables."""
    return str(values[0]) if len(set(values)) == 1 else str(tuple(values))


@dataclass(frozen=True)
class Layer:
    """One transposed-convolution layer: shapes and per-axis hyper-parameters
    (ints are repeated over the spatial axes)."""

    name: str
    input: tuple
    weight: tuple
    stride: tuple = 1
    padding: tuple = 0
    output_padding: tuple = 0
    dilation: tuple = 1
    groups: int = 1

    def __post_init__(self):
        rank = len(self.weight) - 2
        object.__setattr__(self, "input", tuple(int(v) for v in self.input))
        object.__setattr__(self, "weight", tuple(int(v) for v in self.weight))
        object.__setattr__(self, "groups", int(self.groups))
        for name in ("stride", "padding", "output_padding", "dilation"):
            object.__setattr__(self, name, _axes(getattr(self, name), rank))

    @property
    def rank(self):
        return len(self.weight) - 2

    @property
    def kernel(self):
        return self.weight[2:]

    @property
    def in_channels(self):
        return self.weight[0]

    @property
    def out_channels(self):
        return self.weight[1] * self.groups

    @property
    def output_size(self):
        return stc.conv_transpose_output_size(self.input[2:], self.kernel, self.stride,
                                              self.padding, self.output_padding, self.dilation)

    @property
    def output_shape(self):
        return (self.input[0], self.out_channels) + self.output_size

    @property
    def flops(self):
        n, c_in = self.input[:2]
        return 2 * n * c_in * self.weight[1] * math.prod(self.kernel) * math.prod(self.input[2:])

    @property
    def nbytes(self):
        """float32 bytes of the input, output and weight."""
        return 4 * (math.prod(self.input) + math.prod(self.output_shape) + math.prod(self.weight))

    def kwargs(self):
        """Keyword arguments of ``conv_transpose``."""
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    groups=self.groups, dilation=self.dilation)

    def conv_kwargs(self):
        """Keyword arguments of the adjoint ``conv``."""
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)


def print_layers(layers, file=None):
    """The layers as a markdown table (so a run can be reproduced and reported)."""
    print("| layer | input | weight | stride | padding | out_pad | dilation | groups | output "
          "| MFLOP | MB |", file=file)
    print("|---|---|---|---|---|---|---|---|---|---:|---:|", file=file)
    for layer in layers:
        print(f"| {layer.name} | {layer.input} | {layer.weight} | {compact(layer.stride)} | "
              f"{compact(layer.padding)} | {compact(layer.output_padding)} | "
              f"{compact(layer.dilation)} | {layer.groups} | {layer.output_shape} | "
              f"{layer.flops / 1e6:.0f} | {layer.nbytes / 2**20:.1f} |", file=file)


# ---------------------------------------------------------------------------
# Arrays of one layer and the operands of each operation.

@dataclass
class Data:
    x: np.ndarray  # the transposed convolution's input
    w: np.ndarray  # the weight, shared by all four operations
    b: np.ndarray  # its bias (C_out)
    y: np.ndarray  # the adjoint convolution's input (the output's shape)
    c: np.ndarray  # the adjoint convolution's bias (C_in)
    g: np.ndarray  # the output gradient (the output's shape)


def make_data(layer, dtype=np.float32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(layer.input).astype(dtype)
    w = (rng.standard_normal(layer.weight)
         / math.sqrt(layer.in_channels * math.prod(layer.kernel))).astype(dtype)
    b = rng.standard_normal(layer.out_channels).astype(dtype)
    y = np.random.default_rng(1).standard_normal(layer.output_shape).astype(dtype)
    c = np.random.default_rng(2).standard_normal(layer.in_channels).astype(dtype)
    g = np.random.default_rng(3).standard_normal(layer.output_shape).astype(dtype)
    return Data(x, w, b, y, c, g)


def operands(op, data):
    if op == "transpose":
        return data.x, data.w, data.b
    if op == "adjoint":
        return data.y, data.w, data.c
    return data.g, data.x, data.w


def reduction_length(layer, op):
    """Products summed into one output element (sets the float32 tolerance)."""
    if op == "weight_grad":
        return layer.flops // (2 * math.prod(layer.weight))
    outputs = math.prod(layer.output_shape) if op == "transpose" else math.prod(layer.input)
    return max(1, layer.flops // (2 * outputs))


def tolerance(dtype, layer, op):
    """Max error relative to ``max(1, max |oracle|)``: rounding grows like the square
    root of the summed products, so long reductions (weight gradients) get more room."""
    base = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    return base * max(1.0, math.sqrt(reduction_length(layer, op) / 1e6))


def relative_error(got, want):
    """Max absolute error over ``max(1, max |want|)`` (inf for a wrong shape; NaN fails
    every ``<=`` test)."""
    got = np.asarray(got)
    if got.shape != want.shape:
        return math.inf
    if not want.size:
        return 0.0
    scale = max(1.0, float(np.abs(want).max()))
    return float(np.abs(got.astype(np.float64) - want).max()) / scale


# ---------------------------------------------------------------------------
# Competitors: ``maker(layer, op, data, n_threads)`` returns a zero-argument callable
# (its result a NumPy array), or raises Skip.

class Skip(Exception):
    pass


def _torch():
    try:
        import torch
    except ImportError:
        raise Skip("PyTorch not installed") from None
    return torch


def torch_call(layer, op, tensors):
    """PyTorch's call for ``op`` on ``tensors`` (the operands), unevaluated."""
    torch = _torch()
    functional = torch.nn.functional
    stride, padding = list(layer.stride), list(layer.padding)
    output_padding, dilation = list(layer.output_padding), list(layer.dilation)
    if op == "transpose":
        fn = getattr(functional, f"conv_transpose{layer.rank}d")
        x, w, b = tensors
        return lambda: fn(x, w, b, stride, padding, output_padding, layer.groups, dilation)
    if op == "adjoint":
        fn = getattr(functional, f"conv{layer.rank}d")
        y, w, c = tensors
        return lambda: fn(y, w, c, stride, padding, dilation, layer.groups)
    g, x, w = tensors
    index = 0 if op == "input_grad" else 1
    mask = [index == 0, index == 1, False]
    backward = torch.ops.aten.convolution_backward
    return lambda: backward(g, x, w, None, stride, padding, dilation, True, output_padding,
                            layer.groups, mask)[index]


def make_torch(layer, op, data, n_threads):
    torch = _torch()
    torch.set_num_threads(n_threads)
    call = torch_call(layer, op, [torch.from_numpy(a) for a in operands(op, data)])

    def run():
        with torch.no_grad():
            return call().numpy()
    return run


def ours_call(layer, op, arrays, backend="auto"):
    """sparsetconv's public call for ``op`` on ``arrays`` (the operands)."""
    if op == "transpose":
        fn = getattr(stc, f"conv_transpose{layer.rank}d")
        x, w, b = arrays
        kwargs = layer.kwargs()
        return lambda: fn(x, w, b, backend=backend, **kwargs)
    if op == "adjoint":
        fn = getattr(stc, f"conv{layer.rank}d")
        y, w, c = arrays
        kwargs = layer.conv_kwargs()
        return lambda: fn(y, w, c, backend=backend, **kwargs)
    g, x, w = arrays
    index = 0 if op == "input_grad" else 1
    needs = ("input",) if index == 0 else ("weight",)
    kwargs = layer.kwargs()
    return lambda: stc.conv_transpose_backward(g, x, w, needs=needs, backend=backend,
                                               **kwargs)[index]


def make_ours(layer, op, data, n_threads):
    return ours_call(layer, op, operands(op, data))


def make_ort(layer, op, data, n_threads):
    """One ONNX Runtime ``ConvTranspose`` (transpose) or ``Conv`` (adjoint) node."""
    if op not in ("transpose", "adjoint"):
        raise Skip("ONNX Runtime has no gradients")
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        raise Skip("ONNX Runtime not installed") from None
    x, w, b = operands(op, data)
    if x.dtype != np.float32:
        raise Skip("float32 only here")
    attributes = dict(strides=list(layer.stride), pads=list(layer.padding) * 2,
                      dilations=list(layer.dilation), group=layer.groups,
                      kernel_shape=list(layer.kernel))
    if op == "transpose":
        attributes["output_padding"] = list(layer.output_padding)
    node = helper.make_node("ConvTranspose" if op == "transpose" else "Conv",
                            ["x", "w", "b"], ["y"], **attributes)
    graph = helper.make_graph(
        [node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
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
                                     "1" if ORT_SPINNING[0] else "0")
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
    except Exception as error:  # an unsupported geometry: say so, keep going
        raise Skip(f"{type(error).__name__}: {str(error).splitlines()[0][:80]}") from None
    feed = {"x": x}
    return lambda: session.run(None, feed)[0]


ORT_SPINNING = [False]


def make_forced(algorithm):
    """Ours with one algorithm of the compiled backend forced (internal API: skipped
    where the algorithm refuses the geometry, or the internals have changed)."""
    def maker(layer, op, data, n_threads):
        try:
            from sparsetconv import _compiled
            from sparsetconv._plan import adjoint_plan, make_plan
            x, w, b, y, c, g = data.x, data.w, data.b, data.y, data.c, data.g
            hyper = (layer.stride, layer.padding)
            if op == "adjoint":
                plan = make_plan(False, layer.rank, y.shape, y.dtype, w.shape, w.dtype, c.shape,
                                 c.dtype, *hyper, 0, layer.groups, layer.dilation, None)
                executor = _compiled.Executor(plan, algorithm)
                return lambda: executor(y, w, c)
            bias = (b.shape, b.dtype) if op == "transpose" else (None, None)
            plan = make_plan(True, layer.rank, x.shape, x.dtype, w.shape, w.dtype, *bias, *hyper,
                             layer.output_padding, layer.groups, layer.dilation, None)
            if op == "transpose":
                executor = _compiled.Executor(plan, algorithm)
                return lambda: executor(x, w, b)
            if op == "input_grad":
                executor = _compiled.Executor(adjoint_plan(plan, plan.batch), algorithm)
                return lambda: executor(g, w, None)
            gradient = _compiled.WeightGradient(plan, algorithm)
            return lambda: gradient(x, g)
        except (ValueError, TypeError, AttributeError, ImportError, NotImplementedError) as why:
            raise Skip(str(why).split(";")[0][:80]) from None
    return maker


def make_sparse(layer, op, data, n_threads):
    """CSR matrix times the batch (transpose only); the build is timed once, apart."""
    if op != "transpose":
        raise Skip("transpose only")
    x, w, b = data.x, data.w, data.b
    start = time.perf_counter()
    try:
        matrix = stc.conv_transpose_matrix(x.shape[1:], w, **layer.kwargs())
    except ValueError as error:
        raise Skip(str(error).split(";")[0]) from None
    SPARSE_BUILD_SECONDS[layer.name] = time.perf_counter() - start
    shape = layer.output_shape
    bias = b.reshape((-1,) + (1,) * layer.rank)

    def call():
        return (matrix @ x.reshape(x.shape[0], -1).T).T.reshape(shape) + bias
    return call


SPARSE_BUILD_SECONDS = {}


def oracle(layer, op, data):
    """The float64 result of ``op``: PyTorch in float64, else the sparse backend."""
    arrays = [a.astype(np.float64) for a in operands(op, data)]
    try:
        torch = _torch()
    except Skip:
        return np.asarray(ours_call(layer, op, arrays, backend="sparse")())
    with torch.no_grad():
        return torch_call(layer, op, [torch.from_numpy(a) for a in arrays])().numpy()


def oracle_name():
    try:
        _torch()
        return "PyTorch float64"
    except Skip:
        return "sparsetconv sparse backend, float64"


# ---------------------------------------------------------------------------
# Timing.

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
    if not callables:
        return {}, 0
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


def geomean(values):
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def machine_sgemm_gflops(n=4096, repeats=5):
    """numpy's ``a @ b`` on n x n float32 with one BLAS thread (a fresh process, so the
    thread count is set before numpy loads its BLAS): the machine's sgemm rate."""
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


# ---------------------------------------------------------------------------
# The four-operation tables.

def ms(seconds):
    """Milliseconds with enough digits for microsecond calls."""
    value = seconds * 1e3
    return f"{value:.2f}" if value >= 10 else f"{value:.3f}" if value >= 0.1 else f"{value:.4f}"


def gflops_cell(flops, seconds):
    if not seconds:
        return "—"
    rate = flops / seconds / 1e9
    return f"{rate:.1f}" if rate >= 1 else f"{rate:.3f}"


def ratio(value):
    return f"{value:.2f}" if value else "—"


@dataclass
class Row:
    layer: Layer
    medians: dict
    ours_torch: float = None
    ours_best: float = None


@dataclass
class Table:
    op: str
    threads: int
    rows: list
    skipped: dict
    failures: list

    def ratios(self, attribute):
        return [getattr(row, attribute) for row in self.rows]

    def worst(self, count=3):
        ranked = sorted((row for row in self.rows if row.ours_best),
                        key=lambda row: row.ours_best, reverse=True)
        return ranked[:count]


def competitors(op, dtype, extras=()):
    """The competitors of one operation: its peers, ours (``auto``), then those of
    ``extras`` (``(name, maker, operations)`` triples) that apply to ``op``."""
    makers = {"torch": make_torch}
    if "ort" in PEERS[op] and np.dtype(dtype) == np.float32:
        makers["ort"] = make_ort
    makers["ours"] = make_ours
    makers.update((name, maker) for name, maker, ops in extras if op in ops)
    return makers


def run_table(layers, op, n_threads, budget, gap, dtype=np.float32, extras=(), check=False):
    """Verify and time every competitor of ``op`` on every layer; print the table as it
    goes and return it.  ``check``: verify only, the cells are the errors."""
    makers = competitors(op, dtype, extras)
    names = list(makers)
    plural = "s" if n_threads > 1 else ""
    print(f"\n## {TITLES[op]} ({op}), {np.dtype(dtype).name}, {n_threads} thread{plural}"
          + (", max error of scale (verification only)" if check else "") + "\n")
    header = ("| layer | GFLOP | " + " | ".join(f"{name} {'error' if check else 'ms'}"
                                                for name in names)
              + " | ours GFLOP/s | ours/torch | ours/faster peer |")
    print(header)
    print("|---|" + "---:|" * (header.count("|") - 2))
    table = Table(op, n_threads, [], {}, [])
    for layer in layers:
        data = make_data(layer, dtype)
        want = oracle(layer, op, data)
        limit = tolerance(dtype, layer, op)
        callables, failed, errors = {}, set(), {}
        for name, maker in makers.items():
            try:
                call = maker(layer, op, data, n_threads)
                with stc.threads(n_threads):
                    errors[name] = error = relative_error(call(), want)
            except Skip as why:
                table.skipped.setdefault(name, []).append((layer.name, str(why)))
                continue
            except Exception as error_raised:  # a crash is a failure to report, not to die of
                failed.add(name)
                table.failures.append(f"{layer.name} {op} {name} ({n_threads} thr): raised "
                                      f"{type(error_raised).__name__}: {error_raised}")
                continue
            if error <= limit:
                callables[name] = call
            else:
                failed.add(name)
                table.failures.append(f"{layer.name} {op} {name} ({n_threads} thr): max error "
                                      f"{error:.3g} of scale exceeds {limit:.3g}")
        del data, want
        if check:
            cells = ["FAIL" if name in failed else f"{errors[name]:.1e}" if name in errors
                     else "—" for name in names]
            table.rows.append(Row(layer, {}))
            print(f"| {layer.name} | {layer.flops / 1e9:.3f} | " + " | ".join(cells)
                  + " | | | |", flush=True)
            continue
        with stc.threads(n_threads):
            medians, _ = time_interleaved(callables, budget, gap)
        row = Row(layer, medians)
        ours = medians.get("ours")
        peers = [medians[p] for p in PEERS[op] if p in medians]
        if ours and "torch" in medians:
            row.ours_torch = ours / medians["torch"]
        if ours and peers:
            row.ours_best = ours / min(peers)
        table.rows.append(row)
        cells = [ms(medians[name]) if name in medians else "FAIL" if name in failed else "—"
                 for name in names]
        gflops = gflops_cell(layer.flops, ours)
        print(f"| {layer.name} | {layer.flops / 1e9:.3f} | " + " | ".join(cells)
              + f" | {gflops} | {ratio(row.ours_torch)} | {ratio(row.ours_best)} |", flush=True)
    g_torch, g_best = geomean(table.ratios("ours_torch")), geomean(table.ratios("ours_best"))
    if not check:
        print("| **geomean** | | " + " | ".join("" for _ in names) + " | | "
              + (f"**{g_torch:.2f}**" if g_torch else "—") + " | "
              + (f"**{g_best:.2f}**" if g_best else "—") + " |")
    worst = table.worst()
    if worst:
        above = sum(1 for row in table.rows if row.ours_best and row.ours_best > 1.0)
        print(f"\nworst (ours/faster peer): "
              + ", ".join(f"{row.layer.name} {row.ours_best:.2f}" for row in worst)
              + f"; {above} of {len(table.rows)} layers above 1.00")
    for name, reasons in table.skipped.items():
        by_reason = {}
        for layer_name, why in reasons:
            by_reason.setdefault(why, []).append(layer_name)
        print(f"\n{name} skipped: " + "; ".join(
            f"{', '.join(layers)} ({why})" for why, layers in by_reason.items()))
    for failure in table.failures:
        print(f"\n**verification failed**: {failure}")
    return table


def print_summary(tables, title="summary"):
    """One line per operation and thread count: the geomeans and the worst layers."""
    print(f"\n## {title}: ours ÷ peers (medians; below 1 = ours faster)\n")
    print("| operation | threads | layers | geomean ours/torch | geomean ours/faster peer | "
          "worst layers (ours/faster peer) |")
    print("|---|---:|---:|---:|---:|---|")
    for table in tables:
        g_torch, g_best = geomean(table.ratios("ours_torch")), geomean(table.ratios("ours_best"))
        worst = ", ".join(f"{row.layer.name} {row.ours_best:.2f}" for row in table.worst())
        print(f"| {TITLES[table.op]} | {table.threads} | {len(table.rows)} | {ratio(g_torch)} | "
              f"{ratio(g_best)} | {worst or '—'} |")
    failures = [f for table in tables for f in table.failures]
    if failures:
        print(f"\n**{len(failures)} verification failure(s)**, listed under their tables.")


def run_operations(layers, ops, threads, budget, gap, dtype=np.float32, extras=(),
                   check=False):
    """Every table (op x thread count), then the summary; returns the tables."""
    tables = []
    for op in ops:
        for n_threads in threads:
            tables.append(run_table(layers, op, n_threads, budget, gap, dtype, extras, check))
    if check:
        failures = sum(len(table.failures) for table in tables)
        print(f"\nverified {sum(len(table.rows) for table in tables)} layer-operations: "
              f"{failures} failure(s)")
    else:
        print_summary(tables)
    return tables


# ---------------------------------------------------------------------------
# Command line pieces.

def add_arguments(parser, budget):
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to run (default: 1 2)")
    parser.add_argument("--ops", nargs="+", choices=OPERATIONS, default=list(OPERATIONS),
                        metavar="OP", help=f"operations to run, of {' '.join(OPERATIONS)} "
                        "(default: all four)")
    parser.add_argument("--budget", type=float, default=budget,
                        help=f"seconds per layer, operation and thread count, roughly "
                        f"(default {budget})")
    parser.add_argument("--gap", type=float, default=0.02,
                        help="idle seconds before each timed block (lets thread pools settle)")
    parser.add_argument("--ort-spinning", action="store_true",
                        help="leave ONNX Runtime's spin-waiting on (its default)")
    parser.add_argument("--gemm", choices=("own", "blas"),
                        help="the GEMM kernel of ours (default: own where the CPU has "
                        "AVX-512, else blas)")
    parser.add_argument("--check", action="store_true",
                        help="only verify every competitor against the oracle (no timing)")


def apply_arguments(args):
    ORT_SPINNING[0] = args.ort_spinning
    if getattr(args, "gemm", None):
        from sparsetconv import _kernels
        _kernels.set_gemm_kernel(args.gemm)


def print_versions(peers=(("torch", "PyTorch"), ("onnxruntime", "ONNX Runtime"))):
    location = os.path.dirname(stc.__file__)
    print(f"sparsetconv {stc.__version__} ({location}), OpenMP {stc.openmp_enabled()}, "
          f"numpy {np.__version__}, {os.cpu_count()} CPUs")
    config = stc.show_config(file=open(os.devnull, "w"))
    print(f"BLAS: {config['blas']['name']} kernels {config['blas'].get('kernels')} "
          f"({config['blas'].get('kernels_chosen_by')}); GEMMs: {config['simd'].get('gemm')}"
          f"; OpenMP idle workers: "
          f"{config['openmp'].get('idle_workers')}")
    for module, what in peers:
        try:
            version = __import__(module).__version__
            print(f"{what} {version}")
        except ImportError:
            print(f"{what}: not installed (its columns are empty)")
    print(f"oracle: {oracle_name()}")


def parser(description):
    return argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
