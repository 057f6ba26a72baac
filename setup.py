"""Build script: compiles the Cython kernels, with OpenMP where the compiler has it.

OpenMP is probed at build time by compiling and linking a tiny ``omp.h`` program.
If that fails (for example Apple clang without libomp), the extension is built
serially and a warning says so; ``sparsetconv.openmp_enabled()`` then returns
False.  Set ``SPARSETCONV_DISABLE_OPENMP=1`` to force a serial build.
"""

import os
import shlex
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return (n >= 1 && omp_get_max_threads() >= 1) ? 0 : 1;
    }
    """
)


def openmp_flags(compiler):
    """Return ``(compile_args, link_args)`` that enable OpenMP, or ``None``."""
    if os.environ.get("SPARSETCONV_DISABLE_OPENMP", "0") not in ("", "0"):
        return None
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    elif sys.platform == "darwin":
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]), (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    for compile_args, link_args in candidates:
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "probe.c")
            with open(source, "w") as f:
                f.write(OPENMP_PROBE)
            try:
                # The compiler already carries CFLAGS; the executable linker does not,
                # yet the extension's link gets them: pass CFLAGS and LDFLAGS, so that
                # e.g. -fsanitize=address links here as it will there (as scikit-learn's
                # probe does with LDFLAGS).
                objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
                compiler.link_executable(
                    objects, "probe", output_dir=tmp,
                    extra_preargs=shlex.split(os.environ.get("CFLAGS", ""))
                    + shlex.split(os.environ.get("LDFLAGS", "")),
                    extra_postargs=link_args,
                )
            except Exception:  # any compile or link failure means "no OpenMP"
                continue
        return compile_args, link_args
    return None


class BuildExtWithOpenMP(build_ext):
    """``build_ext`` that adds OpenMP flags when the probe succeeds."""

    def build_extensions(self):
        flags = openmp_flags(self.compiler)
        if flags is None:
            warnings.warn(
                "sparsetconv: OpenMP not available (or disabled); "
                "building the kernels serially."
            )
        for ext in self.extensions:
            if flags is not None:
                ext.extra_compile_args = list(ext.extra_compile_args) + flags[0]
                ext.extra_link_args = list(ext.extra_link_args) + flags[1]
        super().build_extensions()


def extension(name):
    compile_args = [] if sys.platform == "win32" else ["-O3"]
    return Extension(
        f"sparsetconv.{name}",
        [f"sparsetconv/{name}.pyx"],
        include_dirs=[np.get_include(), "sparsetconv"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        extra_compile_args=compile_args,
    )


EXTENSIONS = [extension("_openmp"), extension("_kernels")]

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
