"""Backend "direct": the algorithm choice, the threading split and the kernel calls.

- :func:`choose_algorithm` is the ``"auto"`` choice (one place), by the estimates of
  :mod:`sparsetconv._cost`.
- :class:`Executor` runs a transposed convolution or a convolution for one plan,
  :class:`WeightGradient` the weight gradient of either; both are prepared once per
  plan (their :class:`~sparsetconv._layout.Layout` holds the tables) and decide the
  thread count and whether threads take whole GEMM chunks in :func:`_threading`,
  which also sizes the per-thread workspaces -- the kernels read that decision, they
  do not remake it.

Algorithms (``_layout.ALGORITHMS``; each states its domain in ``_layout.unsupported``):

- ``direct``: per-row runs in the phase-major layout; no intermediate beyond one
  plane per thread (transposed) or the phase-major copy of the input (convolution).
- ``kernel_rows``: transposed only, dilation 1 on x: one contiguous kernel row per
  input element (kernels longer than the input row); only when forced.
- ``gemm``: BLAS GEMM over a group's channels (``columns = W^T X`` then col2im for the
  transpose, ``W @ im2col(x)`` for the convolution, ``S @ im2col(L)^T`` for the weight
  gradient), a chunk of samples at a time.
"""

import threading

import numpy as np

from . import _kernels
from ._layout import (
    ALGORITHMS,
    CONVOLVE,
    DIRECT,
    GEMM,
    GEMM_MAX_COLUMN_BYTES,
    IMPLICIT,
    KERNEL_ROWS,
    TRANSPOSE,
    WEIGHT_GRADIENT,
    build_layout,
    unsupported,
)
from ._cost import DIRECT_MUST_BEAT_GEMM_BY, direct_seconds, gemm_seconds
from ._plan import gather_plan, gather_weight, live_plan, live_weight
from ._threads import current_threads

__all__ = ["ALGORITHMS", "DIRECT", "KERNEL_ROWS", "GEMM", "choose_algorithm",
           "choose_weight_gradient_algorithm", "Executor", "WeightGradient", "run"]

# Below this many useful flops per thread, extra threads cost more than they give.
FLOPS_PER_THREAD = 2_000_000


def _direction(plan):
    return TRANSPOSE if plan.transposed else CONVOLVE


def choose_algorithm(plan):
    """The ``"auto"`` choice for a forward call: the algorithm with the smallest
    estimated time (:mod:`sparsetconv._cost`, counts of the geometry times fitted
    per-unit costs).

    GEMM and DIRECT compete -- DIRECT as the row kernels would run it, gathered
    (:func:`_gathers`) where that applies -- GEMM only where its columns fit the cap
    (``_layout.unsupported``).  KERNEL_ROWS is never chosen: on every layer measured
    (including kernels longer than the input row, its home ground) DIRECT or GEMM was
    at least as fast; it stays available when forced.
    """
    direction = _direction(plan)
    gathered = gather_plan(plan) if _gathers(plan) else None
    direct = direct_seconds(plan if gathered is None else gathered)
    if (unsupported(plan, direction, GEMM) is None
            and direct >= DIRECT_MUST_BEAT_GEMM_BY * gemm_seconds(plan)):
        return GEMM
    return DIRECT


# The weight gradient's GEMM reduces over positions and its direct kernel over row
# pairs; a cost model fitted like the forward one misjudged the direct kernel 0.4-3x,
# so this stays a rule: GEMM once a group has this many (input x output) channel pairs
# (on random layers it chose within 1.16x of the faster, but for two 4-channel 1-D
# layers, 1.43x).
WEIGHT_GRADIENT_MIN_PAIRS = 16


def choose_weight_gradient_algorithm(plan):
    """GEMM for a weight gradient with WEIGHT_GRADIENT_MIN_PAIRS channel pairs per group
    (and columns within the cap), else DIRECT."""
    pairs = (plan.small_channels // plan.groups) * (plan.large_channels // plan.groups)
    if pairs >= WEIGHT_GRADIENT_MIN_PAIRS and unsupported(plan, WEIGHT_GRADIENT, GEMM) is None:
        return GEMM
    return DIRECT



def _gathers(plan):
    """Whether a direct stride-1 transposed convolution runs as the convolution it
    equals (``_plan.gather_plan``): where the cost model estimates the convolution's
    kernel cheaper than the scatter.

    The transposed kernel scatters each input row into the output, one pass per tap;
    the convolution gathers each output position from all its sources in registers
    (over the padded grid, or row by row).  Timed (one thread), the gathered form won
    on every stride-1 layer tried, 1.6-7x: 3x3 depthwise 0.60 -> 0.28 ms, 5x5
    depthwise 1.9 -> 0.54 ms, 32 -> 32 channels 3x3 6.3 -> 0.90 ms, and the estimates
    ranked the two forms the same way on each.
    """
    gathered = gather_plan(plan)
    return gathered is not None and direct_seconds(gathered) < direct_seconds(plan)


def _algorithm_id(algorithm):
    """Accept an algorithm name or id; None stays None (the cost model decides)."""
    if isinstance(algorithm, str):
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")
        return ALGORITHMS[algorithm]
    return algorithm


_local = threading.local()
# Workspaces up to this many elements are allocated per call (cheap, never faulted
# twice); larger ones are kept per Python thread and reused, up to KEEP_BYTES each.
SMALL_WORKSPACE = 1 << 16
KEEP_BYTES = 2 * GEMM_MAX_COLUMN_BYTES


def _workspace(name, size, dtype):
    """The kernels' argument for one workspace of ``size`` elements: None for 0, the
    size itself for a small one (the kernel call allocates it, no NumPy array to
    make), else an array -- mid-size ones reused per Python thread, so back-to-back
    calls do not fault fresh pages every time."""
    if size == 0:
        return None
    if size <= SMALL_WORKSPACE:
        return size
    if size * dtype.itemsize > KEEP_BYTES:
        return np.empty(size, dtype=dtype)
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    key = (name, dtype)
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        buffers[key] = buffer = np.empty(size, dtype=dtype)
    return buffer[:size]


FORWARD_BUFFERS = ("scratch", "phased", "packed", "columns", "product")
WEIGHT_GRADIENT_BUFFERS = ("phased", "packed", "columns", "product")


def _whole_chunks(layout, n_threads):
    """``(whole_chunks, the buffers then held per thread)`` for ``n_threads`` threads.

    Threads take whole GEMM chunks (each its own single-threaded BLAS call and
    col2im, no barrier) when there are at least as many chunks as threads and BLAS
    can be told to stay single-threaded inside our threads; then the GEMM buffers
    are per thread.  Over the phase copy, where there are as many items as threads,
    each thread takes whole ones into a copy of its own, so that it reads the copy
    from its own cache (a copy shared across cores scaled 1.2x on two): the implicit
    GEMM's items are samples, the grid convolution's (sample, group) pairs (their
    copies live in the per-thread scratch), the implicit weight gradient's chunks
    (each thread also holds its chunk's channels-last small side and its own
    product, summed at the end); else the threads share each item.
    """
    if layout.column_source == IMPLICIT:
        if layout.direction == WEIGHT_GRADIENT:
            whole = n_threads > 1 and layout.n_chunks >= n_threads
            return whole, ("phased", "packed", "product")
        items = layout.batch * (1 if layout.algorithm == GEMM else layout.groups)
        return items >= n_threads, ()
    if layout.algorithm == GEMM:
        # a transposed sample run a block of rows at a time adds into one set of
        # output planes, which the threads share by channels
        by_rows = (layout.direction == TRANSPOSE
                   and layout.block_rows < layout.axes[0].small * layout.axes[1].small)
        whole = (not by_rows and n_threads > 1 and layout.n_chunks >= n_threads
                 and _kernels.blas_thread_hook_installed())
        return whole, ("packed", "columns", "product")
    return False, ()


def _split(layout, n_threads, names, dtype):
    """The threading split of a call on ``n_threads`` threads:
    ``(n_threads, whole_chunks, ((buffer name, elements), ...), workspaces)`` with
    ``workspaces`` the kernels' argument when every workspace is small (the same for
    every call), else None (:func:`_workspace` per call).  ``whole_chunks`` is
    :func:`_whole_chunks`'; scratch is always per thread.
    """
    whole_chunks, per_thread = _whole_chunks(layout, n_threads)
    ws = layout.workspace
    counts = {name: getattr(ws, name)
              * (n_threads if name == "scratch" or (whole_chunks and name in per_thread) else 1)
              for name in names}
    counts = tuple((name, counts[name]) for name in names)
    small = all(size <= SMALL_WORKSPACE for _, size in counts)
    workspaces = tuple(_workspace(name, size, dtype) for name, size in counts) if small else None
    return n_threads, whole_chunks, counts, workspaces


def _parallel_items(layout):
    """How many independent pieces the kernel's parallel loop shares out: a thread
    beyond them would only be woken to wait.  GEMM splits its products finely."""
    if layout.algorithm == GEMM:
        return layout.batch * layout.c_small * layout.c_large
    if layout.direction == WEIGHT_GRADIENT:  # weight rows (cs, cl)
        return layout.c_small * (layout.c_large // layout.groups)
    if layout.direction == TRANSPOSE:  # output planes (n, c)
        return layout.batch * layout.c_large
    rows = layout.batch * layout.c_small  # output rows (n, c, z, y)
    for axis in layout.axes[:-1]:
        rows *= axis.small
    return rows


class _Prepared:
    """What Executor and WeightGradient share: the layout, the kernel, the thread cap
    and the threading split per thread count (decided once, then looked up)."""

    __slots__ = ("algorithm", "layout", "kernel", "dtype", "typenum", "max_threads",
                 "_splits", "_names")

    def _prepare(self, plan, direction, algorithm, names):
        self.algorithm = algorithm
        self.layout = build_layout(plan, direction, algorithm)
        self.kernel = _kernels.Kernel(self.layout)
        self.dtype = plan.dtype
        self.typenum = plan.dtype.num
        self.max_threads = max(1, min(plan.flops // FLOPS_PER_THREAD,
                                      _parallel_items(self.layout)))
        self._splits = {}
        self._names = names

    def _call_split(self):
        """The split for the current thread setting (capped by the work)."""
        n_threads = current_threads()
        if n_threads > self.max_threads:
            n_threads = self.max_threads
        split = self._splits.get(n_threads)
        if split is None:
            split = self._splits[n_threads] = _split(self.layout, n_threads, self._names,
                                                     self.dtype)
        return split

    def _workspaces(self):
        """``(n_threads, whole_chunks, workspaces)`` for a call now."""
        n_threads, whole_chunks, counts, workspaces = self._call_split()
        if workspaces is None:
            dtype = self.dtype
            workspaces = tuple(_workspace(name, size, dtype) for name, size in counts)
        return n_threads, whole_chunks, workspaces

    def workspace_bytes(self, n_threads):
        """Bytes of workspace one call takes with (at most) ``n_threads`` threads."""
        counts = _split(self.layout, min(n_threads, self.max_threads), self._names,
                        self.dtype)[2]
        return sum(size for _, size in counts) * self.dtype.itemsize


class Executor(_Prepared):
    """Backend "direct" for one plan: everything decided up front, a short call path.

    Calling it with ``(x, w, b)`` hands them to the prepared kernel, which converts
    them only when they are not already C-contiguous in the computing dtype,
    allocates the output and runs with the GIL released.
    """

    __slots__ = ("plan", "kernel_plan", "output_shape", "_taps", "_gathered")

    def __init__(self, plan, algorithm=None):
        algorithm = _algorithm_id(algorithm)
        live = live_plan(plan)
        cut, self._taps = (plan, None) if live is None else live
        if algorithm is None:
            algorithm = choose_algorithm(cut)
        gathered = gather_plan(cut) if algorithm == DIRECT and _gathers(cut) else None
        self._gathered = gathered is not None
        self.kernel_plan = cut if gathered is None else gathered
        self._prepare(self.kernel_plan, _direction(self.kernel_plan), algorithm,
                      FORWARD_BUFFERS)
        self.plan = plan
        self.output_shape = plan.output_shape

    def __call__(self, x, w, b):
        if self._taps is not None:
            w = live_weight(w, self._taps)
        if self._gathered:
            w = gather_weight(w, self.plan.groups)
        n_threads, whole_chunks, workspaces = self._workspaces()
        return self.kernel.forward(self.output_shape, self.typenum, x, w, b, workspaces,
                                   n_threads, whole_chunks)


def run(plan, x, w, b, algorithm=None):
    """Compute ``plan`` on the compiled kernels (uncached; see :class:`Executor`)."""
    return Executor(plan, algorithm)(x, w, b)


class WeightGradient(_Prepared):
    """The weight gradient of ``plan``'s operator on the compiled kernels.

    ``grad_w[cs, cl, t] = sum over n, j of S[n, cs, j] * L[n, group*Cl_g + cl, j*s - pad + t*d]``
    with S the small side (a transposed convolution's input, or a convolution's output
    gradient) and L the large side (the output gradient, or the input): one correlation
    kernel serves both directions.  Calling it with ``(small, large)`` returns
    ``grad_w`` in the weight's layout ``(C_small, C_large // groups, *kernel)``.
    """

    __slots__ = ("shape", "_taps")

    def __init__(self, plan, algorithm=None):
        algorithm = _algorithm_id(algorithm)
        live = live_plan(plan)
        cut, self._taps = (plan, None) if live is None else live
        if algorithm is None:
            algorithm = choose_weight_gradient_algorithm(cut)
        self._prepare(cut, WEIGHT_GRADIENT, algorithm, WEIGHT_GRADIENT_BUFFERS)
        self.shape = ((plan.small_channels, plan.large_channels // plan.groups)
                      + plan.geometry.kernel)

    def __call__(self, small, large):
        n_threads, whole_chunks, workspaces = self._workspaces()
        if self._taps is None:
            return self.kernel.weight_gradient(self.shape, self.typenum, small, large,
                                               workspaces, n_threads, whole_chunks)
        # taps that meet only padding have an exact zero gradient
        out = np.zeros(self.shape, dtype=self.dtype)
        out[self._taps] = self.kernel.weight_gradient(out[self._taps].shape, self.typenum,
                                                      small, large, workspaces, n_threads,
                                                      whole_chunks)
        return out
