"""The ``"auto"`` cost model: the estimated time of each compiled algorithm for a plan.

Each estimate is a sum of counts read off the geometry, each count times what one
unit of it costs: multiply-adds, vector steps along a row, rows copied by im2col or
col2im, elements read or written once, kernel calls.  Nothing here names a layer;
the per-unit costs below were fitted (non-negative least squares on relative error)
to one-thread timings of 144 random layers -- 1-D/2-D/3-D, dense, grouped and
depthwise, every stride, padding and dilation form -- drawn by
``benchmarks/calibrate_auto.py`` with generator seeds 1-3, which no benchmark table
uses.  That script measures and refits them on another machine (``--gemm blas`` for
the tables of the BLAS GEMM).

How well it chooses (time of the chosen algorithm / the faster of the two, one
thread, own GEMM): on the 64 forward calls of the benchmark's own random layers
(seed 0, not fitted) geomean 1.003, worst 1.09; on the fitted calls 1.011, worst
1.61.  The BLAS tables were fitted before the grid convolution existed and were not
refitted with it (on the fitted calls then: 1.012, worst 1.89).
"""

from math import prod

from . import _kernels
from ._layout import (CONVOLVE, IM2COL, TRANSPOSE, WHOLE_INPUT, _padded_extents,
                      block_rows_per_gemm, column_elements, column_source, forward_chunk,
                      grid_convolution, implicit_convolution, implicit_extents,
                      implicit_tiling)

__all__ = ["gemm_seconds", "direct_seconds", "gemm_counts", "direct_counts"]

NS = 1e-9

# --- GEMM (on a group's channels, a chunk of samples at a time) ---
# seconds per unit with the library's own AVX-512 GEMM (_gemm.h), which the kernels run
# where the CPU has AVX-512.  Transposed convolution (columns = W^T x, then col2im):
TRANSPOSED_GEMM = dict(column_element=0.263 * NS, column_row=1.75 * NS,
                       large_element=0.412 * NS, mac=0.00842 * NS,
                       small_element=0.17 * NS, weight_read=0.776 * NS)
# convolution (im2col, then W @ columns)
CONVOLUTION_GEMM = dict(column_element=0.244 * NS, column_row=4.11 * NS,
                        large_element=0.545 * NS, mac=0.00924 * NS,
                        small_element=0.0278 * NS, weight_read=0.381 * NS)
# the same with SciPy's BLAS (sgemm/dgemm), on CPUs without AVX-512
TRANSPOSED_BLAS_GEMM = dict(column_element=0.148 * NS, column_row=1.92 * NS,
                            large_element=0.33 * NS, mac=0.0177 * NS,
                            small_element=0.251 * NS, weight_read=0.347 * NS)
CONVOLUTION_BLAS_GEMM = dict(column_element=0.367 * NS, column_row=4.4 * NS,
                             large_element=0.438 * NS, mac=0.0166 * NS,
                             small_element=0 * NS, weight_read=0.158 * NS)

# Each GEMM call's fixed cost, in every table above: the own GEMM allocates its pack
# buffers per call, BLAS sets up its own.  Not fitted (the fitted layers are too large
# to see it); on the seed-sized layers, where it decides, the GEMM path took 0.8-1.4 us
# more than the direct one (a 4x4 -> 2x2 convolution 2.95 us against 1.51, a 2x2 ->
# 4x4 transposed 2.26 against 1.43, one GEMM call each) while the other units put
# the two within 0.01 us.  Set below that, at 0.3 us: on mid-size layers with many
# calls the fitted units already carry part of it (at 1 us a 128-channel 64x64 layer's
# 32 calls flipped its estimate to the direct kernels, measured 1.4x slower there).
GEMM_CALL = 300 * NS
for _table in (TRANSPOSED_GEMM, CONVOLUTION_GEMM, TRANSPOSED_BLAS_GEMM, CONVOLUTION_BLAS_GEMM):
    _table["call"] = GEMM_CALL
del _table
# Each MR x NR tile of the implicit convolution ends by scattering its outputs, run by
# run, into their planes.  Not fitted either (the fitted layers reduce over hundreds of
# (channel, tap) rows, where it vanishes); read off the layer where it decides, a
# 3 -> 64 channel 4x4 convolution (48 rows per tile): measured 0.90-1.00 ms against
# 0.72 estimated without it, 3168 tiles -- 57-88 ns each; taken at 50.
CONVOLUTION_GEMM["tile"] = 50 * NS

# --- DIRECT (the row kernels) ---
# transposed: each input row scattered once per tap and output channel (stc_block_axpy)
SCATTER = dict(large_element=0.314 * NS, run=0.959 * NS, small_element=0.315 * NS,
               vector_step=0.447 * NS)
# convolution: output rows gathered in registers, CHANNELS_PER_GATHER channels and up
# to SOURCES_PER_GATHER source rows per call (stc_rows_gather4)
GATHER = dict(call=66.7 * NS, flushed_element=0 * NS, large_element=1.44 * NS,
              mac=0.00692 * NS, vector_step=0.101 * NS)
# convolution over the padded grid (column source IMPLICIT): the phase copy, then four
# output channels at a time, a vector of grid positions per step (stc_grid_dot4)
GRID = dict(copied_element=0 * NS, copied_row=5.2 * NS, large_element=0.248 * NS,
            small_element=0.00849 * NS, vector_load=0.451 * NS, vector_step=0.0873 * NS)
GRID_CHANNELS = _kernels.GRID_BLOCK["channels"]
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


def implicit_counts(plan):
    """The units of work of an implicit convolution (``_layout.implicit_convolution``),
    in CONVOLUTION_GEMM's units: the micro-kernel's multiply-adds over the positions its
    tiles compute (``_layout.implicit_tiling``) and the channels padded to whole NR panels, the phase copy (as large-side
    elements), the outputs, the weight panels swept once per sample, and the tiles."""
    c = _Counts(plan)
    copied = implicit_extents(plan)[1]
    _, positions, tiles = implicit_tiling(plan)
    nr = _kernels.own_gemm_tile(plan.dtype.itemsize)[1]
    channels = _ceil_div(c.c_small, nr) * nr
    n_groups = c.batch * c.groups
    return dict(mac=n_groups * positions * channels * c.c_large * c.taps,
                column_row=0, column_element=0, small_element=c.small_elements,
                large_element=c.batch * plan.large_channels * copied,
                weight_read=n_groups * c.c_small * c.c_large * c.taps, call=0,
                tile=n_groups * tiles * _ceil_div(c.c_small, nr))


def gemm_counts(plan):
    """The units of work of the GEMM algorithm on ``plan``, by the names of its costs
    (TRANSPOSED_GEMM or CONVOLUTION_GEMM)."""
    c = _Counts(plan)
    if not plan.transposed and implicit_convolution(plan):
        return implicit_counts(plan)
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
                weight_read=c.groups * c.c_small * c.c_large * c.taps * calls,
                call=c.groups * calls)


def direct_counts(plan):
    """The units of work of the DIRECT algorithm on ``plan`` -- the plan the row kernels
    run, i.e. after ``_plan.gather_plan`` where that applies -- by the names of its
    costs (SCATTER for a transposed plan; GRID or GATHER for a convolution, as
    ``_layout.grid_convolution`` decides)."""
    c = _Counts(plan)
    steps_per_element = _vector_steps(c.row) / c.row
    if plan.transposed:
        return dict(vector_step=c.macs * steps_per_element, run=c.macs / c.row,
                    small_element=c.small_elements, large_element=c.large_elements)
    if grid_convolution(plan):
        return grid_counts(plan)
    return rows_counts(plan)


def grid_counts(plan):
    """The units of work of a DIRECT convolution over the padded grid: vector steps of
    grid positions per output channel and (channel, tap) and the vector loads they
    share, the phase copy's elements and rows, the input read and the outputs kept."""
    c = _Counts(plan)
    positions, copied = implicit_extents(plan)
    lanes = 64 // plan.dtype.itemsize
    row = _padded_extents(plan.geometry.lifted(3))[-1]     # a phase copy's row
    copies = c.batch * plan.large_channels * copied
    steps = c.batch * c.groups * _ceil_div(positions, lanes) * c.c_large * c.taps
    # a pass of GRID_CHANNELS channels loads each vector once for all of them
    passes = c.c_small // GRID_CHANNELS + c.c_small % GRID_CHANNELS
    return dict(vector_step=steps * c.c_small, vector_load=steps * passes,
                copied_element=copies, copied_row=copies / row,
                large_element=c.large_elements, small_element=c.small_elements)


def rows_counts(plan):
    """The units of work of a DIRECT convolution row by row (the GATHER table)."""
    c = _Counts(plan)
    steps_per_element = _vector_steps(c.row) / c.row
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
    """The GEMM cost table of ``plan``'s direction and of the GEMM kernel in use."""
    if _kernels.gemm_kernel() == "own":
        return TRANSPOSED_GEMM if plan.transposed else CONVOLUTION_GEMM
    return TRANSPOSED_BLAS_GEMM if plan.transposed else CONVOLUTION_BLAS_GEMM


def direct_costs(plan):
    if plan.transposed:
        return SCATTER
    return GRID if grid_convolution(plan) else GATHER


def _seconds(costs, counts):
    return sum(costs[name] * count for name, count in counts.items())


def gemm_seconds(plan):
    """Estimated seconds of the GEMM algorithm on ``plan`` (one thread)."""
    return _seconds(gemm_costs(plan), gemm_counts(plan))


def direct_seconds(plan):
    """Estimated seconds of the DIRECT algorithm on ``plan`` (one thread; see
    :func:`direct_counts` for which plan)."""
    return _seconds(direct_costs(plan), direct_counts(plan))
