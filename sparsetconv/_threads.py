"""Thread count of the compiled kernels.

One setting governs both OpenMP and the BLAS calls the kernels make.  BLAS is called
from inside the kernels' own parallel regions, one block per thread, with the BLAS
library told (per thread) to stay single-threaded -- so the two never oversubscribe
the cores.  That needs ``openblas_set_num_threads_local`` from the OpenBLAS that
scipy links (found here at import); without it, GEMM blocks run from one thread and
the BLAS library keeps its own threading.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from typing import Iterator

from . import _kernels
from ._openmp import openmp_enabled, openmp_max_threads
from ._validation import as_int

__all__ = ["set_num_threads", "get_num_threads", "threads", "openmp_enabled"]

_requested = None
_OPENMP = openmp_enabled()


def current_threads():
    """get_num_threads() for the kernels' hot path."""
    if _requested is not None:
        return _requested
    return openmp_max_threads() if _OPENMP else 1


def get_num_threads() -> int:
    """Number of threads the compiled kernels may use.

    The default is OpenMP's (it honours ``OMP_NUM_THREADS``); 1 in a serial build.

    Examples
    --------
    >>> get_num_threads() >= 1
    True
    """
    return current_threads()


def set_num_threads(n: int) -> None:
    """Set the number of threads of the compiled kernels (and of their BLAS calls).

    Parameters
    ----------
    n : int
        At least 1.  Small problems still run on one thread.

    Examples
    --------
    >>> previous = get_num_threads()
    >>> set_num_threads(1)
    >>> get_num_threads()
    1
    >>> set_num_threads(previous)
    """
    global _requested
    n = as_int(n, "n")
    if n < 1:
        raise ValueError(f"the number of threads must be >= 1, got n={n}")
    _requested = n if _OPENMP else 1


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Context manager: run the enclosed calls with ``n`` threads, then restore.

    Examples
    --------
    >>> with threads(1):
    ...     get_num_threads()
    1
    """
    global _requested
    previous = _requested
    set_num_threads(n)
    try:
        yield
    finally:
        _requested = previous


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
