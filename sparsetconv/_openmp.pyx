# cython: language_level=3
"""OpenMP facts and thread-count plumbing for the compiled kernels.

When the extension is built without OpenMP, ``openmp.pxd``'s functions are not
available, so every call goes through the ``SPARSETCONV_OPENMP`` macro guard.
"""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define SPARSETCONV_OPENMP 1
    static int sparsetconv_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define SPARSETCONV_OPENMP 0
    static int sparsetconv_max_threads(void) { return 1; }
    #endif
    """
    int SPARSETCONV_OPENMP
    int sparsetconv_max_threads() nogil


def openmp_enabled():
    """Return True when the compiled kernels were built with OpenMP."""
    return bool(SPARSETCONV_OPENMP)


def openmp_max_threads():
    """OpenMP's default team size (honours ``OMP_NUM_THREADS``); 1 without OpenMP."""
    return sparsetconv_max_threads()
