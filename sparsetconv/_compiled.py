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
from ._threads import BLAS_THREAD_HOOK, get_num_threads
from .matrix import _axis_relation
from .shapes import Geometry

DIRECT, KERNEL_ROWS, GEMM = 0, 1, 2
ALGORITHMS = {"direct": DIRECT, "kernel_rows": KERNEL_ROWS, "gemm": GEMM}

# Below this many useful flops per thread, extra threads cost more than they give.
FLOPS_PER_THREAD = 2_000_000
_BLAS_INT_MAX = 2**31 - 1


@dataclass(frozen=True, eq=False)
class KernelSetup:
    geo: np.ndarray          # 18 intp: small, large, kernel, stride, dilation, pad_begin
    tables: tuple            # 8 intp arrays, see _kernels.conv_transpose / conv
    phase_len: int
    scratch_len: int         # per thread (transposed) / unused (conv)
    algorithm: int
    workspace: tuple         # element counts of the large workspaces


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


def _phase_offsets(kernel, stride, dilation, phase_len):
    """Scratch offset of tap k: position q = k*dilation lives at (q % s)*M + q // s."""
    q = np.arange(kernel, dtype=np.intp) * dilation
    return (q % stride) * phase_len + q // stride


def choose_algorithm(plan):
    """The ``"auto"`` rule: GEMM when a group's channel product makes BLAS pay off.

    BLAS sustains ~80-100 GFLOP/s per core when its smallest dimension is at least a
    few dozen, but the transposed GEMM also writes and re-reads ``C_out*K*N*in``
    columns; the direct kernels run at roughly a fifth of that rate yet touch each
    output only once per contribution.  Measured on the benchmark suite
    (benchmarks/bench_suite.py), GEMM wins once ``C_in/groups`` and
    ``C_out/groups`` are both >= 8 and their product is >= 256.
    """
    g = plan.geometry
    per_group_small = plan.small_channels // plan.groups
    per_group_large = plan.large_channels // plan.groups
    gemm_ok = (per_group_small >= 8 and per_group_large >= 8
               and per_group_small * per_group_large >= 256)
    if gemm_ok and _blas_sizes_ok(plan):
        return GEMM
    if plan.transposed and g.dilation[-1] == 1 and g.kernel[-1] > g.small[-1]:
        return KERNEL_ROWS
    return DIRECT


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
    """Index tables and workspace sizes for ``plan`` run with ``algorithm``."""
    g = _padded(plan.geometry)
    # Outer axes: for each output position, its (tap, source position) pairs.
    # Transposed: outputs are the large side; convolution: the small side.
    rows_small = not plan.transposed
    z_ptr, z_src, z_tap = _axis_relation(g, 0, rows_small)
    y_ptr, y_src, y_tap = _axis_relation(g, 1, rows_small)
    kx, sx, lx = g.kernel[2], g.small[2], g.large[2]
    stride, dilation, pad = g.stride[2], g.dilation[2], g.pad_begin[2]
    batch = 1 if plan.batch is None else plan.batch
    if plan.transposed:
        # Uncropped row (input spread by stride, plus the kernel), or the cropped row
        # plus pad_begin when output_padding / "same" reach past it.
        span = max((sx - 1) * stride + (kx - 1) * dilation + 1, lx + pad)
        phase_len = -(-span // stride)
        scratch_len = span if algorithm == KERNEL_ROWS else stride * phase_len
        kernel_size = prod(g.kernel)
        width = batch * prod(g.small)
        workspace = (
            plan.small_channels * width if batch > 1 else 0,     # packed input
            plan.large_channels * kernel_size * width,            # columns
        ) if algorithm == GEMM else (0, 0)
    else:
        span = (sx - 1) * stride + (kx - 1) * dilation + 1
        phase_len = -(-span // stride)
        scratch_len = 0
        width = batch * prod(g.small)
        workspace = (
            batch * plan.large_channels * g.large[0] * g.large[1] * stride * phase_len,
            plan.large_channels * prod(g.kernel) * width if algorithm == GEMM else 0,
            plan.small_channels * width if algorithm == GEMM else 0,
        )
    tables = tuple(np.ascontiguousarray(t, dtype=np.intp) for t in (
        z_ptr, z_tap, z_src, y_ptr, y_tap, y_src,
        _phase_offsets(kx, stride, dilation, phase_len), np.zeros(kx),
    ))
    geo = np.array(g.small + g.large + g.kernel + g.stride + g.dilation + g.pad_begin,
                   dtype=np.intp)
    return KernelSetup(geo=geo, tables=tables, phase_len=phase_len,
                       scratch_len=scratch_len, algorithm=algorithm, workspace=workspace)


_local = threading.local()


def _workspace(slot, size, dtype):
    """A reusable per-Python-thread buffer: large workspaces are not re-faulted per call."""
    if size == 0:
        return None
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    key = (slot, dtype)
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        buffers[key] = buffer = np.empty(size, dtype=dtype)
    return buffer[:size]


def thread_count(plan):
    """Threads for this call: the setting, but one per FLOPS_PER_THREAD of work at most."""
    n = get_num_threads()
    if n > 1:
        n = max(1, min(n, plan.flops // FLOPS_PER_THREAD))
    return n


def run(plan, x, w, b, algorithm=None):
    """Backend "direct": compute ``plan`` on the compiled kernels."""
    if algorithm is None:
        algorithm = choose_algorithm(plan)
    setup = kernel_setup(plan, algorithm)
    dtype = plan.dtype
    x = np.ascontiguousarray(x, dtype=dtype)
    w = np.ascontiguousarray(w, dtype=dtype)
    b = None if b is None else np.ascontiguousarray(b, dtype=dtype)
    out = np.empty(plan.output_shape, dtype=dtype)
    n_threads = thread_count(plan)
    batch = 1 if plan.batch is None else plan.batch
    sizes = (batch, plan.in_channels, plan.out_channels, plan.groups, setup.phase_len,
             setup.scratch_len, n_threads if BLAS_THREAD_HOOK else 1)
    if plan.transposed:
        workspace = (np.empty(max(1, n_threads * setup.scratch_len), dtype=dtype),
                     _workspace("packed", setup.workspace[0], dtype),
                     _workspace("columns", setup.workspace[1], dtype))
        _kernels.conv_transpose(out, x, w, b, setup.geo, setup.tables, sizes,
                                setup.algorithm, workspace, n_threads)
    else:
        workspace = (_workspace("phased", setup.workspace[0], dtype),
                     _workspace("columns", setup.workspace[1], dtype),
                     _workspace("product", setup.workspace[2], dtype))
        _kernels.conv(out, x, w, b, setup.geo, setup.tables, sizes, setup.algorithm,
                      workspace, n_threads)
    return out
