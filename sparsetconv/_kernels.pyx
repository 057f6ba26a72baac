# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernels for convolution and transposed convolution.

These functions trust their inputs: the Python layer (``_compiled.py``) has validated
shapes, made every array C-contiguous in the computing dtype, allocated the output
and workspaces, and computed the index tables.  Nothing here allocates or raises.

Layout: every rank is treated as 3-D with leading unit axes (one implementation for
1-D, 2-D and 3-D).  ``geo`` holds, per axis (z, y, x), the small-side size (conv
output / transposed input), the large-side size, kernel, stride, dilation and
pad_begin, joined by ``large = small*stride - pad_begin + tap*dilation``.

Transposed convolution: each thread owns whole (sample, channel) output planes, so
there are no write races.  A plane is accumulated uncropped in a *phase-major*
scratch plane: on every axis, position q = m*stride + r lives at index r*M + m.  A
kernel tap then always lands on one phase, at a fixed offset, so each tap adds a
contiguous source block (input rows times a weight, or GEMM columns) to a contiguous
scratch block: no modulo, no branch and no multiply by an inserted zero in the inner
loop (``_rowops.h``).  A final gather per output row crops and un-phases.

Convolution: each thread owns output rows and gathers into them from a phase-major
copy of the padded input, so strided reads become contiguous runs too.
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

cnp.import_array()

cdef extern from "_rowops.h" nogil:
    void stc_taps_axpy_f(float *dst, const Py_ssize_t *dst_off, const float *src,
                         const Py_ssize_t *src_off, const float *w, Py_ssize_t n_taps,
                         Py_ssize_t n)
    void stc_taps_axpy_d(double *dst, const Py_ssize_t *dst_off, const double *src,
                         const Py_ssize_t *src_off, const double *w, Py_ssize_t n_taps,
                         Py_ssize_t n)
    void stc_block_add_f(float *dst, const Py_ssize_t *dst_off, Py_ssize_t dst_stride,
                         const float *src, Py_ssize_t src_stride, Py_ssize_t n_taps,
                         Py_ssize_t n_rows, Py_ssize_t n)
    void stc_block_add_d(double *dst, const Py_ssize_t *dst_off, Py_ssize_t dst_stride,
                         const double *src, Py_ssize_t src_stride, Py_ssize_t n_taps,
                         Py_ssize_t n_rows, Py_ssize_t n)
    void stc_block_axpy_f(float *dst, const Py_ssize_t *dst_off, Py_ssize_t dst_stride,
                          const float *src, const float *w, Py_ssize_t n_taps,
                          Py_ssize_t n_rows, Py_ssize_t n)
    void stc_block_axpy_d(double *dst, const Py_ssize_t *dst_off, Py_ssize_t dst_stride,
                          const double *src, const double *w, Py_ssize_t n_taps,
                          Py_ssize_t n_rows, Py_ssize_t n)
    void stc_block_outer_axpy_f(float *dst, Py_ssize_t dst_stride, Py_ssize_t step,
                                const float *src, const float *w, Py_ssize_t n_taps,
                                Py_ssize_t n_rows, Py_ssize_t n)
    void stc_block_outer_axpy_d(double *dst, Py_ssize_t dst_stride, Py_ssize_t step,
                                const double *src, const double *w, Py_ssize_t n_taps,
                                Py_ssize_t n_rows, Py_ssize_t n)
    void stc_taps_dot_f(float *acc, const float *a, const float *b, const Py_ssize_t *b_off,
                        Py_ssize_t n_taps, Py_ssize_t n)
    void stc_taps_dot_d(double *acc, const double *a, const double *b,
                        const Py_ssize_t *b_off, Py_ssize_t n_taps, Py_ssize_t n)
    void stc_gather_row_f(float *out, const float *src, const Py_ssize_t *map,
                          Py_ssize_t n, float bias)
    void stc_gather_row_d(double *out, const double *src, const Py_ssize_t *map,
                          Py_ssize_t n, double bias)

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


# Indices into ``geo`` (3 entries each, axes z, y, x).
cdef enum:
    SMALL = 0
    LARGE = 3
    KERNEL = 6
    STRIDE = 9
    DILATION = 12
    PAD = 15


cdef inline void _taps_axpy(floating *dst, const Py_ssize_t *dst_off, const floating *src,
                            const Py_ssize_t *src_off, const floating *w, Py_ssize_t n_taps,
                            Py_ssize_t n) noexcept nogil:
    if floating is float:
        stc_taps_axpy_f(dst, dst_off, src, src_off, w, n_taps, n)
    else:
        stc_taps_axpy_d(dst, dst_off, src, src_off, w, n_taps, n)


cdef inline void _block_add(floating *dst, const Py_ssize_t *dst_off, Py_ssize_t dst_stride,
                            const floating *src, Py_ssize_t src_stride, Py_ssize_t n_taps,
                            Py_ssize_t n_rows, Py_ssize_t n) noexcept nogil:
    if floating is float:
        stc_block_add_f(dst, dst_off, dst_stride, src, src_stride, n_taps, n_rows, n)
    else:
        stc_block_add_d(dst, dst_off, dst_stride, src, src_stride, n_taps, n_rows, n)


cdef inline void _block_axpy(floating *dst, const Py_ssize_t *dst_off, Py_ssize_t dst_stride,
                             const floating *src, const floating *w, Py_ssize_t n_taps,
                             Py_ssize_t n_rows, Py_ssize_t n) noexcept nogil:
    if floating is float:
        stc_block_axpy_f(dst, dst_off, dst_stride, src, w, n_taps, n_rows, n)
    else:
        stc_block_axpy_d(dst, dst_off, dst_stride, src, w, n_taps, n_rows, n)


cdef inline void _block_outer_axpy(floating *dst, Py_ssize_t dst_stride, Py_ssize_t step,
                                   const floating *src, const floating *w, Py_ssize_t n_taps,
                                   Py_ssize_t n_rows, Py_ssize_t n) noexcept nogil:
    if floating is float:
        stc_block_outer_axpy_f(dst, dst_stride, step, src, w, n_taps, n_rows, n)
    else:
        stc_block_outer_axpy_d(dst, dst_stride, step, src, w, n_taps, n_rows, n)


cdef inline void _taps_dot(floating *acc, const floating *a, const floating *b,
                           const Py_ssize_t *b_off, Py_ssize_t n_taps,
                           Py_ssize_t n) noexcept nogil:
    if floating is float:
        stc_taps_dot_f(acc, a, b, b_off, n_taps, n)
    else:
        stc_taps_dot_d(acc, a, b, b_off, n_taps, n)


cdef inline void _gather_row(floating *out, const floating *src, const Py_ssize_t *index,
                             Py_ssize_t n, floating bias) noexcept nogil:
    if floating is float:
        stc_gather_row_f(out, src, index, n, bias)
    else:
        stc_gather_row_d(out, src, index, n, bias)


cdef inline void _gemm(char *transa, char *transb, int m, int n, int k, floating *a, int lda,
                       floating *b, int ldb, floating beta, floating *c,
                       int ldc) noexcept nogil:
    """C = op(A) @ op(B) + beta C in BLAS's column-major terms (alpha 1)."""
    cdef floating one = 1
    if floating is float:
        sgemm(transa, transb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc)
    else:
        dgemm(transa, transb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc)


# ---------------------------------------------------------------------------
# Transposed convolution


cdef inline void _transpose_plane(
        floating *out, const floating *x, const floating *w, const floating *bias,
        const floating *cols, Py_ssize_t cols_ld, Py_ssize_t n_cols, floating *scratch,
        const Py_ssize_t *geo, const Py_ssize_t **table, const Py_ssize_t *sizes,
        Py_ssize_t plane, int mode) noexcept nogil:
    """One (sample, channel) output plane of a transposed convolution.

    mode 0 (DIRECT): phase-major scratch, source = input rows times weight taps;
    mode 1 (KERNEL_ROWS): the x axis of the scratch is unphased and each input element
    adds a whole (stride-1-dilation) kernel row -- for kernels longer than the input;
    mode 2 (GEMM): col2im, source = ``cols`` rows (channel, taps) x (sample, position),
    where this plane's sample is column block ``n_cols`` of ``cols``.

    table: tap offsets (z, y, x) into the scratch plane, then output-position maps
    (z, y, x) from the cropped output to the scratch plane.
    sizes: batch, c_in, c_out, groups, plane_len, z_stride, y_stride.
    """
    cdef Py_ssize_t sz = geo[SMALL], sy = geo[SMALL + 1], sx = geo[SMALL + 2]
    cdef Py_ssize_t lz = geo[LARGE], ly = geo[LARGE + 1], lx = geo[LARGE + 2]
    cdef Py_ssize_t kz = geo[KERNEL], ky = geo[KERNEL + 1], kx = geo[KERNEL + 2]
    cdef Py_ssize_t stride_x = geo[STRIDE + 2]
    cdef const Py_ssize_t *z_off = table[0]
    cdef const Py_ssize_t *y_off = table[1]
    cdef const Py_ssize_t *x_off = table[2]
    cdef const Py_ssize_t *z_map = table[3]
    cdef const Py_ssize_t *y_map = table[4]
    cdef const Py_ssize_t *x_map = table[5]
    cdef Py_ssize_t c_in = sizes[1], c_out = sizes[2], groups = sizes[3]
    cdef Py_ssize_t plane_len = sizes[4], z_stride = sizes[5], y_stride = sizes[6]
    cdef Py_ssize_t cin_g = c_in // groups, cout_g = c_out // groups
    cdef Py_ssize_t small_size = sz * sy * sx, kernel_size = kz * ky * kx
    cdef Py_ssize_t n = plane // c_out, co = plane % c_out
    cdef Py_ssize_t g = co // cout_g, col = co % cout_g
    cdef Py_ssize_t cil, ci, tz, ty, iz, oz, oy
    cdef floating *dst
    cdef const floating *src
    cdef const floating *wrow
    cdef floating bias_value = bias[co] if bias != NULL else 0
    memset(scratch, 0, plane_len * sizeof(floating))
    if mode == 2:
        for tz in range(kz):
            for ty in range(ky):
                # rows (col, tz, ty, 0..kx) of this group's columns, cols_ld apart
                src = (cols + (g * cout_g * kernel_size + ((col * kz + tz) * ky + ty) * kx)
                       * cols_ld + n_cols * small_size)
                for iz in range(sz):
                    _block_add(scratch + z_off[tz] + y_off[ty] + iz * z_stride, x_off,
                               y_stride, src + iz * sy * sx, cols_ld, kx, sy, sx)
    else:
        for cil in range(cin_g):
            ci = g * cin_g + cil
            for tz in range(kz):
                for ty in range(ky):
                    wrow = w + (((ci * cout_g + col) * kz + tz) * ky + ty) * kx
                    for iz in range(sz):
                        dst = scratch + z_off[tz] + y_off[ty] + iz * z_stride
                        src = x + ((n * c_in + ci) * sz + iz) * sy * sx
                        if mode == 0:
                            _block_axpy(dst, x_off, y_stride, src, wrow, kx, sy, sx)
                        else:
                            _block_outer_axpy(dst, y_stride, stride_x, src, wrow, kx, sy, sx)
    for oz in range(lz):
        for oy in range(ly):
            _gather_row(out + ((plane * lz + oz) * ly + oy) * lx,
                        scratch + z_map[oz] + y_map[oy], x_map, lx, bias_value)


cdef void _conv_transpose_planes(
        floating *out, const floating *x, const floating *w, const floating *bias,
        floating *scratch_all, const Py_ssize_t *geo, const Py_ssize_t **table,
        const Py_ssize_t *sizes, int mode, int n_threads) noexcept nogil:
    """Direct transposed convolution: threads own (sample, channel) planes."""
    cdef Py_ssize_t plane
    cdef floating *scratch
    with parallel(num_threads=n_threads):
        scratch = scratch_all + threadid() * sizes[4]
        for plane in prange(sizes[0] * sizes[2], schedule="static"):
            _transpose_plane(out, x, w, bias, NULL, 0, 0, scratch, geo, table, sizes, plane,
                             mode)


cdef inline void _pack_columns(floating *packed, const floating *x, Py_ssize_t batch,
                               Py_ssize_t channels, Py_ssize_t size) noexcept nogil:
    """packed[c, n*size + i] = x[n, c, i]: the samples side by side, for one GEMM."""
    cdef Py_ssize_t c, n
    for c in range(channels):
        for n in range(batch):
            memcpy(packed + (c * batch + n) * size, x + (n * channels + c) * size,
                   size * sizeof(floating))


cdef inline void _columns(floating *cols, const floating *x, floating *packed,
                          floating *w, Py_ssize_t first, Py_ssize_t count,
                          const Py_ssize_t *geo, const Py_ssize_t *sizes,
                          int n_threads) noexcept nogil:
    """cols = W_g^T @ X_g for samples [first, first+count), every group.

    Row-major cols (rows, width) = W_g^T (rows x cin_g) @ X_g (cin_g x width);
    column-major: cols^T (width x rows) = X_g^T @ W_g, X_g as 'N', W_g as 'T'.
    """
    cdef Py_ssize_t c_in = sizes[1], c_out = sizes[2], groups = sizes[3]
    cdef Py_ssize_t size = geo[SMALL] * geo[SMALL + 1] * geo[SMALL + 2]
    cdef Py_ssize_t kernel_size = geo[KERNEL] * geo[KERNEL + 1] * geo[KERNEL + 2]
    cdef Py_ssize_t cin_g = c_in // groups, rows = (c_out // groups) * kernel_size
    cdef Py_ssize_t width = count * size
    cdef floating *source = <floating *> x + first * c_in * size
    if count > 1:
        _pack_columns(packed, source, count, c_in, size)
        source = packed
    _grouped_gemm(b'N', b'T', <int> width, <int> rows, <int> cin_g,
                  source, <int> width, cin_g * width,
                  w, <int> rows, cin_g * rows,
                  0, cols, <int> width, rows * width, groups, n_threads)


cdef void _grouped_gemm(char *transa, char *transb, int m, int n, int k,
                        floating *a, int lda, Py_ssize_t a_group,
                        floating *b, int ldb, Py_ssize_t b_group,
                        floating beta, floating *c, int ldc, Py_ssize_t c_group,
                        Py_ssize_t groups, int n_threads) noexcept nogil:
    """One column-major GEMM per group, split over threads along m or n.

    Each thread calls a single-threaded BLAS on its own block of C (see
    _blas_set_local), so the blocks never overlap.
    """
    cdef Py_ssize_t chunks = 1, item, g, part, start, stop, total
    cdef bint split_m = m >= n
    cdef floating *a_block
    cdef floating *b_block
    cdef int previous = 0
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


cdef void _conv_transpose_gemm(
        floating *out, const floating *x, floating *w, const floating *bias,
        floating *packed_all, floating *cols_all, floating *scratch_all,
        const Py_ssize_t *geo, const Py_ssize_t **table, const Py_ssize_t *sizes,
        int n_threads, int gemm_threads) noexcept nogil:
    """GEMM + col2im, a chunk of samples at a time so the columns are still in cache.

    sizes[7] = samples per chunk.  With at least as many chunks as threads, each
    thread takes whole chunks (its own single-threaded GEMM, then col2im of that
    chunk's planes: no barrier, columns hot in its own cache).  Otherwise chunks run
    one after the other, each GEMM and col2im split over all threads.
    """
    cdef Py_ssize_t batch = sizes[0], c_in = sizes[1], c_out = sizes[2]
    cdef Py_ssize_t chunk = sizes[7], plane_len = sizes[4]
    cdef Py_ssize_t size = geo[SMALL] * geo[SMALL + 1] * geo[SMALL + 2]
    cdef Py_ssize_t kernel_size = geo[KERNEL] * geo[KERNEL + 1] * geo[KERNEL + 2]
    cdef Py_ssize_t n_chunks = (batch + chunk - 1) // chunk
    cdef Py_ssize_t cols_len = c_out * kernel_size * chunk * size
    cdef Py_ssize_t packed_len = c_in * chunk * size
    cdef Py_ssize_t item, first, count, plane, tid
    cdef floating *cols
    cdef floating *packed
    cdef floating *scratch
    cdef int previous = 0
    if n_chunks >= n_threads and gemm_threads == n_threads:
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
                _columns(cols, x, packed, w, first, count, geo, sizes, 1)
                for plane in range(first * c_out, (first + count) * c_out):
                    _transpose_plane(out, x, w, bias, cols, count * size,
                                     plane // c_out - first, scratch, geo, table, sizes,
                                     plane, 2)
            if _blas_set_local != NULL:
                _blas_set_local(previous)
        return
    for item in range(n_chunks):
        first = item * chunk
        count = min(chunk, batch - first)
        _columns(cols_all, x, packed_all, w, first, count, geo, sizes, gemm_threads)
        with parallel(num_threads=n_threads):
            scratch = scratch_all + threadid() * plane_len
            for plane in prange(first * c_out, (first + count) * c_out, schedule="static"):
                _transpose_plane(out, x, w, bias, cols_all, count * size,
                                 plane // c_out - first, scratch, geo, table, sizes, plane, 2)


# ---------------------------------------------------------------------------
# Convolution


cdef void _phase_input(floating *phased, const floating *x, const Py_ssize_t *geo,
                       Py_ssize_t rows, Py_ssize_t phase_len, int n_threads) noexcept nogil:
    """phased[row, r*M + m] = x[row, m*stride + r - pad] (zero outside the row).

    The padded input rows in phase-major order, so that a strided convolution reads
    contiguous runs: output position o with tap t reads phase (t*d mod s),
    offset o + t*d div s.
    """
    cdef Py_ssize_t lx = geo[LARGE + 2], stride = geo[STRIDE + 2], pad = geo[PAD + 2]
    cdef Py_ssize_t row, r, m, m0, m1
    cdef floating *dst
    cdef const floating *src
    for row in prange(rows, schedule="static", num_threads=n_threads):
        dst = phased + row * stride * phase_len
        src = x + row * lx
        for r in range(stride):
            # m*stride + r - pad lies in [0, lx) exactly for m in [m0, m1)
            m0 = (pad - r + stride - 1) // stride if pad > r else 0
            m1 = (lx + pad - r + stride - 1) // stride
            if m0 > phase_len:
                m0 = phase_len
            if m1 > phase_len:
                m1 = phase_len
            if m1 < m0:
                m1 = m0
            for m in range(m0):
                dst[r * phase_len + m] = 0
            if stride == 1:
                memcpy(dst + m0, src + m0 - pad, (m1 - m0) * sizeof(floating))
            else:
                for m in range(m0, m1):
                    dst[r * phase_len + m] = src[m * stride + r - pad]
            for m in range(m1, phase_len):
                dst[r * phase_len + m] = 0


cdef void _conv_rows(
        floating *out, const floating *phased, const floating *w, const floating *bias,
        const Py_ssize_t *geo, const Py_ssize_t **table, const Py_ssize_t *sizes,
        int n_threads) noexcept nogil:
    """Direct convolution: each thread owns output rows and gathers into them.

    table: per output position of the outer axes, its (tap, input position) pairs
    (z: ptr, tap, src; y: ptr, tap, src), then the x taps' phase offsets and zeros.
    sizes: batch, c_in, c_out, groups, phase_len.
    """
    cdef Py_ssize_t sz = geo[SMALL], sy = geo[SMALL + 1], sx = geo[SMALL + 2]
    cdef Py_ssize_t lz = geo[LARGE], ly = geo[LARGE + 1]
    cdef Py_ssize_t kz = geo[KERNEL], ky = geo[KERNEL + 1], kx = geo[KERNEL + 2]
    cdef const Py_ssize_t *z_ptr = table[0]
    cdef const Py_ssize_t *z_tap = table[1]
    cdef const Py_ssize_t *z_src = table[2]
    cdef const Py_ssize_t *y_ptr = table[3]
    cdef const Py_ssize_t *y_tap = table[4]
    cdef const Py_ssize_t *y_src = table[5]
    cdef const Py_ssize_t *phase_off = table[6]
    cdef const Py_ssize_t *zeros = table[7]
    cdef Py_ssize_t batch = sizes[0], c_in = sizes[1], c_out = sizes[2], groups = sizes[3]
    cdef Py_ssize_t row_len = geo[STRIDE + 2] * sizes[4]
    cdef Py_ssize_t cin_g = c_in // groups, cout_g = c_out // groups
    cdef Py_ssize_t row, rest, n, co, oz, oy, g, cil, ci, a, b, i
    cdef floating *out_row
    cdef floating bias_value
    for row in prange(batch * c_out * sz * sy, schedule="static", num_threads=n_threads):
        oy = row % sy
        rest = row // sy
        oz = rest % sz
        rest = rest // sz
        co = rest % c_out
        n = rest // c_out
        g = co // cout_g
        out_row = out + row * sx
        bias_value = bias[co] if bias != NULL else 0
        for i in range(sx):
            out_row[i] = bias_value
        for cil in range(cin_g):
            ci = g * cin_g + cil
            for a in range(z_ptr[oz], z_ptr[oz + 1]):
                for b in range(y_ptr[oy], y_ptr[oy + 1]):
                    _taps_axpy(out_row, zeros,
                               phased + (((n * c_in + ci) * lz + z_src[a]) * ly + y_src[b]) * row_len,
                               phase_off,
                               w + (((co * cin_g + cil) * kz + z_tap[a]) * ky + y_tap[b]) * kx,
                               kx, sx)


cdef void _im2col(floating *cols, const floating *phased, const Py_ssize_t *geo,
                  const Py_ssize_t *phase_off, Py_ssize_t row_len, Py_ssize_t batch,
                  Py_ssize_t c_in, int n_threads) noexcept nogil:
    """cols[(ci, tz, ty, tx), (n, oz, oy, ox)] = padded input under that tap (from ``phased``)."""
    cdef Py_ssize_t sz = geo[SMALL], sy = geo[SMALL + 1], sx = geo[SMALL + 2]
    cdef Py_ssize_t lz = geo[LARGE], ly = geo[LARGE + 1]
    cdef Py_ssize_t kz = geo[KERNEL], ky = geo[KERNEL + 1], kx = geo[KERNEL + 2]
    cdef Py_ssize_t s_z = geo[STRIDE], s_y = geo[STRIDE + 1]
    cdef Py_ssize_t d_z = geo[DILATION], d_y = geo[DILATION + 1]
    cdef Py_ssize_t p_z = geo[PAD], p_y = geo[PAD + 1]
    cdef Py_ssize_t width = batch * sz * sy * sx
    cdef Py_ssize_t item, rest, ci, tz, ty, tx, n, oz, oy, pz, py, i
    cdef floating *dst
    cdef const floating *src
    for item in prange(c_in * kz * ky, schedule="static", num_threads=n_threads):
        ty = item % ky
        rest = item // ky
        tz = rest % kz
        ci = rest // kz
        for tx in range(kx):
            for n in range(batch):
                for oz in range(sz):
                    pz = oz * s_z - p_z + tz * d_z
                    for oy in range(sy):
                        py = oy * s_y - p_y + ty * d_y
                        dst = cols + (item * kx + tx) * width + ((n * sz + oz) * sy + oy) * sx
                        if 0 <= pz < lz and 0 <= py < ly:
                            src = (phased + (((n * c_in + ci) * lz + pz) * ly + py) * row_len
                                   + phase_off[tx])
                            for i in range(sx):
                                dst[i] = src[i]
                        else:
                            for i in range(sx):
                                dst[i] = 0


cdef inline void _conv_chunk(
        floating *out, const floating *phased, floating *w, const floating *bias,
        floating *cols, floating *product, Py_ssize_t first, Py_ssize_t count,
        const Py_ssize_t *geo, const Py_ssize_t **table, const Py_ssize_t *sizes,
        int n_threads) noexcept nogil:
    """Samples [first, first+count): im2col, out_g = W_g @ cols_g per group (BLAS), then
    bias and the (sample, channel) layout."""
    cdef Py_ssize_t c_in = sizes[1], c_out = sizes[2], groups = sizes[3]
    cdef Py_ssize_t size = geo[SMALL] * geo[SMALL + 1] * geo[SMALL + 2]
    cdef Py_ssize_t kernel_size = geo[KERNEL] * geo[KERNEL + 1] * geo[KERNEL + 2]
    cdef Py_ssize_t row_len = geo[STRIDE + 2] * sizes[4]
    cdef Py_ssize_t large_plane = geo[LARGE] * geo[LARGE + 1] * row_len
    cdef Py_ssize_t cin_g = c_in // groups, cout_g = c_out // groups
    cdef Py_ssize_t width = count * size, depth = cin_g * kernel_size
    cdef Py_ssize_t row, n, co, i
    cdef floating bias_value
    _im2col(cols, phased + first * c_in * large_plane, geo, table[6], row_len, count, c_in,
            n_threads)
    # Row-major product (cout_g, width) = W_g (cout_g x depth) @ cols_g (depth x width);
    # column-major: product^T = cols_g^T @ W_g^T, both as 'N'.
    _grouped_gemm(b'N', b'N', <int> width, <int> cout_g, <int> depth,
                  cols, <int> width, depth * width,
                  w, <int> depth, cout_g * depth,
                  0, product, <int> width, cout_g * width, groups, n_threads)
    for row in prange(count * c_out, schedule="static", num_threads=n_threads):
        n = row // c_out
        co = row % c_out
        bias_value = bias[co] if bias != NULL else 0
        for i in range(size):
            out[((first + n) * c_out + co) * size + i] = (
                product[(co * count + n) * size + i] + bias_value)


cdef void _conv_gemm(
        floating *out, const floating *phased, floating *w, const floating *bias,
        floating *cols_all, floating *product_all, const Py_ssize_t *geo,
        const Py_ssize_t **table, const Py_ssize_t *sizes, int n_threads,
        int gemm_threads) noexcept nogil:
    """im2col + GEMM, a chunk of samples at a time (sizes[5] samples) so the columns are
    still in cache; with enough chunks each thread takes whole chunks (no barrier)."""
    cdef Py_ssize_t batch = sizes[0], c_in = sizes[1], c_out = sizes[2], chunk = sizes[5]
    cdef Py_ssize_t size = geo[SMALL] * geo[SMALL + 1] * geo[SMALL + 2]
    cdef Py_ssize_t kernel_size = geo[KERNEL] * geo[KERNEL + 1] * geo[KERNEL + 2]
    cdef Py_ssize_t n_chunks = (batch + chunk - 1) // chunk
    cdef Py_ssize_t cols_len = c_in * kernel_size * chunk * size
    cdef Py_ssize_t product_len = c_out * chunk * size
    cdef Py_ssize_t item, first, tid
    cdef floating *cols
    cdef floating *product
    cdef int previous = 0
    if n_chunks >= n_threads and gemm_threads == n_threads and n_threads > 1:
        with parallel(num_threads=n_threads):
            if _blas_set_local != NULL:
                previous = _blas_set_local(1)
            tid = threadid()
            cols = cols_all + tid * cols_len
            product = product_all + tid * product_len
            for item in prange(n_chunks, schedule="dynamic"):
                first = item * chunk
                _conv_chunk(out, phased, w, bias, cols, product, first,
                            min(chunk, batch - first), geo, table, sizes, 1)
            if _blas_set_local != NULL:
                _blas_set_local(previous)
        return
    for item in range(n_chunks):
        first = item * chunk
        _conv_chunk(out, phased, w, bias, cols_all, product_all, first,
                    min(chunk, batch - first), geo, table, sizes, gemm_threads)


# ---------------------------------------------------------------------------
# Weight gradient (both directions): with S the small side (the convolution's output
# gradient, or the transposed convolution's input) and L the large side,
#     grad_w[cs, cl, t] = sum over n, o of S[n, cs, o] * L[n, group(cs)*Cl_g + cl, o*s - pad + t*d]
# -- a correlation, computed from the phase-major copy of L like a convolution.


cdef void _weight_grad_rows(
        floating *grad_w, const floating *small, const floating *phased,
        const Py_ssize_t *geo, const Py_ssize_t **table, const Py_ssize_t *sizes,
        int n_threads) noexcept nogil:
    """Direct weight gradient: each thread owns weight rows (cs, cl) and correlates.

    sizes: batch, c_small, c_large, groups, phase_len (table: as _conv_rows).
    """
    cdef Py_ssize_t sz = geo[SMALL], sy = geo[SMALL + 1], sx = geo[SMALL + 2]
    cdef Py_ssize_t lz = geo[LARGE], ly = geo[LARGE + 1]
    cdef Py_ssize_t kz = geo[KERNEL], ky = geo[KERNEL + 1], kx = geo[KERNEL + 2]
    cdef const Py_ssize_t *z_ptr = table[0]
    cdef const Py_ssize_t *z_tap = table[1]
    cdef const Py_ssize_t *z_src = table[2]
    cdef const Py_ssize_t *y_ptr = table[3]
    cdef const Py_ssize_t *y_tap = table[4]
    cdef const Py_ssize_t *y_src = table[5]
    cdef const Py_ssize_t *phase_off = table[6]
    cdef Py_ssize_t batch = sizes[0], c_small = sizes[1], c_large = sizes[2]
    cdef Py_ssize_t groups = sizes[3], row_len = geo[STRIDE + 2] * sizes[4]
    cdef Py_ssize_t cs_g = c_small // groups, cl_g = c_large // groups
    cdef Py_ssize_t kernel_size = kz * ky * kx
    cdef Py_ssize_t item, cs, cl, n, oz, oy, a, b, i
    cdef floating *acc
    for item in prange(c_small * cl_g, schedule="dynamic", num_threads=n_threads):
        cs = item // cl_g
        cl = (cs // cs_g) * cl_g + item % cl_g
        acc = grad_w + item * kernel_size
        for i in range(kernel_size):
            acc[i] = 0
        for n in range(batch):
            for oz in range(sz):
                for a in range(z_ptr[oz], z_ptr[oz + 1]):
                    for oy in range(sy):
                        for b in range(y_ptr[oy], y_ptr[oy + 1]):
                            _taps_dot(acc + (z_tap[a] * ky + y_tap[b]) * kx,
                                      small + ((n * c_small + cs) * sz + oz) * sy * sx + oy * sx,
                                      phased + (((n * c_large + cl) * lz + z_src[a]) * ly
                                                + y_src[b]) * row_len,
                                      phase_off, kx, sx)


cdef void _weight_grad_gemm(
        floating *grad_w, const floating *small, const floating *phased, floating *packed,
        floating *cols, const Py_ssize_t *geo, const Py_ssize_t **table,
        const Py_ssize_t *sizes, int n_threads, int gemm_threads) noexcept nogil:
    """GEMM weight gradient, a chunk of samples at a time (sizes[5] = samples/chunk):
    grad_w_g += S_g (cs_g x width) @ im2col(L)_g^T (width x cl_g*K), per group."""
    cdef Py_ssize_t batch = sizes[0], c_small = sizes[1], c_large = sizes[2]
    cdef Py_ssize_t groups = sizes[3], chunk = sizes[5]
    cdef Py_ssize_t size = geo[SMALL] * geo[SMALL + 1] * geo[SMALL + 2]
    cdef Py_ssize_t kernel_size = geo[KERNEL] * geo[KERNEL + 1] * geo[KERNEL + 2]
    cdef Py_ssize_t row_len = geo[STRIDE + 2] * sizes[4]
    cdef Py_ssize_t large_plane = geo[LARGE] * geo[LARGE + 1] * row_len
    cdef Py_ssize_t cs_g = c_small // groups, depth = (c_large // groups) * kernel_size
    cdef Py_ssize_t item, first, count, width, c
    cdef floating beta
    for item in range((batch + chunk - 1) // chunk):
        first = item * chunk
        count = min(chunk, batch - first)
        width = count * size
        _im2col(cols, phased + first * c_large * large_plane, geo, table[6], row_len, count,
                c_large, n_threads)
        for c in prange(c_small, schedule="static", num_threads=n_threads):
            _pack_one(packed + c * width, small + (first * c_small + c) * size, count,
                      c_small, size)
        beta = 0 if item == 0 else 1
        # Row-major grad_w_g (cs_g, depth) = S_g (cs_g x width) @ cols_g^T;
        # column-major: (depth x cs_g) = cols_g^T' ('T', cols_g is width x depth) @ S_g^T'.
        _grouped_gemm(b'T', b'N', <int> depth, <int> cs_g, <int> width,
                      cols, <int> width, depth * width,
                      packed, <int> width, cs_g * width,
                      beta, grad_w, <int> depth, cs_g * depth, groups, gemm_threads)


cdef inline void _pack_one(floating *dst, const floating *src, Py_ssize_t count,
                           Py_ssize_t channels, Py_ssize_t size) noexcept nogil:
    """dst[n*size + i] = src[n*channels*size + i]: one channel of ``count`` samples."""
    cdef Py_ssize_t n
    for n in range(count):
        memcpy(dst + n * size, src + n * channels * size, size * sizeof(floating))


# ---------------------------------------------------------------------------
# Python entry point: a prepared kernel holds its tables as raw pointers, so a call
# only unpacks the arrays, releases the GIL and runs.

cdef enum:
    MAX_TABLES = 8
    MAX_SIZES = 8
    GEO_LEN = 18
    WEIGHT_GRAD_DIRECT = 4
    WEIGHT_GRAD_GEMM = 5


cdef inline void *_data(object array):
    return NULL if array is None else cnp.PyArray_DATA(<cnp.ndarray> array)


cdef class Kernel:
    """One prepared (transposed) convolution: geometry, tables and sizes, fixed.

    transposed, algorithm: which kernel (algorithm 0 direct, 1 kernel rows -- transposed
    only --, 2 GEMM; 4 and 5: the weight gradient, direct and GEMM, with transposed
    False and the call's arrays (grad_w, small side, large side)).
    geo: 18 intp (small, large, kernel, stride, dilation, pad_begin; z, y, x each).
    tables: intp arrays, see _transpose_plane / _conv_rows; kept alive here.
    sizes: ints, see the same.
    """

    cdef readonly bint transposed
    cdef readonly int algorithm
    cdef object _keep
    cdef const Py_ssize_t *table[MAX_TABLES]
    cdef Py_ssize_t sizes[MAX_SIZES]
    cdef Py_ssize_t geo[GEO_LEN]

    def __init__(self, bint transposed, int algorithm, cnp.ndarray geo, tuple tables,
                 tuple sizes):
        cdef Py_ssize_t i
        if (len(tables) > MAX_TABLES or len(sizes) > MAX_SIZES or geo.shape[0] != GEO_LEN
                or cnp.PyArray_TYPE(geo) != cnp.NPY_INTP):
            raise ValueError("internal: malformed kernel tables")
        for i in range(len(tables)):
            if cnp.PyArray_TYPE(<cnp.ndarray> tables[i]) != cnp.NPY_INTP:
                raise ValueError("internal: kernel tables must be intp")
            self.table[i] = <const Py_ssize_t *> _data(tables[i])
        for i in range(len(sizes)):
            self.sizes[i] = sizes[i]
        for i in range(GEO_LEN):
            self.geo[i] = (<Py_ssize_t *> _data(geo))[i]
        self.transposed = transposed
        self.algorithm = algorithm
        self._keep = tables

    def __call__(self, cnp.ndarray out, cnp.ndarray x, cnp.ndarray w, object bias,
                 object work0, object work1, object work2, int n_threads, int gemm_threads):
        """Compute into ``out``; all arrays C-contiguous in out's dtype (float32/64).

        Workspaces: transposed (scratch planes, packed input, columns), one set per
        thread; convolution (phased input, columns, product).  Unused ones may be None.
        gemm_threads: threads for the BLAS blocks (1 when BLAS threading is not ours).
        """
        cdef void *o = _data(out)
        cdef void *xp = _data(x)
        cdef void *wp = _data(w)
        cdef void *bp = _data(bias)
        cdef void *w0 = _data(work0)
        cdef void *w1 = _data(work1)
        cdef void *w2 = _data(work2)
        if cnp.PyArray_TYPE(out) == cnp.NPY_FLOAT:
            with nogil:
                _dispatch(self.transposed, self.algorithm, self.geo, self.table, self.sizes,
                          <float *> o, <const float *> xp, <float *> wp, <const float *> bp,
                          <float *> w0, <float *> w1, <float *> w2, n_threads, gemm_threads)
        else:
            with nogil:
                _dispatch(self.transposed, self.algorithm, self.geo, self.table, self.sizes,
                          <double *> o, <const double *> xp, <double *> wp,
                          <const double *> bp, <double *> w0, <double *> w1, <double *> w2,
                          n_threads, gemm_threads)


cdef void _dispatch(bint transposed, int algorithm, const Py_ssize_t *geo,
                    const Py_ssize_t **table, const Py_ssize_t *sizes, floating *out,
                    const floating *x, floating *w, const floating *bias, floating *w0,
                    floating *w1, floating *w2, int n_threads,
                    int gemm_threads) noexcept nogil:
    cdef Py_ssize_t rows
    if transposed and algorithm == 2:
        _conv_transpose_gemm(out, x, w, bias, w1, w2, w0, geo, table, sizes, n_threads,
                             gemm_threads)
    elif transposed:
        _conv_transpose_planes(out, x, w, bias, w0, geo, table, sizes, algorithm, n_threads)
    elif algorithm >= WEIGHT_GRAD_DIRECT:
        # out = grad_w, x = small side, w = large side (phased into w0)
        rows = sizes[0] * sizes[2] * geo[LARGE] * geo[LARGE + 1]
        _phase_input(w0, w, geo, rows, sizes[4], n_threads)
        if algorithm == WEIGHT_GRAD_GEMM:
            _weight_grad_gemm(out, x, w0, w1, w2, geo, table, sizes, n_threads, gemm_threads)
        else:
            _weight_grad_rows(out, x, w0, geo, table, sizes, n_threads)
    else:
        rows = sizes[0] * sizes[1] * geo[LARGE] * geo[LARGE + 1]
        _phase_input(w0, x, geo, rows, sizes[4], n_threads)
        if algorithm == 2:
            _conv_gemm(out, w0, w, bias, w1, w2, geo, table, sizes, n_threads, gemm_threads)
        else:
            _conv_rows(out, w0, w, bias, geo, table, sizes, n_threads)
