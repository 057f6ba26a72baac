# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernels for convolution, transposed convolution and the weight gradient.

These functions trust their inputs: the Python layer (``_layout.py``, ``_compiled.py``)
has validated shapes, made every array C-contiguous in the computing dtype, allocated
the output and the workspaces, and built the index tables.  Nothing here allocates
or raises.

Every kernel reads one :c:type:`Problem` (declared in ``_kernels.pxd``) by name.  All
ranks are 3-D with leading unit axes: one implementation for 1-D, 2-D and 3-D.  The
geometry joins a small side (transposed input, convolution output) and a large side
(transposed output, convolution input) per axis by
``large = small*stride - pad_begin + tap*dilation``, and the large side is handled
in *phase-major* order (positions grouped by ``large mod stride``): there a tap maps
consecutive small indices to consecutive positions, so every inner loop is a
contiguous run, and each tap's run is clipped to the positions that exist -- the
padding is never stored, read or multiplied, and no workspace is larger than the
call's own planes.

Transposed convolution: each thread owns whole (sample, channel) output planes (no
write races), accumulated in a phase-major scratch plane of exactly the output's
size, then un-phased into the output.  Convolution: each thread owns output rows and
gathers into them from the large input (re-laid out phase-major on x when the x
stride is above 1).
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

cnp.import_array()

cdef extern from "_rowops.h" nogil:
    const char *stc_simd_path()
    void stc_rows_gather_f(float *dst, const float **src, const float **w, Py_ssize_t n_src,
                           Py_ssize_t n_taps, const Py_ssize_t *first, const Py_ssize_t *stop,
                           const Py_ssize_t *offset, Py_ssize_t n_rows, Py_ssize_t dst_pitch,
                           Py_ssize_t src_pitch)
    void stc_rows_gather_d(double *dst, const double **src, const double **w,
                           Py_ssize_t n_src, Py_ssize_t n_taps, const Py_ssize_t *first,
                           const Py_ssize_t *stop, const Py_ssize_t *offset,
                           Py_ssize_t n_rows, Py_ssize_t dst_pitch, Py_ssize_t src_pitch)
    void stc_rows_gather4_f(float *dst, Py_ssize_t cp, const float **src, const float **w,
                            Py_ssize_t wp, Py_ssize_t n_src, Py_ssize_t n_taps,
                            const Py_ssize_t *first, const Py_ssize_t *stop,
                            const Py_ssize_t *offset, Py_ssize_t n_rows, Py_ssize_t dst_pitch,
                            Py_ssize_t src_pitch)
    void stc_rows_gather4_d(double *dst, Py_ssize_t cp, const double **src, const double **w,
                            Py_ssize_t wp, Py_ssize_t n_src, Py_ssize_t n_taps,
                            const Py_ssize_t *first, const Py_ssize_t *stop,
                            const Py_ssize_t *offset, Py_ssize_t n_rows, Py_ssize_t dst_pitch,
                            Py_ssize_t src_pitch)
    void stc_block_axpy_f(float *dst, Py_ssize_t dst_stride, const float *src,
                          Py_ssize_t row_len, Py_ssize_t n_rows, const float *w,
                          Py_ssize_t n_taps, const Py_ssize_t *first, const Py_ssize_t *stop,
                          const Py_ssize_t *offset)
    void stc_block_axpy_d(double *dst, Py_ssize_t dst_stride, const double *src,
                          Py_ssize_t row_len, Py_ssize_t n_rows, const double *w,
                          Py_ssize_t n_taps, const Py_ssize_t *first, const Py_ssize_t *stop,
                          const Py_ssize_t *offset)
    void stc_block_add_f(float *dst, Py_ssize_t dst_stride, const float *src,
                         Py_ssize_t tap_stride, Py_ssize_t row_len, Py_ssize_t n_rows,
                         Py_ssize_t n_taps, const Py_ssize_t *first, const Py_ssize_t *stop,
                         const Py_ssize_t *offset)
    void stc_block_add_d(double *dst, Py_ssize_t dst_stride, const double *src,
                         Py_ssize_t tap_stride, Py_ssize_t row_len, Py_ssize_t n_rows,
                         Py_ssize_t n_taps, const Py_ssize_t *first, const Py_ssize_t *stop,
                         const Py_ssize_t *offset)
    void stc_block_outer_axpy_f(float *dst, Py_ssize_t dst_stride, const float *src,
                                Py_ssize_t row_len, Py_ssize_t n_rows, const float *w,
                                const Py_ssize_t *e_first, const Py_ssize_t *e_stop,
                                const Py_ssize_t *e_start)
    void stc_block_outer_axpy_d(double *dst, Py_ssize_t dst_stride, const double *src,
                                Py_ssize_t row_len, Py_ssize_t n_rows, const double *w,
                                const Py_ssize_t *e_first, const Py_ssize_t *e_stop,
                                const Py_ssize_t *e_start)
    void stc_taps_dot_f(float *acc, const float *a, const float *b, Py_ssize_t n_taps,
                        const Py_ssize_t *first, const Py_ssize_t *stop,
                        const Py_ssize_t *offset)
    void stc_taps_dot_d(double *acc, const double *a, const double *b, Py_ssize_t n_taps,
                        const Py_ssize_t *first, const Py_ssize_t *stop,
                        const Py_ssize_t *offset)
    void stc_gather_row_f(float *out, const float *src, const Py_ssize_t *map,
                          Py_ssize_t n, Py_ssize_t phases, float bias)
    void stc_gather_row_d(double *out, const double *src, const Py_ssize_t *map,
                          Py_ssize_t n, Py_ssize_t phases, double bias)
    void stc_im2col_tap_f(float *dst, const float *src, Py_ssize_t count,
                          Py_ssize_t sample_pitch, const Py_ssize_t *zsrc,
                          const Py_ssize_t *ysrc, Py_ssize_t sy, Py_ssize_t row0,
                          Py_ssize_t rows, Py_ssize_t plane_pitch, Py_ssize_t row_pitch,
                          Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t sx, Py_ssize_t step)
    void stc_im2col_tap_d(double *dst, const double *src, Py_ssize_t count,
                          Py_ssize_t sample_pitch, const Py_ssize_t *zsrc,
                          const Py_ssize_t *ysrc, Py_ssize_t sy, Py_ssize_t row0,
                          Py_ssize_t rows, Py_ssize_t plane_pitch, Py_ssize_t row_pitch,
                          Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t sx, Py_ssize_t step)
    void stc_phase_row_f(float *dst, const float *src, const Py_ssize_t *layout, Py_ssize_t n,
                         Py_ssize_t stride)
    void stc_phase_row_d(double *dst, const double *src, const Py_ssize_t *layout,
                         Py_ssize_t n, Py_ssize_t stride)
    int STC_PHASE_TAIL
    void stc_phase_copy_f(float *d, const float *large, Py_ssize_t ly, Py_ssize_t lx,
                          const Py_ssize_t *zsrc, const Py_ssize_t *ysrc,
                          const Py_ssize_t *xruns, Py_ssize_t sz, Py_ssize_t sy, Py_ssize_t sx,
                          Py_ssize_t pz, Py_ssize_t py, Py_ssize_t px, Py_ssize_t pitch)
    void stc_phase_copy_d(double *d, const double *large, Py_ssize_t ly, Py_ssize_t lx,
                          const Py_ssize_t *zsrc, const Py_ssize_t *ysrc,
                          const Py_ssize_t *xruns, Py_ssize_t sz, Py_ssize_t sy, Py_ssize_t sx,
                          Py_ssize_t pz, Py_ssize_t py, Py_ssize_t px, Py_ssize_t pitch)
    void stc_grid_dot_f(float *out, const float *src, const Py_ssize_t *offset, const float *w,
                        Py_ssize_t count, Py_ssize_t n, float bias, int accumulate)
    void stc_grid_dot_d(double *out, const double *src, const Py_ssize_t *offset,
                        const double *w, Py_ssize_t count, Py_ssize_t n, double bias,
                        int accumulate)
    void stc_grid_dot4_f(float *out, Py_ssize_t out_pitch, const float *src,
                         const Py_ssize_t *offset, const float *w, Py_ssize_t w_pitch,
                         Py_ssize_t count, Py_ssize_t n, const float *bias, int accumulate)
    void stc_grid_dot4_d(double *out, Py_ssize_t out_pitch, const double *src,
                         const Py_ssize_t *offset, const double *w, Py_ssize_t w_pitch,
                         Py_ssize_t count, Py_ssize_t n, const double *bias, int accumulate)
    int STC_WGRAD_NR, STC_WGRAD_MR_BYTES
    void stc_channels_last_f(float *dst, Py_ssize_t dst_pitch, const float *src,
                             Py_ssize_t src_pitch, Py_ssize_t channels, Py_ssize_t positions)
    void stc_channels_last_d(double *dst, Py_ssize_t dst_pitch, const double *src,
                             Py_ssize_t src_pitch, Py_ssize_t channels, Py_ssize_t positions)
    void stc_wgrad_implicit_f(float *product, Py_ssize_t product_pitch, const float *copy,
                              Py_ssize_t copy_sample, const Py_ssize_t *offset,
                              Py_ssize_t d_count, const float *st, Py_ssize_t st_pitch,
                              Py_ssize_t c_count, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t oz,
                              Py_ssize_t oy, Py_ssize_t ox, Py_ssize_t py, Py_ssize_t px,
                              int accumulate)
    void stc_wgrad_implicit_d(double *product, Py_ssize_t product_pitch, const double *copy,
                              Py_ssize_t copy_sample, const Py_ssize_t *offset,
                              Py_ssize_t d_count, const double *st, Py_ssize_t st_pitch,
                              Py_ssize_t c_count, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t oz,
                              Py_ssize_t oy, Py_ssize_t ox, Py_ssize_t py, Py_ssize_t px,
                              int accumulate)

# The ids Python uses are these enum values (one definition).
ALGORITHMS = {"direct": DIRECT, "kernel_rows": KERNEL_ROWS, "gemm": GEMM}
COLUMN_SOURCES = {"im2col": IM2COL, "pointwise": POINTWISE, "whole_input": WHOLE_INPUT,
                  "implicit": IMPLICIT}
TILE_RESTARTS = {"along_grid": ALONG_GRID, "per_plane": PER_PLANE, "per_row": PER_ROW}
DIRECTIONS = {"transpose": TRANSPOSE, "convolve": CONVOLVE,
              "weight_gradient": WEIGHT_GRADIENT}

cdef extern from "_gemm.h" nogil:
    int STC_GEMM_NR, STC_GEMM_MR_BYTES
    int stc_gemm_available()
    int stc_gemm_f(char transa, char transb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                   const float *a, Py_ssize_t lda, const float *b, Py_ssize_t ldb, int beta,
                   float *c, Py_ssize_t ldc)
    int stc_gemm_d(char transa, char transb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                   const double *a, Py_ssize_t lda, const double *b, Py_ssize_t ldb, int beta,
                   double *c, Py_ssize_t ldc)
    void stc_implicit_pack_f(float *panels, const float *w, Py_ssize_t cout, Py_ssize_t depth)
    void stc_implicit_pack_d(double *panels, const double *w, Py_ssize_t cout,
                             Py_ssize_t depth)
    void stc_implicit_conv_f(const float *a, const Py_ssize_t *a_offset, Py_ssize_t depth,
                             const float *panels, Py_ssize_t cout, const float *bias,
                             float *out, Py_ssize_t out_pitch, const Py_ssize_t *out_offset,
                             Py_ssize_t u_begin, Py_ssize_t u_end, Py_ssize_t c_begin,
                             Py_ssize_t c_end)
    void stc_implicit_conv_d(const double *a, const Py_ssize_t *a_offset, Py_ssize_t depth,
                             const double *panels, Py_ssize_t cout, const double *bias,
                             double *out, Py_ssize_t out_pitch, const Py_ssize_t *out_offset,
                             Py_ssize_t u_begin, Py_ssize_t u_end, Py_ssize_t c_begin,
                             Py_ssize_t c_end)

ctypedef int (*blas_threads_fn)(int) noexcept nogil

# openblas_set_num_threads_local, when the BLAS behind scipy has it (found by
# _threads.py): BLAS calls made inside our parallel regions run single-threaded so
# that BLAS and OpenMP do not fight over the cores.
cdef blas_threads_fn _blas_set_local = NULL


def set_blas_thread_hook(size_t address):
    """Install ``int openblas_set_num_threads_local(int)`` (0 uninstalls)."""
    global _blas_set_local
    _blas_set_local = <blas_threads_fn> address


def blas_thread_hook_installed():
    return _blas_set_local != NULL


# GEMMs run the library's own AVX-512 kernel (_gemm.h) where the CPU has AVX-512,
# else the BLAS; set_gemm_kernel lets tests and benchmarks pick either.
cdef bint _own_gemm = stc_gemm_available() != 0
GEMM_KERNELS = ("own", "blas")


def gemm_kernel():
    """The GEMM the kernels call: "own" (AVX-512, _gemm.h) or "blas" (SciPy's BLAS)."""
    return "own" if _own_gemm else "blas"


def own_gemm_available():
    return stc_gemm_available() != 0


PHASE_TAIL = STC_PHASE_TAIL
GRID_BLOCK = {"channels": GRID_CHANNELS, "vectors": 2}
WEIGHT_GRADIENT_TILE = {"rows": STC_WGRAD_NR, "channel_bytes": STC_WGRAD_MR_BYTES}


def own_gemm_tile(Py_ssize_t itemsize):
    """(MR, NR): the own GEMM's register tile for elements of ``itemsize`` bytes.  C is
    computed in whole tiles (the edges padded), so m and n are best multiples of these."""
    return STC_GEMM_MR_BYTES // itemsize, STC_GEMM_NR


def set_gemm_kernel(str name):
    """Select the GEMM ("own" only where the CPU has AVX-512); returns the previous one."""
    global _own_gemm
    if name not in GEMM_KERNELS:
        raise ValueError(f"gemm kernel must be one of {GEMM_KERNELS}, got {name!r}")
    if name == "own" and not stc_gemm_available():
        raise ValueError("gemm kernel 'own' needs a CPU with AVX-512 (x86-64-v4)")
    previous = gemm_kernel()
    _own_gemm = name == "own"
    return previous


cdef Py_ssize_t _leading_dimension(cnp.ndarray array):
    if array.size and array.shape[1] > 1:
        return array.strides[1] // array.itemsize
    return max(1, array.shape[0])


def own_gemm(str transa, str transb, cnp.ndarray a, cnp.ndarray b, cnp.ndarray c,
             bint accumulate):
    """Test entry to the own GEMM: c = op(a) @ op(b) (+ c where ``accumulate``), in place.

    Each array is column-major with unit row stride (a Fortran-ordered array or a
    slice of one: its leading dimension is its column stride); one dtype, float32 or
    float64.  Returns False if the pack buffers could not be allocated.
    """
    if not stc_gemm_available():
        raise ValueError("the own GEMM needs a CPU with AVX-512 (x86-64-v4)")
    if transa not in ("N", "T") or transb not in ("N", "T"):
        raise ValueError(f"transa and transb must be 'N' or 'T', got {transa!r}, {transb!r}")
    for name, array in (("a", a), ("b", b), ("c", c)):
        if array.ndim != 2 or array.dtype != c.dtype or array.dtype.char not in "fd":
            raise ValueError(f"{name} must be a 2-D float32/float64 array of c's dtype")
        # a unit dimension's stride is arbitrary (and an empty array's): only the others
        # say what the layout is
        if array.size and ((array.shape[0] > 1 and array.strides[0] != array.itemsize)
                or (array.shape[1] > 1 and (array.strides[1] % array.itemsize
                                            or array.strides[1] < array.shape[0]
                                            * array.itemsize))):
            raise ValueError(f"{name} must be column-major with unit row stride")
    cdef Py_ssize_t m = c.shape[0], n = c.shape[1]
    cdef Py_ssize_t k = a.shape[1] if transa == "N" else a.shape[0]
    if (a.shape[0] if transa == "N" else a.shape[1]) != m or (
            (b.shape[0] if transb == "N" else b.shape[1]) != k) or (
            (b.shape[1] if transb == "N" else b.shape[0]) != n):
        raise ValueError(f"shapes do not chain: op(a) of {(<object> a).shape}, op(b) of "
                         f"{(<object> b).shape}, c {(<object> c).shape}")
    cdef Py_ssize_t lda = _leading_dimension(a)
    cdef Py_ssize_t ldb = _leading_dimension(b)
    cdef Py_ssize_t ldc = _leading_dimension(c)
    cdef char ta = ord(transa), tb = ord(transb)
    cdef int status
    if c.dtype.char == "f":
        status = stc_gemm_f(ta, tb, m, n, k, <float *> cnp.PyArray_DATA(a), lda,
                            <float *> cnp.PyArray_DATA(b), ldb, accumulate,
                            <float *> cnp.PyArray_DATA(c), ldc)
    else:
        status = stc_gemm_d(ta, tb, m, n, k, <double *> cnp.PyArray_DATA(a), lda,
                            <double *> cnp.PyArray_DATA(b), ldb, accumulate,
                            <double *> cnp.PyArray_DATA(c), ldc)
    return status == 0


def simd_path():
    """The instruction-set clone of the inner loops that this CPU runs."""
    return stc_simd_path().decode()


# ---------------------------------------------------------------------------
# Typed wrappers of the row operations (float / double)

cdef inline void _rows_gather(floating *dst, const floating **src, const floating **w,
                              Py_ssize_t n_src, const Axis *a, Py_ssize_t n_rows,
                              Py_ssize_t dst_pitch, Py_ssize_t src_pitch) noexcept nogil:
    if floating is float:
        stc_rows_gather_f(dst, src, w, n_src, a.kernel, a.first, a.stop, a.offset, n_rows,
                          dst_pitch, src_pitch)
    else:
        stc_rows_gather_d(dst, src, w, n_src, a.kernel, a.first, a.stop, a.offset, n_rows,
                          dst_pitch, src_pitch)


cdef inline void _rows_gather4(floating *dst, Py_ssize_t channel_pitch, const floating **src,
                               const floating **w, Py_ssize_t w_pitch, Py_ssize_t n_src,
                               const Axis *a, Py_ssize_t n_rows, Py_ssize_t dst_pitch,
                               Py_ssize_t src_pitch) noexcept nogil:
    if floating is float:
        stc_rows_gather4_f(dst, channel_pitch, src, w, w_pitch, n_src, a.kernel, a.first,
                           a.stop, a.offset, n_rows, dst_pitch, src_pitch)
    else:
        stc_rows_gather4_d(dst, channel_pitch, src, w, w_pitch, n_src, a.kernel, a.first,
                           a.stop, a.offset, n_rows, dst_pitch, src_pitch)


cdef inline void _block_axpy(floating *dst, Py_ssize_t dst_stride, const floating *src,
                             Py_ssize_t n_rows, const floating *w,
                             const Axis *a) noexcept nogil:
    if floating is float:
        stc_block_axpy_f(dst, dst_stride, src, a.small, n_rows, w, a.kernel, a.first,
                         a.stop, a.offset)
    else:
        stc_block_axpy_d(dst, dst_stride, src, a.small, n_rows, w, a.kernel, a.first,
                         a.stop, a.offset)


cdef inline void _block_add(floating *dst, Py_ssize_t dst_stride, const floating *src,
                            Py_ssize_t tap_stride, Py_ssize_t n_rows,
                            const Axis *a) noexcept nogil:
    if floating is float:
        stc_block_add_f(dst, dst_stride, src, tap_stride, a.small, n_rows, a.kernel,
                        a.first, a.stop, a.offset)
    else:
        stc_block_add_d(dst, dst_stride, src, tap_stride, a.small, n_rows, a.kernel,
                        a.first, a.stop, a.offset)


cdef inline void _block_outer_axpy(floating *dst, Py_ssize_t dst_stride, const floating *src,
                                   Py_ssize_t n_rows, const floating *w,
                                   const Axis *a) noexcept nogil:
    if floating is float:
        stc_block_outer_axpy_f(dst, dst_stride, src, a.small, n_rows, w, a.element_first,
                               a.element_stop, a.element_start)
    else:
        stc_block_outer_axpy_d(dst, dst_stride, src, a.small, n_rows, w, a.element_first,
                               a.element_stop, a.element_start)


cdef inline void _taps_dot(floating *acc, const floating *small_row,
                           const floating *large_row, const Axis *a) noexcept nogil:
    if floating is float:
        stc_taps_dot_f(acc, small_row, large_row, a.kernel, a.first, a.stop, a.offset)
    else:
        stc_taps_dot_d(acc, small_row, large_row, a.kernel, a.first, a.stop, a.offset)


cdef inline void _gather_row(floating *out, const floating *src, const Py_ssize_t *index,
                             Py_ssize_t n, Py_ssize_t phases, floating bias) noexcept nogil:
    if floating is float:
        stc_gather_row_f(out, src, index, n, phases, bias)
    else:
        stc_gather_row_d(out, src, index, n, phases, bias)


cdef inline void _phase_row(floating *dst, const floating *src, const Axis *a) noexcept nogil:
    if floating is float:
        stc_phase_row_f(dst, src, a.layout, a.large, a.stride)
    else:
        stc_phase_row_d(dst, src, a.layout, a.large, a.stride)


cdef inline void _gemm(char *transa, char *transb, int m, int n, int k, floating *a, int lda,
                       floating *b, int ldb, floating beta, floating *c,
                       int ldc) noexcept nogil:
    """C = op(A) @ op(B) + beta C in BLAS's column-major terms (alpha 1, beta 0 or 1)."""
    cdef floating one = 1
    if _own_gemm:
        if floating is float:
            if stc_gemm_f(transa[0], transb[0], m, n, k, a, lda, b, ldb, beta != 0, c, ldc) == 0:
                return
        else:
            if stc_gemm_d(transa[0], transb[0], m, n, k, a, lda, b, ldb, beta != 0, c, ldc) == 0:
                return
    if floating is float:
        sgemm(transa, transb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc)
    else:
        dgemm(transa, transb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc)


cdef void _grouped_gemm(char *transa, char *transb, int m, int n, int k,
                        floating *a, int lda, Py_ssize_t a_group,
                        floating *b, int ldb, Py_ssize_t b_group,
                        floating beta, floating *c, int ldc, Py_ssize_t c_group,
                        Py_ssize_t groups, int n_threads) noexcept nogil:
    """One column-major GEMM per group, split over threads along m or n.

    Each thread calls a single-threaded BLAS on its own block of C (see
    _blas_set_local), so the blocks never overlap.  Without the hook BLAS keeps its
    own threading and this runs from one thread.
    """
    cdef Py_ssize_t chunks = 1, item, g, part, start, stop, total
    cdef bint split_m = m >= n
    cdef floating *a_block
    cdef floating *b_block
    cdef int previous = 0
    if _blas_set_local == NULL and not _own_gemm:
        n_threads = 1
    if groups < n_threads:
        chunks = (n_threads + groups - 1) // groups
    total = m if split_m else n
    if chunks > total:
        chunks = total if total > 0 else 1
    with parallel(num_threads=n_threads):
        if _blas_set_local != NULL:
            previous = _blas_set_local(1)
        for item in prange(groups * chunks, schedule="static"):
            g = item // chunks
            part = item % chunks
            start = total * part // chunks
            stop = total * (part + 1) // chunks
            if stop <= start:
                continue
            a_block = a + g * a_group
            b_block = b + g * b_group
            if split_m:
                # rows start.. of op(A): offset by rows ('N') or by columns ('T')
                a_block = a_block + (start if transa[0] == c'N' else start * lda)
                _gemm(transa, transb, <int> (stop - start), n, k, a_block, lda, b_block, ldb,
                      beta, c + g * c_group + start, ldc)
            else:
                # columns start.. of op(B): offset by columns ('N') or by rows ('T')
                b_block = b_block + (start * ldb if transb[0] == c'N' else start)
                _gemm(transa, transb, m, <int> (stop - start), k, a_block, lda, b_block, ldb,
                      beta, c + g * c_group + start * ldc, ldc)
        if _blas_set_local != NULL:
            _blas_set_local(previous)


cdef inline Py_ssize_t _small_size(const Problem *p) noexcept nogil:
    return p.axis[0].small * p.axis[1].small * p.axis[2].small


cdef inline Py_ssize_t _large_size(const Problem *p) noexcept nogil:
    return p.axis[0].large * p.axis[1].large * p.axis[2].large


cdef inline Py_ssize_t _large_plane(const Problem *p) noexcept nogil:
    """Elements of one (sample, channel) large plane as the convolution kernels read it."""
    return p.axis[0].large * p.axis[1].large * p.axis[2].row_length


cdef inline Py_ssize_t _kernel_size(const Problem *p) noexcept nogil:
    return p.axis[0].kernel * p.axis[1].kernel * p.axis[2].kernel


# ---------------------------------------------------------------------------
# Transposed convolution


cdef void _transpose_plane(
        floating *out, const floating *x, const floating *w, const floating *bias,
        const floating *cols, Py_ssize_t cols_ld, Py_ssize_t cols_sample,
        floating *scratch, const Problem *p, Py_ssize_t plane) noexcept nogil:
    """One (sample, channel) output plane.

    DIRECT: input rows times weight taps, added into the phase-major scratch plane;
    KERNEL_ROWS: the scratch's x axis is in natural order and each input element adds
    a whole kernel row; GEMM: col2im of ``cols`` (rows (channel, taps), columns
    (sample, position), this plane's sample being column block ``cols_sample``).
    """
    cdef const Axis *az = &p.axis[0]
    cdef const Axis *ay = &p.axis[1]
    cdef const Axis *ax = &p.axis[2]
    cdef Py_ssize_t lx = ax.large, ly = ay.large, lz = az.large
    cdef Py_ssize_t sx = ax.small, sy = ay.small, sz = az.small
    cdef Py_ssize_t kz = az.kernel, ky = ay.kernel, kx = ax.kernel
    cdef Py_ssize_t z_stride = ly * lx
    cdef Py_ssize_t c_in = p.c_small, c_out = p.c_large
    cdef Py_ssize_t cin_g = c_in // p.groups, cout_g = c_out // p.groups
    cdef Py_ssize_t small_size = sz * sy * sx, kernel_size = kz * ky * kx
    cdef Py_ssize_t n = plane // c_out, co = plane % c_out
    cdef Py_ssize_t g = co // cout_g, col = co % cout_g
    cdef Py_ssize_t cil, ci, tz, ty, iz, y0, rows
    cdef floating *dst
    cdef const floating *src
    cdef const floating *wrow
    cdef floating bias_value = bias[co] if bias != NULL else 0
    memset(scratch, 0, lz * z_stride * sizeof(floating))
    if p.algorithm == GEMM:
        _col2im_rows(scratch, cols + cols_sample * small_size, cols_ld, 0, sz * sy, p, co)
    else:
        for cil in range(cin_g):
            ci = g * cin_g + cil
            for tz in range(kz):
                for ty in range(ky):
                    y0 = ay.first[ty]
                    rows = ay.stop[ty] - y0
                    if rows <= 0:
                        continue
                    wrow = w + (((ci * cout_g + col) * kz + tz) * ky + ty) * kx
                    for iz in range(az.first[tz], az.stop[tz]):
                        dst = (scratch + (az.offset[tz] + iz) * z_stride
                               + (ay.offset[ty] + y0) * lx)
                        src = x + (((n * c_in + ci) * sz + iz) * sy + y0) * sx
                        if p.algorithm == DIRECT:
                            _block_axpy(dst, lx, src, rows, wrow, ax)
                        else:
                            _block_outer_axpy(dst, lx, src, rows, wrow, ax)
    _plane_out(out, scratch, p, plane, 1 if p.algorithm == KERNEL_ROWS else ax.stride,
               bias_value)


cdef void _col2im_rows(floating *scratch, const floating *cols, Py_ssize_t cols_ld,
                       Py_ssize_t r_begin, Py_ssize_t r_end, const Problem *p,
                       Py_ssize_t co) noexcept nogil:
    """col2im of output channel ``co`` for the small-side (z, y) rows [r_begin, r_end):
    their columns (rows (channel, taps) cols_ld apart, a row's sx positions after the
    previous row's, from ``cols`` on) added into the channel's phase-major plane."""
    cdef const Axis *az = &p.axis[0]
    cdef const Axis *ay = &p.axis[1]
    cdef const Axis *ax = &p.axis[2]
    cdef Py_ssize_t lx = ax.large, z_stride = ay.large * ax.large
    cdef Py_ssize_t sx = ax.small, sy = ay.small
    cdef Py_ssize_t kz = az.kernel, ky = ay.kernel, kx = ax.kernel
    cdef Py_ssize_t kernel_size = kz * ky * kx, cout_g = p.c_large // p.groups
    cdef Py_ssize_t g = co // cout_g, col = co % cout_g
    cdef Py_ssize_t tz, ty, iz, y0, y1
    cdef const floating *src
    for tz in range(kz):
        for ty in range(ky):
            if ay.stop[ty] <= ay.first[ty]:
                continue
            # rows (col, tz, ty, 0..kx) of this group's columns, cols_ld apart
            src = cols + (g * cout_g * kernel_size + ((col * kz + tz) * ky + ty) * kx) * cols_ld
            for iz in range(az.first[tz], az.stop[tz]):
                # the input rows of plane iz that tap ty reaches, within the block
                y0 = max(ay.first[ty], r_begin - iz * sy)
                y1 = min(ay.stop[ty], r_end - iz * sy)
                if y1 <= y0:
                    continue
                _block_add(scratch + (az.offset[tz] + iz) * z_stride + (ay.offset[ty] + y0) * lx,
                           lx, src + (iz * sy + y0 - r_begin) * sx, cols_ld, y1 - y0, ax)


cdef void _plane_out(floating *out, const floating *scratch, const Problem *p,
                     Py_ssize_t plane, Py_ssize_t phases, floating bias_value) noexcept nogil:
    """Output plane ``plane`` from its scratch, whose x axis is phase-major with
    ``phases`` phases (1: natural), plus the bias."""
    cdef const Axis *az = &p.axis[0]
    cdef const Axis *ay = &p.axis[1]
    cdef const Axis *ax = &p.axis[2]
    cdef Py_ssize_t lx = ax.large, ly = ay.large, lz = az.large, z_stride = ly * lx
    cdef Py_ssize_t oz, oy
    for oz in range(lz):
        for oy in range(ly):
            _gather_row(out + ((plane * lz + oz) * ly + oy) * lx,
                        scratch + az.layout[oz] * z_stride + ay.layout[oy] * lx,
                        ax.layout, lx, phases, bias_value)


cdef void _transpose_planes(floating *out, const floating *x, const floating *w,
                            const floating *bias, floating *scratch_all, const Problem *p,
                            int n_threads) noexcept nogil:
    """DIRECT / KERNEL_ROWS: threads own (sample, channel) planes."""
    cdef Py_ssize_t plane
    cdef floating *scratch = NULL  # firstprivate below: initialised for -Wall
    with parallel(num_threads=n_threads):
        scratch = scratch_all + threadid() * p.scratch_pitch
        for plane in prange(p.batch * p.c_large, schedule="static"):
            _transpose_plane(out, x, w, bias, NULL, 0, 0, scratch, p, plane)


cdef inline void _pack_columns(floating *packed, const floating *x, Py_ssize_t batch,
                               Py_ssize_t channels, Py_ssize_t size) noexcept nogil:
    """packed[c, n*size + i] = x[n, c, i]: the samples side by side, for one GEMM."""
    cdef Py_ssize_t c, n
    for c in range(channels):
        for n in range(batch):
            memcpy(packed + (c * batch + n) * size, x + (n * channels + c) * size,
                   size * sizeof(floating))


cdef void _columns(floating *cols, const floating *x, floating *packed, floating *w,
                   Py_ssize_t first, Py_ssize_t count, const Problem *p,
                   int n_threads) noexcept nogil:
    """cols = W_g^T @ X_g for samples [first, first+count), every group.

    Row-major cols (rows, width) = W_g^T (rows x cin_g) @ X_g (cin_g x width);
    column-major: cols^T (width x rows) = X_g^T @ W_g, X_g as 'N', W_g as 'T'.
    """
    cdef Py_ssize_t size = _small_size(p)
    cdef Py_ssize_t cin_g = p.c_small // p.groups
    cdef Py_ssize_t rows = (p.c_large // p.groups) * _kernel_size(p)
    cdef Py_ssize_t width = count * size
    cdef floating *source = <floating *> x + first * p.c_small * size
    if count > 1:
        _pack_columns(packed, source, count, p.c_small, size)
        source = packed
    _grouped_gemm(b'N', b'T', <int> width, <int> rows, <int> cin_g,
                  source, <int> width, cin_g * width,
                  w, <int> rows, cin_g * rows,
                  0, cols, <int> width, rows * width, p.groups, n_threads)


cdef void _transpose_gemm_by_rows(floating *out, const floating *x, floating *w,
                                  const floating *bias, const Buffers *buf,
                                  const Problem *p, int n_threads) noexcept nogil:
    """GEMM + col2im of one sample at a time, block_rows small-side rows at a time
    (its columns would exceed the cap): each block's columns added into the sample's
    phase-major output planes (``buf.phased``; threads own channels), which then
    become the output."""
    cdef Py_ssize_t c_out = p.c_large, plane_len = _large_size(p), size = _small_size(p)
    cdef Py_ssize_t rows = p.axis[0].small * p.axis[1].small, sx = p.axis[2].small
    cdef Py_ssize_t cin_g = p.c_small // p.groups
    cdef Py_ssize_t depth = (c_out // p.groups) * _kernel_size(p)
    cdef Py_ssize_t n, co, row0, block, width
    cdef floating *planes = <floating *> buf.phased
    cdef floating *cols = <floating *> buf.columns
    for n in range(p.batch):
        for co in prange(c_out, schedule="static", num_threads=n_threads):
            memset(planes + co * plane_len, 0, plane_len * sizeof(floating))
        row0 = 0
        while row0 < rows:
            block = min(p.block_rows, rows - row0)
            width = block * sx
            # column-major cols^T (width x depth) = X_block^T @ W_g: the block's
            # positions of each input channel are contiguous, size apart
            _grouped_gemm(b'N', b'T', <int> width, <int> depth, <int> cin_g,
                          <floating *> x + n * p.c_small * size + row0 * sx, <int> size,
                          cin_g * size, w, <int> depth, cin_g * depth,
                          0, cols, <int> width, depth * width, p.groups, n_threads)
            for co in prange(c_out, schedule="static", num_threads=n_threads):
                _col2im_rows(planes + co * plane_len, cols, width, row0, row0 + block, p, co)
            row0 = row0 + block
        for co in prange(c_out, schedule="static", num_threads=n_threads):
            _plane_out(out, planes + co * plane_len, p, n * c_out + co, p.axis[2].stride,
                       bias[co] if bias != NULL else 0)


cdef void _transpose_gemm(floating *out, const floating *x, floating *w,
                          const floating *bias, const Buffers *buf, const Problem *p,
                          int n_threads, bint whole_chunks) noexcept nogil:
    """GEMM + col2im, a chunk of samples at a time so the columns are still in cache.

    whole_chunks: each thread takes whole chunks (its own single-threaded GEMM, then
    col2im of that chunk's planes: no barrier, columns hot in its own cache; the
    caller gave one packed/columns/scratch buffer per thread).  Otherwise the chunks
    run one after the other, each GEMM and col2im split over all threads.
    """
    cdef Py_ssize_t batch = p.batch, c_out = p.c_large, chunk = p.chunk
    cdef Py_ssize_t size = _small_size(p), plane_len = _large_size(p)
    cdef Py_ssize_t n_chunks = (batch + chunk - 1) // chunk
    cdef Py_ssize_t cols_len = c_out * _kernel_size(p) * chunk * size
    cdef Py_ssize_t packed_len = p.c_small * chunk * size
    cdef Py_ssize_t item, first, count, plane, tid = 0
    cdef floating *cols_all = <floating *> buf.columns
    cdef floating *packed_all = <floating *> buf.packed
    cdef floating *scratch_all = <floating *> buf.scratch
    # firstprivate in the parallel blocks below: initialised for -Wall
    cdef floating *cols = NULL
    cdef floating *packed = NULL
    cdef floating *scratch = NULL
    cdef int previous = 0
    if p.block_rows < p.axis[0].small * p.axis[1].small:
        _transpose_gemm_by_rows(out, x, w, bias, buf, p, n_threads)
        return
    if whole_chunks:
        with parallel(num_threads=n_threads):
            if _blas_set_local != NULL:
                previous = _blas_set_local(1)
            tid = threadid()
            cols = cols_all + tid * cols_len
            packed = packed_all + tid * packed_len
            scratch = scratch_all + tid * plane_len
            for item in prange(n_chunks, schedule="dynamic"):
                first = item * chunk
                count = min(chunk, batch - first)
                _columns(cols, x, packed, w, first, count, p, 1)
                for plane in range(first * c_out, (first + count) * c_out):
                    _transpose_plane(out, x, w, bias, cols, count * size,
                                     plane // c_out - first, scratch, p, plane)
            if _blas_set_local != NULL:
                _blas_set_local(previous)
        return
    for item in range(n_chunks):
        first = item * chunk
        count = min(chunk, batch - first)
        _columns(cols_all, x, packed_all, w, first, count, p, n_threads)
        with parallel(num_threads=n_threads):
            scratch = scratch_all + threadid() * plane_len
            for plane in prange(first * c_out, (first + count) * c_out, schedule="static"):
                _transpose_plane(out, x, w, bias, cols_all, count * size,
                                 plane // c_out - first, scratch, p, plane)


# ---------------------------------------------------------------------------
# Convolution direction (convolution, and the large side of the weight gradient)


cdef inline Py_ssize_t _large_rows(const Problem *p) noexcept nogil:
    return p.batch * p.c_large * p.axis[0].large * p.axis[1].large


cdef inline void _phase_large_row(floating *phased, const floating *large, const Problem *p,
                                  Py_ssize_t row) noexcept nogil:
    """Row ``row`` of the large input laid out by ``axis[2].layout`` in a row of
    ``axis[2].row_length`` (phase-major, zero where a padded row has no data)."""
    cdef const Axis *ax = &p.axis[2]
    cdef Py_ssize_t width = ax.row_length
    if width != ax.large:
        memset(phased + row * width, 0, width * sizeof(floating))
    _phase_row(phased + row * width, large + row * ax.large, ax)


cdef const floating *_phase_large(floating *phased, const floating *large,
                                  const Problem *p, int n_threads) noexcept nogil:
    """The large input phase-major (:func:`_phase_large_row`), or the input itself when
    it is read in place.  The direct kernels do this inside their own parallel region
    (one fork and join per call: every wake-up of a sleeping worker costs time)."""
    cdef Py_ssize_t row
    if not p.phased_large:
        return large
    for row in prange(_large_rows(p), schedule="static", num_threads=n_threads):
        _phase_large_row(phased, large, p, row)
    return phased


cdef enum:
    SOURCES_PER_GATHER = 16  # source rows per gather call (more: flushed in batches)


cdef enum:
    ROWS_PER_BLOCK = 8    # consecutive output rows gathered by one call (same sources)


cdef enum:
    CHANNELS_PER_GATHER = 4  # output channels of a group gathered by one call


# The direct convolution's blocking, for the cost model (sparsetconv._cost).
GATHER_BLOCK = {"channels": CHANNELS_PER_GATHER, "sources": SOURCES_PER_GATHER,
                "rows": ROWS_PER_BLOCK}


cdef inline Py_ssize_t _uniform_rows(const Axis *ay, Py_ssize_t oy,
                                     Py_ssize_t most) noexcept nogil:
    """How many output rows from ``oy`` on (at most ``most``) read, for every y tap,
    either consecutive source rows or none: rows one call can gather together (the
    phase-major layout makes a tap's sources for consecutive rows consecutive)."""
    cdef Py_ssize_t sy = ay.small, ty, j, first, rows = most
    for ty in range(ay.kernel):
        first = ay.source[ty * sy + oy]
        for j in range(1, rows):
            if ay.source[ty * sy + oy + j] != (first + j if first >= 0 else -1):
                rows = j
                break
    return rows


cdef inline void _gather_batch(floating *out_row, Py_ssize_t plane, const floating **srcs,
                               const Py_ssize_t *w_offsets, Py_ssize_t count,
                               const floating *w, Py_ssize_t w_step, Py_ssize_t co,
                               Py_ssize_t co_stop, const Axis *ax, Py_ssize_t rows,
                               Py_ssize_t sx, Py_ssize_t lx) noexcept nogil:
    """Add ``count`` gathered source rows into the output rows of channels co..co_stop,
    CHANNELS_PER_GATHER at a time: the sources stay in L1 while every channel block
    takes them; only the weight rows differ (w_offsets[j] within a channel's weights)."""
    cdef const floating *wrows[CHANNELS_PER_GATHER * SOURCES_PER_GATHER]
    cdef const floating *w_co
    cdef Py_ssize_t n_co, c, j
    while co < co_stop:
        n_co = min(CHANNELS_PER_GATHER, co_stop - co)
        for c in range(n_co):
            w_co = w + (co + c) * w_step
            for j in range(count):
                wrows[c * SOURCES_PER_GATHER + j] = w_co + w_offsets[j]
        if n_co == CHANNELS_PER_GATHER:
            _rows_gather4(out_row + co * plane, plane, srcs, wrows, SOURCES_PER_GATHER, count,
                          ax, rows, sx, lx)
        else:
            for c in range(n_co):
                _rows_gather(out_row + (co + c) * plane, srcs, wrows + c * SOURCES_PER_GATHER,
                             count, ax, rows, sx, lx)
        co = co + n_co


cdef inline void _conv_row_block(floating *out_row, const floating *large,
                                 const floating *w, const floating *bias, const Problem *p,
                                 Py_ssize_t n, Py_ssize_t co, Py_ssize_t co_stop,
                                 Py_ssize_t oz, Py_ssize_t oy, Py_ssize_t rows) noexcept nogil:
    """Output rows oy..oy+rows of (n, co .. co_stop, oz) -- output channels of one group
    -- which read the same source pattern (:func:`_uniform_rows`): the (channel, z tap,
    y tap) source rows of row oy that exist, listed once and gathered in register-
    blocked passes (see stc_rows_gather), SOURCES_PER_GATHER sources at a time for all
    the channels.  ``out_row`` points at channel 0 of sample n's rows oz, oy."""
    cdef const Axis *az = &p.axis[0]
    cdef const Axis *ay = &p.axis[1]
    cdef const Axis *ax = &p.axis[2]
    cdef Py_ssize_t sz = az.small, sy = ay.small, sx = ax.small
    cdef Py_ssize_t lz = az.large, ly = ay.large, lx = ax.row_length
    cdef Py_ssize_t kz = az.kernel, ky = ay.kernel, kx = ax.kernel
    cdef Py_ssize_t c_in = p.c_large, plane = sz * sy * sx
    cdef Py_ssize_t cin_g = c_in // p.groups, cout_g = p.c_small // p.groups
    cdef Py_ssize_t g = co // cout_g, cil, ci, tz, ty, iz, iy, i, c, count = 0
    cdef Py_ssize_t w_step = cin_g * kz * ky * kx   # one output channel's weights
    cdef const floating *srcs[SOURCES_PER_GATHER]
    cdef Py_ssize_t w_offsets[SOURCES_PER_GATHER]
    cdef floating bias_value
    for c in range(co, co_stop):
        bias_value = bias[c] if bias != NULL else 0
        for i in range(rows * sx):
            out_row[c * plane + i] = bias_value
    for cil in range(cin_g):
        ci = g * cin_g + cil
        for tz in range(kz):
            iz = az.source[tz * sz + oz]
            if iz < 0:
                continue
            for ty in range(ky):
                iy = ay.source[ty * sy + oy]
                if iy < 0:
                    continue
                srcs[count] = large + (((n * c_in + ci) * lz + iz) * ly + iy) * lx
                w_offsets[count] = ((cil * kz + tz) * ky + ty) * kx
                count = count + 1
                if count == SOURCES_PER_GATHER:
                    _gather_batch(out_row, plane, srcs, w_offsets, count, w, w_step, co,
                                  co_stop, ax, rows, sx, lx)
                    count = 0
    if count:
        _gather_batch(out_row, plane, srcs, w_offsets, count, w, w_step, co, co_stop, ax,
                      rows, sx, lx)


cdef enum:
    ITEMS_PER_THREAD = 8  # parallel items per thread before channel blocks are split off


cdef void _conv_rows(floating *out, const floating *x, floating *phased, const floating *w,
                     const floating *bias, const Problem *p, int n_threads) noexcept nogil:
    """DIRECT convolution: the input phase-major, then each thread owns blocks of output
    rows and gathers into them; z and y taps in the padding are skipped, x runs are
    clipped to the real positions.  One parallel region for both steps."""
    cdef const Axis *ay = &p.axis[1]
    cdef Py_ssize_t sz = p.axis[0].small, sy = ay.small, sx = p.axis[2].small
    cdef Py_ssize_t c_out = p.c_small, cout_g = p.c_small // p.groups
    cdef Py_ssize_t y_blocks = (sy + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    cdef Py_ssize_t co_blocks = (cout_g + CHANNELS_PER_GATHER - 1) // CHANNELS_PER_GATHER
    # A block of rows gathers all the group's channels from one list of its sources;
    # the channels are split into parts only as far as the threads need work.
    cdef Py_ssize_t row_items = max(1, p.batch * p.groups * sz * y_blocks)
    cdef Py_ssize_t parts = min(co_blocks, (ITEMS_PER_THREAD * n_threads + row_items - 1)
                                // row_items)
    cdef Py_ssize_t part_channels = ((co_blocks + parts - 1) // parts) * CHANNELS_PER_GATHER
    cdef Py_ssize_t item, rest, n, g, co, co_stop, oz, oy, stop, rows
    cdef const floating *large = <const floating *> phased if p.phased_large else x
    with parallel(num_threads=n_threads):
        if p.phased_large:
            for item in prange(_large_rows(p), schedule="static"):
                _phase_large_row(phased, x, p, item)
        # Items in (sample, group, z, y block, channel part) order: the parts of one
        # block read the same source rows, so taking them one after the other reads
        # those rows from cache instead of once per part from memory.
        for item in prange(row_items * parts, schedule="static"):
            co = (item % parts) * part_channels
            rest = item // parts
            oy = (rest % y_blocks) * ROWS_PER_BLOCK
            rest = rest // y_blocks
            oz = rest % sz
            rest = rest // sz
            g = rest % p.groups
            n = rest // p.groups
            co_stop = min(co + part_channels, cout_g)
            if co >= co_stop:
                continue
            co = g * cout_g + co
            co_stop = g * cout_g + co_stop
            stop = min(oy + ROWS_PER_BLOCK, sy)
            while oy < stop:
                rows = _uniform_rows(ay, oy, stop - oy)
                _conv_row_block(out + ((n * c_out * sz + oz) * sy + oy) * sx, large,
                                w, bias, p, n, co, co_stop, oz, oy, rows)
                oy = oy + rows


cdef void _im2col(floating *cols, const floating *large, Py_ssize_t count,
                  Py_ssize_t row0, Py_ssize_t rows, const Problem *p,
                  int n_threads) noexcept nogil:
    """cols[(c, tz, ty, tx), (n, r, ox)] = the large input (natural order, read in
    place) under that tap for ``count`` samples starting at ``large`` and their
    small-side rows r = (oz, oy) in [row0, row0 + rows), zero where the tap is in the
    padding."""
    cdef const Axis *az = &p.axis[0]
    cdef const Axis *ay = &p.axis[1]
    cdef const Axis *ax = &p.axis[2]
    cdef Py_ssize_t sz = az.small, sy = ay.small, sx = ax.small
    cdef Py_ssize_t ly = ay.large, lx = ax.large
    cdef Py_ssize_t kz = az.kernel, ky = ay.kernel, kx = ax.kernel
    cdef Py_ssize_t c_in = p.c_large, plane = az.large * ly * lx
    cdef Py_ssize_t width = count * rows * sx
    cdef Py_ssize_t item, rest, ci, tz, ty, tx, i0, i1, start
    cdef floating *dst
    cdef const floating *src
    for item in prange(c_in * kz * ky, schedule="static", num_threads=n_threads):
        ty = item % ky
        rest = item // ky
        tz = rest % kz
        ci = rest // kz
        for tx in range(kx):
            dst = cols + (item * kx + tx) * width
            i0 = ax.first[tx]
            i1 = ax.stop[tx]
            # the natural x position of the run's first element (any, if it is empty)
            start = ax.source[tx * sx + i0] if i1 > i0 else 0
            src = large + ci * plane + start
            if floating is float:
                stc_im2col_tap_f(dst, src, count, c_in * plane, az.source + tz * sz,
                                 ay.source + ty * sy, sy, row0, rows, ly * lx, lx,
                                 i0, i1, sx, ax.stride)
            else:
                stc_im2col_tap_d(dst, src, count, c_in * plane, az.source + tz * sz,
                                 ay.source + ty * sy, sy, row0, rows, ly * lx, lx,
                                 i0, i1, sx, ax.stride)


cdef void _conv_chunk(floating *out, const floating *large, floating *w,
                      const floating *bias, floating *cols, floating *product,
                      Py_ssize_t first, Py_ssize_t count, const Problem *p,
                      int n_threads) noexcept nogil:
    """Samples [first, first+count): im2col, out_g = W_g @ cols_g per group (BLAS), then
    bias and the (sample, channel) layout."""
    cdef Py_ssize_t c_out = p.c_small
    cdef Py_ssize_t size = _small_size(p)
    cdef Py_ssize_t cout_g = c_out // p.groups
    cdef Py_ssize_t width = count * size, depth = (p.c_large // p.groups) * _kernel_size(p)
    cdef Py_ssize_t rows = p.axis[0].small * p.axis[1].small, sx = p.axis[2].small
    cdef Py_ssize_t row, n, co, i, row0, block
    cdef floating bias_value
    cdef floating *target
    if count == 1:
        # one sample: the product's (channel, position) layout is the output's, so the
        # GEMM accumulates onto the bias straight in the output, a block of small-side
        # rows at a time (p.block_rows) so that the block's columns are still in cache
        # when BLAS packs them
        target = out + first * c_out * size
        for row in prange(c_out, schedule="static", num_threads=n_threads):
            bias_value = bias[row] if bias != NULL else 0
            for i in range(size):
                target[row * size + i] = bias_value
        row0 = 0
        while row0 < rows:
            block = min(p.block_rows, rows - row0)
            width = block * sx
            _im2col(cols, large + first * p.c_large * _large_plane(p), 1, row0, block, p,
                    n_threads)
            _grouped_gemm(b'N', b'N', <int> width, <int> cout_g, <int> depth,
                          cols, <int> width, depth * width,
                          w, <int> depth, cout_g * depth,
                          1, target + row0 * sx, <int> size, cout_g * size, p.groups,
                          n_threads)
            row0 = row0 + block
        return
    _im2col(cols, large + first * p.c_large * _large_plane(p), count, 0, rows, p, n_threads)
    # Row-major product (cout_g, width) = W_g (cout_g x depth) @ cols_g (depth x width);
    # column-major: product^T = cols_g^T @ W_g^T, both as 'N'.
    _grouped_gemm(b'N', b'N', <int> width, <int> cout_g, <int> depth,
                  cols, <int> width, depth * width,
                  w, <int> depth, cout_g * depth,
                  0, product, <int> width, cout_g * width, p.groups, n_threads)
    for row in prange(count * c_out, schedule="static", num_threads=n_threads):
        n = row // c_out
        co = row % c_out
        bias_value = bias[co] if bias != NULL else 0
        for i in range(size):
            out[((first + n) * c_out + co) * size + i] = (
                product[(co * count + n) * size + i] + bias_value)


cdef void _conv_gemm(floating *out, const floating *large, floating *w,
                     const floating *bias, const Buffers *buf, const Problem *p,
                     int n_threads, bint whole_chunks) noexcept nogil:
    """im2col + GEMM, a chunk of samples at a time so the columns are still in cache;
    whole_chunks: each thread takes whole chunks (no barrier)."""
    cdef Py_ssize_t batch = p.batch, chunk = p.chunk
    cdef Py_ssize_t size = _small_size(p)
    cdef Py_ssize_t n_chunks = (batch + chunk - 1) // chunk
    # one thread's share of the workspaces, as _layout sized them (a one-sample chunk's
    # columns hold one block of rows)
    cdef Py_ssize_t cols_len = (p.c_large * _kernel_size(p) * chunk * p.block_rows
                                * p.axis[2].small)
    cdef Py_ssize_t product_len = p.c_small * chunk * size
    cdef Py_ssize_t item, first, tid = 0
    cdef floating *cols_all = <floating *> buf.columns
    cdef floating *product_all = <floating *> buf.product
    # firstprivate in the parallel block below: initialised for -Wall
    cdef floating *cols = NULL
    cdef floating *product = NULL
    cdef int previous = 0
    if whole_chunks:
        with parallel(num_threads=n_threads):
            if _blas_set_local != NULL:
                previous = _blas_set_local(1)
            tid = threadid()
            cols = cols_all + tid * cols_len
            product = product_all + tid * product_len
            for item in prange(n_chunks, schedule="dynamic"):
                first = item * chunk
                _conv_chunk(out, large, w, bias, cols, product, first,
                            min(chunk, batch - first), p, 1)
            if _blas_set_local != NULL:
                _blas_set_local(previous)
        return
    for item in range(n_chunks):
        first = item * chunk
        _conv_chunk(out, large, w, bias, cols_all, product_all, first,
                    min(chunk, batch - first), p, n_threads)


# ---------------------------------------------------------------------------
# Weight gradient (both directions): with S the small side (the convolution's output
# gradient, or the transposed convolution's input) and L the large side,
#     grad_w[cs, cl, t] = sum over n, j of S[n, cs, j] * L[n, group(cs)*Cl_g + cl, j*s - pad + t*d]
# -- a correlation, read from the large side like a convolution.


cdef inline void _weight_grad_row(floating *grad_w, const floating *small,
                                  const floating *large, const Problem *p,
                                  Py_ssize_t item) noexcept nogil:
    """Weight row ``item`` = (cs, cl of its group): every kernel tap, correlated."""
    cdef const Axis *az = &p.axis[0]
    cdef const Axis *ay = &p.axis[1]
    cdef const Axis *ax = &p.axis[2]
    cdef Py_ssize_t sz = az.small, sy = ay.small, sx = ax.small
    cdef Py_ssize_t lz = az.large, ly = ay.large, lx = ax.row_length
    cdef Py_ssize_t kz = az.kernel, ky = ay.kernel, kx = ax.kernel
    cdef Py_ssize_t c_small = p.c_small, c_large = p.c_large
    cdef Py_ssize_t cs_g = c_small // p.groups, cl_g = c_large // p.groups
    cdef Py_ssize_t kernel_size = kz * ky * kx
    cdef Py_ssize_t cs = item // cl_g, cl = (cs // cs_g) * cl_g + item % cl_g
    cdef Py_ssize_t n, oz, oy, tz, ty, iz, iy, i
    cdef floating *acc = grad_w + item * kernel_size
    for i in range(kernel_size):
        acc[i] = 0
    for n in range(p.batch):
        for oz in range(sz):
            for tz in range(kz):
                iz = az.source[tz * sz + oz]
                if iz < 0:
                    continue
                for oy in range(sy):
                    for ty in range(ky):
                        iy = ay.source[ty * sy + oy]
                        if iy < 0:
                            continue
                        _taps_dot(acc + (tz * ky + ty) * kx,
                                  small + (((n * c_small + cs) * sz + oz) * sy + oy) * sx,
                                  large + (((n * c_large + cl) * lz + iz) * ly + iy) * lx,
                                  ax)


cdef void _weight_grad_rows(floating *grad_w, const floating *small, const floating *x,
                            floating *phased, const Problem *p, int n_threads) noexcept nogil:
    """DIRECT: the large side phase-major, then each thread owns weight rows (cs, cl)
    and correlates.  One parallel region for both steps."""
    cdef Py_ssize_t item, row
    cdef const floating *large = <const floating *> phased if p.phased_large else x
    with parallel(num_threads=n_threads):
        if p.phased_large:
            for row in prange(_large_rows(p), schedule="static"):
                _phase_large_row(phased, x, p, row)
        for item in prange(p.c_small * (p.c_large // p.groups), schedule="dynamic"):
            _weight_grad_row(grad_w, small, large, p, item)


cdef inline void _pack_one(floating *dst, const floating *src, Py_ssize_t count,
                           Py_ssize_t channels, Py_ssize_t size) noexcept nogil:
    """dst[n*size + i] = src[n*channels*size + i]: one channel of ``count`` samples."""
    cdef Py_ssize_t n
    for n in range(count):
        memcpy(dst + n * size, src + n * channels * size, size * sizeof(floating))


cdef inline void _weight_grad_product(const floating *s_block, int lds, const floating *cols,
                                      int ldc, int k, floating beta, floating *grad_w,
                                      floating *product, const Problem *p,
                                      int n_threads) noexcept nogil:
    """grad_w_g (+)= S_g (cs_g x k, rows lds apart) @ cols_g^T (k x depth, columns
    ldc apart), per group.  OpenBLAS runs this 'T','N' product faster with the smaller
    of cs_g and depth as its m side (1.03-1.6x on the shapes timed), so when the layout
    gave a product buffer (the output channels are fewer) it is accumulated there
    transposed, column-major (cs_g x depth); otherwise straight into grad_w, column-
    major (depth x cs_g)."""
    cdef Py_ssize_t cs_g = p.c_small // p.groups
    cdef Py_ssize_t depth = (p.c_large // p.groups) * _kernel_size(p)
    if product == NULL:
        _grouped_gemm(b'T', b'N', <int> depth, <int> cs_g, k,
                      <floating *> cols, ldc, depth * ldc,
                      <floating *> s_block, lds, cs_g * lds,
                      beta, grad_w, <int> depth, cs_g * depth, p.groups, n_threads)
    else:
        _grouped_gemm(b'T', b'N', <int> cs_g, <int> depth, k,
                      <floating *> s_block, lds, cs_g * lds,
                      <floating *> cols, ldc, depth * ldc,
                      beta, product, <int> cs_g, cs_g * depth, p.groups, n_threads)


# (channel, tap) rows per piece of the product's transpose
cdef enum:
    TRANSPOSE_ROWS = 256


cdef void _product_into_weight(floating *grad_w, const floating *product, Py_ssize_t pitch,
                               const Problem *p, int n_threads) noexcept nogil:
    """grad_w[g cs_g + cs, d] = product[(g depth + d) pitch + cs]: a weight gradient
    accumulated transposed (a group's (channel, tap) rows, each its small channels
    ``pitch`` apart), put in the weight's layout by the in-register transposes of
    :c:func:`stc_channels_last`, TRANSPOSE_ROWS rows per piece of work."""
    cdef Py_ssize_t cs_g = p.c_small // p.groups
    cdef Py_ssize_t depth = (p.c_large // p.groups) * _kernel_size(p)
    cdef Py_ssize_t blocks = (depth + TRANSPOSE_ROWS - 1) // TRANSPOSE_ROWS
    cdef Py_ssize_t item, g, d0
    for item in prange(p.groups * blocks, schedule="static", num_threads=n_threads):
        g = item // blocks
        d0 = (item % blocks) * TRANSPOSE_ROWS
        if floating is float:
            stc_channels_last_f(grad_w + g * cs_g * depth + d0, depth,
                                product + (g * depth + d0) * pitch, pitch,
                                min(TRANSPOSE_ROWS, depth - d0), cs_g)
        else:
            stc_channels_last_d(grad_w + g * cs_g * depth + d0, depth,
                                product + (g * depth + d0) * pitch, pitch,
                                min(TRANSPOSE_ROWS, depth - d0), cs_g)


cdef void _weight_grad_gemm(floating *grad_w, const floating *small, const floating *large,
                            const Buffers *buf, const Problem *p,
                            int n_threads) noexcept nogil:
    """GEMM, a chunk of samples at a time:
    grad_w_g += S_g (cs_g x width) @ im2col(L)_g^T (width x cl_g*K), per group
    (:func:`_weight_grad_product`) -- one GEMM per sample (a block of rows at a time)
    reading S in place, or (a packed buffer) one per chunk over the samples' S packed
    side by side (see _layout.weight_gradient_per_sample)."""
    cdef Py_ssize_t batch = p.batch, c_small = p.c_small, chunk = p.chunk
    cdef Py_ssize_t size = _small_size(p)
    cdef Py_ssize_t cs_g = c_small // p.groups
    cdef Py_ssize_t depth = (p.c_large // p.groups) * _kernel_size(p)
    cdef Py_ssize_t rows = p.axis[0].small * p.axis[1].small, sx = p.axis[2].small
    cdef Py_ssize_t item, first, count, width, c, n, row0, block
    cdef floating *cols = <floating *> buf.columns
    cdef floating *packed = <floating *> buf.packed
    cdef floating *product = <floating *> buf.product
    cdef floating beta
    for item in range((batch + chunk - 1) // chunk):
        first = item * chunk
        count = min(chunk, batch - first)
        if count == 1 and packed == NULL:
            # one sample: a block of small-side rows at a time (p.block_rows), each
            # GEMM reducing over the block's positions, so the block's columns are
            # still in cache when BLAS packs them
            row0 = 0
            while row0 < rows:
                block = min(p.block_rows, rows - row0)
                width = block * sx
                _im2col(cols, large + first * p.c_large * _large_plane(p), 1, row0, block,
                        p, n_threads)
                beta = 0 if item == 0 and row0 == 0 else 1
                _weight_grad_product(small + first * c_small * size + row0 * sx,
                                     <int> size, cols, <int> width, <int> width, beta,
                                     grad_w, product, p, n_threads)
                row0 = row0 + block
            continue
        width = count * size
        _im2col(cols, large + first * p.c_large * _large_plane(p), count, 0, rows, p,
                n_threads)
        if packed == NULL:
            for n in range(count):
                beta = 0 if item == 0 and n == 0 else 1
                _weight_grad_product(small + (first + n) * c_small * size, <int> size,
                                     cols + n * size, <int> width, <int> size, beta,
                                     grad_w, product, p, n_threads)
            continue
        for c in prange(c_small, schedule="static", num_threads=n_threads):
            _pack_one(packed + c * width, small + (first * c_small + c) * size, count,
                      c_small, size)
        beta = 0 if item == 0 else 1
        _weight_grad_product(packed, <int> width, cols, <int> width, <int> width, beta,
                             grad_w, product, p, n_threads)
    if product != NULL:
        _product_into_weight(grad_w, product, cs_g, p, n_threads)


# ---------------------------------------------------------------------------
# GEMM without a column buffer: when the column matrix is the input itself
# (ColumnSource POINTWISE or WHOLE_INPUT), BLAS reads the arrays where they are and
# writes the result where it belongs -- no im2col, no col2im, no workspace.


cdef void _fill_bias(floating *out, const floating *bias, Py_ssize_t planes,
                     Py_ssize_t channels, Py_ssize_t size, int n_threads) noexcept nogil:
    """out[plane, i] = bias[plane % channels] (0 without bias): what beta=1 adds to."""
    cdef Py_ssize_t plane, i
    cdef floating value
    for plane in prange(planes, schedule="static", num_threads=n_threads):
        value = bias[plane % channels] if bias != NULL else 0
        for i in range(size):
            out[plane * size + i] = value


cdef void _pointwise_sample(floating *out, const floating *x, floating *w, const Problem *p,
                            Py_ssize_t n, int n_threads) noexcept nogil:
    """One sample of a kernel-1, stride-1, unpadded layer: per group, in column-major
    terms, out_n^T (size x c_out_g) = x_n^T (size x c_in_g) @ op(W_g)."""
    cdef Py_ssize_t size = _small_size(p)
    cdef Py_ssize_t c_in = p.c_small if p.direction == TRANSPOSE else p.c_large
    cdef Py_ssize_t c_out = p.c_large if p.direction == TRANSPOSE else p.c_small
    cdef Py_ssize_t cin_g = c_in // p.groups, cout_g = c_out // p.groups
    cdef floating *a = <floating *> x + n * c_in * size
    cdef floating *c = out + n * c_out * size
    if p.direction == TRANSPOSE:
        # W_g row-major (cin_g, cout_g) is column-major (cout_g x cin_g): 'T'
        _grouped_gemm(b'N', b'T', <int> size, <int> cout_g, <int> cin_g, a, <int> size,
                      cin_g * size, w, <int> cout_g, cin_g * cout_g, 1, c, <int> size,
                      cout_g * size, p.groups, n_threads)
    else:
        # W_g row-major (cout_g, cin_g) is column-major (cin_g x cout_g): 'N'
        _grouped_gemm(b'N', b'N', <int> size, <int> cout_g, <int> cin_g, a, <int> size,
                      cin_g * size, w, <int> cin_g, cout_g * cin_g, 1, c, <int> size,
                      cout_g * size, p.groups, n_threads)


cdef void _direct_columns_forward(floating *out, const floating *x, floating *w,
                                  const floating *bias, const Buffers *buf,
                                  const Problem *p, int n_threads,
                                  bint whole_chunks) noexcept nogil:
    cdef Py_ssize_t n, co, out_channels, out_size, depth, cin_g, cout_g, kernel_size
    cdef floating *product = <floating *> buf.product
    cdef int previous = 0
    if p.direction == TRANSPOSE:
        out_channels, out_size = p.c_large, _large_size(p)
    else:
        out_channels, out_size = p.c_small, _small_size(p)
    _fill_bias(out, bias, p.batch * out_channels, out_channels, out_size, n_threads)
    if p.column_source == POINTWISE:
        if whole_chunks:  # threads own samples, each with a single-threaded BLAS
            with parallel(num_threads=n_threads):
                if _blas_set_local != NULL:
                    previous = _blas_set_local(1)
                for n in prange(p.batch, schedule="dynamic"):
                    _pointwise_sample(out, x, w, p, n, 1)
                if _blas_set_local != NULL:
                    _blas_set_local(previous)
        else:
            for n in range(p.batch):
                _pointwise_sample(out, x, w, p, n, n_threads)
        return
    # WHOLE_INPUT: one small position per sample, the large plane is one column
    kernel_size = _kernel_size(p)
    if p.direction == TRANSPOSE:
        cin_g, cout_g = p.c_small // p.groups, p.c_large // p.groups
        # out (N, c_out*K) is column-major (c_out*K x N): C_g = W_g (cout_g*K x cin_g,
        # row-major (cin_g, cout_g*K) read as column-major, 'N') @ x_g (cin_g x N)
        _grouped_gemm(b'N', b'N', <int> (cout_g * kernel_size), <int> p.batch, <int> cin_g,
                      w, <int> (cout_g * kernel_size), cin_g * cout_g * kernel_size,
                      <floating *> x, <int> p.c_small, cin_g,
                      1, out, <int> (p.c_large * kernel_size), cout_g * kernel_size,
                      p.groups, n_threads)
    else:
        cin_g, cout_g = p.c_large // p.groups, p.c_small // p.groups
        depth = cin_g * kernel_size
        if product == NULL:
            # out (N, c_out) is column-major (c_out x N): C_g = W_g (cout_g x depth, 'T'
            # of its column-major (depth x cout_g)) @ x_g (depth x N, rows c_in*K apart)
            _grouped_gemm(b'T', b'N', <int> cout_g, <int> p.batch, <int> depth,
                          w, <int> depth, cout_g * depth,
                          <floating *> x, <int> (p.c_large * kernel_size), depth,
                          1, out, <int> p.c_small, cout_g, p.groups, n_threads)
            return
        # fewer samples than channels (_layout.whole_input_by_samples): the samples
        # are BLAS's m side, product (c_out, N) column-major (N x c_out) -- OpenBLAS
        # ran these 1.2-4x faster -- then added to the output transposed
        _grouped_gemm(b'T', b'N', <int> p.batch, <int> cout_g, <int> depth,
                      <floating *> x, <int> (p.c_large * kernel_size), depth,
                      w, <int> depth, cout_g * depth,
                      0, product, <int> p.batch, cout_g * p.batch, p.groups, n_threads)
        for n in range(p.batch):
            for co in range(p.c_small):
                out[n * p.c_small + co] += product[co * p.batch + n]


cdef void _direct_columns_weight_gradient(floating *grad_w, const floating *small,
                                          const floating *large, const Problem *p,
                                          int n_threads) noexcept nogil:
    cdef Py_ssize_t size = _small_size(p), kernel_size = _kernel_size(p)
    cdef Py_ssize_t cs_g = p.c_small // p.groups, cl_g = p.c_large // p.groups
    cdef Py_ssize_t n, depth = cl_g * kernel_size
    if p.column_source == POINTWISE:
        # grad_w_g (cs_g, cl_g) += S_n,g (cs_g x size) @ L_n,g^T; column-major
        # (cl_g x cs_g) = L_n,g ('T' of its (size x cl_g)) @ S_n,g (size x cs_g)
        for n in range(p.batch):
            _grouped_gemm(b'T', b'N', <int> cl_g, <int> cs_g, <int> size,
                          <floating *> large + n * p.c_large * size, <int> size, cl_g * size,
                          <floating *> small + n * p.c_small * size, <int> size, cs_g * size,
                          0 if n == 0 else 1, grad_w, <int> cl_g, cs_g * cl_g, p.groups,
                          n_threads)
        return
    # WHOLE_INPUT: grad_w_g (cs_g, depth) = S_g^T (cs_g x N) @ L_g (N x depth); column-
    # major (depth x cs_g) = L_g (depth x N, rows c_large*K apart) @ S_g ('T' of (cs_g x N))
    _grouped_gemm(b'N', b'T', <int> depth, <int> cs_g, <int> p.batch,
                  <floating *> large, <int> (p.c_large * kernel_size), depth,
                  <floating *> small, <int> p.c_small, cs_g,
                  0, grad_w, <int> depth, cs_g * depth, p.groups, n_threads)


# ---------------------------------------------------------------------------
# The non-finite test of sparsetconv.functional.all_finite, for contiguous floats.

cdef inline bint _finite_bits(const char *data, Py_ssize_t n, bint single) noexcept nogil:
    """No element has an all-ones exponent (NaN or inf): an integer OR over the bits,
    which vectorises (a floating-point sum would not, without reassociation)."""
    cdef const uint32_t *f = <const uint32_t *> data
    cdef const uint64_t *d = <const uint64_t *> data
    cdef uint32_t f_bad = 0
    cdef uint64_t d_bad = 0
    cdef Py_ssize_t i
    if single:
        for i in range(n):
            # the exponent field plus one carries into the sign bit only when all ones
            f_bad |= ((f[i] & 0x7F800000u) + 0x00800000u) & 0x80000000u
        return f_bad == 0
    for i in range(n):
        d_bad |= ((d[i] & 0x7FF0000000000000u) + 0x0010000000000000u) & 0x8000000000000000u
    return d_bad == 0


def finite_floats(cnp.ndarray array):
    """Whether a C-contiguous float32/float64 array holds no NaN and no inf (exact);
    None for any other array (the caller tests it another way)."""
    cdef int kind = cnp.PyArray_TYPE(array)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(array)
    cdef const char *data
    cdef bint single, finite
    if not cnp.PyArray_IS_C_CONTIGUOUS(array) or (kind != cnp.NPY_FLOAT
                                                  and kind != cnp.NPY_DOUBLE):
        return None
    data = <const char *> cnp.PyArray_DATA(array)
    single = kind == cnp.NPY_FLOAT
    if n < 65536:
        return _finite_bits(data, n, single)
    with nogil:
        finite = _finite_bits(data, n, single)
    return finite


# ---------------------------------------------------------------------------
# Python entry point: a prepared kernel holds its Problem (tables as raw pointers),
# so a call only unpacks the arrays, releases the GIL and runs.


cdef inline void *_data(object array):
    return NULL if array is None else cnp.PyArray_DATA(<cnp.ndarray> array)


cdef inline object _c_ready(object array, int typenum):
    """``array`` itself when it is a C-contiguous ndarray of ``typenum``, else a copy
    that is (what np.ascontiguousarray would give)."""
    if (cnp.PyArray_Check(array) and cnp.PyArray_TYPE(<cnp.ndarray> array) == typenum
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> array)):
        return array
    return cnp.PyArray_FROMANY(array, typenum, 0, 0,
                               cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED
                               | cnp.NPY_ARRAY_FORCECAST)


cdef inline cnp.ndarray _empty(tuple shape, int typenum):
    cdef cnp.npy_intp dims[8]
    cdef int axis, ndim = len(shape)
    for axis in range(ndim):
        dims[axis] = shape[axis]
    return cnp.PyArray_EMPTY(ndim, dims, typenum, 0)


cdef void *_workspaces(tuple workspaces, int typenum, void **a, void **b, void **c,
                       void **d, void **e) except? NULL:
    """Point each of a..e (those not NULL, in order) at its workspace: None gives NULL,
    an array its data, an int that many elements of one block allocated here for this
    call (small workspaces: no NumPy array to make).  Returns the block to free."""
    cdef void **slots[5]
    cdef Py_ssize_t offsets[5]
    cdef Py_ssize_t total = 0, itemsize = 4 if typenum == cnp.NPY_FLOAT else 8, size
    cdef int i, n = len(workspaces)
    cdef char *block = NULL
    slots[0], slots[1], slots[2], slots[3], slots[4] = a, b, c, d, e
    for i in range(n):
        item = workspaces[i]
        offsets[i] = -1
        if item is None:
            slots[i][0] = NULL
        elif isinstance(item, cnp.ndarray):
            slots[i][0] = _data(item)
        else:
            size = item                  # an element count (TypeError if not an int)
            offsets[i] = total
            total += (size + 15) & ~15   # 64-byte steps between the buffers
    if total == 0:
        return NULL
    block = <char *> malloc(total * itemsize)
    if block == NULL:
        raise MemoryError(f"could not allocate {total * itemsize} bytes of workspace")
    for i in range(n):
        if offsets[i] >= 0:
            slots[i][0] = block + offsets[i] * itemsize
    return block


cdef inline const Py_ssize_t *_table(object array, list keep) except? NULL:
    if array is None:
        return NULL
    if (not isinstance(array, cnp.ndarray) or cnp.PyArray_TYPE(<cnp.ndarray> array) != cnp.NPY_INTP
            or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> array)):
        raise ValueError("internal: kernel tables must be C-contiguous intp arrays")
    keep.append(array)
    return <const Py_ssize_t *> cnp.PyArray_DATA(<cnp.ndarray> array)


cdef class Kernel:
    """One prepared kernel: a :c:type:`Problem` copied, by name, from a ``_layout.Layout``.

    ``forward(out, input, weight, bias, ...)`` runs a transposed convolution or a
    convolution; ``weight_gradient(grad_weight, small, large, ...)`` the weight
    gradient.  Workspaces are passed by name (None where the layout sized them 0).
    """

    cdef Problem problem
    cdef list _keep
    cdef readonly int direction
    cdef readonly int algorithm

    def __init__(self, layout):
        cdef int a
        cdef Axis *axis
        self._keep = []
        for a, tables in enumerate(layout.axes):
            axis = &self.problem.axis[a]
            axis.small = tables.small
            axis.large = tables.large
            axis.kernel = tables.kernel
            axis.first = _table(tables.first, self._keep)
            axis.stop = _table(tables.stop, self._keep)
            axis.offset = _table(tables.offset, self._keep)
            axis.source = _table(tables.source, self._keep)
            axis.layout = _table(tables.layout, self._keep)
            axis.row_length = tables.row_length
            axis.stride = tables.stride
            axis.element_first = _table(tables.element_first, self._keep)
            axis.element_stop = _table(tables.element_stop, self._keep)
            axis.element_start = _table(tables.element_start, self._keep)
            axis.padded = tables.padded
            axis.phase_source = _table(tables.phase_source, self._keep)
            axis.phase_runs = _table(tables.phase_runs, self._keep)
        self.problem.direction = layout.direction
        self.problem.algorithm = layout.algorithm
        self.problem.batch = layout.batch
        self.problem.c_small = layout.c_small
        self.problem.c_large = layout.c_large
        self.problem.groups = layout.groups
        self.problem.chunk = layout.chunk
        self.problem.block_rows = layout.block_rows
        self.problem.column_source = layout.column_source
        self.problem.phased_large = layout.phased_large
        self.problem.a_offset = _table(layout.a_offset, self._keep)
        self.problem.out_offset = _table(layout.out_offset, self._keep)
        self.problem.positions = layout.positions
        self.problem.phase_pitch = layout.phase_pitch
        self.problem.u_block = layout.u_block
        self.problem.panel_block = layout.panel_block
        self.problem.tile_restart = layout.tile_restart
        self.problem.scratch_pitch = layout.workspace.scratch
        self.problem.grid_pitch = layout.grid_pitch
        self.problem.grid_channels = layout.grid_channels
        self.problem.depth_block = layout.depth_block
        self.problem.small_channels_padded = layout.small_channels_padded
        self.direction = layout.direction
        self.algorithm = layout.algorithm

    def forward(self, tuple shape, int typenum, object input, object weight, object bias,
                tuple workspaces, int n_threads, bint whole_chunks):
        """Compute into a new array of ``shape`` and ``typenum`` (float32/float64) and
        return it.  The operands are used in place when they are C-contiguous in that
        dtype (converted otherwise); ``workspaces`` are (scratch, phased, packed,
        columns, product), see ``_workspaces``."""
        cdef Buffers buf
        cdef void *block
        input = _c_ready(input, typenum)
        weight = _c_ready(weight, typenum)
        if bias is not None:
            bias = _c_ready(bias, typenum)
        cdef cnp.ndarray out = _empty(shape, typenum)
        cdef void *o = _data(out)
        cdef void *xp = _data(input)
        cdef void *wp = _data(weight)
        cdef void *bp = _data(bias)
        block = _workspaces(workspaces, typenum, &buf.scratch, &buf.phased, &buf.packed,
                            &buf.columns, &buf.product)
        if typenum == cnp.NPY_FLOAT:
            with nogil:
                _forward(&self.problem, &buf, <float *> o, <const float *> xp, <float *> wp,
                         <const float *> bp, n_threads, whole_chunks)
        else:
            with nogil:
                _forward(&self.problem, &buf, <double *> o, <const double *> xp,
                         <double *> wp, <const double *> bp, n_threads, whole_chunks)
        free(block)
        return out

    def weight_gradient(self, tuple shape, int typenum, object small, object large,
                        tuple workspaces, int n_threads, bint whole_chunks):
        """The weight gradient of (small side, large side) as a new array of ``shape``;
        ``workspaces`` are (phased, packed, columns, product), as for :meth:`forward`,
        ``whole_chunks`` the split's (_compiled._whole_chunks)."""
        cdef Buffers buf
        cdef void *block
        small = _c_ready(small, typenum)
        large = _c_ready(large, typenum)
        cdef cnp.ndarray out = _empty(shape, typenum)
        cdef void *o = _data(out)
        cdef void *sp = _data(small)
        cdef void *lp = _data(large)
        buf.scratch = NULL
        block = _workspaces(workspaces, typenum, &buf.phased, &buf.packed, &buf.columns,
                            &buf.product, NULL)
        if typenum == cnp.NPY_FLOAT:
            with nogil:
                _weight_gradient(&self.problem, &buf, <float *> o, <const float *> sp,
                                 <const float *> lp, n_threads, whole_chunks)
        else:
            with nogil:
                _weight_gradient(&self.problem, &buf, <double *> o, <const double *> sp,
                                 <const double *> lp, n_threads, whole_chunks)
        free(block)
        return out


# ---------------------------------------------------------------------------
# Implicit-GEMM convolution (ColumnSource IMPLICIT): the large input copied once, phase
# by phase, then the own GEMM's micro-kernel reads each column of the convolution's
# column matrix as a contiguous run of that copy -- no im2col, no packing of A.


cdef inline void _phase_copy(floating *phased, const floating *large,
                             const Problem *p) noexcept nogil:
    """phased[r, m] = large[phase_source[r, m]] (0 where it is -1) for one (sample,
    channel) plane, per axis r = (r_z, r_y, r_x) the stride phase and m the padded
    position; planes phase_pitch apart, zeros between them (stc_phase_copy)."""
    cdef const Axis *az = &p.axis[0]
    cdef const Axis *ay = &p.axis[1]
    cdef const Axis *ax = &p.axis[2]
    if floating is float:
        stc_phase_copy_f(phased, large, ay.large, ax.large, az.phase_source, ay.phase_source,
                         ax.phase_runs, az.stride, ay.stride, ax.stride, az.padded,
                         ay.padded, ax.padded, p.phase_pitch)
    else:
        stc_phase_copy_d(phased, large, ay.large, ax.large, az.phase_source, ay.phase_source,
                         ax.phase_runs, az.stride, ay.stride, ax.stride, az.padded,
                         ay.padded, ax.padded, p.phase_pitch)


cdef inline Py_ssize_t _phase_copy_size(const Problem *p) noexcept nogil:
    """Elements of one channel's phase copy (all its stride phases)."""
    return p.axis[0].stride * p.axis[1].stride * p.axis[2].stride * p.phase_pitch


cdef void _implicit_phases(floating *phased, const floating *large, Py_ssize_t count,
                           const Problem *p, int n_threads) noexcept nogil:
    """The phase copy (:func:`_phase_copy`) of ``count`` consecutive samples' channels,
    side by side."""
    cdef Py_ssize_t channel, pitch = _phase_copy_size(p), plane_in = _large_size(p)
    for channel in prange(count * p.c_large, schedule="static", num_threads=n_threads):
        _phase_copy(phased + channel * pitch, large + channel * plane_in, p)


cdef inline void _implicit_conv(const floating *a, const Py_ssize_t *a_offset,
                                Py_ssize_t depth, const floating *panels, Py_ssize_t cout,
                                const floating *bias, floating *out, Py_ssize_t out_pitch,
                                const Py_ssize_t *out_offset, Py_ssize_t u_begin,
                                Py_ssize_t u_end, Py_ssize_t c_begin,
                                Py_ssize_t c_end) noexcept nogil:
    if floating is float:
        stc_implicit_conv_f(a, a_offset, depth, panels, cout, bias, out, out_pitch,
                            out_offset, u_begin, u_end, c_begin, c_end)
    else:
        stc_implicit_conv_d(a, a_offset, depth, panels, cout, bias, out, out_pitch,
                            out_offset, u_begin, u_end, c_begin, c_end)


cdef inline Py_ssize_t _implicit_units(const Problem *p) noexcept nogil:
    """What the implicit convolution's blocks count: grid positions, or the output
    z-planes or (z, y) rows its tiles restart at."""
    if p.tile_restart == PER_ROW:
        return p.axis[0].small * p.axis[1].small
    if p.tile_restart == PER_PLANE:
        return p.axis[0].small
    return p.positions


cdef void _implicit_block(const floating *copy, const floating *panels, Py_ssize_t cout,
                          const floating *bias, floating *out, Py_ssize_t begin,
                          Py_ssize_t end, Py_ssize_t c_begin, Py_ssize_t c_end,
                          const Problem *p) noexcept nogil:
    """Units [begin, end) (:func:`_implicit_units`) of one sample and group, output
    channels [c_begin, c_end) of its ``cout``."""
    cdef Py_ssize_t depth = (p.c_large // p.groups) * _kernel_size(p), size = _small_size(p)
    cdef Py_ssize_t oy = p.axis[1].small, ox = p.axis[2].small
    cdef Py_ssize_t py = p.axis[1].padded, px = p.axis[2].padded
    cdef Py_ssize_t unit, u0, length
    if p.tile_restart == ALONG_GRID:
        _implicit_conv(copy, p.a_offset, depth, panels, cout, bias, out, size, p.out_offset,
                       begin, end, c_begin, c_end)
        return
    for unit in range(begin, end):
        if p.tile_restart == PER_ROW:   # row (z, y)
            u0 = ((unit // oy) * py + unit % oy) * px
            length = ox
        else:                           # plane z
            u0 = unit * py * px
            length = (oy - 1) * px + ox
        _implicit_conv(copy, p.a_offset, depth, panels, cout, bias, out, size, p.out_offset,
                       u0, u0 + length, c_begin, c_end)


cdef void _implicit_sample(floating *out, const floating *large, const floating *panels,
                           const floating *bias, floating *copy, const Problem *p,
                           Py_ssize_t n) noexcept nogil:
    """Sample ``n`` of the implicit convolution on one thread: its phase copy into
    ``copy`` (this thread's scratch), then every tile of it."""
    cdef Py_ssize_t cl_g = p.c_large // p.groups, cout_g = p.c_small // p.groups
    cdef Py_ssize_t depth = cl_g * _kernel_size(p), size = _small_size(p)
    cdef Py_ssize_t pitch = _phase_copy_size(p)
    cdef Py_ssize_t panel_size = (cout_g + STC_GEMM_NR - 1) // STC_GEMM_NR * STC_GEMM_NR * depth
    cdef Py_ssize_t g
    _implicit_phases(copy, large + n * p.c_large * _large_plane(p), 1, p, 1)
    for g in range(p.groups):
        _implicit_block(copy + g * cl_g * pitch, panels + g * panel_size, cout_g,
                        bias + g * cout_g if bias != NULL else NULL,
                        out + (n * p.c_small + g * cout_g) * size, 0, _implicit_units(p),
                        0, cout_g, p)


cdef void _conv_implicit(floating *out, const floating *large, const floating *w,
                         const floating *bias, const Buffers *buf, const Problem *p,
                         int n_threads, bint whole_samples) noexcept nogil:
    """GEMM convolution over the phase copy (column source IMPLICIT).

    whole_samples: each thread takes whole samples, copied into its own scratch (no
    barrier between samples, and a thread's tiles read the copy from its own cache);
    otherwise the threads copy each sample together into the first thread's scratch
    and share its tiles."""
    cdef Py_ssize_t cl_g = p.c_large // p.groups, cout_g = p.c_small // p.groups
    cdef Py_ssize_t depth = cl_g * _kernel_size(p), size = _small_size(p)
    cdef Py_ssize_t pitch = _phase_copy_size(p)
    cdef Py_ssize_t panel_size = (cout_g + STC_GEMM_NR - 1) // STC_GEMM_NR * STC_GEMM_NR * depth
    cdef Py_ssize_t units = _implicit_units(p)
    cdef Py_ssize_t blocks = (units + p.u_block - 1) // p.u_block
    cdef Py_ssize_t channels = p.panel_block * STC_GEMM_NR
    cdef Py_ssize_t channel_blocks = (cout_g + channels - 1) // channels
    cdef Py_ssize_t item, g, n, u0, c0
    cdef floating *scratch = <floating *> buf.scratch
    cdef floating *copy = NULL  # firstprivate below: initialised for -Wall
    cdef floating *panels = <floating *> buf.packed
    for g in prange(p.groups, schedule="static", num_threads=n_threads):
        if floating is float:
            stc_implicit_pack_f(panels + g * panel_size, w + g * cout_g * depth, cout_g, depth)
        else:
            stc_implicit_pack_d(panels + g * panel_size, w + g * cout_g * depth, cout_g, depth)
    if whole_samples:
        with parallel(num_threads=n_threads):
            copy = scratch + threadid() * p.scratch_pitch
            # the runs of the last grid positions reach up to a tile past the copy
            memset(copy + p.c_large * pitch, 0, STC_PHASE_TAIL * sizeof(floating))
            for n in prange(p.batch, schedule="dynamic"):
                _implicit_sample(out, large, panels, bias, copy, p, n)
        return
    memset(scratch + p.c_large * pitch, 0, STC_PHASE_TAIL * sizeof(floating))
    # a sample at a time: its copy is still in cache when the tiles read it; threads
    # take (group, block of grid positions, block of output channels)
    for n in range(p.batch):
        _implicit_phases(scratch, large + n * p.c_large * _large_plane(p), 1, p, n_threads)
        for item in prange(p.groups * blocks * channel_blocks, schedule="dynamic",
                           num_threads=n_threads):
            c0 = (item % channel_blocks) * channels
            u0 = (item // channel_blocks % blocks) * p.u_block
            g = item // (channel_blocks * blocks)
            _implicit_block(scratch + g * cl_g * pitch, panels + g * panel_size, cout_g,
                            bias + g * cout_g if bias != NULL else NULL,
                            out + (n * p.c_small + g * cout_g) * size, u0,
                            min(u0 + p.u_block, units), c0, min(c0 + channels, cout_g), p)


cdef enum:
    GRID_CHANNELS = 4  # output channels per stc_grid_dot4 call


cdef void _grid_channels(floating *out, const floating *copy, floating *grid,
                         const floating *w, const floating *bias, const Problem *p,
                         Py_ssize_t n, Py_ssize_t g, Py_ssize_t c_begin,
                         Py_ssize_t c_end) noexcept nogil:
    """Output channels [c_begin, c_end) of group ``g`` of sample ``n`` from the group's
    phase copy ``copy``, in passes of grid_channels grids (``grid``: this thread's),
    each pass reading the copy's runs depth_block at a time (see :func:`_conv_grid`);
    then the grids' real positions into ``out``."""
    cdef Py_ssize_t cl_g = p.c_large // p.groups, cout_g = p.c_small // p.groups
    cdef Py_ssize_t depth = cl_g * _kernel_size(p), size = _small_size(p)
    cdef Py_ssize_t oz = p.axis[0].small, oy = p.axis[1].small, ox = p.axis[2].small
    cdef Py_ssize_t py = p.axis[1].padded, px = p.axis[2].padded
    cdef Py_ssize_t grid_pitch = p.grid_pitch
    cdef Py_ssize_t c, c0, co, cb, j0, count, z, y, x, i, block
    cdef int more
    cdef floating *dst
    cdef const floating *src
    cdef floating no_bias[GRID_CHANNELS]
    cdef const floating *biases
    for i in range(GRID_CHANNELS):
        no_bias[i] = 0
    c0 = c_begin
    while c0 < c_end:
        cb = min(p.grid_channels, c_end - c0)
        j0 = 0
        while j0 < depth:
            count = min(p.depth_block, depth - j0)
            more = j0 > 0
            c = 0
            while c < cb:
                co = g * cout_g + c0 + c
                block = min(GRID_CHANNELS, cb - c)
                biases = bias + co if bias != NULL else no_bias
                if block == GRID_CHANNELS:
                    if floating is float:
                        stc_grid_dot4_f(grid + c * grid_pitch, grid_pitch, copy,
                                        p.a_offset + j0, w + co * depth + j0, depth,
                                        count, p.positions, biases, more)
                    else:
                        stc_grid_dot4_d(grid + c * grid_pitch, grid_pitch, copy,
                                        p.a_offset + j0, w + co * depth + j0, depth,
                                        count, p.positions, biases, more)
                else:
                    for i in range(block):
                        if floating is float:
                            stc_grid_dot_f(grid + (c + i) * grid_pitch, copy, p.a_offset + j0,
                                           w + (co + i) * depth + j0, count, p.positions,
                                           biases[i], more)
                        else:
                            stc_grid_dot_d(grid + (c + i) * grid_pitch, copy, p.a_offset + j0,
                                           w + (co + i) * depth + j0, count, p.positions,
                                           biases[i], more)
                c = c + block
            j0 = j0 + count
        for i in range(cb):
            dst = out + (n * p.c_small + g * cout_g + c0 + i) * size
            for z in range(oz):
                for y in range(oy):
                    src = grid + i * grid_pitch + (z * py + y) * px
                    for x in range(ox):
                        dst[x] = src[x]
                    dst = dst + ox
        c0 = c0 + cb


cdef void _conv_grid(floating *out, const floating *large, const floating *w,
                     const floating *bias, floating *scratch_all, const Problem *p,
                     int n_threads, bint whole_items) noexcept nogil:
    """DIRECT convolution over the padded grid (column source IMPLICIT): a (sample,
    group) item's input channels are copied phase by phase, then the group's output
    channels are computed on the whole padded grid at once (:c:func:`stc_grid_dot`:
    every (channel, tap) is one run of the copy, so short rows and clipped edges cost
    nothing extra) and the grid's real positions kept.  The output channels go
    grid_channels at a time and their columns depth_block at a time, so that one block
    of runs of the copy is read from cache by every channel of the pass (a copy larger
    than the cache was otherwise streamed from memory once per four channels and
    vector of positions).  For few input channels per output (depthwise layers), where
    a GEMM has nothing to block and the row kernels run on rows shorter than a vector.

    whole_items: each thread takes whole items into its own scratch; otherwise (fewer
    items than threads) the threads copy each item together into the first thread's
    scratch and split its output channels, in whole GRID_CHANNELS blocks, into one
    share each (shares sweep the copy in step, so it is read from memory about once)."""
    cdef Py_ssize_t cl_g = p.c_large // p.groups, cout_g = p.c_small // p.groups
    cdef Py_ssize_t pitch = _phase_copy_size(p), plane_in = _large_size(p)
    cdef Py_ssize_t item, n, g, c, t, share
    cdef floating *copy = NULL  # firstprivate below: initialised for -Wall
    if whole_items:
        with parallel(num_threads=n_threads):
            copy = scratch_all + threadid() * p.scratch_pitch
            memset(copy + cl_g * pitch, 0, STC_PHASE_TAIL * sizeof(floating))
            for item in prange(p.batch * p.groups, schedule="static"):
                n = item // p.groups
                g = item % p.groups
                for c in range(cl_g):
                    _phase_copy(copy + c * pitch,
                                large + (n * p.c_large + g * cl_g + c) * plane_in, p)
                _grid_channels(out, copy, copy + cl_g * pitch + STC_PHASE_TAIL, w, bias, p,
                               n, g, 0, cout_g)
        return
    if p.batch * p.groups == 0:
        return
    share = (cout_g + n_threads * GRID_CHANNELS - 1) // (n_threads * GRID_CHANNELS) \
        * GRID_CHANNELS
    memset(scratch_all + cl_g * pitch, 0, STC_PHASE_TAIL * sizeof(floating))
    for item in range(p.batch * p.groups):
        n = item // p.groups
        g = item % p.groups
        for c in prange(cl_g, schedule="static", num_threads=n_threads):
            _phase_copy(scratch_all + c * pitch,
                        large + (n * p.c_large + g * cl_g + c) * plane_in, p)
        for t in prange(n_threads, schedule="static", num_threads=n_threads):
            _grid_channels(out, scratch_all,
                           scratch_all + t * p.scratch_pitch + cl_g * pitch + STC_PHASE_TAIL,
                           w, bias, p, n, g, min(t * share, cout_g),
                           min((t + 1) * share, cout_g))


cdef void _forward(const Problem *p, const Buffers *buf, floating *out, const floating *x,
                   floating *w, const floating *bias, int n_threads,
                   bint whole_chunks) noexcept nogil:
    cdef const floating *large
    if p.column_source == IMPLICIT:
        if p.algorithm == GEMM:
            _conv_implicit(out, x, w, bias, buf, p, n_threads, whole_chunks)
        else:
            _conv_grid(out, x, w, bias, <floating *> buf.scratch, p, n_threads,
                       whole_chunks)
        return
    if p.algorithm == GEMM and p.column_source != IM2COL:
        _direct_columns_forward(out, x, w, bias, buf, p, n_threads, whole_chunks)
        return
    if p.direction == TRANSPOSE:
        if p.algorithm == GEMM:
            _transpose_gemm(out, x, w, bias, buf, p, n_threads, whole_chunks)
        else:
            _transpose_planes(out, x, w, bias, <floating *> buf.scratch, p, n_threads)
        return
    if p.algorithm == GEMM:
        _conv_gemm(out, x, w, bias, buf, p, n_threads, whole_chunks)
    else:
        _conv_rows(out, x, <floating *> buf.phased, w, bias, p, n_threads)


cdef enum:
    CHANNELS_LAST_BLOCK = 256  # positions per piece of the channels-last copy


cdef void _channels_last(floating *st, const floating *small, Py_ssize_t count,
                         const Problem *p, int n_threads) noexcept nogil:
    """st[(k size + q) grid_pitch + g cs_pad + c] = small[k, g cs_g + c, q] for the
    ``count`` samples k of a chunk: the small side channels-last, each group's channels
    padded to cs_pad (the padding lanes are never written: they only make product
    lanes that are never read), CHANNELS_LAST_BLOCK positions per piece of work
    (:c:func:`stc_channels_last`)."""
    cdef Py_ssize_t size = _small_size(p), cs_g = p.c_small // p.groups
    cdef Py_ssize_t cs_pad = p.small_channels_padded
    cdef Py_ssize_t blocks = (size + CHANNELS_LAST_BLOCK - 1) // CHANNELS_LAST_BLOCK
    cdef Py_ssize_t item, k, g, q0
    for item in prange(count * p.groups * blocks, schedule="static", num_threads=n_threads):
        q0 = (item % blocks) * CHANNELS_LAST_BLOCK
        g = item // blocks % p.groups
        k = item // (blocks * p.groups)
        if floating is float:
            stc_channels_last_f(st + (k * size + q0) * p.grid_pitch + g * cs_pad, p.grid_pitch,
                                small + (k * p.c_small + g * cs_g) * size + q0, size, cs_g,
                                min(CHANNELS_LAST_BLOCK, size - q0))
        else:
            stc_channels_last_d(st + (k * size + q0) * p.grid_pitch + g * cs_pad, p.grid_pitch,
                                small + (k * p.c_small + g * cs_g) * size + q0, size, cs_g,
                                min(CHANNELS_LAST_BLOCK, size - q0))


cdef void _wgrad_implicit_rows(floating *product, const floating *phased,
                               const floating *st, Py_ssize_t r0, Py_ssize_t r1,
                               bint accumulate, const Problem *p,
                               Py_ssize_t item) noexcept nogil:
    """Piece ``item`` (group, depth_block (channel, tap) rows, grid_channels small
    channels) of product += the small-side rows [r0, r1) of a chunk times their columns
    (:c:func:`stc_wgrad_implicit`)."""
    cdef Py_ssize_t cl_g = p.c_large // p.groups
    cdef Py_ssize_t depth = cl_g * _kernel_size(p), cs_pad = p.small_channels_padded
    cdef Py_ssize_t pitch = _phase_copy_size(p), copy_sample = p.c_large * pitch
    cdef Py_ssize_t row_blocks = (depth + p.depth_block - 1) // p.depth_block
    cdef Py_ssize_t channel_blocks = (cs_pad + p.grid_channels - 1) // p.grid_channels
    cdef Py_ssize_t c0 = (item % channel_blocks) * p.grid_channels
    cdef Py_ssize_t d0 = (item // channel_blocks % row_blocks) * p.depth_block
    cdef Py_ssize_t g = item // (channel_blocks * row_blocks)
    if floating is float:
        stc_wgrad_implicit_f(product + (g * depth + d0) * cs_pad + c0, cs_pad,
                             phased + g * cl_g * pitch, copy_sample,
                             p.a_offset + d0, min(p.depth_block, depth - d0),
                             st + g * cs_pad + c0, p.grid_pitch,
                             min(p.grid_channels, cs_pad - c0), r0, r1, p.axis[0].small,
                             p.axis[1].small, p.axis[2].small, p.axis[1].padded,
                             p.axis[2].padded, accumulate)
    else:
        stc_wgrad_implicit_d(product + (g * depth + d0) * cs_pad + c0, cs_pad,
                             phased + g * cl_g * pitch, copy_sample,
                             p.a_offset + d0, min(p.depth_block, depth - d0),
                             st + g * cs_pad + c0, p.grid_pitch,
                             min(p.grid_channels, cs_pad - c0), r0, r1, p.axis[0].small,
                             p.axis[1].small, p.axis[2].small, p.axis[1].padded,
                             p.axis[2].padded, accumulate)


cdef void _wgrad_implicit_chunk(floating *product, floating *phased, floating *st,
                                const floating *small, const floating *large,
                                Py_ssize_t first, Py_ssize_t count, bint accumulate,
                                const Problem *p, int n_threads) noexcept nogil:
    """Samples [first, first + count) into ``product`` (onto it, or over it unless
    ``accumulate``): their phase copies and channels-last small side, then each block
    of block_rows small-side rows, its pieces shared by ``n_threads`` threads."""
    cdef Py_ssize_t cl_g = p.c_large // p.groups, cs_pad = p.small_channels_padded
    cdef Py_ssize_t depth = cl_g * _kernel_size(p)
    cdef Py_ssize_t row_blocks = (depth + p.depth_block - 1) // p.depth_block
    cdef Py_ssize_t channel_blocks = (cs_pad + p.grid_channels - 1) // p.grid_channels
    cdef Py_ssize_t items = p.groups * row_blocks * channel_blocks
    cdef Py_ssize_t rows = count * p.axis[0].small * p.axis[1].small
    cdef Py_ssize_t r0 = 0, r1, item
    # the runs of the last grid positions reach up to a tile past the copies
    memset(phased + count * p.c_large * _phase_copy_size(p), 0,
           STC_PHASE_TAIL * sizeof(floating))
    _implicit_phases(phased, large + first * p.c_large * _large_size(p), count, p, n_threads)
    _channels_last(st, small + first * p.c_small * _small_size(p), count, p, n_threads)
    while r0 < rows:
        r1 = min(r0 + p.block_rows, rows)
        for item in prange(items, schedule="dynamic", num_threads=n_threads):
            _wgrad_implicit_rows(product, phased, st, r0, r1, accumulate or r0 > 0, p, item)
        r0 = r1


cdef void _weight_grad_implicit(floating *grad_w, const floating *small,
                                const floating *large, const Buffers *buf, const Problem *p,
                                int n_threads, bint whole_chunks) noexcept nogil:
    """GEMM over the phase copy (column source IMPLICIT), ``chunk`` samples at a time:
    their large side's phase copies (as the implicit convolution's: the column of
    (cl, t) is a run of it) and their small side channels-last, then for each block of
    block_rows small-side rows, product_g[(cl, t), cs] += the sum over the block's
    positions of small[cs] * column[(cl, t)] (:c:func:`stc_wgrad_implicit`: the own
    GEMM's micro-kernel with the small side's channels along the vectors, no packing).
    Finally grad_w = the product, transposed.

    whole_chunks: each thread takes whole chunks into its own copy, channels-last
    block and product (zeroed first), and the products are summed at the end, in
    thread order; otherwise the threads share each chunk's pieces of depth_block
    (channel, tap) rows by grid_channels small channels."""
    cdef Py_ssize_t depth = (p.c_large // p.groups) * _kernel_size(p)
    cdef Py_ssize_t cs_pad = p.small_channels_padded
    cdef Py_ssize_t phased_len = p.chunk * p.c_large * _phase_copy_size(p) + STC_PHASE_TAIL
    cdef Py_ssize_t packed_len = p.chunk * _small_size(p) * p.grid_pitch
    cdef Py_ssize_t product_len = p.groups * depth * cs_pad
    cdef Py_ssize_t n_chunks = (p.batch + p.chunk - 1) // p.chunk
    cdef Py_ssize_t first, item, i, t, tid = 0
    cdef floating total
    cdef floating *phased_all = <floating *> buf.phased
    cdef floating *st_all = <floating *> buf.packed
    cdef floating *product_all = <floating *> buf.product
    # firstprivate in the parallel block below: initialised for -Wall
    cdef floating *phased = NULL
    cdef floating *st = NULL
    cdef floating *product = NULL
    if p.batch == 0:
        memset(grad_w, 0, p.c_small * depth * sizeof(floating))
        return
    if whole_chunks:
        with parallel(num_threads=n_threads):
            tid = threadid()
            phased = phased_all + tid * phased_len
            st = st_all + tid * packed_len
            product = product_all + tid * product_len
            memset(product, 0, product_len * sizeof(floating))
            # static: each thread's share of the sum is the same from call to call
            for item in prange(n_chunks, schedule="static"):
                first = item * p.chunk
                _wgrad_implicit_chunk(product, phased, st, small, large, first,
                                      min(p.chunk, p.batch - first), True, p, 1)
        if n_threads > 1:
            for i in prange(product_len, schedule="static", num_threads=n_threads):
                total = product_all[i]
                for t in range(1, n_threads):
                    total = total + product_all[t * product_len + i]
                product_all[i] = total
    else:
        first = 0
        while first < p.batch:
            _wgrad_implicit_chunk(product_all, phased_all, st_all, small, large, first,
                                  min(p.chunk, p.batch - first), first > 0, p, n_threads)
            first = first + p.chunk
    _product_into_weight(grad_w, product_all, cs_pad, p, n_threads)


cdef void _weight_gradient(const Problem *p, const Buffers *buf, floating *grad_w,
                           const floating *small, const floating *large_in,
                           int n_threads, bint whole_chunks) noexcept nogil:
    cdef const floating *large
    if p.column_source == IMPLICIT:
        _weight_grad_implicit(grad_w, small, large_in, buf, p, n_threads, whole_chunks)
        return
    if p.algorithm == GEMM and p.column_source != IM2COL:
        _direct_columns_weight_gradient(grad_w, small, large_in, p, n_threads)
        return
    if p.algorithm == GEMM:
        _weight_grad_gemm(grad_w, small, large_in, buf, p, n_threads)
    else:
        _weight_grad_rows(grad_w, small, large_in, <floating *> buf.phased, p, n_threads)


