"""Problems larger than one worker's memory, on a ``dask.distributed.LocalCluster``.

Two runs, each with 1 and with 2 worker processes whose ``memory_limit`` is smaller
than the problem:

(a) a 3-D transposed convolution (4 -> 4 channels, kernel 3, stride 2, float32) whose
    output is at least 4x one worker's limit, generated on the workers and streamed to a
    NumPy memmap on disk with ``dask.array.store``;
(b) 10 LSQR iterations of ``deconvolve`` (a 3x3x3 convolution, float64) on a volume at
    least 2x one worker's limit (the solver's vectors, ~5 volumes, spill to disk).

Reported: wall time (and the in-memory NumPy call, where it fits this machine, on one
thread like one worker and on all cores), each worker's peak resident memory
(sampled every 20 ms), the most a worker held spilled on disk, and the task count.

    python benchmarks/bench_dask.py                      # 500 MiB per worker
    python benchmarks/bench_dask.py --memory-limit 500MiB --workers 1 2 --skip-numpy
"""

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import dask  # noqa: E402
import dask.array as da  # noqa: E402
from dask.utils import format_bytes, parse_bytes  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402

import sparsetconv as st  # noqa: E402


class MemmapTarget:
    """A ``da.store`` target that each worker opens itself (a pickled np.memmap would
    carry its data along)."""

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=self.shape)

    def __setitem__(self, index, value):
        out = np.load(self.path, mmap_mode="r+")
        out[index] = value
        out.flush()


class TaskCounter(SchedulerPlugin):
    """Tasks the scheduler saw finish (reach memory or be forgotten after running)."""

    def __init__(self):
        self.finished = 0

    def transition(self, key, start, finish, *args, **kwargs):
        if start == "processing" and finish in ("memory", "erred"):
            self.finished += 1


def _start_sampler(dask_worker):
    import psutil

    process = psutil.Process()
    state = {"peak": process.memory_info().rss, "spilled": 0, "stop": False}

    def loop():
        while not state["stop"]:
            state["peak"] = max(state["peak"], process.memory_info().rss)
            spilled = getattr(dask_worker.data, "spilled_total", None)
            if spilled is not None:
                state["spilled"] = max(state["spilled"], spilled.memory)
            time.sleep(0.02)

    threading.Thread(target=loop, daemon=True).start()
    dask_worker._bench_sampler = state
    return process.memory_info().rss


def _stop_sampler(dask_worker):
    state = dask_worker._bench_sampler
    state["stop"] = True
    return state["peak"], state["spilled"]


def _threads(dask_worker):
    return st.get_num_threads()


class Measure:
    """Wall time, per-worker peak RSS and spill, and finished tasks of one block."""

    def __init__(self, client, counter):
        self.client, self.counter = client, counter

    def __enter__(self):
        self.baseline = self.client.run(_start_sampler)
        self.tasks0 = self.counter.finished
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.tasks = self.counter.finished - self.tasks0
        result = self.client.run(_stop_sampler)
        self.peaks = [peak for peak, _ in result.values()]
        self.spilled = [spilled for _, spilled in result.values()]


def _cube(nbytes_needed, bytes_per_voxel, multiple):
    side = math.ceil((nbytes_needed / bytes_per_voxel) ** (1 / 3))
    return -(-side // multiple) * multiple


def run_transposed(client, counter, limit, workdir, chunk):
    """(a): output >= 4x the limit, streamed to a memmap."""
    cin = cout = 4
    side_out = _cube(4 * limit, cout * 4, 2 * chunk)   # float32 output voxels
    n = side_out // 2
    w = np.random.default_rng(1).standard_normal((cin, cout, 3, 3, 3)).astype(np.float32)
    x = da.random.RandomState(0).standard_normal((1, cin, n, n, n),
                                                 chunks=(1, cin, chunk, chunk, chunk))
    x = x.astype(np.float32)
    y = st.conv_transpose3d(x, w, stride=2, padding=1, output_padding=1)
    path = os.path.join(workdir, "conv_transpose3d.npy")
    target = MemmapTarget(path, y.shape, y.dtype)
    stored = da.store(y, target, lock=False, compute=False)
    graph_tasks = len(stored.__dask_graph__())
    with Measure(client, counter) as measure:
        client.compute(stored).result()
    return dict(x=x, w=w, y_shape=y.shape, y_nbytes=y.nbytes, x_nbytes=x.nbytes, path=path,
                graph_tasks=graph_tasks, measure=measure, chunks=y.chunksize)


def run_deconvolve(client, counter, limit, chunk, iterations):
    """(b): LSQR on a volume >= 2x the limit."""
    n = _cube(2 * limit, 8, chunk)
    w = np.random.default_rng(2).standard_normal((1, 1, 3, 3, 3))
    y = da.random.RandomState(3).standard_normal((1, 1, n, n, n),
                                                 chunks=(1, 1, chunk, chunk, chunk))
    graph_tasks = (len(st.conv3d(y, w, padding=1).__dask_graph__())
                   + len(st.conv_transpose3d(y, w, padding=1).__dask_graph__()))
    with Measure(client, counter) as measure:
        x, info = st.deconvolve(y, w, padding=1, maxiter=iterations, return_info=True)
        x_sample = x[0, 0, :8, :8, :8].compute()
        del x
    return dict(y=y, w=w, n=n, nbytes=y.nbytes, info=info, measure=measure,
                graph_tasks=graph_tasks, x_sample=x_sample)


def _numpy_time(function, threads):
    with st.threads(threads):
        t0 = time.perf_counter()
        result = function()
        return time.perf_counter() - t0, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory-limit", default="500MiB",
                        help="per-worker memory limit (default 500MiB)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--iterations", type=int, default=10, help="LSQR iterations")
    parser.add_argument("--dir", default=None, help="scratch directory (memmap, spill)")
    parser.add_argument("--skip-numpy", action="store_true",
                        help="skip the in-memory NumPy comparison")
    args = parser.parse_args(argv)
    limit = parse_bytes(args.memory_limit)
    workdir = tempfile.mkdtemp(prefix="bench_dask-", dir=args.dir)
    # Spill early: a task's transients (window, output, kernel workspace, memmap pages)
    # need headroom above the data a worker keeps.  Terminate stays at dask's 95%.
    dask.config.set({"distributed.worker.memory.target": 0.4,
                     "distributed.worker.memory.spill": 0.5,
                     "distributed.worker.memory.pause": 0.8})
    print(f"memory_limit per worker {format_bytes(limit)}; scratch {workdir}; "
          f"{os.cpu_count()} CPUs; dask {dask.__version__}", flush=True)
    rows, results = [], {}
    try:
        for workers in args.workers:
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              memory_limit=limit, dashboard_address=None,
                              local_directory=workdir) as cluster, \
                    Client(cluster) as client:
                counter = TaskCounter()
                cluster.scheduler.add_plugin(counter)
                threads = set(client.run(_threads).values())
                a = run_transposed(client, counter, limit, workdir, chunk=32)
                _progress("(a)", workers, a["measure"], limit)
                b = run_deconvolve(client, counter, limit, chunk=128,
                                   iterations=args.iterations)
                _progress("(b)", workers, b["measure"], limit)
                alive = len(client.scheduler_info()["workers"])
            results[workers] = (a, b)
            for name, r, size in (("(a) conv_transpose3d -> memmap", a, a["y_nbytes"]),
                                  (f"(b) deconvolve, {args.iterations} LSQR its", b,
                                   b["nbytes"])):
                m = r["measure"]
                rows.append((name, workers, size / limit, m.seconds,
                             max(m.peaks) / limit, max(m.spilled), m.tasks,
                             r["graph_tasks"], alive == workers, threads))
        _report(rows, results, limit, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _progress(name, workers, measure, limit):
    print(f"{workers} worker(s): {name} {measure.seconds:.1f} s, peak RSS "
          f"{max(measure.peaks) / limit:.0%} of the limit, {measure.tasks} tasks",
          flush=True)


def _report(rows, results, limit, args):
    print()
    print(f"{'problem':36} {'workers':>7} {'size/limit':>10} {'wall s':>8} "
          f"{'peak RSS/limit':>14} {'max spilled':>12} {'tasks run':>9} "
          f"{'graph':>7} {'ok':>3}")
    for name, workers, ratio, seconds, peak, spilled, tasks, graph, ok, threads in rows:
        print(f"{name:36} {workers:7d} {ratio:10.2f} {seconds:8.1f} {peak:14.2f} "
              f"{format_bytes(spilled):>12} {tasks:9d} {graph:7d} {'yes' if ok else 'NO':>3}")
    print("(graph = tasks of one graph: (a) generate + convolve + store; (b) one A and "
          "one A^T application; peak RSS is per worker process, the worst worker)")
    a, b = results[args.workers[0]]
    print(f"\n(a) input {a['x'].shape} float32 ({format_bytes(a['x_nbytes'])}), output "
          f"{a['y_shape']} ({format_bytes(a['y_nbytes'])}), output chunks {a['chunks']}")
    print(f"(b) volume {b['y'].shape} float64 ({format_bytes(b['nbytes'])}); "
          f"info {b['info']}")
    if args.skip_numpy:
        return
    # In-memory NumPy on this machine (it has the memory; one worker has not).
    x = a["x"].compute(scheduler="threads")
    ref = np.load(a["path"], mmap_mode="r")
    for threads in (1, st.get_num_threads()):
        seconds, y = _numpy_time(lambda: st.conv_transpose3d(x, a["w"], stride=2, padding=1,
                                                             output_padding=1), threads)
        print(f"(a) NumPy in memory, {threads} thread(s): {seconds:.1f} s")
    worst = float(np.max(np.abs(ref[:, :, :64] - y[:, :, :64])))
    print(f"(a) memmap == NumPy (first 64 planes): max |diff| = {worst:.2e}")
    del x, y, ref
    y = b["y"].compute(scheduler="threads")
    seconds, (x_np, info) = _numpy_time(
        lambda: st.deconvolve(y, b["w"], padding=1, maxiter=args.iterations,
                              return_info=True), st.get_num_threads())
    print(f"(b) NumPy in memory, {st.get_num_threads()} thread(s): {seconds:.1f} s; "
          f"info {info}")
    sample = x_np[0, 0, :8, :8, :8]
    worst = float(np.max(np.abs(sample - b["x_sample"])) / np.max(np.abs(sample)))
    print(f"(b) dask == NumPy (an 8^3 corner): max relative diff {worst:.2e}")


if __name__ == "__main__":
    main()
