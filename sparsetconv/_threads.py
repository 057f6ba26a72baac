"""Thread count of the compiled kernels.

One setting governs both OpenMP and the BLAS calls the kernels make.  BLAS is called
from inside the kernels' own parallel regions, one block per thread, with the BLAS
library told (per thread) to stay single-threaded -- so the two never oversubscribe
the cores.  That needs ``openblas_set_num_threads_local`` from the OpenBLAS that
scipy links (found here at import); without it, GEMM blocks run from one thread and
the BLAS library keeps its own threading.

Two levels of setting, as in threadpoolctl and PyTorch:

- the process default: OpenMP's team size (it honours ``OMP_NUM_THREADS``) capped by
  the CPUs this process may use (its affinity mask and its cgroup CPU quota), or what
  :func:`set_num_threads` set;
- :func:`threads`, a context manager that overrides it for the calling Python thread
  (a :class:`contextvars.ContextVar`, so concurrent threads and asyncio tasks each
  see their own value and the process default is never touched).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import math
import os
from typing import Iterator

from . import _kernels
from ._openmp import openmp_enabled, openmp_max_threads
from ._validation import as_int

__all__ = ["set_num_threads", "get_num_threads", "threads", "openmp_enabled"]

_OPENMP = openmp_enabled()
_default = None  # the process default; None: not resolved yet (see _resolve_default)
# threads(n) of the current Python thread / context; None: use the process default.
_override = contextvars.ContextVar("sparsetconv_threads", default=None)


def current_threads():
    """get_num_threads() for the kernels' hot path."""
    n = _override.get()
    if n is not None:
        return n
    return _default if _default is not None else _resolve_default()


def _resolve_default():
    global _default
    if not _OPENMP:
        _default = 1
    elif os.environ.get("OMP_NUM_THREADS"):
        # An explicit OMP_NUM_THREADS is the user's choice: honoured as it is, as
        # scikit-learn's _openmp_effective_n_threads does.
        _default = openmp_max_threads()
    else:
        _default = max(1, min(openmp_max_threads(), available_cpus()))
    return _default


def available_cpus():
    """The number of CPUs this process may use: ``os.cpu_count()`` capped by the
    affinity mask and by a cgroup CPU quota (containers, ``docker --cpus``).

    Modelled on loky's ``cpu_count``, which joblib and scikit-learn use.

    Examples
    --------
    >>> 1 <= available_cpus() <= os.cpu_count()
    True
    """
    count = os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        try:
            count = min(count, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cgroup_cpu_quota(root="/sys/fs/cgroup"):
    """CPUs allowed by the cgroup's quota (a float), or ``None`` when unlimited/unknown."""
    try:  # cgroup v2: "max 100000" or "150000 100000"
        with open(os.path.join(root, "cpu.max")) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1: quota -1 means unlimited
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            quota = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period = int(f.read())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def get_num_threads() -> int:
    """Number of threads the compiled kernels may use in the calling Python thread.

    Inside a :func:`threads` block, its value; otherwise the process default:
    OpenMP's team size (it honours ``OMP_NUM_THREADS``; without that variable it is
    capped by the CPUs the process may use, see :func:`available_cpus`) or what
    :func:`set_num_threads` set.  1 in a serial build.

    Examples
    --------
    >>> get_num_threads() >= 1
    True
    """
    return current_threads()


# OpenMP aborts the process when it cannot create a team's threads: refuse counts
# no machine could use.
MAX_THREADS = 1024


def _check(n) -> int:
    n = as_int(n, "n")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"the number of threads must be between 1 and {MAX_THREADS}, "
                         f"got n={n}")
    return n if _OPENMP else 1


def set_num_threads(n: int) -> None:
    """Set the process default number of threads of the compiled kernels (and of
    their BLAS calls).

    It applies to every Python thread that is not inside a :func:`threads` block.

    Parameters
    ----------
    n : int
        1 to 1024.  Small problems still run on one thread.

    Examples
    --------
    >>> previous = get_num_threads()
    >>> set_num_threads(1)
    >>> get_num_threads()
    1
    >>> set_num_threads(previous)
    """
    global _default
    _default = _check(n)


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Context manager: run the enclosed calls with ``n`` threads, then restore.

    The setting applies to the calling Python thread only (other threads, and the
    process default of :func:`set_num_threads`, are unaffected); nested blocks
    restore the outer value.  Work handed to another thread (a thread pool) does
    not inherit it: call ``threads`` inside the task.

    Examples
    --------
    >>> with threads(1):
    ...     get_num_threads()
    1
    """
    token = _override.set(_check(n))
    try:
        yield
    finally:
        _override.reset(token)


def _openblas_candidates():
    """Shared libraries loaded in this process whose name says OpenBLAS, scipy's first."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS that scipy links)
    paths = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if "/" in line else ""
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:  # not Linux: no hook, BLAS keeps its own threading
        return []
    return sorted(paths, key=lambda p: "scipy" not in p)


def _install_blas_thread_hook():
    for path in _openblas_candidates():
        try:
            library = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_GLOBAL)
            function = library.openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        _kernels.set_blas_thread_hook(ctypes.cast(function, ctypes.c_void_p).value)
        return True
    return False


BLAS_THREAD_HOOK = _install_blas_thread_hook()
