"""Backend "direct": index tables, workspaces and algorithm choice for ``_kernels``.

A :class:`KernelSetup` is everything the compiled kernels need besides the arrays:
the geometry padded to 3-D with unit axes, the per-axis (tap, source position) lists
of the outer axes, the phase offsets of the innermost axis and the workspace sizes.
It depends only on the plan and the algorithm, so it is computed once and cached.

Algorithms (see ``choose_algorithm`` for the rule ``"auto"`` uses):

- ``DIRECT`` (0): each thread owns output rows and accumulates ``weight * input``
  runs in a phase-major scratch row; no intermediate beyond one row per thread.
- ``KERNEL_ROWS`` (1): transposed only, stride-1-dilation kernels longer than the
  input row (FCN-32s): one contiguous kernel row per input element.
- ``GEMM`` (2): BLAS GEMM over all channels of a group (``columns = W^T X`` for the
  transpose, ``W @ im2col(x)`` for the convolution), then col2im over owned rows.
"""

import threading
from dataclasses import dataclass
from functools import lru_cache
from math import prod

import numpy as np

from . import _kernels
from ._threads import BLAS_THREAD_HOOK, current_threads
from .matrix import _axis_relation
from .shapes import Geometry

DIRECT, KERNEL_ROWS, GEMM = 0, 1, 2
ALGORITHMS = {"direct": DIRECT, "kernel_rows": KERNEL_ROWS, "gemm": GEMM}
# Weight-gradient algorithms (kernel ids shared with _kernels.pyx).
WEIGHT_GRAD_DIRECT, WEIGHT_GRAD_GEMM = 4, 5

# Below this many useful flops per thread, extra threads cost more than they give.
FLOPS_PER_THREAD = 2_000_000
# GEMM columns per transposed-convolution chunk (see kernel_setup).
GEMM_MIN_WIDTH = 512
_BLAS_INT_MAX = 2**31 - 1


@dataclass(frozen=True, eq=False)
class KernelSetup:
    geo: np.ndarray          # 18 intp: small, large, kernel, stride, dilation, pad_begin
    tables: tuple            # intp arrays, see _kernels (_conv_transpose_planes, _conv_rows)
    sizes: tuple             # ints, see the same
    algorithm: int
    workspace: tuple         # 3 element counts; see Executor.per_thread


def _padded(geometry):
    """The geometry as 3-D, with unit leading axes for rank 1 and 2."""
    lead = 3 - geometry.rank
    ones, zeros = (1,) * lead, (0,) * lead
    return Geometry(
        small=ones + geometry.small, large=ones + geometry.large,
        kernel=ones + geometry.kernel, stride=ones + geometry.stride,
        dilation=ones + geometry.dilation, pad_begin=zeros + geometry.pad_begin,
        pad_end=zeros + geometry.pad_end, output_padding=zeros + geometry.output_padding,
    )


def _phase_index(q, stride, phase_len):
    """Where uncropped position q lives in a phase-major axis: (q % s)*M + q // s."""
    return (q % stride) * phase_len + q // stride


# The GEMM path's column buffer (per thread, per chunk of samples) may not exceed this.
GEMM_MAX_COLUMN_BYTES = 128 * 2**20


def choose_algorithm(plan):
    """The ``"auto"`` rule (measured with benchmarks/bench_suite.py --algorithms).

    1. GEMM when a group has at least 16 (input x output) channel pairs and one
       chunk's column buffer fits in GEMM_MAX_COLUMN_BYTES (128 MiB).  BLAS runs at
       75-95 GFLOP/s per core, the direct kernels (which vectorise over one input row
       at a time) at 5-25: dcgan5 (64 x 3 channels) GEMM 1.7 ms, direct 5 ms; dcgan1-4,
       unet, melgan, vnet3d, dilated: GEMM 3-30x faster; fcn32 (88 MB of columns)
       25 ms against 35-95 ms for kernel rows.
    2. Otherwise, for a transposed convolution whose kernel row is longer than its
       input row (stride-1 dilation), KERNEL_ROWS: one contiguous kernel row per input
       element (its speed varies 3x between processes with how the weight and scratch
       addresses alias in the cache, so it only serves when GEMM's columns are too big).
    3. Otherwise DIRECT: few channels (depthwise: 1.9 ms against GEMM's 3.5 ms) and
       seed-sized calls, where there is nothing for BLAS to amortise.
    """
    g = plan.geometry
    pairs = (plan.small_channels // plan.groups) * (plan.large_channels // plan.groups)
    if pairs >= 16 and _gemm_column_bytes(plan) <= GEMM_MAX_COLUMN_BYTES and _blas_sizes_ok(plan):
        return GEMM
    if plan.transposed and g.dilation[-1] == 1 and g.kernel[-1] > g.small[-1]:
        return KERNEL_ROWS
    return DIRECT


def _gemm_chunk(plan):
    """Samples per GEMM chunk: enough columns for BLAS to run at speed, few enough that
    a chunk's columns are still in cache when col2im reads them (transposed)."""
    batch = 1 if plan.batch is None else plan.batch
    return min(batch, -(-GEMM_MIN_WIDTH // prod(plan.geometry.small)))


def _gemm_column_bytes(plan):
    """One chunk's column buffer: (large-side channels x taps) x (chunk x small positions),
    in both directions (im2col of the input for a convolution, W^T X for its transpose)."""
    g = plan.geometry
    elements = plan.large_channels * prod(g.kernel) * _gemm_chunk(plan) * prod(g.small)
    return elements * plan.dtype.itemsize


def _blas_sizes_ok(plan):
    """BLAS takes 32-bit ints: every GEMM operand must stay below 2**31 elements."""
    g = plan.geometry
    batch = 1 if plan.batch is None else plan.batch
    width = batch * prod(g.small)
    depth = (plan.large_channels // plan.groups) * prod(g.kernel)
    rows = max(plan.small_channels, plan.large_channels) * prod(g.kernel)
    return max(width * rows, width * depth, plan.large_channels * prod(g.large)) <= _BLAS_INT_MAX


@lru_cache(maxsize=512)
def kernel_setup(plan, algorithm):
    """Index tables, sizes and workspace sizes for ``plan`` run with ``algorithm``."""
    g = _padded(plan.geometry)
    batch = 1 if plan.batch is None else plan.batch
    width = batch * prod(g.small)
    geo = np.array(g.small + g.large + g.kernel + g.stride + g.dilation + g.pad_begin,
                   dtype=np.intp)
    if plan.transposed:
        tables, plane_len, strides = _transpose_tables(g, algorithm)
        size = prod(g.small)
        chunk = _gemm_chunk(plan)
        sizes = (batch, plan.in_channels, plan.out_channels, plan.groups, plane_len) + strides
        sizes += (chunk,)
        gemm = algorithm == GEMM
        workspace = (                                               # all per thread
            plane_len,                                                       # scratch plane
            plan.small_channels * chunk * size if gemm and chunk > 1 else 0,  # packed input
            plan.large_channels * prod(g.kernel) * chunk * size if gemm else 0,  # columns
        )
    else:
        tables, phase_len = _conv_tables(g)
        chunk = _gemm_chunk(plan)
        sizes = (batch, plan.in_channels, plan.out_channels, plan.groups, phase_len, chunk)
        gemm = algorithm == GEMM
        size = prod(g.small)
        workspace = (
            batch * plan.large_channels * g.large[0] * g.large[1] * g.stride[2] * phase_len,
            plan.large_channels * prod(g.kernel) * chunk * size if gemm else 0,  # columns
            plan.small_channels * chunk * size if gemm else 0,                   # product
        )
    tables = tuple(np.ascontiguousarray(t, dtype=np.intp) for t in tables)
    return KernelSetup(geo=geo, tables=tables, sizes=sizes, algorithm=algorithm,
                       workspace=workspace)


def _transpose_tables(g, algorithm):
    """Scratch-plane layout of the transposed kernel: tap offsets and output maps.

    On each axis the scratch holds the uncropped output (and whatever output_padding
    or "same" adds past it) in phase-major order; with KERNEL_ROWS the x axis stays
    in natural order so a kernel row is a contiguous run.
    """
    offsets, maps, totals = [], [], []
    for axis in range(3):
        s, d, k = g.stride[axis], g.dilation[axis], g.kernel[axis]
        small, large, pad = g.small[axis], g.large[axis], g.pad_begin[axis]
        span = max((small - 1) * s + (k - 1) * d + 1, large + pad)
        taps, outputs = np.arange(k) * d, np.arange(large) + pad
        if axis == 2 and algorithm == KERNEL_ROWS:
            offsets.append(taps)
            maps.append(outputs)
            totals.append(span)
        else:
            phase_len = -(-span // s)
            offsets.append(_phase_index(taps, s, phase_len))
            maps.append(_phase_index(outputs, s, phase_len))
            totals.append(s * phase_len)
    z_stride, y_stride = totals[1] * totals[2], totals[2]
    scale = (z_stride, y_stride, 1)
    tables = [o * f for o, f in zip(offsets, scale)] + [m * f for m, f in zip(maps, scale)]
    return tables, prod(totals), (z_stride, y_stride)


def _conv_tables(g):
    """Gather lists of the outer axes and phase offsets of the x taps (convolution)."""
    z_ptr, z_src, z_tap = _axis_relation(g, 0, True)
    y_ptr, y_src, y_tap = _axis_relation(g, 1, True)
    s, d, k = g.stride[2], g.dilation[2], g.kernel[2]
    phase_len = -(-((g.small[2] - 1) * s + (k - 1) * d + 1) // s)
    phase_off = _phase_index(np.arange(k) * d, s, phase_len)
    return (z_ptr, z_tap, z_src, y_ptr, y_tap, y_src, phase_off, np.zeros(k)), phase_len


_local = threading.local()
# Workspaces up to this many elements are allocated per call (cheap, never faulted
# twice); larger ones are kept per Python thread and reused.
SMALL_WORKSPACE = 1 << 16


def _workspace(slot, size, dtype):
    """A buffer of ``size`` elements; large ones are reused per Python thread."""
    if size <= SMALL_WORKSPACE:
        return np.empty(size, dtype=dtype)
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    key = (slot, dtype)
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        buffers[key] = buffer = np.empty(size, dtype=dtype)
    return buffer[:size]


class Executor:
    """Backend "direct" for one plan: everything decided up front, a short call path.

    Calling it with ``(x, w, b)`` converts the arrays only when they are not already
    C-contiguous in the computing dtype, allocates the output, picks the thread count
    (the current setting, capped by the work: ``FLOPS_PER_THREAD`` per thread) and runs
    the prepared :class:`_kernels.Kernel` with the GIL released.
    """

    __slots__ = ("plan", "algorithm", "kernel", "dtype", "output_shape", "max_threads",
                 "workspace", "per_thread", "chunks")

    def __init__(self, plan, algorithm=None):
        if algorithm is None:
            algorithm = choose_algorithm(plan)
        setup = kernel_setup(plan, algorithm)
        self.plan = plan
        self.algorithm = algorithm
        self.kernel = _kernels.Kernel(plan.transposed, algorithm, setup.geo, setup.tables,
                                      setup.sizes)
        self.dtype = plan.dtype
        self.output_shape = plan.output_shape
        self.max_threads = max(1, plan.flops // FLOPS_PER_THREAD)
        self.workspace = setup.workspace
        # Transposed: scratch planes and GEMM chunks are per thread; convolution: the
        # phased input is shared, the GEMM chunk buffers are per thread.
        self.per_thread = (True, True, True) if plan.transposed else (False, True, True)
        # GEMM buffers are per thread only when threads take whole chunks (see the kernels).
        batch = 1 if plan.batch is None else plan.batch
        self.chunks = -(-batch // _gemm_chunk(plan))

    def __call__(self, x, w, b):
        dtype = self.dtype
        if x.dtype is not dtype or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=dtype)
        if w.dtype is not dtype or not w.flags.c_contiguous:
            w = np.ascontiguousarray(w, dtype=dtype)
        if b is not None and (b.dtype is not dtype or not b.flags.c_contiguous):
            b = np.ascontiguousarray(b, dtype=dtype)
        out = np.empty(self.output_shape, dtype=dtype)
        n_threads = current_threads()
        if n_threads > self.max_threads:
            n_threads = self.max_threads
        per_chunk = n_threads if self.chunks >= n_threads and BLAS_THREAD_HOOK else 1
        copies = [n_threads if self.per_thread[0] else 1, per_chunk, per_chunk]
        self.kernel(out, x, w, b,
                    *(_workspace(slot, size * count, dtype) if size else None
                      for slot, (size, count) in enumerate(zip(self.workspace, copies))),
                    n_threads, n_threads if BLAS_THREAD_HOOK else 1)
        return out


def run(plan, x, w, b, algorithm=None):
    """Compute ``plan`` on the compiled kernels (uncached; see :class:`Executor`)."""
    return Executor(plan, algorithm)(x, w, b)


def weight_grad_algorithm(plan):
    """GEMM for the weight gradient under the same conditions as the forward rule."""
    pairs = (plan.small_channels // plan.groups) * (plan.large_channels // plan.groups)
    if (pairs >= 16 and _weight_grad_chunk(plan) >= 1 and _blas_sizes_ok(plan)):
        return WEIGHT_GRAD_GEMM
    return WEIGHT_GRAD_DIRECT


def _weight_grad_chunk(plan):
    """Samples per weight-gradient GEMM: as many as fit GEMM_MAX_COLUMN_BYTES (0: none)."""
    g = plan.geometry
    batch = 1 if plan.batch is None else plan.batch
    per_sample = plan.large_channels * prod(g.kernel) * prod(g.small) * plan.dtype.itemsize
    return min(batch, GEMM_MAX_COLUMN_BYTES // per_sample)


class WeightGradient:
    """The weight gradient of ``plan``'s operator on the compiled kernels.

    ``grad_w[cs, cl, t] = sum over n, o of S[n, cs, o] * L[n, group*Cl_g + cl, o*s - pad + t*d]``
    with S the small side (a transposed convolution's input, or a convolution's output
    gradient) and L the large side (the output gradient, or the input): one correlation
    kernel serves both directions.  Calling it with ``(small, large)`` returns
    ``grad_w`` in the weight's layout ``(C_small, C_large // groups, *kernel)``.
    """

    __slots__ = ("kernel", "dtype", "shape", "max_threads", "workspace")

    def __init__(self, plan, algorithm=None):
        if algorithm is None:
            algorithm = weight_grad_algorithm(plan)
        g = _padded(plan.geometry)
        batch = 1 if plan.batch is None else plan.batch
        tables, phase_len = _conv_tables(g)
        chunk = max(1, _weight_grad_chunk(plan))
        sizes = (batch, plan.small_channels, plan.large_channels, plan.groups, phase_len, chunk)
        geo = np.array(g.small + g.large + g.kernel + g.stride + g.dilation + g.pad_begin,
                       dtype=np.intp)
        tables = tuple(np.ascontiguousarray(t, dtype=np.intp) for t in tables)
        self.kernel = _kernels.Kernel(False, algorithm, geo, tables, sizes)
        self.dtype = plan.dtype
        self.shape = ((plan.small_channels, plan.large_channels // plan.groups)
                      + plan.geometry.kernel)
        self.max_threads = max(1, plan.flops // FLOPS_PER_THREAD)
        gemm = algorithm == WEIGHT_GRAD_GEMM
        self.workspace = (
            batch * plan.large_channels * g.large[0] * g.large[1] * g.stride[2] * phase_len,
            plan.small_channels * chunk * prod(g.small) if gemm else 0,        # packed S
            plan.large_channels * prod(g.kernel) * chunk * prod(g.small) if gemm else 0,
        )

    def __call__(self, small, large):
        dtype = self.dtype
        small = np.ascontiguousarray(small, dtype=dtype)
        large = np.ascontiguousarray(large, dtype=dtype)
        out = np.empty(self.shape, dtype=dtype)
        n_threads = min(current_threads(), self.max_threads)
        self.kernel(out, small, large, None,
                    *(_workspace(3 + slot, size, dtype) if size else None
                      for slot, size in enumerate(self.workspace)),
                    n_threads, n_threads if BLAS_THREAD_HOOK else 1)
        return out
