"""sparsetconv: transposed convolution on NumPy arrays.

A convolution is a linear map, so it is a sparse matrix ``A``; the transposed
convolution is ``A.T``.  The library builds that matrix (:func:`conv_matrix`,
:func:`conv_transpose_matrix`), does the shape arithmetic (:func:`conv_transpose_output_size`,
:func:`output_padding_for`, :func:`inverse_conv_params`) and applies both operators
to NumPy arrays (:func:`conv_transpose`, :func:`conv` and their 1-D/2-D/3-D aliases).
"""

import os as _os


def _source_tree_error(error):
    """The ImportError to raise when the compiled extension is missing.

    Importing from a source checkout that was never built (for example running
    ``python -m pytest`` in the repository root after a non-editable install) finds
    this folder before the installed package; say so instead of letting Python report
    a circular import.
    """
    from importlib.machinery import EXTENSION_SUFFIXES

    here = _os.path.dirname(_os.path.abspath(__file__))
    built = any(
        _os.path.exists(_os.path.join(here, "_kernels" + suffix)) for suffix in EXTENSION_SUFFIXES
    )
    source_tree = _os.path.exists(_os.path.join(here, "_kernels.pyx")) and _os.path.exists(
        _os.path.join(_os.path.dirname(here), "setup.py")
    )
    if built:
        return None  # a built extension that fails to load: the original error says why
    if source_tree:
        message = (
            "sparsetconv is being imported from its source tree, which has no compiled "
            "extension: run `pip install -e .`, or run from another directory "
            f"(imported from {here})"
        )
    else:
        message = (
            f"sparsetconv's compiled extension is missing from {here}: reinstall the "
            "package (`pip install --force-reinstall sparsetconv`)"
        )
    return ImportError(message, name=__name__, path=here)


def _openmp_runtime_loaded():
    """True when an OpenMP runtime is already mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            return any(name in line for line in maps
                       for name in ("libgomp", "libomp", "libiomp"))
    except OSError:
        return False


# Idle OpenMP workers spin this many times (libgomp's GOMP_SPINCOUNT, one CPU "pause"
# each: 25 ns on a current AMD core, 40-55 ns on Intel since Skylake) before they sleep:
# 75-150 us, longer than the gap a worker sees between two back-to-back calls (Python's
# call overhead plus the other thread's tail; on a 2-vCPU VM, where a woken vCPU also
# runs slowly for a while, sub-ms layers ran 2-3x slower at 2000 spins and at full
# speed from 3000), far shorter than libgomp's default 300,000 (several ms).  Measured
# with scipy's lsqr on our operator: 3000 spins as fast as one thread (0.95-1.02x),
# 5000 1.15x, the default 2.8-3.2x.
_IDLE_SPINS = 3000


def _load_openmp_runtime_neighbourly():
    """Import the compiled kernels with OpenMP's idle workers told to spin only briefly.

    After a parallel region, OpenMP workers spin-wait for the next one (libgomp: up to
    300,000 spins, milliseconds) -- taking the cores NumPy's BLAS threads need in a
    solver loop (scipy's ``lsqr`` on our operator ran 6-8x slower with two threads than
    with one).  Sleeping at once (``OMP_WAIT_POLICY=passive``) frees the cores, but
    waking a sleeping worker costs tens of microseconds on every call, which doubles
    the time of sub-millisecond layers.  So libgomp gets a
    short spin (``GOMP_SPINCOUNT``, :data:`_IDLE_SPINS`): enough for back-to-back calls,
    gone long before a solver's vector work needs the core.  LLVM's and Intel's
    runtimes, whose bound (``KMP_BLOCKTIME``) counts whole milliseconds, get
    ``KMP_BLOCKTIME=0``: sleep at once.  The runtime reads these variables when it
    initialises, so they are set only for the import (and the runtime's
    initialisation), then the environment is restored.  A user's own
    ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME`` wins; a runtime that
    another library already initialised (PyTorch imported first shares its libgomp)
    keeps that library's settings.  Returns which of these happened.
    """
    environ = _os.environ
    user = [f"{name}={environ[name]}" for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                   "KMP_BLOCKTIME") if environ.get(name)]
    # Each runtime gets a variable only it reads: libgomp with OMP_WAIT_POLICY=passive
    # as well as the spin count woke its workers slower (a 0.25 ms layer took 0.35 ms).
    ours = {"GOMP_SPINCOUNT": str(_IDLE_SPINS), "KMP_BLOCKTIME": "0"}
    if user:
        policy = "set by the user: " + ", ".join(user)
    elif _openmp_runtime_loaded():
        policy = "the OpenMP runtime's own (another library loaded it first)"
    else:
        policy = (f"a short spin, then sleep (set by sparsetconv at import: "
                  f"GOMP_SPINCOUNT={_IDLE_SPINS}, KMP_BLOCKTIME=0)")
        environ.update(ours)
    try:
        from . import _openmp

        _openmp.openmp_max_threads()  # initialises a lazily started runtime (libomp)
    finally:
        if not user:
            for name in ours:
                environ.pop(name, None)
    return policy


try:
    # The compiled extension; the OpenMP runtime starts with a short idle spin (above).
    _OPENMP_WAIT_POLICY = _load_openmp_runtime_neighbourly()
    from . import _kernels  # noqa: F401
except ImportError as _error:
    _replacement = _source_tree_error(_error)
    if _replacement is None:
        raise
    # "from None": the underlying "partially initialized module ... (most likely due to
    # a circular import)" would send the reader the wrong way.
    raise _replacement from None

from ._config import show_config  # noqa: E402
from ._threads import get_num_threads, openmp_enabled, set_num_threads, threads  # noqa: E402
from .functional import (
    conv,
    conv1d,
    conv2d,
    conv3d,
    conv_transpose,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
)
from .explain import contributions, explain, output_terms
from .plotting import animate_zero_stuffed, plot_contributions, plot_matrix, plot_zero_stuffed
from .gradients import conv_backward, conv_transpose_backward
from .layers import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .linalg import ConvergenceWarning, as_linear_operator, deconvolve
from .matrix import conv_matrix, conv_transpose_matrix
from .shapes import (
    conv_output_size,
    conv_transpose_output_size,
    inverse_conv_params,
    output_padding_for,
)

from .verify import AdjointCheck, adjoint_check, gradcheck

__version__ = "0.1.0"

__all__ = [
    "conv", "conv1d", "conv2d", "conv3d",
    "conv_transpose", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "conv_matrix", "conv_transpose_matrix",
    "conv_output_size", "conv_transpose_output_size", "inverse_conv_params",
    "output_padding_for", "openmp_enabled", "get_num_threads", "set_num_threads", "threads",
    "conv_transpose_backward", "conv_backward", "AdjointCheck", "adjoint_check", "gradcheck",
    "as_linear_operator", "deconvolve", "ConvergenceWarning",
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "explain", "contributions", "output_terms", "plot_zero_stuffed", "animate_zero_stuffed",
    "plot_contributions", "plot_matrix", "show_config",
]
