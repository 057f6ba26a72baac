/* Innermost loops of the compiled kernels.
 *
 * Every kernel in _kernels.pyx reduces to "add w[k] * (a contiguous source run) to
 * a contiguous destination run" for the taps k of one kernel row, each tap with its
 * own valid range [first[k], stop[k]) (positions outside it fall in the padding and
 * are never touched) and its own offset into the phase-major large side.  These
 * loops are where the time goes, so on x86-64 Linux with GCC they are compiled once
 * per instruction set (AVX-512, AVX2+FMA, baseline SSE2) and the loader picks one
 * at run time: the build stays portable (no -march=native) and still uses the
 * machine's vectors.
 *
 * They trust their arguments (pointers and ranges in bounds): callers are the kernels.
 */
#ifndef SPARSETCONV_ROWOPS_H
#define SPARSETCONV_ROWOPS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && (__GNUC__ >= 12)
/* One clone per x86-64 ISA level, dispatched on the CPU's *features* (v4: AVX-512,
 * v3: AVX2 + FMA).  Neither "arch=skylake-avx512" (dispatched on the CPU model, so
 * never chosen on AMD) nor "avx2,fma" (two separate clones, the AVX2 one without
 * FMA) would do. */
#define STC_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
/* The clone the resolver picks on this CPU (the same tests, in the same order). */
static const char *stc_simd_path(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
    if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2 + FMA)";
    return "x86-64 baseline (SSE2)";
}
#else
#define STC_CLONES
static const char *stc_simd_path(void) { return "compiler baseline (no per-CPU clones in this build)"; }
#endif

/* Vector types for register blocks (GCC/clang vector extensions; aligned(sizeof T)
 * makes every load and store an unaligned one).  Each clone compiles them to its own
 * registers: one zmm for 16 floats under AVX-512, two ymm under AVX2, and so on. */
typedef float stc_f16 __attribute__((vector_size(64), aligned(4)));
typedef float stc_f8 __attribute__((vector_size(32), aligned(4)));
typedef float stc_f4 __attribute__((vector_size(16), aligned(4)));
typedef double stc_d16 __attribute__((vector_size(128), aligned(8)));
typedef double stc_d8 __attribute__((vector_size(64), aligned(8)));
typedef double stc_d4 __attribute__((vector_size(32), aligned(8)));
/* One 64-byte vector (a cache line, one zmm) of either type: the grid convolution's unit. */
typedef float stc_fline __attribute__((vector_size(64), aligned(4)));
typedef double stc_dline __attribute__((vector_size(64), aligned(8)));

/* Elements past a phase copy (see stc_grid_dot, stc_implicit_conv) that the runs of
 * the last grid positions may read: zeros, so no read leaves the workspace. */
#define STC_PHASE_TAIL 32

/* Two-vector shuffles of 8 lanes with constant lane indices (GCC or clang); without
 * them the interleaving loops take their scalar tails only. */
typedef int32_t stc_fi8 __attribute__((vector_size(32)));
typedef int64_t stc_di8 __attribute__((vector_size(64)));
typedef int32_t stc_fi16 __attribute__((vector_size(64)));
typedef int64_t stc_di16 __attribute__((vector_size(128)));
#if defined(__clang__)
#define STC_HAVE_SHUFFLE 1
#define STC_SHUFFLE8(SUFFIX, a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#define STC_SHUFFLE16(SUFFIX, a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#elif defined(__GNUC__)
#define STC_HAVE_SHUFFLE 1
#define STC_SHUFFLE8(SUFFIX, a, b, ...) __builtin_shuffle(a, b, (stc_##SUFFIX##i8){__VA_ARGS__})
#define STC_SHUFFLE16(SUFFIX, a, b, ...) __builtin_shuffle(a, b, (stc_##SUFFIX##i16){__VA_ARGS__})
#else
#define STC_HAVE_SHUFFLE 0
#define STC_SHUFFLE8(SUFFIX, a, b, ...) (a)
#define STC_SHUFFLE16(SUFFIX, a, b, ...) (a)
#endif

/* d[0..n) += SCALE(s[0..n)) in explicit 16- and 4-wide blocks and a 0-3 tail without
 * a loop: on the short rows of small planes (1-8 elements) the vectoriser's set-up
 * for a plain loop, paid on every row, cost more than the adds. */
#define STC_AS_IS(x) (x)
#define STC_TIMES_A(x) (a * (x))
#define STC_ADD_RUN(SUFFIX, d, s, n, SCALE)                                                \
    do {                                                                                   \
        ptrdiff_t i_ = 0;                                                                  \
        for (; i_ + 16 <= (n); i_ += 16)                                                   \
            *(stc_##SUFFIX##16 *)((d) + i_) += SCALE(*(const stc_##SUFFIX##16 *)((s) + i_)); \
        for (; i_ + 4 <= (n); i_ += 4)                                                     \
            *(stc_##SUFFIX##4 *)((d) + i_) += SCALE(*(const stc_##SUFFIX##4 *)((s) + i_)); \
        switch ((n) - i_) {                                                                \
        case 3: (d)[i_ + 2] += SCALE((s)[i_ + 2]); /* fall through */                      \
        case 2: (d)[i_ + 1] += SCALE((s)[i_ + 1]); /* fall through */                      \
        case 1: (d)[i_] += SCALE((s)[i_]);                                                 \
        default: break;                                                                    \
        }                                                                                  \
    } while (0)

/* The range [lo, hi) every tap's run covers (kept in registers by the gathers), and
 * whether some run reaches outside it (ragged). */
#define STC_COMMON_RANGE                                                                   \
    ptrdiff_t lo = 0, hi = PTRDIFF_MAX;                                                    \
    int ragged = 0;                                                                        \
    for (ptrdiff_t k = 0; k < n_taps; ++k) {                                               \
        if (first[k] > lo) lo = first[k];                                                  \
        if (stop[k] < hi) hi = stop[k];                                                    \
    }                                                                                      \
    if (hi < lo) hi = lo;                                                                  \
    for (ptrdiff_t k = 0; k < n_taps; ++k)                                                 \
        ragged |= (first[k] < lo) | (stop[k] > hi)
/* dst[i] += a * s[i] for the i of [i0, i1) outside [lo, hi). */
#define STC_ADD_OUTSIDE(dst, a, s, i0, i1)                                                 \
    do {                                                                                   \
        ptrdiff_t j0_ = (i0), j1_ = (i1);                                                  \
        ptrdiff_t m0_ = lo > j0_ ? (lo < j1_ ? lo : j1_) : j0_;                            \
        ptrdiff_t m1_ = hi < j1_ ? (hi > j0_ ? hi : j0_) : j1_;                            \
        if (m1_ < m0_) m1_ = m0_;                                                          \
        for (ptrdiff_t i_ = j0_; i_ < m0_; ++i_) (dst)[i_] += (a) * (s)[i_];               \
        for (ptrdiff_t i_ = m1_; i_ < j1_; ++i_) (dst)[i_] += (a) * (s)[i_];               \
    } while (0)

/* One register block of stc_rows_gather: B outputs in one vector VT.  Four
 * accumulators take the source rows in turn: one would make every FMA wait for the
 * previous one (a dependent chain of n_src * n_taps FMAs, 4 cycles each), which is
 * what bounds short rows. */
#define STC_GATHER_BLOCK(T, VT, B)                                                         \
    for (; i + (B) <= hi; i += (B)) {                                                      \
        VT acc0 = *(const VT *)(d + i), acc1 = {0}, acc2 = {0}, acc3 = {0};              \
        ptrdiff_t r = 0;                                                                   \
        for (; r + 4 <= n_src; r += 4) {                                                   \
            const T *restrict w0 = w[r], *restrict w1 = w[r + 1];                          \
            const T *restrict w2 = w[r + 2], *restrict w3 = w[r + 3];                      \
            const T *restrict b0 = src[r] + sh + i, *restrict b1 = src[r + 1] + sh + i;              \
            const T *restrict b2 = src[r + 2] + sh + i, *restrict b3 = src[r + 3] + sh + i;          \
            for (ptrdiff_t k = 0; k < n_taps; ++k) {                                       \
                acc0 += w0[k] * *(const VT *)(b0 + offset[k]);                             \
                acc1 += w1[k] * *(const VT *)(b1 + offset[k]);                             \
                acc2 += w2[k] * *(const VT *)(b2 + offset[k]);                             \
                acc3 += w3[k] * *(const VT *)(b3 + offset[k]);                             \
            }                                                                              \
        }                                                                                  \
        for (; r < n_src; ++r) {                                                           \
            const T *restrict wr = w[r];                                                   \
            const T *restrict base = src[r] + sh + i;                                           \
            for (ptrdiff_t k = 0; k < n_taps; ++k)                                         \
                acc0 += wr[k] * *(const VT *)(base + offset[k]);                           \
        }                                                                                  \
        *(VT *)(d + i) = (acc0 + acc1) + (acc2 + acc3);                                  \
    }

/* The same for four output channels at once (one source vector feeds four FMAs, so
 * a channel block reads its sources once, not once per channel): two accumulators
 * per channel take the source rows in turn, eight independent chains in all. */
#define STC_GATHER4_BLOCK(T, VT, B)                                                        \
    for (; i + (B) <= hi; i += (B)) {                                                      \
        VT a0 = *(const VT *)(d + i), a1 = *(const VT *)(d + cp + i);                      \
        VT a2 = *(const VT *)(d + 2 * cp + i), a3 = *(const VT *)(d + 3 * cp + i);         \
        VT b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};                                         \
        ptrdiff_t r = 0;                                                                   \
        for (; r + 2 <= n_src; r += 2) {                                                   \
            const T *restrict s0 = src[r] + sh + i, *restrict s1 = src[r + 1] + sh + i;    \
            const T *restrict u0 = w[r], *restrict u1 = w[wp + r];                      \
            const T *restrict u2 = w[2 * wp + r], *restrict u3 = w[3 * wp + r];      \
            const T *restrict v0 = w[r + 1], *restrict v1 = w[wp + r + 1];              \
            const T *restrict v2 = w[2 * wp + r + 1], *restrict v3 = w[3 * wp + r + 1]; \
            for (ptrdiff_t k = 0; k < n_taps; ++k) {                                       \
                VT x0 = *(const VT *)(s0 + offset[k]), x1 = *(const VT *)(s1 + offset[k]); \
                a0 += u0[k] * x0; a1 += u1[k] * x0; a2 += u2[k] * x0; a3 += u3[k] * x0;    \
                b0 += v0[k] * x1; b1 += v1[k] * x1; b2 += v2[k] * x1; b3 += v3[k] * x1;    \
            }                                                                              \
        }                                                                                  \
        for (; r < n_src; ++r) {                                                           \
            const T *restrict s0 = src[r] + sh + i;                                        \
            const T *restrict u0 = w[r], *restrict u1 = w[wp + r];                      \
            const T *restrict u2 = w[2 * wp + r], *restrict u3 = w[3 * wp + r];      \
            for (ptrdiff_t k = 0; k < n_taps; ++k) {                                       \
                VT x0 = *(const VT *)(s0 + offset[k]);                                     \
                a0 += u0[k] * x0; a1 += u1[k] * x0; a2 += u2[k] * x0; a3 += u3[k] * x0;    \
            }                                                                              \
        }                                                                                  \
        *(VT *)(d + i) = a0 + b0;                                                          \
        *(VT *)(d + cp + i) = a1 + b1;                                                     \
        *(VT *)(d + 2 * cp + i) = a2 + b2;                                                 \
        *(VT *)(d + 3 * cp + i) = a3 + b3;                                                 \
    }

/* Ask for the cache lines of [p, p + bytes) ahead of their use (a hint: no fault, no */
/* effect on results), so that reading them overlaps the work before it.            */
static inline void stc_prefetch(const void *p, ptrdiff_t bytes)
{
    for (ptrdiff_t at = 0; at < bytes; at += 64)
        __builtin_prefetch((const char *) p + at, 0, 3);
}

/* bytes ahead of the row being copied that stc_phase_copy asks for */
#define STC_COPY_AHEAD 4096

#define STC_DEFINE_ROWOPS(T, SUFFIX)                                                       \
/* Gather of whole output rows from n_src source rows (one per valid outer tap and   */ \
/* input channel), each with its own weight row of n_taps x taps:                   */ \
/*   dst[j*dst_pitch + i] += sum over r, k of w[r][k] * src[r][j*src_pitch + offset[k] + i] */ \
/* for n_rows consecutive rows j that share their weights and source pattern (the   */ \
/* set-up is paid once for all of them).  Where every x tap is valid the sum is kept */ \
/* in registers over blocks of 16, 8, 4 and 1 outputs, so short rows (3-D and        */ \
/* depthwise layers) load and store the output once per block, not once per tap.     */ \
STC_CLONES static void stc_rows_gather_##SUFFIX(                                           \
    T *restrict dst, const T *const *src, const T *const *w, ptrdiff_t n_src,              \
    ptrdiff_t n_taps, const ptrdiff_t *first, const ptrdiff_t *stop,                       \
    const ptrdiff_t *offset, ptrdiff_t n_rows, ptrdiff_t dst_pitch, ptrdiff_t src_pitch)   \
{                                                                                          \
    STC_COMMON_RANGE;                                                                      \
    for (ptrdiff_t j = 0; j < n_rows; ++j) {                                               \
    T *restrict d = dst + j * dst_pitch;                                                   \
    const ptrdiff_t sh = j * src_pitch;                                                    \
    for (ptrdiff_t r = 0; ragged && r < n_src; ++r)  /* the runs outside [lo, hi) */       \
        for (ptrdiff_t k = 0; k < n_taps; ++k) {                                           \
            T a = w[r][k];                                                                 \
            const T *restrict s = src[r] + sh + offset[k];                                 \
            STC_ADD_OUTSIDE(d, a, s, first[k], stop[k]);                                  \
        }                                                                                  \
    ptrdiff_t i = lo;                                                                      \
    STC_GATHER_BLOCK(T, stc_##SUFFIX##16, 16)                                              \
    STC_GATHER_BLOCK(T, stc_##SUFFIX##8, 8)                                                \
    STC_GATHER_BLOCK(T, stc_##SUFFIX##4, 4)                                                \
    for (; i < hi; ++i) {                                                                  \
        T acc = d[i];                                                                      \
        for (ptrdiff_t r = 0; r < n_src; ++r)                                              \
            for (ptrdiff_t k = 0; k < n_taps; ++k)                                         \
                acc += w[r][k] * src[r][sh + offset[k] + i];                               \
        d[i] = acc;                                                                        \
    }                                                                                      \
    }                                                                                      \
}                                                                                          \
/* stc_rows_gather for four output channels, channel c's rows at dst + c * cp and   */ \
/* its weight rows at w[c * wp + r] (the sources are the same for all four).         */ \
STC_CLONES static void stc_rows_gather4_##SUFFIX(                                          \
    T *restrict dst, ptrdiff_t cp, const T *const *src, const T *const *w, ptrdiff_t wp,   \
    ptrdiff_t n_src,                                                                       \
    ptrdiff_t n_taps, const ptrdiff_t *first, const ptrdiff_t *stop,                       \
    const ptrdiff_t *offset, ptrdiff_t n_rows, ptrdiff_t dst_pitch, ptrdiff_t src_pitch)   \
{                                                                                          \
    STC_COMMON_RANGE;                                                                      \
    for (ptrdiff_t j = 0; j < n_rows; ++j) {                                               \
    T *restrict d = dst + j * dst_pitch;                                                   \
    const ptrdiff_t sh = j * src_pitch;                                                    \
    for (ptrdiff_t c = 0; ragged && c < 4; ++c)                                            \
        for (ptrdiff_t r = 0; r < n_src; ++r)                                              \
            for (ptrdiff_t k = 0; k < n_taps; ++k) {                                       \
                T a = w[c * wp + r][k];                                                 \
                const T *restrict s = src[r] + sh + offset[k];                             \
                T *restrict dc = d + c * cp;                                               \
                STC_ADD_OUTSIDE(dc, a, s, first[k], stop[k]);                              \
            }                                                                              \
    ptrdiff_t i = lo;                                                                      \
    STC_GATHER4_BLOCK(T, stc_##SUFFIX##16, 16)                                             \
    STC_GATHER4_BLOCK(T, stc_##SUFFIX##8, 8)                                               \
    STC_GATHER4_BLOCK(T, stc_##SUFFIX##4, 4)                                               \
    for (; i < hi; ++i)                                                                    \
        for (ptrdiff_t c = 0; c < 4; ++c) {                                                \
            T acc = d[c * cp + i];                                                         \
            for (ptrdiff_t r = 0; r < n_src; ++r)                                          \
                for (ptrdiff_t k = 0; k < n_taps; ++k)                                     \
                    acc += w[c * wp + r][k] * src[r][sh + offset[k] + i];               \
            d[c * cp + i] = acc;                                                           \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
/* Scatter (transposed), n_rows source rows of row_len landing dst_stride apart:    */    \
/* dst[r*dst_stride + offset[k] + i] += w[k] * src[r*row_len + i]                  */    \
STC_CLONES static void stc_block_axpy_##SUFFIX(                                            \
    T *restrict dst, ptrdiff_t dst_stride, const T *restrict src, ptrdiff_t row_len,       \
    ptrdiff_t n_rows, const T *w, ptrdiff_t n_taps, const ptrdiff_t *first,                \
    const ptrdiff_t *stop, const ptrdiff_t *offset)                                        \
{                                                                                          \
    for (ptrdiff_t k = 0; k < n_taps; ++k) {                                               \
        T a = w[k];                                                                        \
        ptrdiff_t i0 = first[k], n = stop[k] - first[k];                                   \
        for (ptrdiff_t r = 0; r < n_rows; ++r) {                                           \
            T *restrict d = dst + r * dst_stride + offset[k] + i0;                         \
            const T *restrict s = src + r * row_len + i0;                                  \
            STC_ADD_RUN(SUFFIX, d, s, n, STC_TIMES_A);                                     \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
/* col2im: as block_axpy with weight 1, tap k's rows tap_stride apart in src        */    \
STC_CLONES static void stc_block_add_##SUFFIX(                                             \
    T *restrict dst, ptrdiff_t dst_stride, const T *restrict src, ptrdiff_t tap_stride,    \
    ptrdiff_t row_len, ptrdiff_t n_rows, ptrdiff_t n_taps, const ptrdiff_t *first,         \
    const ptrdiff_t *stop, const ptrdiff_t *offset)                                        \
{                                                                                          \
    for (ptrdiff_t k = 0; k < n_taps; ++k) {                                               \
        ptrdiff_t i0 = first[k], n = stop[k] - first[k];                                   \
        for (ptrdiff_t r = 0; r < n_rows; ++r) {                                           \
            T *restrict d = dst + r * dst_stride + offset[k] + i0;                         \
            const T *restrict s = src + k * tap_stride + r * row_len + i0;                 \
            STC_ADD_RUN(SUFFIX, d, s, n, STC_AS_IS);                                       \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
/* Kernel rows (transposed, dilation 1 on x, natural order): input element i adds  */    \
/* w[e_first[i] .. e_stop[i]) at dst[r*dst_stride + e_start[i] ..]                 */    \
STC_CLONES static void stc_block_outer_axpy_##SUFFIX(                                      \
    T *restrict dst, ptrdiff_t dst_stride, const T *restrict src, ptrdiff_t row_len,       \
    ptrdiff_t n_rows, const T *restrict w, const ptrdiff_t *e_first,                       \
    const ptrdiff_t *e_stop, const ptrdiff_t *e_start)                                     \
{                                                                                          \
    for (ptrdiff_t r = 0; r < n_rows; ++r)                                                 \
        for (ptrdiff_t i = 0; i < row_len; ++i) {                                          \
            T a = src[r * row_len + i];                                                    \
            ptrdiff_t t0 = e_first[i], n = e_stop[i] - e_first[i];                         \
            T *restrict d = dst + r * dst_stride + e_start[i];                             \
            const T *restrict wk = w + t0;                                                 \
            for (ptrdiff_t k = 0; k < n; ++k) d[k] += a * wk[k];                           \
        }                                                                                  \
}                                                                                          \
/* Weight gradient of one row pair: acc[k] += sum_i a[i] * b[offset[k] + i] over    */    \
/* [first[k], stop[k]); lane-wise partial sums so it vectorises without             */    \
/* reassociation flags.                                                            */     \
STC_CLONES static void stc_taps_dot_##SUFFIX(                                              \
    T *restrict acc, const T *restrict a, const T *restrict b, ptrdiff_t n_taps,           \
    const ptrdiff_t *first, const ptrdiff_t *stop, const ptrdiff_t *offset)                \
{                                                                                          \
    for (ptrdiff_t k = 0; k < n_taps; ++k) {                                               \
        ptrdiff_t i0 = first[k], n = stop[k] - first[k];                                   \
        const T *restrict ak = a + i0;                                                     \
        const T *restrict bk = b + offset[k] + i0;                                         \
        T lanes[16] = {0};                                                                 \
        ptrdiff_t i = 0;                                                                   \
        for (; i + 16 <= n; i += 16)                                                       \
            for (int j = 0; j < 16; ++j) lanes[j] += ak[i + j] * bk[i + j];                \
        T sum = 0;                                                                         \
        for (int j = 0; j < 16; ++j) sum += lanes[j];                                      \
        for (; i < n; ++i) sum += ak[i] * bk[i];                                           \
        acc[k] += sum;                                                                     \
    }                                                                                      \
}                                                                                          \
/* One tap's rows of an im2col block: for `count` samples (`sample_pitch` apart) and   */ \
/* the small-side rows (oz, oy) = row0 .. row0+rows-1 (oy fastest, `sy` per oz), the  */ \
/* column row gets dst[i] = s[(i - i0) * step] for the tap's run [i0, i1) and zeros   */ \
/* elsewhere (s: that source row from `src`); rows whose source is in the padding     */ \
/* (zsrc/ysrc < 0) are all zeros.  The input is read where it is, in natural order    */ \
/* (step = the x stride): a phase-major copy first cost more than the strided reads.  */ \
/* Explicit vector blocks for steps 1 and 2: rows are often 4-16 long (a memcpy call  */ \
/* per row cost more than the copy), and strided loads were a third of GEMM time.  */ \
STC_CLONES static void stc_im2col_tap_##SUFFIX(                                            \
    T *restrict dst, const T *restrict src, ptrdiff_t count, ptrdiff_t sample_pitch,       \
    const ptrdiff_t *zsrc, const ptrdiff_t *ysrc, ptrdiff_t sy, ptrdiff_t row0,            \
    ptrdiff_t rows, ptrdiff_t plane_pitch, ptrdiff_t row_pitch, ptrdiff_t i0,              \
    ptrdiff_t i1, ptrdiff_t sx, ptrdiff_t step)                                            \
{                                                                                          \
    if (i1 < i0) i1 = i0;                                                                  \
    for (ptrdiff_t n = 0; n < count; ++n) {                                                \
        const T *s_n = src + n * sample_pitch;                                             \
        ptrdiff_t oz = row0 / sy, oy = row0 % sy;                                          \
        for (ptrdiff_t r = 0; r < rows; ++r, dst += sx) {                                  \
            ptrdiff_t iz = zsrc[oz], iy = ysrc[oy], i = 0;                                 \
            if (++oy == sy) { oy = 0; ++oz; }                                              \
            if (iz < 0 || iy < 0 || i1 == i0) {                                            \
                for (; i < sx; ++i) dst[i] = 0;                                            \
                continue;                                                                  \
            }                                                                              \
            const T *s = s_n + iz * plane_pitch + iy * row_pitch - i0 * step;              \
            for (; i < i0; ++i) dst[i] = 0;                                                \
            if (step == 1) {                                                               \
                for (; i + 16 <= i1; i += 16)                                              \
                    *(stc_##SUFFIX##16 *)(dst + i) = *(const stc_##SUFFIX##16 *)(s + i);   \
                for (; i + 4 <= i1; i += 4)                                                \
                    *(stc_##SUFFIX##4 *)(dst + i) = *(const stc_##SUFFIX##4 *)(s + i);     \
            } else if (step == 2) {                                                        \
                /* 8 at a time from two loads ending at the block's last element (no    */ \
                /* read past the run): lanes 0-6 even of the first, 9-15 odd of the     */ \
                /* second (offset by 7)                                                 */ \
                for (; STC_HAVE_SHUFFLE && i + 8 <= i1; i += 8) {                          \
                    stc_##SUFFIX##8 v0 = *(const stc_##SUFFIX##8 *)(s + 2 * i);            \
                    stc_##SUFFIX##8 v1 = *(const stc_##SUFFIX##8 *)(s + 2 * i + 7);        \
                    *(stc_##SUFFIX##8 *)(dst + i) =                                        \
                        STC_SHUFFLE8(SUFFIX, v0, v1, 0, 2, 4, 6, 9, 11, 13, 15);           \
                }                                                                          \
            }                                                                              \
            for (; i < i1; ++i) dst[i] = s[i * step];                                      \
            for (; i < sx; ++i) dst[i] = 0;                                                \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
/* out[i] = src[map[i]] + bias: un-phase one output row.  With phases == 2 the row    */ \
/* is phase-major with stride 2 (map[2m + r] = map[r] + m): interleave the two runs   */ \
/* with vector shuffles instead of an index gather (stride 2 is the usual upsampling; */ \
/* the gather was 11 % of a 2x2-stride-2 layer's time).                              */ \
STC_CLONES static void stc_gather_row_##SUFFIX(                                            \
    T *restrict out, const T *restrict src, const ptrdiff_t *map, ptrdiff_t n,             \
    ptrdiff_t phases, T bias)                                                              \
{                                                                                          \
    if (phases == 2 && n >= 2) {                                                           \
        const T *a = src + map[0], *b = src + map[1];                                      \
        ptrdiff_t half = n / 2, m = 0;                                                     \
        for (; STC_HAVE_SHUFFLE && m + 8 <= half; m += 8) {                                \
            stc_##SUFFIX##8 va = *(const stc_##SUFFIX##8 *)(a + m);                        \
            stc_##SUFFIX##8 vb = *(const stc_##SUFFIX##8 *)(b + m);                        \
            *(stc_##SUFFIX##8 *)(out + 2 * m) =                                            \
                STC_SHUFFLE8(SUFFIX, va, vb, 0, 8, 1, 9, 2, 10, 3, 11) + bias;             \
            *(stc_##SUFFIX##8 *)(out + 2 * m + 8) =                                        \
                STC_SHUFFLE8(SUFFIX, va, vb, 4, 12, 5, 13, 6, 14, 7, 15) + bias;           \
        }                                                                                  \
        for (; m < half; ++m) {                                                            \
            out[2 * m] = a[m] + bias;                                                      \
            out[2 * m + 1] = b[m] + bias;                                                  \
        }                                                                                  \
        if (n & 1) out[n - 1] = a[half] + bias;                                            \
        return;                                                                            \
    }                                                                                      \
    for (ptrdiff_t i = 0; i < n; ++i) out[i] = src[map[i]] + bias;                         \
}                                                                                          \
/* Lay one input row out phase by phase: dst[layout[r] + m] = src[m*stride + r]     */  \
/* (phase r's positions are contiguous from layout[r]): contiguous stores, strided  */  \
/* loads -- not a scatter.                                                          */  \
STC_CLONES static void stc_phase_row_##SUFFIX(                                             \
    T *restrict dst, const T *restrict src, const ptrdiff_t *layout, ptrdiff_t n,          \
    ptrdiff_t stride)                                                                      \
{                                                                                          \
    ptrdiff_t phases = stride < n ? stride : n;                                            \
    if (stride == 2 && n >= 2) {                                                           \
        /* de-interleave with vector shuffles (the strided loads were a quarter of a */ \
        /* stride-2 depthwise convolution's time)                                    */ \
        T *restrict a = dst + layout[0], *restrict b = dst + layout[1];                    \
        ptrdiff_t half = n / 2, m = 0;                                                     \
        for (; STC_HAVE_SHUFFLE && m + 8 <= half; m += 8) {                                \
            stc_##SUFFIX##8 v0 = *(const stc_##SUFFIX##8 *)(src + 2 * m);                  \
            stc_##SUFFIX##8 v1 = *(const stc_##SUFFIX##8 *)(src + 2 * m + 8);              \
            *(stc_##SUFFIX##8 *)(a + m) =                                                  \
                STC_SHUFFLE8(SUFFIX, v0, v1, 0, 2, 4, 6, 8, 10, 12, 14);                   \
            *(stc_##SUFFIX##8 *)(b + m) =                                                  \
                STC_SHUFFLE8(SUFFIX, v0, v1, 1, 3, 5, 7, 9, 11, 13, 15);                   \
        }                                                                                  \
        for (; m < half; ++m) {                                                            \
            a[m] = src[2 * m];                                                             \
            b[m] = src[2 * m + 1];                                                         \
        }                                                                                  \
        if (n & 1) a[half] = src[n - 1];                                                   \
        return;                                                                            \
    }                                                                                      \
    for (ptrdiff_t r = 0; r < phases; ++r) {                                               \
        T *restrict d = dst + layout[r];                                                   \
        ptrdiff_t count = (n - r + stride - 1) / stride;                                   \
        for (ptrdiff_t m = 0; m < count; ++m) d[m] = src[m * stride + r];                  \
    }                                                                                      \
}                                                                                          \
/* One (sample, channel) plane's phase copy: for each stride phase r = (rz, ry, rx),  */ \
/* a plane of pz x py x px at d + ((rz sy + ry) sx + rx) pitch whose row (mz, my) is  */ \
/* source row (zsrc[rz pz + mz], ysrc[ry py + my]) of `large` (ly x lx rows), phase   */ \
/* rx's run xruns[3 rx ..] of it (all zeros where either source is -1); the rest of   */ \
/* each pitch zeroed.  One call per plane: its rows are often a handful of elements,  */ \
/* where a call per row cost more than the copy.  Rows go in the order (mz, rz, my,   */ \
/* ry, rx): the source rows' order, so that `large` is read once, front to back (phase */ \
/* by phase it was read s_z s_y times in strides, and a plane read from memory stalled */ \
/* on every line), and each row's x phases come from L1.                               */ \
STC_CLONES static void stc_phase_copy_##SUFFIX(                                            \
    T *restrict d, const T *restrict large, ptrdiff_t ly, ptrdiff_t lx,                    \
    const ptrdiff_t *zsrc, const ptrdiff_t *ysrc, const ptrdiff_t *xruns, ptrdiff_t sz,    \
    ptrdiff_t sy, ptrdiff_t sx, ptrdiff_t pz, ptrdiff_t py, ptrdiff_t px, ptrdiff_t pitch) \
{                                                                                          \
    /* zeros first, in one call: per-row prefixes and suffixes of 0-2 elements were    */ \
    /* two library calls per row (GCC turns such loops into memset)                    */ \
    memset(d, 0, sz * sy * sx * pitch * sizeof(T));                                        \
    for (ptrdiff_t mz = 0; mz < pz; ++mz)                                                  \
    for (ptrdiff_t rz = 0; rz < sz; ++rz) {                                                \
        ptrdiff_t zs = zsrc[rz * pz + mz];                                                 \
        if (zs < 0) continue;                                                              \
        for (ptrdiff_t my = 0; my < py; ++my)                                              \
        for (ptrdiff_t ry = 0; ry < sy; ++ry) {                                            \
            ptrdiff_t ys = ysrc[ry * py + my];                                             \
            if (ys < 0) continue;                                                          \
            const T *restrict row = large + (zs * ly + ys) * lx;                           \
            /* a few KiB ahead, where the rows are going: the hardware alone stalled */ \
            stc_prefetch(row + STC_COPY_AHEAD / sizeof(T), lx * sizeof(T));             \
            T *restrict q = d + (rz * sy + ry) * sx * pitch + (mz * py + my) * px;         \
            for (ptrdiff_t rx = 0; rx < sx; ++rx, q += pitch) {                            \
                ptrdiff_t m0 = xruns[3 * rx], m1 = xruns[3 * rx + 1];                      \
                ptrdiff_t start = xruns[3 * rx + 2], n = m1 - m0, i = 0;                   \
                const T *restrict s = row + start;                                         \
                T *restrict o = q + m0;                                                    \
                if (sx == 1) {                                                             \
                    for (; i < n; ++i) o[i] = s[i];                                        \
                    continue;                                                              \
                }                                                                          \
                /* stride 2: read whole vectors from the even position at or before     */ \
                /* start, so that both phases stay inside the source row, and keep      */ \
                /* every second lane                                                    */ \
                if (STC_HAVE_SHUFFLE && sx == 2) {                                         \
                    ptrdiff_t odd = start & 1, avail = lx - (start - odd);                 \
                    const T *restrict b = s - odd;                                         \
                    for (; i + 16 <= n && 2 * i + 32 <= avail; i += 16) {                  \
                        stc_##SUFFIX##16 v0 = *(const stc_##SUFFIX##16 *)(b + 2 * i);      \
                        stc_##SUFFIX##16 v1 = *(const stc_##SUFFIX##16 *)(b + 2 * i + 16); \
                        *(stc_##SUFFIX##16 *)(o + i) = odd                                 \
                            ? STC_SHUFFLE16(SUFFIX, v0, v1, 1, 3, 5, 7, 9, 11, 13, 15,     \
                                            17, 19, 21, 23, 25, 27, 29, 31)                \
                            : STC_SHUFFLE16(SUFFIX, v0, v1, 0, 2, 4, 6, 8, 10, 12, 14,     \
                                            16, 18, 20, 22, 24, 26, 28, 30);               \
                    }                                                                      \
                    for (; i + 8 <= n && 2 * i + 16 <= avail; i += 8) {                    \
                        stc_##SUFFIX##8 v0 = *(const stc_##SUFFIX##8 *)(b + 2 * i);        \
                        stc_##SUFFIX##8 v1 = *(const stc_##SUFFIX##8 *)(b + 2 * i + 8);    \
                        *(stc_##SUFFIX##8 *)(o + i) = odd                                  \
                            ? STC_SHUFFLE8(SUFFIX, v0, v1, 1, 3, 5, 7, 9, 11, 13, 15)      \
                            : STC_SHUFFLE8(SUFFIX, v0, v1, 0, 2, 4, 6, 8, 10, 12, 14);     \
                    }                                                                      \
                }                                                                          \
                for (; i < n; ++i) o[i] = s[i * sx];                                       \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
/* The grid convolution of one output channel: out[u] = bias + sum over j < count of   */ \
/* w[j] * src[offset[j] + u] for u < n, rounded up to whole vectors (out has room;     */ \
/* with accumulate, out[u] += the sum instead, no bias: a pass over more columns);     */ \
/* the runs read up to STC_PHASE_TAIL past the copy).  Every (channel, tap) of the     */ \
/* channel's group is one contiguous run of the phase copy, so there are no edges: four */ \
/* vectors of positions share each broadcast weight, four independent FMA chains.      */ \
STC_CLONES static void stc_grid_dot_##SUFFIX(                                              \
    T *restrict out, const T *restrict src, const ptrdiff_t *offset, const T *restrict w, \
    ptrdiff_t count, ptrdiff_t n, T bias, int accumulate)                                  \
{                                                                                          \
    typedef stc_##SUFFIX##line V;                                                         \
    enum { L = sizeof(V) / sizeof(T) };                                                    \
    const V zero = {0};                                                                    \
    if (accumulate) bias = 0;                                                              \
    ptrdiff_t u = 0;                                                                       \
    for (; u + 4 * L <= n; u += 4 * L) {                                                   \
        V a0 = accumulate ? *(const V *)(out + u) : zero;                                  \
        V a1 = accumulate ? *(const V *)(out + u + L) : zero;                              \
        V a2 = accumulate ? *(const V *)(out + u + 2 * L) : zero;                          \
        V a3 = accumulate ? *(const V *)(out + u + 3 * L) : zero;                          \
        for (ptrdiff_t j = 0; j < count; ++j) {                                            \
            const T *s = src + offset[j] + u;                                              \
            T c = w[j];                                                                    \
            a0 += c * *(const V *)s;                                                       \
            a1 += c * *(const V *)(s + L);                                                 \
            a2 += c * *(const V *)(s + 2 * L);                                             \
            a3 += c * *(const V *)(s + 3 * L);                                             \
        }                                                                                  \
        *(V *)(out + u) = a0 + bias;                                                       \
        *(V *)(out + u + L) = a1 + bias;                                                   \
        *(V *)(out + u + 2 * L) = a2 + bias;                                               \
        *(V *)(out + u + 3 * L) = a3 + bias;                                               \
    }                                                                                      \
    for (; u < n; u += L) {  /* the last 1-4 vectors: two chains over the runs */           \
        V a0 = accumulate ? *(const V *)(out + u) : zero, a1 = {0};                        \
        ptrdiff_t j = 0;                                                                   \
        for (; j + 2 <= count; j += 2) {                                                   \
            a0 += w[j] * *(const V *)(src + offset[j] + u);                                \
            a1 += w[j + 1] * *(const V *)(src + offset[j + 1] + u);                        \
        }                                                                                  \
        if (j < count) a0 += w[j] * *(const V *)(src + offset[j] + u);                     \
        *(V *)(out + u) = (a0 + a1) + bias;                                                \
    }                                                                                      \
}                                                                                          \
/* stc_grid_dot for GRID_CHANNELS output channels at once, channel c's grid at      */ \
/* out + c * out_pitch and its weights at w + c * w_pitch: each vector of a run feeds */ \
/* all four (the loads, not the FMAs, bound one channel at a time).                  */ \
STC_CLONES static void stc_grid_dot4_##SUFFIX(                                             \
    T *restrict out, ptrdiff_t out_pitch, const T *restrict src, const ptrdiff_t *offset,  \
    const T *restrict w, ptrdiff_t w_pitch, ptrdiff_t count, ptrdiff_t n, const T *bias,   \
    int accumulate)                                                                        \
{                                                                                          \
    typedef stc_##SUFFIX##line V;                                                         \
    enum { L = sizeof(V) / sizeof(T) };                                                    \
    const V zero = {0};                                                                    \
    const T b0_ = accumulate ? 0 : bias[0], b1_ = accumulate ? 0 : bias[1];                \
    const T b2_ = accumulate ? 0 : bias[2], b3_ = accumulate ? 0 : bias[3];                \
    const T *restrict w0 = w, *restrict w1 = w + w_pitch;                                 \
    const T *restrict w2 = w + 2 * w_pitch, *restrict w3 = w + 3 * w_pitch;               \
    ptrdiff_t u = 0;                                                                       \
    for (; u < n; u += 2 * L) {  /* two vectors per channel: eight FMA chains */           \
        V a0 = zero, a1 = zero, a2 = zero, a3 = zero, b0 = zero, b1 = zero, b2 = zero;    \
        V b3 = zero;                                                                       \
        if (accumulate) {                                                                  \
            a0 = *(const V *)(out + u); a1 = *(const V *)(out + out_pitch + u);            \
            a2 = *(const V *)(out + 2 * out_pitch + u);                                    \
            a3 = *(const V *)(out + 3 * out_pitch + u);                                    \
            b0 = *(const V *)(out + u + L); b1 = *(const V *)(out + out_pitch + u + L);    \
            b2 = *(const V *)(out + 2 * out_pitch + u + L);                                \
            b3 = *(const V *)(out + 3 * out_pitch + u + L);                                \
        }                                                                                  \
        for (ptrdiff_t j = 0; j < count; ++j) {                                            \
            const T *s = src + offset[j] + u;                                              \
            V x = *(const V *)s, y = *(const V *)(s + L);                                  \
            a0 += w0[j] * x; a1 += w1[j] * x; a2 += w2[j] * x; a3 += w3[j] * x;            \
            b0 += w0[j] * y; b1 += w1[j] * y; b2 += w2[j] * y; b3 += w3[j] * y;            \
        }                                                                                  \
        *(V *)(out + u) = a0 + b0_;                                                        \
        *(V *)(out + out_pitch + u) = a1 + b1_;                                            \
        *(V *)(out + 2 * out_pitch + u) = a2 + b2_;                                        \
        *(V *)(out + 3 * out_pitch + u) = a3 + b3_;                                        \
        *(V *)(out + u + L) = b0 + b0_;                                                    \
        *(V *)(out + out_pitch + u + L) = b1 + b1_;                                        \
        *(V *)(out + 2 * out_pitch + u + L) = b2 + b2_;                                    \
        *(V *)(out + 3 * out_pitch + u + L) = b3 + b3_;                                    \
    }                                                                                      \
}

STC_DEFINE_ROWOPS(float, f)
STC_DEFINE_ROWOPS(double, d)

/* The weight gradient's GEMM over the phase copy (column source IMPLICIT), reducing  */
/* over the small side's positions: for d < d_count and the c_count small-side         */
/* channels of st's rows, product[d * product_pitch + c] (+)= the sum over rows        */
/* r0 <= r < r1 of the small side (r = (sample, z, y), ox positions x each) of          */
/* st[(r ox + x) st_pitch + c] * copy[n copy_sample + offset[d] + (z py + y) px + x],   */
/* n, z, y the sample and row of r.  st is the small side channels-last (a position's  */
/* channels contiguous, zero-padded to whole tiles), so a tile of MR channels by NR     */
/* (channel, tap) rows is the own GEMM's micro-kernel -- two vector loads and NR        */
/* broadcasts from the NR runs of the copy, 2 NR FMAs per position -- with no packing   */
/* and no lane sums; only real positions are visited (no grid tails).                   */
#define STC_WGRAD_NR 12                      /* (channel, tap) rows of a tile */
#define STC_WGRAD_MR_BYTES 128               /* small-side channels of a tile: two vectors */
#define STC_WGRAD_SHORT_ROW 64               /* rows shorter than this go by the table */
#define STC_WGRAD_TABLE 1024                 /* positions the table holds */
/* One position of a tile: the small side's two vectors at sp times each run's element */
/* at INDEX (the tile's locals lo, hi, a, sp, L, NR, V; its element type T)   */
#define STC_WGRAD_POSITION(T, INDEX)                                                       \
    do {                                                                                   \
        ptrdiff_t at_ = (INDEX);                                                           \
        V s0 = *(const V *)sp, s1 = *(const V *)(sp + L);                                  \
        _Pragma("GCC unroll 12")                                                           \
        for (int j = 0; j < NR; j++) {                                                     \
            T b = a[j][at_];                                                               \
            lo[j] += s0 * b;                                                               \
            hi[j] += s1 * b;                                                               \
        }                                                                                  \
    } while (0)
#define STC_DEFINE_WGRAD(T, SUFFIX)                                                        \
STC_CLONES static void stc_wgrad_implicit_##SUFFIX(                                        \
    T *restrict product, ptrdiff_t product_pitch, const T *restrict copy,                 \
    ptrdiff_t copy_sample, const ptrdiff_t *offset, ptrdiff_t d_count,                    \
    const T *restrict st, ptrdiff_t st_pitch, ptrdiff_t c_count, ptrdiff_t r0,            \
    ptrdiff_t r1, ptrdiff_t oz, ptrdiff_t oy, ptrdiff_t ox, ptrdiff_t py, ptrdiff_t px,   \
    int accumulate)                                                                        \
{                                                                                          \
    typedef stc_##SUFFIX##line V;                                                         \
    enum { L = sizeof(V) / sizeof(T), NR = STC_WGRAD_NR,                                   \
           MR = STC_WGRAD_MR_BYTES / sizeof(T) };                                          \
    const V zero = {0};                                                                    \
    /* rows shorter than STC_WGRAD_SHORT_ROW: each position's offset in the copy from a   */ \
    /* table built once per call (count positions), not twelve runs set up per row       */ \
    ptrdiff_t at[STC_WGRAD_TABLE], count = 0;                                              \
    if (ox < STC_WGRAD_SHORT_ROW && (r1 - r0) * ox <= STC_WGRAD_TABLE) {                   \
        ptrdiff_t n = r0 / (oz * oy), z = r0 / oy % oz, y = r0 % oy;                      \
        for (ptrdiff_t r = r0; r < r1; r++) {                                              \
            ptrdiff_t base = n * copy_sample + (z * py + y) * px;                          \
            for (ptrdiff_t x = 0; x < ox; x++) at[count++] = base + x;                     \
            if (++y == oy) { y = 0; if (++z == oz) { z = 0; n++; } }                       \
        }                                                                                  \
    }                                                                                      \
    for (ptrdiff_t d0 = 0; d0 < d_count; d0 += NR) {                                       \
        ptrdiff_t rows = d_count - d0 < NR ? d_count - d0 : NR;                            \
        ptrdiff_t off[NR];                                                                 \
        for (int j = 0; j < NR; j++)  /* a short tile repeats its last row */              \
            off[j] = offset[d0 + (j < rows ? j : rows - 1)];                               \
        for (ptrdiff_t c0 = 0; c0 < c_count; c0 += MR) {                                   \
            V lo[NR], hi[NR];                                                              \
            _Pragma("GCC unroll 12")                                                       \
            for (int j = 0; j < NR; j++) { lo[j] = zero; hi[j] = zero; }                   \
            /* the tile's product lines, fetched while it multiplies: a product larger    */ \
            /* than the cache would otherwise stall every short block's tile at its end  */ \
            for (ptrdiff_t j = 0; j < rows; j++) {                                         \
                __builtin_prefetch(product + (d0 + j) * product_pitch + c0, 1);            \
                __builtin_prefetch(product + (d0 + j) * product_pitch + c0 + L, 1);        \
            }                                                                              \
            const T *sp = st + r0 * ox * st_pitch + c0;                                    \
            if (count) {  /* short rows: the positions' offsets from the table */          \
                const T *a[NR];                                                            \
                _Pragma("GCC unroll 12")                                                   \
                for (int j = 0; j < NR; j++) a[j] = copy + off[j];                         \
                for (ptrdiff_t q = 0; q < count; q++, sp += st_pitch)                      \
                    STC_WGRAD_POSITION(T, at[q]);                                          \
            } else {  /* long rows: the runs set up once per row */                        \
            /* (sample, z, y) of row r0, advanced row by row (no divisions per row) */     \
            ptrdiff_t n = r0 / (oz * oy), z = r0 / oy % oz, y = r0 % oy;                  \
            for (ptrdiff_t r = r0; r < r1; r++) {                                          \
                const T *base = copy + n * copy_sample + (z * py + y) * px;                \
                const T *a[NR];                                                            \
                _Pragma("GCC unroll 12")                                                   \
                for (int j = 0; j < NR; j++) a[j] = base + off[j];                         \
                if (++y == oy) { y = 0; if (++z == oz) { z = 0; n++; } }                   \
                for (ptrdiff_t x = 0; x < ox; x++, sp += st_pitch)                         \
                    STC_WGRAD_POSITION(T, x);                                              \
            }                                                                              \
            }                                                                              \
            for (ptrdiff_t j = 0; j < rows; j++) {                                         \
                V *p0 = (V *)(product + (d0 + j) * product_pitch + c0);                    \
                V *p1 = (V *)(product + (d0 + j) * product_pitch + c0 + L);                \
                if (accumulate) { *p0 += lo[j]; *p1 += hi[j]; }                            \
                else { *p0 = lo[j]; *p1 = hi[j]; }                                         \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
}

STC_DEFINE_WGRAD(float, f)
STC_DEFINE_WGRAD(double, d)

/* dst[q * dst_pitch + c] = src[c * src_pitch + q] for c < channels, q < positions: a  */
/* small side made channels-last for stc_wgrad_implicit, in blocks of L channels by L  */
/* positions transposed in registers (log2 L stages of two-input shuffles, stage h     */
/* swapping bit h of the row index with bit h of the lane index), so both the loads    */
/* and the stores are whole vectors; element by element the strided stores cost as    */
/* much as the weight gradient's multiply-adds on a layer with few (channel, tap) rows. */
#if defined(__GNUC__) && !defined(__clang__)
#define STC_DEFINE_CHANNELS_LAST(T, SUFFIX, IDX)                                           \
STC_CLONES static void stc_channels_last_##SUFFIX(                                         \
    T *restrict dst, ptrdiff_t dst_pitch, const T *restrict src, ptrdiff_t src_pitch,     \
    ptrdiff_t channels, ptrdiff_t positions)                                               \
{                                                                                          \
    typedef stc_##SUFFIX##line V;                                                         \
    enum { L = sizeof(V) / sizeof(T), STAGES = L == 16 ? 4 : 3 };                          \
    /* the stages' lane indices, made once (not per block) */                               \
    IDX lo[STAGES], hi[STAGES];                                                            \
    for (int k = 0, h = L / 2; h >= 1; h /= 2, k++)                                        \
        for (int l = 0; l < L; l++) {                                                      \
            lo[k][l] = (l & h) ? L + l - h : l;                                            \
            hi[k][l] = (l & h) ? L + l : l + h;                                            \
        }                                                                                  \
    ptrdiff_t c = 0;                                                                       \
    for (; c + L <= channels; c += L) {                                                    \
        ptrdiff_t q = 0;                                                                   \
        for (; q + L <= positions; q += L) {                                               \
            V v[L];                                                                        \
            _Pragma("GCC unroll 16")                                                       \
            for (int i = 0; i < L; i++) v[i] = *(const V *)(src + (c + i) * src_pitch + q); \
            _Pragma("GCC unroll 4")                                                        \
            for (int k = 0; k < STAGES; k++) {                                             \
                const int h = L >> (k + 1);                                                \
                _Pragma("GCC unroll 16")                                                   \
                for (int r = 0; r < L; r++)                                                \
                    if (!(r & h)) {                                                        \
                        V x = v[r], y = v[r + h];                                          \
                        v[r] = __builtin_shuffle(x, y, lo[k]);                             \
                        v[r + h] = __builtin_shuffle(x, y, hi[k]);                         \
                    }                                                                      \
            }                                                                              \
            _Pragma("GCC unroll 16")                                                       \
            for (int j = 0; j < L; j++) *(V *)(dst + (q + j) * dst_pitch + c) = v[j];      \
        }                                                                                  \
        for (; q < positions; q++)                                                         \
            for (int i = 0; i < L; i++) dst[q * dst_pitch + c + i] = src[(c + i) * src_pitch + q]; \
    }                                                                                      \
    for (; c < channels; c++)                                                              \
        for (ptrdiff_t q = 0; q < positions; q++) dst[q * dst_pitch + c] = src[c * src_pitch + q]; \
}
#else
#define STC_DEFINE_CHANNELS_LAST(T, SUFFIX, IDX)                                           \
static void stc_channels_last_##SUFFIX(                                                    \
    T *restrict dst, ptrdiff_t dst_pitch, const T *restrict src, ptrdiff_t src_pitch,     \
    ptrdiff_t channels, ptrdiff_t positions)                                               \
{                                                                                          \
    for (ptrdiff_t c = 0; c < channels; c++)                                               \
        for (ptrdiff_t q = 0; q < positions; q++) dst[q * dst_pitch + c] = src[c * src_pitch + q]; \
}
#endif

STC_DEFINE_CHANNELS_LAST(float, f, stc_fi16)
STC_DEFINE_CHANNELS_LAST(double, d, stc_di8)

#endif
