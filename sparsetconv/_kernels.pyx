# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernels for convolution and transposed convolution.

These functions trust their inputs: the Python layer (``_compiled.py``) has validated
shapes, made every array C-contiguous in the computing dtype, allocated the output
and workspaces, and computed the index tables.  Nothing here allocates or raises.

Layout: every rank is treated as 3-D with leading unit axes (one implementation for
1-D, 2-D and 3-D).  ``geo`` holds, per axis (z, y, x), the small-side size (conv
output / transposed input), the large-side size, kernel, stride, dilation and
pad_begin, joined by ``large = small*stride - pad_begin + tap*dilation``.

Work split: each thread owns whole output rows (one (n, channel, z, y) line of the
innermost axis), so there are no write races and no atomics.  Along the outer axes
an output row gathers its contributing (tap, source row) pairs from precomputed
lists; along the innermost axis the taps are handled in a *phase-major* scratch row:
position q = m*stride + r of the uncropped row lives at scratch[r*M + m], so every
tap adds a contiguous source run to a contiguous scratch run -- no modulo, no
branch, no multiply by an inserted zero in the inner loop (``_rowops.h``).
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

cnp.import_array()

cdef extern from "_rowops.h" nogil:
    void stc_taps_axpy_f(float *dst, const Py_ssize_t *dst_off, const float *src,
                         const Py_ssize_t *src_off, const float *w, Py_ssize_t n_taps,
                         Py_ssize_t n)
    void stc_taps_axpy_d(double *dst, const Py_ssize_t *dst_off, const double *src,
                         const Py_ssize_t *src_off, const double *w, Py_ssize_t n_taps,
                         Py_ssize_t n)
    void stc_taps_add_f(float *dst, const Py_ssize_t *dst_off, const float *src,
                        Py_ssize_t src_stride, Py_ssize_t n_taps, Py_ssize_t n)
    void stc_taps_add_d(double *dst, const Py_ssize_t *dst_off, const double *src,
                        Py_ssize_t src_stride, Py_ssize_t n_taps, Py_ssize_t n)
    void stc_outer_axpy_f(float *dst, Py_ssize_t step, const float *src, Py_ssize_t n_src,
                          const float *w, Py_ssize_t n_taps)
    void stc_outer_axpy_d(double *dst, Py_ssize_t step, const double *src,
                          Py_ssize_t n_src, const double *w, Py_ssize_t n_taps)

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


cdef inline void _taps_add(floating *dst, const Py_ssize_t *dst_off, const floating *src,
                           Py_ssize_t src_stride, Py_ssize_t n_taps,
                           Py_ssize_t n) noexcept nogil:
    if floating is float:
        stc_taps_add_f(dst, dst_off, src, src_stride, n_taps, n)
    else:
        stc_taps_add_d(dst, dst_off, src, src_stride, n_taps, n)


cdef inline void _outer_axpy(floating *dst, Py_ssize_t step, const floating *src,
                             Py_ssize_t n_src, const floating *w,
                             Py_ssize_t n_taps) noexcept nogil:
    if floating is float:
        stc_outer_axpy_f(dst, step, src, n_src, w, n_taps)
    else:
        stc_outer_axpy_d(dst, step, src, n_src, w, n_taps)


cdef inline void _gemm(char *transa, char *transb, int m, int n, int k, floating *a, int lda,
                       floating *b, int ldb, floating *c, int ldc) noexcept nogil:
    """C = op(A) @ op(B) in BLAS's column-major terms (alpha 1, beta 0)."""
    cdef floating one = 1, zero = 0
    if floating is float:
        sgemm(transa, transb, &m, &n, &k, &one, a, &lda, b, &ldb, &zero, c, &ldc)
    else:
        dgemm(transa, transb, &m, &n, &k, &one, a, &lda, b, &ldb, &zero, c, &ldc)


cdef inline void _unphase_row(floating *out_row, const floating *scratch, Py_ssize_t length,
                              Py_ssize_t stride, Py_ssize_t pad, Py_ssize_t phase_len,
                              floating bias) noexcept nogil:
    """out_row[x] = scratch[phase(x + pad)] + bias: undo the phase-major layout and crop."""
    cdef Py_ssize_t r, m, m0, m1, x
    for r in range(stride):
        # x = m*stride + r - pad must lie in [0, length)
        m0 = (pad - r + stride - 1) // stride if pad > r else 0
        m1 = (length + pad - r + stride - 1) // stride
        x = m0 * stride + r - pad
        for m in range(m0, m1):
            out_row[x] = scratch[r * phase_len + m] + bias
            x += stride


# ---------------------------------------------------------------------------
# Transposed convolution


cdef void _conv_transpose_rows(
        floating *out, const floating *x, const floating *w, const floating *bias,
        const floating *cols, Py_ssize_t cols_ld, Py_ssize_t cols_sample,
        floating *scratch_all, Py_ssize_t scratch_len, const Py_ssize_t *geo,
        const Py_ssize_t *z_ptr, const Py_ssize_t *z_tap, const Py_ssize_t *z_src,
        const Py_ssize_t *y_ptr, const Py_ssize_t *y_tap, const Py_ssize_t *y_src,
        const Py_ssize_t *phase_off, const Py_ssize_t *zeros, Py_ssize_t phase_len,
        Py_ssize_t batch, Py_ssize_t c_in, Py_ssize_t c_out, Py_ssize_t groups,
        int mode, int n_threads) noexcept nogil:
    """Every output row of a transposed convolution.

    mode 0: direct, phase-major scratch (source = input rows times weight taps);
    mode 1: direct, one kernel row per input element (stride-1 dilation, long kernels);
    mode 2: col2im after GEMM (source = ``cols`` rows, coefficient 1).
    """
    cdef Py_ssize_t sz = geo[SMALL], sy = geo[SMALL + 1], sx = geo[SMALL + 2]
    cdef Py_ssize_t lz = geo[LARGE], ly = geo[LARGE + 1], lx = geo[LARGE + 2]
    cdef Py_ssize_t kz = geo[KERNEL], ky = geo[KERNEL + 1], kx = geo[KERNEL + 2]
    cdef Py_ssize_t stride_x = geo[STRIDE + 2], pad_x = geo[PAD + 2]
    cdef Py_ssize_t cin_g = c_in // groups, cout_g = c_out // groups
    cdef Py_ssize_t n_rows = batch * c_out * lz * ly
    cdef Py_ssize_t row, rest, n, co, oz, oy, g, col, cil, ci, a, b, tz, ty
    cdef Py_ssize_t kernel_size = kz * ky * kx, small_size = sz * sy * sx
    cdef floating *scratch
    cdef floating *out_row
    cdef const floating *src
    cdef const floating *wrow
    cdef floating bias_value

    with parallel(num_threads=n_threads):
        scratch = scratch_all + threadid() * scratch_len
        for row in prange(n_rows, schedule="static"):
            oy = row % ly
            rest = row // ly
            oz = rest % lz
            rest = rest // lz
            co = rest % c_out
            n = rest // c_out
            g = co // cout_g
            col = co % cout_g
            memset(scratch, 0, scratch_len * sizeof(floating))
            for a in range(z_ptr[oz], z_ptr[oz + 1]):
                tz = z_tap[a]
                for b in range(y_ptr[oy], y_ptr[oy + 1]):
                    ty = y_tap[b]
                    if mode == 2:
                        # cols rows are (channel, tz, ty, tx) of this group, columns
                        # (sample, source position); the kx taps are cols_ld apart.
                        src = (cols + g * cout_g * kernel_size * cols_ld
                               + ((col * kz + tz) * ky + ty) * kx * cols_ld
                               + n * cols_sample + (z_src[a] * sy + y_src[b]) * sx)
                        _taps_add(scratch, phase_off, src, cols_ld, kx, sx)
                        continue
                    for cil in range(cin_g):
                        ci = g * cin_g + cil
                        src = x + ((n * c_in + ci) * sz + z_src[a]) * sy * sx + y_src[b] * sx
                        wrow = w + (((ci * cout_g + col) * kz + tz) * ky + ty) * kx
                        if mode == 0:
                            _taps_axpy(scratch, phase_off, src, zeros, wrow, kx, sx)
                        else:
                            _outer_axpy(scratch, stride_x, src, sx, wrow, kx)
            bias_value = bias[co] if bias != NULL else 0
            out_row = out + ((n * c_out + co) * lz + oz) * ly * lx + oy * lx
            if mode == 1:
                for a in range(lx):
                    out_row[a] = scratch[a + pad_x] + bias_value
            else:
                _unphase_row(out_row, scratch, lx, stride_x, pad_x, phase_len, bias_value)


cdef void _pack_columns(floating *packed, const floating *x, Py_ssize_t batch,
                        Py_ssize_t channels, Py_ssize_t size, int n_threads) noexcept nogil:
    """packed[c, n*size + i] = x[n, c, i]: the batch side by side, for one GEMM."""
    cdef Py_ssize_t c, n, i
    for c in prange(channels, schedule="static", num_threads=n_threads):
        for n in range(batch):
            for i in range(size):
                packed[(c * batch + n) * size + i] = x[(n * channels + c) * size + i]


cdef void _grouped_gemm(char *transa, char *transb, int m, int n, int k,
                        floating *a, int lda, Py_ssize_t a_group,
                        floating *b, int ldb, Py_ssize_t b_group,
                        floating *c, int ldc, Py_ssize_t c_group,
                        Py_ssize_t groups, int n_threads) noexcept nogil:
    """One column-major GEMM per group, split over threads along m or n.

    Each thread calls a single-threaded BLAS on its own block (see _blas_set_local).
    ``transa`` must be 'N' (blocks of m are rows of A); ``transb`` may be 'N' or 'T'.
    """
    cdef Py_ssize_t chunks = 1, item, g, part, start, stop, total
    cdef bint split_m = m >= n
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
            if split_m:
                _gemm(transa, transb, <int> (stop - start), n, k,
                      a + g * a_group + start, lda, b + g * b_group, ldb,
                      c + g * c_group + start, ldc)
            elif transb[0] == c'N':
                _gemm(transa, transb, m, <int> (stop - start), k,
                      a + g * a_group, lda, b + g * b_group + start * ldb, ldb,
                      c + g * c_group + start * ldc, ldc)
            else:
                _gemm(transa, transb, m, <int> (stop - start), k,
                      a + g * a_group, lda, b + g * b_group + start, ldb,
                      c + g * c_group + start * ldc, ldc)
        if _blas_set_local != NULL:
            _blas_set_local(previous)


cdef void _conv_transpose_gemm(
        floating *out, const floating *x, floating *w, const floating *bias,
        floating *packed, floating *cols, floating *scratch, Py_ssize_t scratch_len,
        const Py_ssize_t *geo,
        const Py_ssize_t *z_ptr, const Py_ssize_t *z_tap, const Py_ssize_t *z_src,
        const Py_ssize_t *y_ptr, const Py_ssize_t *y_tap, const Py_ssize_t *y_src,
        const Py_ssize_t *phase_off, const Py_ssize_t *zeros, Py_ssize_t phase_len,
        Py_ssize_t batch, Py_ssize_t c_in, Py_ssize_t c_out, Py_ssize_t groups,
        int n_threads, int gemm_threads) noexcept nogil:
    """columns = W_g^T @ X_g per group (BLAS), then col2im over owned output rows."""
    cdef Py_ssize_t size = geo[SMALL] * geo[SMALL + 1] * geo[SMALL + 2]
    cdef Py_ssize_t kernel_size = geo[KERNEL] * geo[KERNEL + 1] * geo[KERNEL + 2]
    cdef Py_ssize_t cin_g = c_in // groups, cout_g = c_out // groups
    cdef Py_ssize_t width = batch * size, rows = cout_g * kernel_size
    cdef floating *source = <floating *> x
    if batch > 1:
        _pack_columns(packed, x, batch, c_in, size, n_threads)
        source = packed
    # Row-major cols (rows, width) = W_g^T (rows x cin_g) @ X_g (cin_g x width);
    # column-major: cols^T (width x rows) = X_g^T @ W_g, X_g as 'N', W_g as 'T'.
    _grouped_gemm(b'N', b'T', <int> width, <int> rows, <int> cin_g,
                  source, <int> width, cin_g * width,
                  w, <int> rows, cin_g * rows,
                  cols, <int> width, rows * width, groups, gemm_threads)
    _conv_transpose_rows(out, x, w, bias, cols, width, size, scratch, scratch_len, geo,
                         z_ptr, z_tap, z_src, y_ptr, y_tap, y_src, phase_off, zeros,
                         phase_len, batch, c_in, c_out, groups, 2, n_threads)


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
    cdef Py_ssize_t row, r, m, p
    cdef floating *dst
    cdef const floating *src
    for row in prange(rows, schedule="static", num_threads=n_threads):
        dst = phased + row * stride * phase_len
        src = x + row * lx
        for r in range(stride):
            for m in range(phase_len):
                p = m * stride + r - pad
                dst[r * phase_len + m] = src[p] if 0 <= p < lx else 0


cdef void _conv_rows(
        floating *out, const floating *phased, const floating *w, const floating *bias,
        const Py_ssize_t *geo,
        const Py_ssize_t *z_ptr, const Py_ssize_t *z_tap, const Py_ssize_t *z_src,
        const Py_ssize_t *y_ptr, const Py_ssize_t *y_tap, const Py_ssize_t *y_src,
        const Py_ssize_t *phase_off, const Py_ssize_t *zeros, Py_ssize_t phase_len,
        Py_ssize_t batch, Py_ssize_t c_in, Py_ssize_t c_out, Py_ssize_t groups,
        int n_threads) noexcept nogil:
    """Direct convolution: each thread owns output rows and gathers into them."""
    cdef Py_ssize_t sz = geo[SMALL], sy = geo[SMALL + 1], sx = geo[SMALL + 2]
    cdef Py_ssize_t lz = geo[LARGE], ly = geo[LARGE + 1]
    cdef Py_ssize_t kz = geo[KERNEL], ky = geo[KERNEL + 1], kx = geo[KERNEL + 2]
    cdef Py_ssize_t row_len = geo[STRIDE + 2] * phase_len
    cdef Py_ssize_t cin_g = c_in // groups, cout_g = c_out // groups
    cdef Py_ssize_t n_rows = batch * c_out * sz * sy
    cdef Py_ssize_t row, rest, n, co, oz, oy, g, cil, ci, a, b, i
    cdef floating *out_row
    cdef floating bias_value
    for row in prange(n_rows, schedule="static", num_threads=n_threads):
        oy = row % sy
        rest = row // sy
        oz = rest % sz
        rest = rest // sz
        co = rest % c_out
        n = rest // c_out
        g = co // cout_g
        out_row = out + ((n * c_out + co) * sz + oz) * sy * sx + oy * sx
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
                  const Py_ssize_t *phase_off, Py_ssize_t phase_len, Py_ssize_t batch,
                  Py_ssize_t c_in, int n_threads) noexcept nogil:
    """cols[(ci, tz, ty, tx), (n, oz, oy, ox)] = padded input under that tap (from ``phased``)."""
    cdef Py_ssize_t sz = geo[SMALL], sy = geo[SMALL + 1], sx = geo[SMALL + 2]
    cdef Py_ssize_t lz = geo[LARGE], ly = geo[LARGE + 1]
    cdef Py_ssize_t kz = geo[KERNEL], ky = geo[KERNEL + 1], kx = geo[KERNEL + 2]
    cdef Py_ssize_t s_z = geo[STRIDE], s_y = geo[STRIDE + 1]
    cdef Py_ssize_t d_z = geo[DILATION], d_y = geo[DILATION + 1]
    cdef Py_ssize_t p_z = geo[PAD], p_y = geo[PAD + 1]
    cdef Py_ssize_t row_len = geo[STRIDE + 2] * phase_len
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


cdef void _conv_gemm(
        floating *out, const floating *phased, floating *w, const floating *bias,
        floating *cols, floating *product, const Py_ssize_t *geo,
        const Py_ssize_t *phase_off, Py_ssize_t phase_len,
        Py_ssize_t batch, Py_ssize_t c_in, Py_ssize_t c_out, Py_ssize_t groups,
        int n_threads, int gemm_threads) noexcept nogil:
    """im2col, then out_g = W_g @ cols_g per group (BLAS), then bias and batch layout."""
    cdef Py_ssize_t size = geo[SMALL] * geo[SMALL + 1] * geo[SMALL + 2]
    cdef Py_ssize_t kernel_size = geo[KERNEL] * geo[KERNEL + 1] * geo[KERNEL + 2]
    cdef Py_ssize_t cin_g = c_in // groups, cout_g = c_out // groups
    cdef Py_ssize_t width = batch * size, depth = cin_g * kernel_size
    cdef Py_ssize_t row, n, co, i
    cdef floating bias_value
    _im2col(cols, phased, geo, phase_off, phase_len, batch, c_in, n_threads)
    # Row-major product (cout_g, width) = W_g (cout_g x depth) @ cols_g (depth x width);
    # column-major: product^T = cols_g^T @ W_g^T, both as 'N'.
    _grouped_gemm(b'N', b'N', <int> width, <int> cout_g, <int> depth,
                  cols, <int> width, depth * width,
                  w, <int> depth, cout_g * depth,
                  product, <int> width, cout_g * width, groups, gemm_threads)
    for row in prange(batch * c_out, schedule="static", num_threads=n_threads):
        n = row // c_out
        co = row % c_out
        bias_value = bias[co] if bias != NULL else 0
        for i in range(size):
            out[row * size + i] = product[(co * batch + n) * size + i] + bias_value


# ---------------------------------------------------------------------------
# Python entry points: unpack arrays to pointers, release the GIL, run.

cdef inline void *_data(object array):
    return NULL if array is None else cnp.PyArray_DATA(<cnp.ndarray> array)


def conv_transpose(cnp.ndarray out, cnp.ndarray x, cnp.ndarray w, object bias,
                   cnp.ndarray geo, tuple tables, tuple sizes, int algorithm,
                   object workspace, int n_threads):
    """Run a transposed convolution into ``out`` (see module docstring).

    tables: (z_ptr, z_tap, z_src, y_ptr, y_tap, y_src, phase_off, zeros) intp arrays.
    sizes: (batch, c_in, c_out, groups, phase_len, scratch_len, gemm_threads).
    algorithm: 0 direct (phase scratch), 1 direct (kernel rows), 2 GEMM + col2im.
    workspace: (scratch, packed, cols) arrays of the computing dtype (packed/cols may
    be None unless algorithm == 2).
    """
    cdef Py_ssize_t batch = sizes[0], c_in = sizes[1], c_out = sizes[2], groups = sizes[3]
    cdef Py_ssize_t phase_len = sizes[4], scratch_len = sizes[5]
    cdef int gemm_threads = sizes[6]
    cdef const Py_ssize_t *g = <const Py_ssize_t *> _data(geo)
    cdef const Py_ssize_t *zp = <const Py_ssize_t *> _data(tables[0])
    cdef const Py_ssize_t *zt = <const Py_ssize_t *> _data(tables[1])
    cdef const Py_ssize_t *zs = <const Py_ssize_t *> _data(tables[2])
    cdef const Py_ssize_t *yp = <const Py_ssize_t *> _data(tables[3])
    cdef const Py_ssize_t *yt = <const Py_ssize_t *> _data(tables[4])
    cdef const Py_ssize_t *ys = <const Py_ssize_t *> _data(tables[5])
    cdef const Py_ssize_t *phase_off = <const Py_ssize_t *> _data(tables[6])
    cdef const Py_ssize_t *zeros = <const Py_ssize_t *> _data(tables[7])
    cdef void *o = _data(out)
    cdef void *xp = _data(x)
    cdef void *wp = _data(w)
    cdef void *bp = _data(bias)
    cdef void *scratch = _data(workspace[0])
    cdef void *packed = _data(workspace[1])
    cdef void *cols = _data(workspace[2])
    if cnp.PyArray_TYPE(out) == cnp.NPY_FLOAT:
        with nogil:
            if algorithm == 2:
                _conv_transpose_gemm(<float *> o, <const float *> xp, <float *> wp,
                                     <const float *> bp, <float *> packed, <float *> cols,
                                     <float *> scratch, scratch_len, g, zp, zt, zs, yp, yt,
                                     ys, phase_off, zeros, phase_len, batch, c_in, c_out,
                                     groups, n_threads, gemm_threads)
            else:
                _conv_transpose_rows(<float *> o, <const float *> xp, <const float *> wp,
                                     <const float *> bp, NULL, 0, 0, <float *> scratch,
                                     scratch_len, g, zp, zt, zs, yp, yt, ys, phase_off,
                                     zeros, phase_len, batch, c_in, c_out, groups,
                                     algorithm, n_threads)
    else:
        with nogil:
            if algorithm == 2:
                _conv_transpose_gemm(<double *> o, <const double *> xp, <double *> wp,
                                     <const double *> bp, <double *> packed,
                                     <double *> cols, <double *> scratch, scratch_len, g,
                                     zp, zt, zs, yp, yt, ys, phase_off, zeros, phase_len,
                                     batch, c_in, c_out, groups, n_threads, gemm_threads)
            else:
                _conv_transpose_rows(<double *> o, <const double *> xp, <const double *> wp,
                                     <const double *> bp, NULL, 0, 0, <double *> scratch,
                                     scratch_len, g, zp, zt, zs, yp, yt, ys, phase_off,
                                     zeros, phase_len, batch, c_in, c_out, groups,
                                     algorithm, n_threads)


def conv(cnp.ndarray out, cnp.ndarray x, cnp.ndarray w, object bias, cnp.ndarray geo,
         tuple tables, tuple sizes, int algorithm, object workspace, int n_threads):
    """Run a convolution into ``out``.

    tables: as for conv_transpose but grouped by *small* (output) positions.
    sizes: (batch, c_in, c_out, groups, phase_len, unused, gemm_threads).
    algorithm: 0 direct, 2 im2col + GEMM.
    workspace: (phased, cols, product); cols/product may be None unless algorithm == 2.
    """
    cdef Py_ssize_t batch = sizes[0], c_in = sizes[1], c_out = sizes[2], groups = sizes[3]
    cdef Py_ssize_t phase_len = sizes[4]
    cdef int gemm_threads = sizes[6]
    cdef const Py_ssize_t *g = <const Py_ssize_t *> _data(geo)
    cdef const Py_ssize_t *zp = <const Py_ssize_t *> _data(tables[0])
    cdef const Py_ssize_t *zt = <const Py_ssize_t *> _data(tables[1])
    cdef const Py_ssize_t *zs = <const Py_ssize_t *> _data(tables[2])
    cdef const Py_ssize_t *yp = <const Py_ssize_t *> _data(tables[3])
    cdef const Py_ssize_t *yt = <const Py_ssize_t *> _data(tables[4])
    cdef const Py_ssize_t *ys = <const Py_ssize_t *> _data(tables[5])
    cdef const Py_ssize_t *phase_off = <const Py_ssize_t *> _data(tables[6])
    cdef const Py_ssize_t *zeros = <const Py_ssize_t *> _data(tables[7])
    cdef void *o = _data(out)
    cdef void *xp = _data(x)
    cdef void *wp = _data(w)
    cdef void *bp = _data(bias)
    cdef void *phased = _data(workspace[0])
    cdef void *cols = _data(workspace[1])
    cdef void *product = _data(workspace[2])
    cdef Py_ssize_t rows = batch * c_in * g[LARGE] * g[LARGE + 1]
    if cnp.PyArray_TYPE(out) == cnp.NPY_FLOAT:
        with nogil:
            _phase_input(<float *> phased, <const float *> xp, g, rows, phase_len, n_threads)
            if algorithm == 2:
                _conv_gemm(<float *> o, <const float *> phased, <float *> wp,
                           <const float *> bp, <float *> cols, <float *> product, g,
                           phase_off, phase_len, batch, c_in, c_out, groups, n_threads,
                           gemm_threads)
            else:
                _conv_rows(<float *> o, <const float *> phased, <const float *> wp,
                           <const float *> bp, g, zp, zt, zs, yp, yt, ys, phase_off, zeros,
                           phase_len, batch, c_in, c_out, groups, n_threads)
    else:
        with nogil:
            _phase_input(<double *> phased, <const double *> xp, g, rows, phase_len,
                         n_threads)
            if algorithm == 2:
                _conv_gemm(<double *> o, <const double *> phased, <double *> wp,
                           <const double *> bp, <double *> cols, <double *> product, g,
                           phase_off, phase_len, batch, c_in, c_out, groups, n_threads,
                           gemm_threads)
            else:
                _conv_rows(<double *> o, <const double *> phased, <const double *> wp,
                           <const double *> bp, g, zp, zt, zs, yp, yt, ys, phase_off,
                           zeros, phase_len, batch, c_in, c_out, groups, n_threads)
