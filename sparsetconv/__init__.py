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


def _amd_cpu_with_avx512(cpuinfo=None):
    """True on an AMD CPU with the AVX-512 subsets of Intel's Skylake-SP (from the
    first processor of ``/proc/cpuinfo``, or of the text ``cpuinfo``; Linux)."""
    text = cpuinfo
    if text is None:
        try:
            with open("/proc/cpuinfo") as file:
                text = file.read(65536)
        except OSError:
            return False
    fields = dict(line.split(":", 1) for line in text.splitlines()[:40] if ":" in line)
    fields = {key.strip(): value.split() for key, value in fields.items()}
    wanted = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
    return (fields.get("vendor_id") == ["AuthenticAMD"]
            and wanted <= set(fields.get("flags", ())))


def _load_blas_kernels():
    """Import SciPy's BLAS (the kernels' GEMM) with AVX-512 kernels on AMD's AVX-512 CPUs.

    OpenBLAS picks its kernels for the CPU it detects when it loads.  Versions that do
    not know a newer AMD core (Zen 5 here) fall back to the AVX2 ("Haswell") kernels,
    half the AVX-512 speed: sgemm ran 121 GFLOP/s on one Zen 5 core, 227 with
    ``OPENBLAS_CORETYPE=SkylakeX`` (OpenBLAS's documented override; the kernels need
    exactly the AVX-512 subsets checked by :func:`_amd_cpu_with_avx512`).  So on such a
    CPU the variable is set while SciPy's BLAS loads, then the environment is
    restored.  A user's own ``OPENBLAS_CORETYPE`` wins, and a BLAS that is already
    loaded (``scipy.linalg`` imported first) keeps its kernels; another BLAS (MKL,
    BLIS, Accelerate) ignores the variable.  Returns which of these happened.
    """
    import sys

    environ = _os.environ
    if environ.get("OPENBLAS_CORETYPE"):
        return "set by the user: OPENBLAS_CORETYPE=" + environ["OPENBLAS_CORETYPE"]
    if "scipy.linalg.cython_blas" in sys.modules or "scipy.linalg._fblas" in sys.modules:
        return "OpenBLAS's own (SciPy's BLAS was loaded before sparsetconv)"
    if not _amd_cpu_with_avx512():
        return "OpenBLAS's own"
    environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    finally:
        environ.pop("OPENBLAS_CORETYPE", None)
    return "SkylakeX (set by sparsetconv at import: an AMD CPU with AVX-512)"


try:
    # The compiled extension; the OpenMP runtime starts with a short idle spin (above).
    _OPENMP_WAIT_POLICY = _load_openmp_runtime_neighbourly()
    _OPENBLAS_KERNELS = _load_blas_kernels()
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
