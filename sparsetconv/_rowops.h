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
/* dst[dst_off[k] + i] += src[k * src_stride + i] for k < n_taps, i < n (col2im) */        \
STC_CLONES static void stc_taps_add_##SUFFIX(                                              \
    T *restrict dst, const ptrdiff_t *dst_off, const T *restrict src,                      \
    ptrdiff_t src_stride, ptrdiff_t n_taps, ptrdiff_t n)                                   \
{                                                                                          \
    for (ptrdiff_t k = 0; k < n_taps; ++k) {                                               \
        T *restrict d = dst + dst_off[k];                                                  \
        const T *restrict s = src + k * src_stride;                                        \
        for (ptrdiff_t i = 0; i < n; ++i) d[i] += s[i];                                    \
    }                                                                                      \
}                                                                                          \
/* dst[i*step + k] += src[i] * w[k] for i < n_src, k < n_taps: one kernel row per   */     \
/* input element, for kernels longer than the input row (e.g. FCN-32s)              */     \
STC_CLONES static void stc_outer_axpy_##SUFFIX(                                            \
    T *restrict dst, ptrdiff_t step, const T *restrict src, ptrdiff_t n_src,               \
    const T *restrict w, ptrdiff_t n_taps)                                                 \
{                                                                                          \
    for (ptrdiff_t i = 0; i < n_src; ++i) {                                                \
        T a = src[i];                                                                      \
        T *restrict d = dst + i * step;                                                    \
        for (ptrdiff_t k = 0; k < n_taps; ++k) d[k] += a * w[k];                           \
    }                                                                                      \
}

STC_DEFINE_ROWOPS(float, f)
STC_DEFINE_ROWOPS(double, d)

#endif
