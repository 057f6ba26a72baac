"""Measure and refit the per-unit costs of the ``"auto"`` cost model (sparsetconv._cost).

For random layers of ``bench_random.py`` drawn with seeds that the benchmark tables do
not use (default 1 2 3, 48 layers each), both directions of each layer (the transposed
convolution and its adjoint convolution) are run with every compiled algorithm forced,
one thread, in interleaved rounds; medians are kept.  Each algorithm's units of work
(``_cost.gemm_counts`` / ``_cost.direct_counts``: multiply-adds, vector steps, copied
column rows, ...) are then fitted to its times by non-negative least squares on
relative error -- only calls within ``--relevant`` x of the faster algorithm, where the
choice is made -- and the script prints the new cost tables (nanoseconds per unit, the
form of ``_cost.py``), how close the estimates are, and how often the current and the
refitted tables choose the faster algorithm.

    python benchmarks/calibrate_auto.py                        # ~12 min on one core
    python benchmarks/calibrate_auto.py --seeds 1 --count 8    # a quick look
    python benchmarks/calibrate_auto.py --save t.json          # keep the timings
    python benchmarks/calibrate_auto.py --load t.json          # refit saved timings
"""

import json
import math
import statistics
import sys
import time

import numpy as np
from scipy.optimize import nnls

import _harness as h
from bench_random import random_layers

import sparsetconv as stc
from sparsetconv import _compiled, _cost
from sparsetconv._plan import make_plan

ALGORITHMS = ("direct", "gemm")
NAMES = {number: name for name, number in _compiled.ALGORITHMS.items()}
# A call slower than this many times the fastest (after one call) is not repeated.
GIVE_UP = 8.0


def _plans(layer):
    """The layer's transposed convolution and its adjoint convolution (plans)."""
    f32 = np.dtype(np.float32)
    hyper = (layer.stride, layer.padding)
    transposed = make_plan(True, layer.rank, layer.input, f32, layer.weight, f32, None, None,
                           *hyper, layer.output_padding, layer.groups, layer.dilation, None)
    adjoint = make_plan(False, layer.rank, layer.output_shape, f32, layer.weight, f32, None,
                        None, *hyper, 0, layer.groups, layer.dilation, None)
    return transposed, adjoint


# _cost's cost tables by identity -> their names in _cost.py
TABLE_NAMES = {id(value): name for name, value in vars(_cost).items()
               if isinstance(value, dict) and name.isupper()}


def _table(algorithm, kernel_plan):
    """(name of the cost table, counts) of one forced call."""
    if algorithm == "gemm":
        table, counts = _cost.gemm_costs(kernel_plan), _cost.gemm_counts(kernel_plan)
    else:
        table, counts = _cost.direct_costs(kernel_plan), _cost.direct_counts(kernel_plan)
    return TABLE_NAMES[id(table)], counts


def _time(calls, rounds):
    """Median seconds of each call, interleaved; very slow ones are timed once."""
    first = {}
    for name, call in calls.items():
        start = time.perf_counter()
        call()
        first[name] = time.perf_counter() - start
    fastest = min(first.values())
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            if first[name] > GIVE_UP * fastest and times[name]:
                continue
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _layer_calls(seeds, count):
    """Each random layer's two calls (the transposed layer and its adjoint): the
    record's label, the plan, its input and the weight (float32, fixed seed)."""
    for seed in seeds:
        for layer in random_layers(seed, count):
            rng = np.random.default_rng(0)
            w = rng.standard_normal(layer.weight).astype(np.float32)
            for plan, shape in zip(_plans(layer), (layer.input, layer.output_shape)):
                x = rng.standard_normal(shape).astype(np.float32)
                yield f"{layer.name}/seed{seed}", plan, x, w


def _report(record, extra=""):
    print(f"{record['layer']:24} {record['direction']:9} "
          + " ".join(f"{a} {t * 1e3:8.3f} ms" for a, t in record["times"].items()) + extra,
          flush=True)


def measure(seeds, count, rounds):
    """One record per (layer, direction): times, cost tables and counts per algorithm."""
    records = []
    for label, plan, x, w in _layer_calls(seeds, count):
        calls, tables = {}, {}
        for algorithm in ALGORITHMS:
            try:
                executor = _compiled.Executor(plan, algorithm)
            except ValueError:  # outside the algorithm's domain (column cap)
                continue
            calls[algorithm] = (lambda e=executor: e(x, w, None))
            tables[algorithm] = _table(algorithm, executor.kernel_plan)
        times = _time(calls, rounds)
        live = _compiled.live_plan(plan)
        chosen = NAMES[_compiled.choose_algorithm(plan if live is None else live[0])]
        records.append(dict(layer=label,
                            direction="transpose" if plan.transposed else "adjoint",
                            chosen=chosen, times=times, tables=tables))
        _report(records[-1], f"  auto: {chosen}")
    return records


def _forced_grid(value):
    """A context in which DIRECT convolutions run over the grid (True) or by rows."""
    import contextlib

    from sparsetconv import _layout

    @contextlib.contextmanager
    def forced():
        rule = _layout.grid_convolution
        _layout.grid_convolution = lambda plan: value
        _layout._build_layout.cache_clear()
        try:
            yield
        finally:
            _layout.grid_convolution = rule
            _layout._build_layout.cache_clear()
    return forced()


def measure_grid(seeds, count, rounds):
    """One record per DIRECT convolution call (an adjoint, or a stride-1 transposed
    layer run as its convolution) inside the grid's domain: the row kernels and the
    grid, both forced, with the GATHER and GRID tables' counts."""
    from sparsetconv import _layout
    records = []
    for label, plan, x, w in _layer_calls(seeds, count):
        calls = {}
        for variant in ("rows", "grid"):
            with _forced_grid(variant == "grid"):
                executor = _compiled.Executor(plan, "direct")
            calls[variant] = (lambda e=executor: e(x, w, None))
        kernel_plan = executor.kernel_plan
        g = kernel_plan.geometry
        positions, copy = _layout.implicit_extents(kernel_plan)
        if (kernel_plan.transposed or positions > 2 * math.prod(g.small)
                or copy > 2 * math.prod(g.large)):
            continue
        times = _time(calls, rounds)
        records.append(dict(
            layer=label, direction="transpose" if plan.transposed else "adjoint",
            times=times,
            tables=dict(rows=("GATHER", _cost.rows_counts(kernel_plan)),
                        grid=("GRID", _cost.grid_counts(kernel_plan)))))
        _report(records[-1])
    return records


def fit(records, relevant):
    """Per cost table: the non-negative costs (seconds per unit) that fit its calls."""
    rows = {}
    for record in records:
        fastest = min(record["times"].values())
        for algorithm, (table, counts) in record["tables"].items():
            seconds = record["times"][algorithm]
            if seconds <= relevant * fastest:
                rows.setdefault(table, []).append((counts, seconds))
    tables = {}
    for table, data in sorted(rows.items()):
        names = sorted(data[0][0])
        counts = np.array([[c[name] for name in names] for c, _ in data], dtype=float)
        seconds = np.array([s for _, s in data])
        scale = counts.max(axis=0)
        scale[scale == 0] = 1
        costs, _ = nnls(counts / scale / seconds[:, None], np.ones(len(seconds)))
        tables[table] = dict(zip(names, costs / scale))
        ratio = counts @ (costs / scale) / seconds
        low, high = np.percentile(ratio, [10, 90])
        print(f"{table}: {len(seconds)} calls, estimate / measured median "
              f"{np.median(ratio):.2f}, 80 % within {low:.2f}-{high:.2f}")
    return tables


def _estimate(tables, record, algorithm):
    table, counts = record["tables"][algorithm]
    return sum(tables[table].get(name, 0.0) * count for name, count in counts.items())


def regret(records, choose):
    """Geomean and worst of (time of the chosen algorithm) / (the faster one)."""
    ratios = [r["times"][choose(r)] / min(r["times"].values()) for r in records]
    return math.exp(sum(map(math.log, ratios)) / len(ratios)), max(ratios)


def main(argv=None):
    parser = h.parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="generator seeds (default 1 2 3; 0 is the benchmark's)")
    parser.add_argument("--count", type=int, default=48, help="layers per seed (default 48)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--relevant", type=float, default=4.0,
                        help="fit only calls within this factor of the faster (default 4)")
    parser.add_argument("--save", metavar="FILE", help="write the timings to FILE (json)")
    parser.add_argument("--load", metavar="FILE", help="refit saved timings, measure nothing")
    parser.add_argument("--grid", action="store_true",
                        help="time and fit the DIRECT convolution's two forms instead "
                        "(row kernels, GATHER, against the padded grid, GRID)")
    parser.add_argument("--gemm", choices=("own", "blas"),
                        help="the GEMM kernel to time (default: own where the CPU has "
                        "AVX-512, else blas)")
    args = parser.parse_args(argv)
    if args.gemm:
        from sparsetconv import _kernels
        _kernels.set_gemm_kernel(args.gemm)
    if args.load:
        with open(args.load) as f:
            records = json.load(f)
    else:
        h.print_versions()
        with stc.threads(1):
            records = (measure_grid if args.grid else measure)(args.seeds, args.count,
                                                               args.rounds)
        if args.save:
            with open(args.save, "w") as f:
                json.dump(records, f)
    print()
    tables = fit(records, args.relevant)
    print()
    for table, costs in tables.items():
        body = ", ".join(f"{name}={cost * 1e9:.3g} * NS" for name, cost in costs.items())
        print(f"{table} = dict({body})")
    if args.grid:
        return _report_grid(records, tables)
    margin = _cost.DIRECT_MUST_BEAT_GEMM_BY

    def refitted(record):
        options = {a: _estimate(tables, record, a) * (1 if a == "direct" else margin)
                   for a in record["tables"]}
        return min(options, key=options.get)

    print()
    for label, choose in (("auto when measured", lambda r: r["chosen"]),
                          ("refitted tables", refitted)):
        mean, worst = regret(records, choose)
        print(f"{label}: chosen / faster algorithm, geomean {mean:.3f}, worst {worst:.2f}")
    return 0


def _report_grid(records, tables):
    """How often the grid rule (GRID against the current GATHER) picks the faster form,
    with the current and the refitted GRID table."""
    current = {"GATHER": _cost.GATHER, "GRID": _cost.GRID}
    refit = {"GATHER": _cost.GATHER, "GRID": tables.get("GRID", _cost.GRID)}
    print()
    for label, costs in (("current GRID table", current), ("refitted GRID table", refit)):
        def choose(record):
            return min(("rows", "grid"), key=lambda v: _estimate(costs, record, v))
        mean, worst = regret(records, choose)
        print(f"{label}: chosen / faster form, geomean {mean:.3f}, worst {worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
