"""``show_config()``: how this copy of sparsetconv was built and what it runs with.

Everything here is read, never set: the build record that setup.py writes
(``_build_info.py``), the OpenMP runtime and the BLAS library loaded in this process
(through ``threadpoolctl`` when it is installed, else from the process's memory map),
the thread count the kernels use, and the instruction set their inner loops run on.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from typing import Any, Dict, Optional, TextIO

import numpy as np

__all__ = ["show_config"]

# Names of the shared libraries, as they appear in a path, for each kind of runtime.
_OPENMP_LIBRARIES = ("libgomp", "libomp", "libiomp", "vcomp")
_BLAS_LIBRARIES = ("openblas", "mkl_rt", "libmkl", "blis", "flexiblas", "accelerate")


def show_config(file: Optional[TextIO] = None) -> Dict[str, Dict[str, Any]]:
    """Print, and return as a dict, how sparsetconv was built and what it runs with.

    Sections: ``sparsetconv`` (version, location), ``python`` and the run-time
    ``dependencies``; ``build`` (the compiler command and flags recorded when the
    extension was built, and whether OpenMP was found); ``openmp`` (the runtime library
    loaded and its default thread count); ``threads`` (what the kernels use now, and the
    CPUs the process may use); ``blas`` (the BLAS library SciPy uses, and whether the
    kernels can keep it single-threaded inside their own parallel regions, so the two
    never oversubscribe the cores); ``simd`` (the instruction set of the inner loops,
    and ``gemm``: whether the GEMMs run the library's own AVX-512 kernel, ``"own"``,
    or the BLAS, ``"blas"``).
    Include its output in bug reports.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default ``sys.stdout``).

    Returns
    -------
    dict
        ``{section: {key: value}}``, the values plain Python objects.

    Examples
    --------
    >>> import io
    >>> config = show_config(file=io.StringIO())
    >>> sorted(config)
    ['blas', 'build', 'dependencies', 'openmp', 'python', 'simd', 'sparsetconv', 'threads']
    >>> config["threads"]["num_threads"] >= 1
    True
    """
    config = _collect()
    out = sys.stdout if file is None else file
    for section, values in config.items():
        print(f"{section}:", file=out)
        for key, value in values.items():
            print(f"  {key}: {_text(value)}", file=out)
    return config


def _text(value):
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)


def _collect():
    import scipy

    from . import __version__, _kernels, _openmp, _threads

    build = _build_info()
    libraries = _loaded_libraries()
    openmp_runtime = _first(libraries, "openmp")
    blas = _blas(libraries)
    blas["thread_hook_installed"] = bool(_kernels.blas_thread_hook_installed())
    blas["kernels"] = _openblas_core(blas["library"]) if blas["name"] == "openblas" else None
    blas["kernels_chosen_by"] = sys.modules["sparsetconv"]._OPENBLAS_KERNELS
    return {
        "sparsetconv": {
            "version": __version__,
            "path": os.path.dirname(os.path.abspath(__file__)),
        },
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
        },
        "dependencies": {"numpy": np.__version__, "scipy": scipy.__version__},
        "build": build,
        "openmp": {
            "enabled": bool(_openmp.openmp_enabled()),
            "runtime": openmp_runtime.get("filepath"),
            "runtime_version": openmp_runtime.get("version"),
            "max_threads": int(_openmp.openmp_max_threads()),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "idle_workers": sys.modules["sparsetconv"]._OPENMP_WAIT_POLICY,
        },
        "threads": {
            "num_threads": int(_threads.get_num_threads()),
            "cpus_available": _cpus_available(),
        },
        "blas": blas,
        "simd": _simd(build),
    }


def _build_info():
    try:
        from ._build_info import BUILD_INFO
    except ImportError:  # built by something other than this setup.py
        return {"recorded": False}
    return {"recorded": True, **BUILD_INFO}


def _cpus_available():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count()


def _loaded_libraries():
    """``[{kind, filepath, version, num_threads, internal_api}]`` for OpenMP and BLAS."""
    try:
        import threadpoolctl
    except ImportError:
        return _mapped_libraries()
    found = []
    for entry in threadpoolctl.threadpool_info():
        kind = {"openmp": "openmp", "blas": "blas"}.get(entry.get("user_api"))
        if kind:
            found.append({"kind": kind, "source": "threadpoolctl", **entry})
    return found


def _mapped_libraries():
    """Without threadpoolctl: the shared libraries in this process's memory map (Linux)."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS that scipy links)

    found, seen = [], set()
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split()[-1] for line in maps if "/" in line]
    except OSError:  # not Linux
        return found
    for path in paths:
        name = os.path.basename(path).lower()
        for kind, prefixes in (("openmp", _OPENMP_LIBRARIES), ("blas", _BLAS_LIBRARIES)):
            matched = [p for p in prefixes if p in name]
            if path not in seen and matched:
                seen.add(path)
                found.append({"kind": kind, "source": "/proc/self/maps", "filepath": path,
                              "internal_api": matched[0].removeprefix("lib")})
    return found


def _first(libraries, kind, prefer=None):
    matches = [lib for lib in libraries if lib["kind"] == kind]
    if prefer:
        matches.sort(key=lambda lib: prefer not in lib.get("filepath", ""))
    return matches[0] if matches else {}


def _blas(libraries):
    import scipy

    library = _first(libraries, "blas", prefer="scipy")
    info = {
        "library": library.get("filepath"),
        "name": library.get("internal_api"),
        "version": library.get("version"),
        "num_threads": library.get("num_threads"),
        "found_by": library.get("source"),
    }
    try:  # what SciPy was built against (SciPy 1.11+)
        build = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["scipy_built_with"] = f"{build.get('name')} {build.get('version')}"
    except Exception:  # older SciPy or another layout: nothing to add
        info["scipy_built_with"] = None
    return info


def _openblas_core(path):
    """The kernel set OpenBLAS chose (``openblas_get_corename``), or None."""
    import ctypes

    try:
        library = ctypes.CDLL(path)
    except (OSError, TypeError):
        return None
    for prefix in ("scipy_", ""):  # scipy-openblas wheels prefix their symbols
        for suffix in ("", "64_"):
            function = getattr(library, f"{prefix}openblas_get_corename{suffix}", None)
            if function is not None:
                function.restype = ctypes.c_char_p
                return function().decode()
    return None


def _cpu_features():
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:  # NumPy 1.x
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return {}
    return {name: bool(features.get(name)) for name in ("AVX512F", "AVX2", "FMA3")}


def _simd(build):
    """The instruction set of the kernels' inner loops.

    On x86-64 Linux, a GCC build compiles the inner loops once per instruction set
    (``target_clones``) and the dynamic loader picks one when the extension loads, by
    the CPU's features.  The extension does not (yet) report the clone it picked, so the
    path is inferred from the CPU features, as GCC's resolver chooses.
    """
    from . import _kernels

    query = getattr(_kernels, "simd_path", None)
    if query is not None:  # the kernels can say which path they took
        return {"path": query(), "how": "reported by the compiled kernels",
                "gemm": _kernels.gemm_kernel()}
    compiler = os.path.basename(str(build.get("compiler", "")).split(" ")[0])
    gcc = ("gcc" in compiler or "g++" in compiler or compiler in ("cc", "c++")) and (
        "clang" not in compiler
    )
    if not build.get("recorded"):
        dispatching = None
    else:
        dispatching = (sys.platform.startswith("linux")
                       and platform.machine() in ("x86_64", "AMD64") and gcc)
    features = _cpu_features()
    if not dispatching:
        return {
            "path": "baseline" if dispatching is False else "unknown",
            "how": "no run-time dispatch in this build" if dispatching is False
            else "build not recorded",
            "cpu_features": features,
        }
    if features.get("AVX512F"):
        path = "avx512f"
    elif features.get("AVX2"):
        path = "avx2"
    else:
        path = "default (SSE2)"
    return {
        "path": path,
        "how": "inferred from the CPU features (GCC target_clones, chosen at load time)",
        "cpu_features": features,
    }
