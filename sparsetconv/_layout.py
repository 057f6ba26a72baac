"""The one place that knows the compiled kernels' tables, domains and workspaces.

A :class:`Layout` has exactly the fields of the ``Problem`` struct declared in
``_kernels.pxd``; :class:`sparsetconv._kernels.Kernel` copies it by name.  It depends
only on the plan, the direction and the algorithm, so it is built once per plan.

Each algorithm states the geometries it supports (:func:`unsupported`); forcing one
outside them raises instead of computing something else.
"""

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from math import prod

import numpy as np

from . import _kernels

DIRECT = _kernels.ALGORITHMS["direct"]
KERNEL_ROWS = _kernels.ALGORITHMS["kernel_rows"]
GEMM = _kernels.ALGORITHMS["gemm"]
ALGORITHMS = dict(_kernels.ALGORITHMS)
TRANSPOSE = _kernels.DIRECTIONS["transpose"]
CONVOLVE = _kernels.DIRECTIONS["convolve"]
WEIGHT_GRADIENT = _kernels.DIRECTIONS["weight_gradient"]
IM2COL = _kernels.COLUMN_SOURCES["im2col"]
POINTWISE = _kernels.COLUMN_SOURCES["pointwise"]
WHOLE_INPUT = _kernels.COLUMN_SOURCES["whole_input"]
IMPLICIT = _kernels.COLUMN_SOURCES["implicit"]
# where the implicit convolution's tiles start (implicit_tiling): along the whole grid,
# at each output z-plane, or at each output (z, y) row
TILES_ALONG_GRID = _kernels.TILE_RESTARTS["along_grid"]
TILES_PER_PLANE = _kernels.TILE_RESTARTS["per_plane"]
TILES_PER_ROW = _kernels.TILE_RESTARTS["per_row"]

# A GEMM chunk's column buffer (per thread) may not exceed this: the im2col/col2im
# columns are the one workspace that is not bounded by the call's own arrays.
GEMM_MAX_COLUMN_BYTES = 128 * 2**20
# Forward GEMMs take at least this many columns per chunk when the batch allows, so
# BLAS runs at speed while a chunk's columns still fit in cache for col2im.
GEMM_MIN_WIDTH = 512
_BLAS_INT_MAX = 2**31 - 1


@dataclass(frozen=True, eq=False)
class AxisTables:
    """One spatial axis of a Problem (see ``Axis`` in ``_kernels.pxd``)."""

    small: int
    large: int
    kernel: int
    stride: int
    first: np.ndarray
    stop: np.ndarray
    offset: np.ndarray
    source: np.ndarray
    layout: np.ndarray
    row_length: int = 0          # 0: the large size (see Axis.row_length)
    element_first: object = None
    element_stop: object = None
    element_start: object = None
    padded: int = 0              # IMPLICIT: see Axis.padded / phase_source / phase_runs
    phase_source: object = None
    phase_runs: object = None


@dataclass(frozen=True)
class Workspace:
    """Workspace sizes in elements.  ``scratch`` is per thread; ``packed``,
    ``columns`` and ``product`` per thread when threads take whole GEMM chunks, else
    one; ``phased`` is shared."""

    scratch: int = 0
    phased: int = 0
    packed: int = 0
    columns: int = 0
    product: int = 0


@dataclass(frozen=True, eq=False)
class Layout:
    direction: int
    algorithm: int
    batch: int
    c_small: int
    c_large: int
    groups: int
    chunk: int
    column_source: int
    block_rows: int
    phased_large: bool
    axes: tuple
    workspace: Workspace
    # IMPLICIT only (see Problem in _kernels.pxd)
    a_offset: object = None
    out_offset: object = None
    positions: int = 0
    phase_pitch: int = 0
    u_block: int = 0
    panel_block: int = 0
    tile_restart: int = TILES_ALONG_GRID  # IMPLICIT GEMM: see implicit_tiling
    # DIRECT IMPLICIT only
    grid_pitch: int = 0
    grid_channels: int = 0
    depth_block: int = 0
    # WEIGHT_GRADIENT IMPLICIT only
    small_channels_padded: int = 0

    @property
    def n_chunks(self):
        return -(-self.batch // self.chunk)


def _intp(values):
    return np.ascontiguousarray(values, dtype=np.intp)


def _axis_tables(geometry, axis, kernel_rows):
    relation = geometry.axis_relation(axis)
    small, large = geometry.small[axis], geometry.large[axis]
    extra = {}
    layout = relation.layout
    if kernel_rows:
        # natural order on this axis: element j's taps are one contiguous run (dilation 1)
        stride, kernel, pad = geometry.stride[axis], geometry.kernel[axis], geometry.pad_begin[axis]
        first, stop, start = [], [], []
        for j in range(small):
            position = j * stride - pad          # Python ints: no overflow
            t0 = min(max(0, -position), kernel)
            t1 = max(t0, min(kernel, large - position))
            first.append(t0)
            stop.append(t1)
            start.append(position + t0 if t1 > t0 else 0)
        extra = dict(element_first=_intp(first), element_stop=_intp(stop),
                     element_start=_intp(start))
        layout = np.arange(large)
    return AxisTables(
        small=small, large=large, kernel=geometry.kernel[axis], stride=geometry.stride[axis],
        first=_intp(relation.first),
        stop=_intp(relation.stop), offset=_intp(relation.offset),
        source=_intp(relation.source.ravel()), layout=_intp(layout), row_length=large, **extra,
    )


def _zero_padded_x(geometry, tables):
    """The x tables for a phased copy with explicit zeros wherever a tap's run would
    leave the real positions: every tap then runs over the whole output row (no
    clipped edges, so short rows stay in registers), or None when that copy would be
    more than twice the row (huge padding keeps the clipped runs).

    For the convolution's gather the zeros meet only weights, which are finite there
    (non-finite weights take the exact path); for the weight gradient they meet data,
    and a non-finite gradient is recomputed exactly where there is padding -- so the
    zeros never change a result.
    """
    small, large = tables.small, tables.large
    if all(tables.first == 0) and all(tables.stop == small):
        return None                                   # nothing is clipped
    stride, dilation = geometry.stride[-1], geometry.dilation[-1]
    pad = geometry.pad_begin[-1]
    spans = {}                                        # phase -> [lo, hi) of m it needs
    for r in range(min(stride, large)):
        spans[r] = [0, -(-(large - r) // stride)]
    taps = []
    for t in range(tables.kernel):
        shift = t * dilation - pad
        phase, lead = shift % stride, shift // stride
        lo, hi = spans.get(phase, [lead, lead + small])
        spans[phase] = [min(lo, lead), max(hi, lead + small)]
        taps.append((phase, lead))
    length = sum(hi - lo for lo, hi in spans.values())
    if length > 2 * large + 16:
        return None
    base, start = {}, 0
    for phase in sorted(spans):
        base[phase] = start - spans[phase][0]         # layout of (phase, m) = base + m
        start += spans[phase][1] - spans[phase][0]
    positions = np.arange(large)
    layout = np.array([base[p % stride] for p in range(large)] if stride < large
                      else [base[p] for p in range(large)], dtype=np.int64) + positions // stride
    offset = [base[phase] + lead for phase, lead in taps]
    return dataclasses.replace(
        tables, first=_intp(np.zeros(tables.kernel)), stop=_intp(np.full(tables.kernel, small)),
        offset=_intp(offset), layout=_intp(layout), row_length=length,
    )


def _batch(plan):
    return 1 if plan.batch is None else plan.batch


def column_elements(plan, samples):
    """Elements of the GEMM column buffer for ``samples`` samples (either direction:
    (large-side channels x taps) x (samples x small positions))."""
    g = plan.geometry
    return plan.large_channels * prod(g.kernel) * samples * prod(g.small)


def forward_chunk(plan):
    """Samples per forward GEMM chunk: enough columns for BLAS to run at speed, few
    enough that a chunk's columns are still in cache when col2im reads them, and
    within the column cap."""
    fit = GEMM_MAX_COLUMN_BYTES // max(1, column_elements(plan, 1) * plan.dtype.itemsize)
    wanted = -(-GEMM_MIN_WIDTH // prod(plan.geometry.small))
    return max(1, min(_batch(plan), wanted, fit))


def row_column_bytes(plan):
    """Bytes of the GEMM columns of one small-side (z, y) row of one sample."""
    g = plan.geometry.lifted(3)
    return plan.large_channels * prod(g.kernel) * g.small[2] * plan.dtype.itemsize


def block_rows_per_gemm(plan, direction):
    """Small-side (z, y) rows per im2col + GEMM (or GEMM + col2im) block of ``plan``
    run by GEMM in ``direction`` (all the rows where it is not blocked).

    A one-sample chunk of the convolution or of a per-sample weight gradient runs a
    block of rows at a time: the fewest whole rows with GEMM_MIN_WIDTH columns --
    enough for BLAS to run at speed, few enough that the block's columns are still in
    cache when BLAS packs them (a 3-D layer's whole-plane columns, 8 MiB, ran 1.2x
    slower).  A transposed convolution whose sample's columns exceed the column cap
    runs as many rows as fit it at a time, adding each block into the sample's
    output planes (FCN-32s in float64, 168 MiB of columns: 57 ms in 2-row blocks
    against 228 for the direct kernel).
    """
    g = plan.geometry.lifted(3)
    rows, row = g.small[0] * g.small[1], g.small[2]
    if direction == TRANSPOSE:
        if column_elements(plan, 1) * plan.dtype.itemsize <= GEMM_MAX_COLUMN_BYTES:
            return rows
        return max(1, min(rows, GEMM_MAX_COLUMN_BYTES // max(1, row_column_bytes(plan))))
    if direction == CONVOLVE:
        blocked = forward_chunk(plan) == 1
    elif direction == WEIGHT_GRADIENT:
        blocked = weight_gradient_per_sample(plan) and weight_gradient_chunk(plan) == 1
    else:
        blocked = False
    return max(1, min(rows, -(-GEMM_MIN_WIDTH // row))) if blocked else rows


# A weight-gradient GEMM reduces over positions: with at least this many per sample it
# runs one GEMM per sample straight from the small side (no packed copy of it, and
# chunks sized like the forward's, whose columns stay in cache); below, the samples'
# positions are packed side by side so the reduction is long enough for BLAS.
WEIGHT_GRADIENT_SAMPLE_DEPTH = 256


def weight_gradient_per_sample(plan):
    return prod(plan.geometry.small) >= WEIGHT_GRADIENT_SAMPLE_DEPTH


def weight_gradient_chunk(plan):
    """Samples per weight-gradient chunk: as the forward's with one GEMM per sample,
    else as many as fit the column cap."""
    if weight_gradient_per_sample(plan):
        return forward_chunk(plan)
    fit = GEMM_MAX_COLUMN_BYTES // max(1, column_elements(plan, 1) * plan.dtype.itemsize)
    return max(1, min(_batch(plan), fit))


def weight_gradient_by_channels(plan):
    """Whether the weight-gradient GEMM takes the small side's channels as its m side
    (into a product, transposed into the weight at the end) rather than the large
    side's channels x taps.

    With SciPy's BLAS: when the channels are fewer (OpenBLAS ran that 1.03-1.6x
    faster).  With the own GEMM, which runs whole MR x NR tiles: when the padded rows
    and columns it saves, times the reduction, outweigh the transpose, a pass over the
    weight costed at TRANSPOSE_MACS multiply-adds per element (64 x 48 ran 1.4x faster
    than 48 x 64 over 16 x 1024 positions; on dcgan2's 4096 x 512 x 256 the padding is
    a tie and the transpose cost as much as the whole GEMM).
    """
    cs_g = plan.small_channels // plan.groups
    depth = (plan.large_channels // plan.groups) * prod(plan.geometry.kernel)
    if _kernels.gemm_kernel() == "blas":
        return cs_g < depth
    mr, nr = _kernels.own_gemm_tile(plan.dtype.itemsize)

    def padded(m, n):
        return -(-m // mr) * mr * (-(-n // nr) * nr)

    saved = padded(depth, cs_g) - padded(cs_g, depth)
    return saved * _batch(plan) * prod(plan.geometry.small) > TRANSPOSE_MACS * cs_g * depth


# What moving one element of a transpose costs, in multiply-adds of the own GEMM
# (32 per cycle in float32; a strided element move takes about 2 cycles).
TRANSPOSE_MACS = 64


def _blas_sizes_ok(plan):
    """BLAS takes 32-bit ints: every GEMM operand must stay below 2**31 elements."""
    g = plan.geometry
    width = _batch(plan) * prod(g.small)
    depth = (plan.large_channels // plan.groups) * prod(g.kernel)
    rows = max(plan.small_channels, plan.large_channels) * prod(g.kernel)
    return max(width * rows, width * depth, plan.large_channels * prod(g.large)) <= _BLAS_INT_MAX


def column_source(geometry):
    """Where a GEMM's column matrix comes from (see ``ColumnSource`` in _kernels.pxd).

    POINTWISE: kernel 1, stride 1, no padding on every axis, and planes of at least
    GEMM_MIN_WIDTH / 2 positions -- each sample's plane *is* its column block.  WHOLE_INPUT: one small position and a kernel exactly covering
    the unpadded large side (dilation 1) -- the samples' large planes are the columns.
    Otherwise IM2COL.
    """
    axes = list(zip(geometry.small, geometry.large, geometry.kernel, geometry.stride,
                    geometry.dilation, geometry.pad_begin))
    if (all(k == 1 and s == 1 and pad == 0 and small == large
            for small, large, k, s, d, pad in axes)
            and prod(geometry.small) >= GEMM_MIN_WIDTH // 2):
        # per-sample GEMMs: only when a plane is wide enough for BLAS on its own
        # (a 4x3 plane of 512 channels runs 3x slower than im2col's packed samples)
        return POINTWISE
    if all(small == 1 and pad == 0 and large == k and (d == 1 or k == 1)
           for small, large, k, s, d, pad in axes):
        return WHOLE_INPUT
    return IM2COL


def whole_input_by_samples(plan, direction, source):
    """Whether a WHOLE_INPUT convolution multiplies with the samples as BLAS's m side
    (into a product of ``batch x channels``, then transposed into the output) rather
    than the output channels: when there are fewer samples than a group's output
    channels.  Timed with OpenBLAS (one thread, k = 1024-8192): the smaller of the
    two as m ran 1.2-4x faster in every case (4 x 100: 0.24 vs 1.02 ms)."""
    return (direction == CONVOLVE and source == WHOLE_INPUT
            and _batch(plan) < plan.small_channels // plan.groups)


def unsupported(plan, direction, algorithm):
    """Why ``algorithm`` cannot run ``plan`` in ``direction`` (None when it can)."""
    names = {v: k for k, v in ALGORITHMS.items()}
    if algorithm not in names:
        return f"unknown algorithm {algorithm!r}; choose one of {sorted(ALGORITHMS)}"
    if algorithm == KERNEL_ROWS:
        if direction != TRANSPOSE:
            return "the kernel-rows algorithm computes transposed convolutions only"
        if plan.geometry.dilation[-1] != 1:
            return (f"the kernel-rows algorithm needs dilation 1 on the last axis, got "
                    f"dilation={plan.geometry.dilation}")
    if algorithm == GEMM:
        if not _blas_sizes_ok(plan):
            return "the GEMM algorithm's matrices would exceed BLAS's 32-bit sizes"
        column_bytes = column_elements(plan, 1) * plan.dtype.itemsize
        cap = f"(over its {GEMM_MAX_COLUMN_BYTES // 2**20} MiB cap)"
        if gemm_column_source(plan, direction) == IM2COL and column_bytes > GEMM_MAX_COLUMN_BYTES:
            if direction != TRANSPOSE:
                return (f"the GEMM algorithm would need {column_bytes / 2**20:.0f} MiB of "
                        f"columns per sample {cap}")
            if row_column_bytes(plan) > GEMM_MAX_COLUMN_BYTES:
                # the transposed GEMM runs a sample a block of rows at a time
                return (f"the GEMM algorithm would need {row_column_bytes(plan) / 2**20:.0f} "
                        f"MiB of columns per row {cap}")
    return None


def gemm_column_source(plan, direction):
    """Where a GEMM in ``direction`` gets its column matrix: :func:`column_source`'s
    answer, except IMPLICIT where an IM2COL convolution or weight gradient runs over the
    phase copy instead (:func:`implicit_convolution`, :func:`implicit_weight_gradient`).
    Only IM2COL builds columns (im2col/col2im) and so meets the column cap."""
    source = column_source(plan.geometry.lifted(3))
    if source == IM2COL and (
            (direction == CONVOLVE and implicit_convolution(plan))
            or (direction == WEIGHT_GRADIENT and implicit_weight_gradient(plan))):
        return IMPLICIT
    return source


def check_supported(plan, direction, algorithm):
    reason = unsupported(plan, direction, algorithm)
    if reason is not None:
        raise ValueError(reason)


def build_layout(plan, direction, algorithm):
    """The Layout of ``plan`` run in ``direction`` with ``algorithm`` (checked)."""
    # the GEMM kernel is part of the key: it decides the weight gradient's orientation
    return _build_layout(plan, direction, algorithm, _kernels.gemm_kernel())


@lru_cache(maxsize=512)
def _build_layout(plan, direction, algorithm, gemm_kernel):
    check_supported(plan, direction, algorithm)
    g = plan.geometry.lifted(3)
    axes = tuple(_axis_tables(g, a, a == 2 and algorithm == KERNEL_ROWS) for a in range(3))
    batch = _batch(plan)
    small_size, large_size = prod(g.small), prod(g.large)
    kernel_size = prod(g.kernel)
    gemm = algorithm == GEMM
    source = gemm_column_source(plan, direction) if gemm else IM2COL
    if source == IMPLICIT:
        return (_implicit_layout(plan, axes) if direction == CONVOLVE
                else _implicit_weight_gradient_layout(plan, axes))
    if direction == CONVOLVE and algorithm == DIRECT and grid_convolution(plan):
        return _grid_layout(plan, axes)
    if source != IM2COL:
        # BLAS reads the arrays in place: no workspace at all; samples are the chunks
        return Layout(
            direction=direction, algorithm=algorithm, batch=batch,
            c_small=plan.small_channels, c_large=plan.large_channels, groups=plan.groups,
            chunk=1, column_source=source, block_rows=1, phased_large=False, axes=axes,
            workspace=Workspace(product=plan.small_channels * batch
                                if whole_input_by_samples(plan, direction, source) else 0),
        )
    chunk = weight_gradient_chunk(plan) if direction == WEIGHT_GRADIENT else forward_chunk(plan)
    columns = plan.large_channels * kernel_size * chunk * small_size if gemm else 0
    block_rows = block_rows_per_gemm(plan, direction)
    if gemm and block_rows < g.small[0] * g.small[1]:
        # the kernels take a one-sample chunk a block of rows at a time
        columns = plan.large_channels * kernel_size * block_rows * g.small[2]
    if direction != TRANSPOSE and algorithm == DIRECT:
        padded = _zero_padded_x(g, axes[2])
        if padded is not None:
            axes = axes[:2] + (padded,)
    row_length = axes[2].row_length
    # the direct convolution reads phase-major rows; im2col reads the input in place
    phased_large = (direction != TRANSPOSE and not gemm
                    and (g.stride[-1] > 1 or row_length != g.large[-1]))
    phased = (batch * plan.large_channels * g.large[0] * g.large[1] * row_length
              if phased_large else 0)
    if direction == TRANSPOSE:
        # blocks of rows add into the sample's output planes, phase-major (``phased``;
        # threads own channels) instead of one plane per thread
        by_rows = gemm and block_rows < g.small[0] * g.small[1]
        workspace = Workspace(
            scratch=0 if by_rows else large_size,
            phased=plan.large_channels * large_size if by_rows else 0,
            packed=plan.small_channels * chunk * small_size if gemm and chunk > 1 else 0,
            columns=columns,
        )
    elif direction == CONVOLVE:
        # a one-sample chunk multiplies straight into the output (no product buffer)
        workspace = Workspace(phased=phased, columns=columns,
                              product=plan.small_channels * chunk * small_size
                              if gemm and chunk > 1 else 0)
    else:
        # the gradient accumulated transposed, in a weight-sized product (see
        # _weight_grad_product), where weight_gradient_by_channels says so
        depth = (plan.large_channels // plan.groups) * kernel_size
        by_channels = gemm and weight_gradient_by_channels(plan)
        workspace = Workspace(phased=phased, columns=columns,
                              packed=plan.small_channels * chunk * small_size
                              if gemm and not weight_gradient_per_sample(plan) else 0,
                              product=plan.small_channels * depth if by_channels else 0)
    return Layout(
        direction=direction, algorithm=algorithm, batch=batch,
        c_small=plan.small_channels, c_large=plan.large_channels, groups=plan.groups,
        chunk=chunk if gemm else 1, column_source=IM2COL, block_rows=block_rows,
        phased_large=phased_large,
        axes=axes,
        workspace=workspace,
    )


# ---------------------------------------------------------------------------
# The implicit-GEMM convolution (ColumnSource IMPLICIT)

# Its weight panels are swept once per block of grid positions: past this many bytes
# per group they no longer stay in the L2 cache from one block to the next (timed, 1
# thread: dcgan3's adjoint, 2 MiB, ran 1.27x slower than im2col; vnet3d's, 216 KiB,
# 1.25x faster, dilated's, 36 KiB, 1.5x).
IMPLICIT_MAX_WEIGHT_BYTES = 512 * 1024
# Grid positions computed per output position (the padded rows' tails, computed and
# dropped) above which im2col's exact columns cost less.
IMPLICIT_MAX_WASTE = 1.25
# im2col writes each input element about prod(kernel) prod(small) / prod(large) times;
# the implicit convolution copies it once.  With no overlap to save (kernel = stride:
# unet_up2's 2 x 2 / 2) the copy only adds a pass (1.4x slower); with overlap it wins.
IMPLICIT_MIN_REPLICATION = 2
# The panels of a block of grid positions are taken this many bytes at a time, so
# they stay in L2 while the block's tiles sweep them.
IMPLICIT_PANEL_BYTES = 256 * 1024
# the grid convolution's pass: the output grids it holds (L2-sized with the runs below),
# and the runs of the phase copy it reads at a time (at least 16 columns, so that
# loading and storing the grids stays small beside the multiply-adds)
GRID_PASS_BYTES = 128 * 1024
GRID_RUNS_BYTES = 256 * 1024
GRID_MIN_DEPTH_BLOCK = 16
# Own-GEMM tiles (MR grid positions each) per thread's piece of work.
IMPLICIT_TILES_PER_BLOCK = 8


def _phase_shifts(k, s, d, pad):
    """One axis: tap t reads large position s*o + t*d - pad = s*(o + q_t) + r_t.
    Returns (q_t - min q, r_t, min q, max q - min q: the padded length's excess)."""
    reach = np.arange(k) * d - pad
    q = reach // s
    r = reach - q * s
    q_min = int(q.min())
    return q - q_min, r, q_min, int(q.max()) - q_min


def _phase_split(small, large, k, s, d, pad):
    """One axis of the phase copy: (q_t - min q, r_t, padded length P,
    phase_source[r * P + m], phase_runs): phase r's valid positions are one run
    [m0, m1), natural m0's source + (m - m0) s (phase_runs[r] = (m0, m1, that source;
    0 for an empty run))."""
    q, r, q_min, excess = _phase_shifts(k, s, d, pad)
    length = small + excess
    natural = s * (np.arange(length)[None, :] + q_min) + np.arange(s)[:, None]
    valid = (natural >= 0) & (natural < large)
    source = np.where(valid, natural, -1)
    runs = []
    for phase in range(s):
        m = np.flatnonzero(valid[phase])
        runs.append((int(m[0]), int(m[-1]) + 1, int(natural[phase, m[0]])) if m.size
                    else (0, 0, 0))
    return q, r, length, _intp(source.ravel()), _intp(np.array(runs).ravel())


def _padded_extents(g):
    """Per axis (lifted geometry): the padded length P of the phase copy."""
    return tuple(small + _phase_shifts(k, s, d, pad)[3]
                 for small, k, s, d, pad in zip(g.small, g.kernel, g.stride, g.dilation,
                                                g.pad_begin))


def implicit_extents(plan):
    """(grid positions per sample, phase-copy elements per channel) of an implicit
    convolution of ``plan``."""
    g = plan.geometry.lifted(3)
    extents = _padded_extents(g)
    oz, oy, ox = g.small
    pz, py, px = extents
    return ((oz - 1) * py + oy - 1) * px + ox, prod(g.stride) * prod(extents)


def implicit_convolution(plan):
    """Whether a GEMM convolution (IM2COL source) runs IMPLICIT instead: with the own
    GEMM, when a group's weight stays in L2 (IMPLICIT_MAX_WEIGHT_BYTES), the padded
    grid computes at most IMPLICIT_MAX_WASTE positions per output, and the phase copy
    is at most twice the input (a stride beyond the input's extent pads it with
    whole zero planes)."""
    if _kernels.gemm_kernel() != "own":
        return False
    g = plan.geometry.lifted(3)
    if column_source(g) != IM2COL:
        return False
    depth = (plan.large_channels // plan.groups) * prod(g.kernel)
    weight_bytes = (plan.small_channels // plan.groups) * depth * plan.dtype.itemsize
    copy = implicit_extents(plan)[1]
    positions = implicit_tiling(plan)[1]
    replication = prod(g.kernel) * prod(g.small) / prod(g.large)
    return (weight_bytes <= IMPLICIT_MAX_WEIGHT_BYTES
            and replication >= IMPLICIT_MIN_REPLICATION
            and positions <= IMPLICIT_MAX_WASTE * prod(g.small)
            and copy <= 2 * prod(g.large))


def implicit_tiling(plan):
    """How the implicit convolution's tiles cover one sample's padded grid:
    ``(tile_restart, computed positions, tiles)``.

    Along the grid the tiles run on through the padded rows' and planes' tails, which
    are computed and dropped; restarted at each output plane they skip the planes'
    tail rows; restarted at each output row they skip the rows' tails too.  A restart
    cuts the run before it to a vector or a whole tile.  Whichever computes fewest
    positions: rows of a multiple of the tile (a dilated 32-wide layer: 1024
    positions against the grid's 1148), planes for a 3-D layer of short rows (a 12 x
    16 x 12 output: 2496 against 2640 along the grid, 3072 by rows)."""
    g = plan.geometry.lifted(3)
    mr, _ = _kernels.own_gemm_tile(plan.dtype.itemsize)
    lanes = 64 // plan.dtype.itemsize
    oz, oy, ox = g.small
    _, py, px = _padded_extents(g)

    def run(length):  # (positions computed, tiles) of one run of grid positions
        whole, rest = divmod(length, mr)
        return (whole * mr + (0 if rest == 0 else lanes if rest <= lanes else mr),
                whole + (rest > 0))

    options = []
    for restart, runs, length in ((TILES_ALONG_GRID, 1, implicit_extents(plan)[0]),
                                  (TILES_PER_PLANE, oz, (oy - 1) * px + ox),
                                  (TILES_PER_ROW, oz * oy, ox)):
        computed, tiles = run(length)
        options.append((runs * computed, restart, runs * tiles))
    computed, restart, tiles = min(options)  # ties: the fewest restarts
    return restart, computed, tiles


def _odd_lines_pitch(elements, itemsize, min_bytes):
    """The pitch of rows of ``elements``: from ``min_bytes`` on, whole cache lines and an
    odd number of them, so that the rows' starts do not all fall in a few L1 sets."""
    if elements * itemsize < min_bytes:
        return elements
    lines = -(-elements * itemsize // 64)
    return (lines + 1 - lines % 2) * 64 // itemsize


def _round_up(n, multiple):
    return -(-n // multiple) * multiple


def _phase_tables(plan, axes):
    """The tables of a convolution whose columns are runs of a phase copy (column
    source IMPLICIT): the large input is copied per (sample, channel) into one
    zero-padded plane of P_z x P_y x P_x per stride phase r = (r_z, r_y, r_x); along
    the padded output grid u = (o_z P_y + o_y) P_x + o_x, the column of (channel, tap)
    is then one contiguous run of the copy, starting at a_offset.  out_offset[u] is
    the output position of grid position u, -1 in the padded rows' tails (computed
    and dropped).  Returns the Layout's keyword arguments shared by both algorithms
    and the elements of one channel's copy."""
    g = plan.geometry.lifted(3)
    splits = [_phase_split(*axis) for axis in zip(g.small, g.large, g.kernel, g.stride,
                                                   g.dilation, g.pad_begin)]
    (qz, rz, pz, _, _), (qy, ry, py, _, _), (qx, rx, px, _, _) = splits
    axes = tuple(dataclasses.replace(tables, padded=split[2], phase_source=split[3],
                                     phase_runs=split[4])
                 for tables, split in zip(axes, splits))
    plane = pz * py * px
    # planes an odd number of cache lines apart: at a multiple of 4 KiB the runs one
    # tile reads (one per channel and tap) would all fall in one L1 set (unet_up2's
    # 64 x 64 phase planes ran 1.35x slower)
    plane_pitch = _odd_lines_pitch(plane, plan.dtype.itemsize, 4096)
    sz, sy, sx = g.stride
    phase = (rz[:, None, None] * sy + ry[None, :, None]) * sx + rx[None, None, :]
    shift = (qz[:, None, None] * py + qy[None, :, None]) * px + qx[None, None, :]
    pitch = sz * sy * sx * plane_pitch
    channels = plan.large_channels // plan.groups
    a_offset = (np.arange(channels)[:, None] * pitch
                + (phase * plane_pitch + shift).ravel()).ravel()
    oz, oy, ox = g.small
    u = np.arange(implicit_extents(plan)[0])
    z, rest = np.divmod(u, py * px)
    y, x = np.divmod(rest, px)
    out_offset = np.where((y < oy) & (x < ox), (z * oy + y) * ox + x, -1)
    fields = dict(
        direction=CONVOLVE, batch=_batch(plan), c_small=plan.small_channels,
        c_large=plan.large_channels, groups=plan.groups, column_source=IMPLICIT,
        block_rows=1, phased_large=False, axes=axes, a_offset=_intp(a_offset),
        out_offset=_intp(out_offset), positions=u.size, phase_pitch=plane_pitch)
    return fields, pitch


def grid_convolution(plan):
    """Whether a DIRECT convolution runs over the padded grid (:func:`_grid_layout`)
    rather than row by row: wherever its grid and its phase copy stay within twice
    the output and input planes (the workspace bound).  There it ran at 1.003 of the
    faster of the two (geomean, worst 1.32) on the 152 direct convolutions of
    ``calibrate_auto.py --grid`` (seeds 1-3, one thread), the rows at 2.1 (worst 45):
    every run is a whole vector of grid positions, where a row kernel's rows are
    often shorter than a vector and clipped at the edges."""
    g = plan.geometry.lifted(3)
    positions, copy = implicit_extents(plan)
    return positions <= 2 * prod(g.small) and copy <= 2 * prod(g.large)


def _implicit_layout(plan, axes):
    """The Layout of a GEMM convolution with column source IMPLICIT (see
    :func:`_phase_tables`): one sample's whole copy, then the own GEMM's tiles."""
    fields, pitch = _phase_tables(plan, axes)
    mr, nr = _kernels.own_gemm_tile(plan.dtype.itemsize)
    cout_g = plan.small_channels // plan.groups
    depth = fields["a_offset"].size
    panel_size = -(-cout_g // nr) * nr * depth
    restart, _, tiles = implicit_tiling(plan)
    # a small plane in blocks of fewer tiles, so that two threads share it evenly; the
    # blocks are of grid positions, or of the output planes or rows the tiles restart at
    tiles_per_block = max(1, min(IMPLICIT_TILES_PER_BLOCK, -(-tiles // 4)))
    small = plan.geometry.lifted(3).small
    if restart == TILES_ALONG_GRID:
        u_block = mr * tiles_per_block
    else:
        runs = small[0] if restart == TILES_PER_PLANE else small[0] * small[1]
        u_block = max(1, tiles_per_block * runs // tiles)
    return Layout(
        algorithm=GEMM, chunk=fields["batch"], **fields,
        # the copy is per thread (scratch): threads take whole samples when they can
        workspace=Workspace(scratch=plan.large_channels * pitch + _kernels.PHASE_TAIL,
                            packed=plan.groups * panel_size),
        tile_restart=restart, u_block=u_block,
        panel_block=max(1, IMPLICIT_PANEL_BYTES // (depth * nr * plan.dtype.itemsize)),
    )


def _grid_layout(plan, axes):
    """The Layout of a DIRECT convolution with column source IMPLICIT (see
    :func:`_phase_tables`): per thread, one group's copy and the grids of one pass's
    output channels, in whole vectors.  A pass holds as many channels' grids as fit
    GRID_PASS_BYTES and reads GRID_RUNS_BYTES of runs of the copy at a time, so the
    runs stay in cache while every channel of the pass reads them."""
    fields, pitch = _phase_tables(plan, axes)
    itemsize = plan.dtype.itemsize
    step = _kernels.GRID_BLOCK["vectors"] * 64 // itemsize
    per_call = _kernels.GRID_BLOCK["channels"]
    grid_pitch = -(-fields["positions"] // step) * step
    cout_g = plan.small_channels // plan.groups
    fit = max(1, GRID_PASS_BYTES // (grid_pitch * itemsize * per_call))
    grid_channels = per_call * min(fit, -(-cout_g // per_call))
    depth = fields["a_offset"].size
    depth_block = min(depth, max(GRID_MIN_DEPTH_BLOCK,
                                 GRID_RUNS_BYTES // (fields["positions"] * itemsize)))
    channels = plan.large_channels // plan.groups
    return Layout(
        algorithm=DIRECT, chunk=1, **fields, grid_pitch=grid_pitch,
        grid_channels=grid_channels, depth_block=depth_block,
        workspace=Workspace(scratch=channels * pitch + _kernels.PHASE_TAIL
                            + grid_channels * grid_pitch))


# ---------------------------------------------------------------------------
# The weight gradient over the phase copy (WEIGHT_GRADIENT, GEMM, column source
# IMPLICIT): product_g[(cl, t), cs] = sum over positions of small[cs] * column[(cl, t)],
# the columns being the runs of the implicit convolution's phase copy and the small
# side channels-last -- no im2col, no packing (stc_wgrad_implicit).

# Small-side positions per reduction block: the block's channels-last rows stay in L2
# (at most WEIGHT_GRADIENT_BLOCK_BYTES) while the (channel, tap) tiles sweep them, and
# each tile's twelve runs of the block in L1.
WEIGHT_GRADIENT_BLOCK_POSITIONS = 1024
WEIGHT_GRADIENT_BLOCK_BYTES = 512 * 1024
# Pieces of work wanted per block, so that threads share even a narrow gradient.
WEIGHT_GRADIENT_MIN_ITEMS = 8
# What each choice adds to the multiply-adds, in their units: the implicit kernel
# costs about this many positions of a tile per small-side row (its runs set up per
# row, or on short rows an offset table read per position, and the rows' ends);
# im2col writes and packs each column element (the GEMM then spends a group's small
# channels of multiply-adds on it) at about this many multiply-adds' cost.
WEIGHT_GRADIENT_ROW_SETUP_POSITIONS = 2
WEIGHT_GRADIENT_IM2COL_ELEMENT_MACS = 32
# A group's small channels padded to whole tiles: at most this many times as many.
WEIGHT_GRADIENT_MAX_PADDING = 4


def _weight_gradient_tile(plan):
    """(small channels, (channel, tap) rows) of a tile of stc_wgrad_implicit."""
    tile = _kernels.WEIGHT_GRADIENT_TILE
    return tile["channel_bytes"] // plan.dtype.itemsize, tile["rows"]


def _weight_gradient_padded_channels(plan):
    """A group's small channels rounded up to whole tiles (as the kernel rounds them)."""
    return _round_up(plan.small_channels // plan.groups, _weight_gradient_tile(plan)[0])


def implicit_weight_gradient(plan):
    """Whether a GEMM weight gradient (IM2COL source) runs over the phase copy instead
    of im2col: where its overhead -- the runs set up per small-side row, the small
    channels padded to whole tiles -- is below im2col's, whose columns replicate each
    large-side element prod(kernel) prod(small) / prod(large) times, each costing
    WEIGHT_GRADIENT_IM2COL_ELEMENT_MACS against a group's small channels of useful
    multiply-adds; where the phase copy stays within twice the large side and the
    padded channels within WEIGHT_GRADIENT_MAX_PADDING times a group's.

    Timed (one thread, 18 random layers and the suite's GEMM layers): the implicit
    kernel ran 0.33-0.97x im2col's time where this chooses it (dilated 0.35x, a 3-D
    decoder layer 0.5x, dcgan3 0.9x), and im2col 0.83-0.97x the implicit's on the
    layers with rows of 3-8 positions and 320-512 channels where it does not (one
    miss: 8 x 15 rows of 320 channels, the implicit 0.91x)."""
    g = plan.geometry.lifted(3)
    if implicit_extents(plan)[1] > 2 * prod(g.large):
        return False
    cs_g = plan.small_channels // plan.groups
    padded = _weight_gradient_padded_channels(plan)
    if padded > WEIGHT_GRADIENT_MAX_PADDING * cs_g:
        return False  # mostly padding lanes, and a channels-last copy as large
    implicit = (1 + WEIGHT_GRADIENT_ROW_SETUP_POSITIONS / g.small[2]) * padded / cs_g - 1
    replication = prod(g.kernel) * prod(g.small) / prod(g.large)
    im2col = WEIGHT_GRADIENT_IM2COL_ELEMENT_MACS * replication / cs_g
    return implicit <= im2col


def _implicit_weight_gradient_layout(plan, axes):
    """The Layout of a weight gradient over the phase copy: ``chunk`` samples at a
    time, their phase copies (``phased``, as the implicit convolution's) and their small
    side channels-last (``packed``: grid_pitch elements per position, each group's
    channels padded to whole tiles), reduced block_rows small-side rows at a time into
    a transposed product; threads take pieces of depth_block (channel, tap) rows by
    grid_channels small channels."""
    fields, pitch = _phase_tables(plan, axes)
    g = plan.geometry.lifted(3)
    itemsize = plan.dtype.itemsize
    mr, nr = _weight_gradient_tile(plan)
    cs_pad = _weight_gradient_padded_channels(plan)
    depth = fields["a_offset"].size
    oz, oy, ox = g.small
    positions = max(ox, min(WEIGHT_GRADIENT_BLOCK_POSITIONS,
                            WEIGHT_GRADIENT_BLOCK_BYTES // (cs_pad * itemsize)))
    block_rows = max(1, positions // ox)
    batch = _batch(plan)
    chunk = max(1, min(batch, -(-block_rows // (oz * oy))))
    parts = -(-WEIGHT_GRADIENT_MIN_ITEMS // plan.groups)
    depth_block = max(nr, _round_up(-(-depth // parts), nr))
    pieces = plan.groups * -(-depth // depth_block)
    channel_parts = max(1, min(-(-WEIGHT_GRADIENT_MIN_ITEMS // (2 * pieces)), cs_pad // mr))
    channels = _round_up(-(-cs_pad // channel_parts), mr)
    fields.update(direction=WEIGHT_GRADIENT, block_rows=block_rows)
    # positions an odd number of cache lines apart: at a multiple of 1 KiB a tile's
    # reads of consecutive positions fall in a few L1 sets and evict each other
    st_pitch = _odd_lines_pitch(plan.groups * cs_pad, itemsize, 512)
    return Layout(
        algorithm=GEMM, chunk=chunk, **fields, grid_pitch=st_pitch,
        grid_channels=channels, depth_block=depth_block, small_channels_padded=cs_pad,
        workspace=Workspace(phased=chunk * plan.large_channels * pitch + _kernels.PHASE_TAIL,
                            packed=chunk * prod(g.small) * st_pitch,
                            product=plan.groups * depth * cs_pad))
