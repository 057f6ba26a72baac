/* Innermost loops of the compiled kernels.
 *
 * Every kernel in _kernels.pyx reduces to "add w[k] * (a contiguous source run) to
 * a contiguous destination run" for a few taps k.  These loops are where the time
 * goes, so on x86-64 Linux with GCC they are compiled once per instruction set
 * (AVX-512, AVX2+FMA, baseline SSE2) and the loader picks one at run time: the
 * build stays portable (no -march=native) and still uses the machine's vectors.
 *
 * They trust their arguments (pointers in range, n >= 0): callers are the kernels.
 */
#ifndef SPARSETCONV_ROWOPS_H
#define SPARSETCONV_ROWOPS_H

#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && (__GNUC__ >= 8)
#define STC_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define STC_CLONES
#endif

#define STC_DEFINE_ROWOPS(T, SUFFIX)                                                       \
/* dst[dst_off[k] + i] += w[k] * src[src_off[k] + i] for k < n_taps, i < n */              \
STC_CLONES static void stc_taps_axpy_##SUFFIX(                                             \
    T *restrict dst, const ptrdiff_t *dst_off, const T *restrict src,                      \
    const ptrdiff_t *src_off, const T *w, ptrdiff_t n_taps, ptrdiff_t n)                   \
{                                                                                          \
    for (ptrdiff_t k = 0; k < n_taps; ++k) {                                               \
        T a = w[k];                                                                        \
        T *restrict d = dst + dst_off[k];                                                  \
        const T *restrict s = src + src_off[k];                                            \
        for (ptrdiff_t i = 0; i < n; ++i) d[i] += a * s[i];                                \
    }                                                                                      \
}                                                                                          \
/* Block forms: n_rows consecutive source rows of length n (the input's y axis)   */     \
/* land n_rows destination rows dst_stride apart.                                  */     \
/* dst[dst_off[k] + r*dst_stride + i] += src[k*src_stride + r*n + i]  (col2im)     */     \
STC_CLONES static void stc_block_add_##SUFFIX(                                             \
    T *restrict dst, const ptrdiff_t *dst_off, ptrdiff_t dst_stride,                       \
    const T *restrict src, ptrdiff_t src_stride, ptrdiff_t n_taps, ptrdiff_t n_rows,       \
    ptrdiff_t n)                                                                           \
{                                                                                          \
    for (ptrdiff_t k = 0; k < n_taps; ++k)                                                 \
        for (ptrdiff_t r = 0; r < n_rows; ++r) {                                           \
            T *restrict d = dst + dst_off[k] + r * dst_stride;                             \
            const T *restrict s = src + k * src_stride + r * n;                            \
            for (ptrdiff_t i = 0; i < n; ++i) d[i] += s[i];                                \
        }                                                                                  \
}                                                                                          \
/* dst[dst_off[k] + r*dst_stride + i] += w[k] * src[r*n + i]                       */     \
STC_CLONES static void stc_block_axpy_##SUFFIX(                                            \
    T *restrict dst, const ptrdiff_t *dst_off, ptrdiff_t dst_stride,                       \
    const T *restrict src, const T *w, ptrdiff_t n_taps, ptrdiff_t n_rows, ptrdiff_t n)    \
{                                                                                          \
    for (ptrdiff_t k = 0; k < n_taps; ++k) {                                               \
        T a = w[k];                                                                        \
        for (ptrdiff_t r = 0; r < n_rows; ++r) {                                           \
            T *restrict d = dst + dst_off[k] + r * dst_stride;                             \
            const T *restrict s = src + r * n;                                             \
            for (ptrdiff_t i = 0; i < n; ++i) d[i] += a * s[i];                            \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
/* dst[r*dst_stride + i*step + k] += src[r*n + i] * w[k]: one kernel row per input */     \
/* element, for kernels longer than the input row (e.g. FCN-32s)                  */     \
STC_CLONES static void stc_block_outer_axpy_##SUFFIX(                                      \
    T *restrict dst, ptrdiff_t dst_stride, ptrdiff_t step, const T *restrict src,          \
    const T *restrict w, ptrdiff_t n_taps, ptrdiff_t n_rows, ptrdiff_t n)                  \
{                                                                                          \
    for (ptrdiff_t r = 0; r < n_rows; ++r)                                                 \
        for (ptrdiff_t i = 0; i < n; ++i) {                                                \
            T a = src[r * n + i];                                                          \
            T *restrict d = dst + r * dst_stride + i * step;                               \
            for (ptrdiff_t k = 0; k < n_taps; ++k) d[k] += a * w[k];                       \
        }                                                                                  \
}                                                                                          \
/* acc[k] += sum over i < n of a[i] * b[b_off[k] + i], for k < n_taps: the weight-  */     \
/* gradient correlation of one row pair; lane-wise partial sums so it vectorises   */     \
/* without reassociation flags.                                                    */     \
STC_CLONES static void stc_taps_dot_##SUFFIX(                                              \
    T *restrict acc, const T *restrict a, const T *restrict b, const ptrdiff_t *b_off,    \
    ptrdiff_t n_taps, ptrdiff_t n)                                                         \
{                                                                                          \
    for (ptrdiff_t k = 0; k < n_taps; ++k) {                                               \
        const T *restrict bk = b + b_off[k];                                               \
        T lanes[16] = {0};                                                                 \
        ptrdiff_t i = 0;                                                                   \
        for (; i + 16 <= n; i += 16)                                                       \
            for (int j = 0; j < 16; ++j) lanes[j] += a[i + j] * bk[i + j];                 \
        T sum = 0;                                                                         \
        for (int j = 0; j < 16; ++j) sum += lanes[j];                                      \
        for (; i < n; ++i) sum += a[i] * bk[i];                                            \
        acc[k] += sum;                                                                     \
    }                                                                                      \
}                                                                                          \
/* out[i] = src[map[i]] + bias: crop and un-phase one output row                   */     \
STC_CLONES static void stc_gather_row_##SUFFIX(                                            \
    T *restrict out, const T *restrict src, const ptrdiff_t *map, ptrdiff_t n, T bias)     \
{                                                                                          \
    for (ptrdiff_t i = 0; i < n; ++i) out[i] = src[map[i]] + bias;                         \
}

STC_DEFINE_ROWOPS(float, f)
STC_DEFINE_ROWOPS(double, d)

#endif
