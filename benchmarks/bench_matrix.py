"""Matrix-build benchmark: time and peak memory of ``conv_transpose_matrix``.

The foundation case: input (64, 32, 32), weight (64, 32, 4, 4), stride 2, padding 1,
float32 — about 32.5 million stored entries.  Each build runs in a fresh process, so
the time includes the page faults of the new arrays (what a user sees once); the warm
figure is the median of repeated builds in one process.  Peak memory is measured with
tracemalloc (NumPy reports its buffers to it) and given as a multiple of the finished
matrix's own bytes (data + indices + indptr).

For contrast, ``--coo`` also times a straightforward COO build (every entry as a
(row, col, value) triplet, then ``tocsr()``).

asv-shaped (``params``, ``setup``, ``time_*``, ``peakmem_*``) and runnable as a script:

    python benchmarks/bench_matrix.py [--repeat 5] [--coo]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

import sparsetconv as stc

CASE = dict(input_shape=(64, 32, 32), weight_shape=(64, 32, 4, 4), stride=2, padding=1)


def _weight():
    return np.random.default_rng(0).standard_normal(CASE["weight_shape"]).astype(np.float32)


def build():
    return stc.conv_transpose_matrix(CASE["input_shape"], _weight(), stride=CASE["stride"],
                                     padding=CASE["padding"])


def matrix_bytes(matrix):
    return matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes


def coo_build():
    """The straightforward way: one (row, col, value) triplet per entry, then tocsr()."""
    import scipy.sparse
    w = _weight()
    c_in, c_out, kh, kw = w.shape
    h, wd = CASE["input_shape"][1:]
    s, p = CASE["stride"], CASE["padding"]
    oh, ow = (h - 1) * s - 2 * p + kh, (wd - 1) * s - 2 * p + kw
    ci, co, i, j, a, b = np.meshgrid(np.arange(c_in), np.arange(c_out), np.arange(h),
                                     np.arange(wd), np.arange(kh), np.arange(kw),
                                     indexing="ij", sparse=True)
    y, x = i * s - p + a, j * s - p + b
    valid = np.broadcast_to((y >= 0) & (y < oh) & (x >= 0) & (x < ow),
                            (c_in, c_out, h, wd, kh, kw))
    rows = np.broadcast_to((co * oh + y) * ow + x, valid.shape)[valid]
    cols = np.broadcast_to((ci * h + i) * wd + j, valid.shape)[valid]
    vals = np.broadcast_to(w[:, :, None, None, :, :], valid.shape)[valid]
    return scipy.sparse.coo_array((vals, (rows, cols)),
                                  shape=(c_out * oh * ow, c_in * h * wd)).tocsr()


def _measure_in_process(builder):
    import tracemalloc
    start = time.perf_counter()
    matrix = builder()
    cold = time.perf_counter() - start
    warm = []
    for _ in range(3):
        del matrix
        start = time.perf_counter()
        matrix = builder()
        warm.append(time.perf_counter() - start)
    del matrix
    tracemalloc.start()
    matrix = builder()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"cold_s": cold, "warm_s": statistics.median(warm), "peak_bytes": peak,
            "matrix_bytes": matrix_bytes(matrix), "nnz": int(matrix.nnz)}


class MatrixBuild:
    """asv: conv_transpose_matrix on the foundation case."""

    def setup(self):
        self.weight = _weight()

    def time_conv_transpose_matrix(self):
        stc.conv_transpose_matrix(CASE["input_shape"], self.weight, stride=CASE["stride"],
                                  padding=CASE["padding"])

    def peakmem_conv_transpose_matrix(self):
        self.time_conv_transpose_matrix()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per method")
    parser.add_argument("--coo", action="store_true", help="also time the naive COO build")
    parser.add_argument("--child", choices=["sparsetconv", "coo"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        builder = build if args.child == "sparsetconv" else coo_build
        print(json.dumps(_measure_in_process(builder)))
        return
    methods = ["sparsetconv"] + (["coo"] if args.coo else [])
    print(f"conv_transpose_matrix{CASE['input_shape']}, weight {CASE['weight_shape']}, "
          f"stride {CASE['stride']}, padding {CASE['padding']}, float32; "
          f"{args.repeat} fresh processes each")
    print(f"{'method':<12} {'nnz':>11} {'cold s':>8} {'warm s':>8} {'peak MiB':>9} "
          f"{'matrix MiB':>10} {'peak/matrix':>11}")
    for method in methods:
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, "--child", method],
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout))
        cold = statistics.median(r["cold_s"] for r in runs)
        warm = statistics.median(r["warm_s"] for r in runs)
        peak = max(r["peak_bytes"] for r in runs)
        size = runs[0]["matrix_bytes"]
        print(f"{method:<12} {runs[0]['nnz']:>11,} {cold:>8.3f} {warm:>8.3f} "
              f"{peak / 2**20:>9.1f} {size / 2**20:>10.1f} {peak / size:>11.2f}")


if __name__ == "__main__":
    main()
