/* A packed, register-blocked GEMM for CPUs with AVX-512.
 *
 * C = op(A) op(B) + beta C, column-major, alpha 1, beta 0 or 1: the same contract as
 * the BLAS calls in _kernels.pyx, which route here when stc_gemm_available().  Why
 * not always BLAS: the BLAS behind SciPy may run kernels narrower than the CPU (an
 * OpenBLAS pinned to its AVX2 kernels by OPENBLAS_CORETYPE, or a build without
 * AVX-512 ones), which halves every convolution GEMM on an AVX-512 machine.  With its
 * own kernel the library's GEMMs run the CPU's widest vectors whatever the BLAS.
 *
 * The loop nest is the usual one (Goto / BLIS): a KC x NC block of op(B) is packed
 * into panels of NR columns (kept in L3/L2), an MC x KC block of op(A) into panels of
 * MR rows (kept in L2), and an MR x NR micro-kernel runs KC rank-1 updates on
 * registers (MR = two vectors, NR = 12: 24 accumulators of the 32 zmm registers).
 * Panels are zero-padded to whole MR / NR, so the micro-kernel never branches; edge
 * tiles are written through a small buffer.  Single-threaded: callers split C.
 *
 * Pack buffers: malloc'd per call, at most (MC + NC) * KC elements (a fixed cap,
 * about 4 MB in float32), whatever the problem size.
 */
#ifndef SPARSETCONV_GEMM_H
#define SPARSETCONV_GEMM_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(STC_NO_OWN_GEMM)
#define STC_OWN_GEMM 1
#define STC_GEMM_TARGET __attribute__((target("arch=x86-64-v4")))
static int stc_gemm_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("x86-64-v4");
}
#else
#define STC_OWN_GEMM 0
#define STC_GEMM_TARGET
static int stc_gemm_available(void) { return 0; }
#endif

#define STC_GEMM_NR 12
/* MR is two vectors: 128 bytes of rows (32 float32, 16 float64) */
#define STC_GEMM_MR_BYTES 128
#define STC_GEMM_KC 256
#define STC_GEMM_MC 256
#define STC_GEMM_NC 3072

#define STC_GEMM_DEFINE(T, I, SUFFIX, LANES)                                                \
typedef T stc_gv_##SUFFIX __attribute__((vector_size(64), aligned(64)));                    \
typedef T stc_gu_##SUFFIX __attribute__((vector_size(64), aligned(sizeof(T))));             \
typedef I stc_gi_##SUFFIX __attribute__((vector_size(64)));                                 \
                                                                                            \
/* v[0..LANES) := its transpose, in registers: log2(LANES) stages of two-input shuffles,    \
 * stage d swapping bit d of the row index with bit d of the lane index.  The strided       \
 * packs go through it: element by element they cost as much as the micro-kernel on the     \
 * thin GEMMs of the weight gradient. */                                                    \
STC_GEMM_TARGET static inline void stc_gemm_transpose_##SUFFIX(stc_gv_##SUFFIX *v)          \
{                                                                                           \
    _Pragma("GCC unroll 8")                                                                 \
    for (int d = LANES / 2; d >= 1; d /= 2) {                                               \
        stc_gi_##SUFFIX lo, hi;                                                             \
        _Pragma("GCC unroll 16")                                                            \
        for (int c = 0; c < LANES; c++) {                                                   \
            lo[c] = (c & d) ? LANES + c - d : c;                                            \
            hi[c] = (c & d) ? LANES + c : c + d;                                            \
        }                                                                                   \
        _Pragma("GCC unroll 16")                                                            \
        for (int r = 0; r < LANES; r++)                                                     \
            if (!(r & d)) {                                                                 \
                stc_gv_##SUFFIX x = v[r], y = v[r + d];                                     \
                v[r] = __builtin_shuffle(x, y, lo);                                         \
                v[r + d] = __builtin_shuffle(x, y, hi);                                     \
            }                                                                               \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* v := rows src, src + pitch, ... (`valid` of them, zeros after), LANES long, then     \
 * transposed: v[q] holds element q of every row -- a strided pack's block */             \
STC_GEMM_TARGET static inline void stc_gemm_block_##SUFFIX(                                 \
    stc_gv_##SUFFIX *v, const T *src, ptrdiff_t pitch, ptrdiff_t valid)                     \
{                                                                                           \
    for (ptrdiff_t i = 0; i < LANES; i++)                                                   \
        v[i] = i < valid ? *(const stc_gu_##SUFFIX *) (src + i * pitch)                     \
                         : (stc_gv_##SUFFIX){0};                                            \
    stc_gemm_transpose_##SUFFIX(v);                                                         \
}                                                                                           \
                                                                                            \
/* lo, hi := the MR x NR product of kc rows of A and of the packed B panel: A packed    \
 * (a_offset NULL: row p at a + p MR) or implicit (row p at a + a_offset[p]).  Inlined   \
 * with a constant a_offset, so each caller gets its own loop. */                         \
STC_GEMM_TARGET static inline __attribute__((always_inline)) void                           \
stc_gemm_accumulate_##SUFFIX(ptrdiff_t kc, const T *a, const ptrdiff_t *a_offset,           \
                             const T *bp, stc_gv_##SUFFIX *lo, stc_gv_##SUFFIX *hi)         \
{                                                                                           \
    enum { MR = STC_GEMM_MR_BYTES / sizeof(T), NR = STC_GEMM_NR };                          \
    for (int j = 0; j < NR; j++) {                                                          \
        lo[j] = (stc_gv_##SUFFIX){0};                                                       \
        hi[j] = (stc_gv_##SUFFIX){0};                                                       \
    }                                                                                       \
    for (ptrdiff_t p = 0; p < kc; p++, bp += NR) {                                          \
        const T *ap = a_offset ? a + a_offset[p] : a + p * MR;                              \
        stc_gv_##SUFFIX a0 = *(const stc_gu_##SUFFIX *) ap;                                 \
        stc_gv_##SUFFIX a1 = *(const stc_gu_##SUFFIX *) (ap + LANES);                       \
        for (int j = 0; j < NR; j++) {                                                      \
            lo[j] += a0 * bp[j];                                                            \
            hi[j] += a1 * bp[j];                                                            \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* lo := the same product for the first vector of A's rows only (a tile of at most     \
 * LANES rows: a whole MR tile there would compute up to twice the outputs it keeps) */  \
STC_GEMM_TARGET static inline __attribute__((always_inline)) void                           \
stc_gemm_accumulate_half_##SUFFIX(ptrdiff_t kc, const T *a, const ptrdiff_t *a_offset,      \
                                  const T *bp, stc_gv_##SUFFIX *lo)                         \
{                                                                                           \
    enum { MR = STC_GEMM_MR_BYTES / sizeof(T), NR = STC_GEMM_NR };                          \
    for (int j = 0; j < NR; j++)                                                            \
        lo[j] = (stc_gv_##SUFFIX){0};                                                       \
    for (ptrdiff_t p = 0; p < kc; p++, bp += NR) {                                          \
        const T *ap = a_offset ? a + a_offset[p] : a + p * MR;                              \
        stc_gv_##SUFFIX a0 = *(const stc_gu_##SUFFIX *) ap;                                 \
        for (int j = 0; j < NR; j++)                                                        \
            lo[j] += a0 * bp[j];                                                            \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* the MR x NR tile of C at c += (or =, beta 0) the panels' product over kc */              \
STC_GEMM_TARGET static void stc_gemm_tile_##SUFFIX(                                         \
    ptrdiff_t kc, const T *ap, const T *bp, T *c, ptrdiff_t ldc, int beta,                  \
    ptrdiff_t rows, ptrdiff_t cols)                                                         \
{                                                                                           \
    enum { MR = STC_GEMM_MR_BYTES / sizeof(T), NR = STC_GEMM_NR };                          \
    stc_gv_##SUFFIX lo[NR], hi[NR];                                                         \
    if (rows <= LANES) {                                                                    \
        stc_gemm_accumulate_half_##SUFFIX(kc, ap, NULL, bp, lo);                            \
        const T *t = (const T *) lo;                                                        \
        for (ptrdiff_t j = 0; j < cols; j++)                                                \
            for (ptrdiff_t i = 0; i < rows; i++)                                            \
                c[i + j * ldc] = (beta ? c[i + j * ldc] : 0) + t[j * LANES + i];            \
        return;                                                                             \
    }                                                                                       \
    stc_gemm_accumulate_##SUFFIX(kc, ap, NULL, bp, lo, hi);                                 \
    if (rows == MR && cols == NR) {                                                         \
        for (int j = 0; j < NR; j++) {                                                      \
            stc_gu_##SUFFIX *c0 = (stc_gu_##SUFFIX *) (c + j * ldc);                        \
            stc_gu_##SUFFIX *c1 = (stc_gu_##SUFFIX *) (c + j * ldc + LANES);                \
            if (beta) {                                                                     \
                *c0 += lo[j];                                                               \
                *c1 += hi[j];                                                               \
            } else {                                                                        \
                *c0 = lo[j];                                                                \
                *c1 = hi[j];                                                                \
            }                                                                               \
        }                                                                                   \
        return;                                                                             \
    }                                                                                       \
    stc_gv_##SUFFIX tile[2 * NR];                                                           \
    for (int j = 0; j < NR; j++) {                                                          \
        tile[2 * j] = lo[j];                                                                \
        tile[2 * j + 1] = hi[j];                                                            \
    }                                                                                       \
    const T *t = (const T *) tile;                                                          \
    for (ptrdiff_t j = 0; j < cols; j++)                                                    \
        for (ptrdiff_t i = 0; i < rows; i++)                                                \
            c[i + j * ldc] = (beta ? c[i + j * ldc] : 0) + t[j * MR + i];                   \
}                                                                                           \
                                                                                            \
/* op(A)[i0:i0+mc, p0:p0+kc] as panels of MR rows: panel r holds, for each p, MR values */  \
STC_GEMM_TARGET static void stc_gemm_pack_a_##SUFFIX(                                       \
    T *dst, char trans, const T *a, ptrdiff_t lda, ptrdiff_t i0, ptrdiff_t mc,              \
    ptrdiff_t p0, ptrdiff_t kc)                                                             \
{                                                                                           \
    enum { MR = STC_GEMM_MR_BYTES / sizeof(T) };                                            \
    for (ptrdiff_t r = 0; r < mc; r += MR, dst += MR * kc) {                                \
        ptrdiff_t rows = mc - r < MR ? mc - r : MR;                                         \
        if (trans == 'N') {                                                                 \
            const T *src = a + (i0 + r) + p0 * lda;                                         \
            for (ptrdiff_t p = 0; p < kc; p++, src += lda) {                                \
                T *d = dst + p * MR;                                                        \
                if (rows == MR) {                                                           \
                    ((stc_gv_##SUFFIX *) d)[0] = *(const stc_gu_##SUFFIX *) src;            \
                    ((stc_gv_##SUFFIX *) d)[1] = *(const stc_gu_##SUFFIX *) (src + LANES);  \
                } else {                                                                    \
                    ptrdiff_t i = 0;                                                        \
                    for (; i < rows; i++) d[i] = src[i];                                    \
                    for (; i < MR; i++) d[i] = 0;                                           \
                }                                                                           \
            }                                                                               \
        } else {                                                                            \
            /* op(A)[i, p] = a[p + i lda]: LANES x LANES blocks, rows read along p,         \
             * transposed in registers, written as whole vectors */                         \
            ptrdiff_t p = 0;                                                                \
            for (; p + LANES <= kc; p += LANES)                                             \
                for (ptrdiff_t h = 0; h < MR; h += LANES) {                                 \
                    stc_gv_##SUFFIX v[LANES];                                               \
                    stc_gemm_block_##SUFFIX(v, a + p0 + p + (i0 + r + h) * lda, lda,        \
                                            rows - h);                                      \
                    for (ptrdiff_t q = 0; q < LANES; q++)                                   \
                        *(stc_gv_##SUFFIX *) (dst + (p + q) * MR + h) = v[q];               \
                }                                                                           \
            for (ptrdiff_t i = 0; i < MR; i++) {                                            \
                for (ptrdiff_t q = p; q < kc; q++)                                          \
                    dst[q * MR + i] = i < rows ? a[p0 + q + (i0 + r + i) * lda] : 0;        \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* op(B)[p0:p0+kc, j0:j0+nc] as panels of NR columns: for each p, NR values */              \
STC_GEMM_TARGET static void stc_gemm_pack_b_##SUFFIX(                                       \
    T *dst, char trans, const T *b, ptrdiff_t ldb, ptrdiff_t p0, ptrdiff_t kc,              \
    ptrdiff_t j0, ptrdiff_t nc)                                                             \
{                                                                                           \
    enum { NR = STC_GEMM_NR };                                                              \
    for (ptrdiff_t s = 0; s < nc; s += NR, dst += NR * kc) {                                \
        ptrdiff_t cols = nc - s < NR ? nc - s : NR;                                         \
        if (trans == 'N') {                                                                 \
            /* op(B)[p, j] = b[p + j ldb]: columns read along p in LANES x LANES            \
             * blocks (the panel's NR columns zero-padded to whole blocks), transposed      \
             * in registers; each p's NR values are the blocks' first lanes */              \
            ptrdiff_t p = 0;                                                                \
            for (; p + LANES <= kc; p += LANES)                                             \
                for (ptrdiff_t h = 0; h < NR; h += LANES) {                                 \
                    ptrdiff_t width = NR - h < LANES ? NR - h : LANES;                      \
                    stc_gv_##SUFFIX v[LANES];                                               \
                    stc_gemm_block_##SUFFIX(v, b + p0 + p + (j0 + s + h) * ldb, ldb,        \
                                            cols - h);                                      \
                    for (ptrdiff_t q = 0; q < LANES; q++)                                   \
                        memcpy(dst + (p + q) * NR + h, &v[q], width * sizeof(T));           \
                }                                                                           \
            for (ptrdiff_t j = 0; j < NR; j++) {                                            \
                for (ptrdiff_t q = p; q < kc; q++)                                          \
                    dst[q * NR + j] = j < cols ? b[p0 + q + (j0 + s + j) * ldb] : 0;        \
            }                                                                               \
        } else {                                                                            \
            const T *src = b + (j0 + s) + p0 * ldb;                                         \
            for (ptrdiff_t p = 0; p < kc; p++, src += ldb) {                                \
                ptrdiff_t j = 0;                                                            \
                for (; j < cols; j++) dst[p * NR + j] = src[j];                             \
                for (; j < NR; j++) dst[p * NR + j] = 0;                                    \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* C (m x n, ldc) = op(A) op(B) + beta C; returns 0, or -1 if the pack buffers could not  \
 * be allocated (C untouched: the caller falls back to BLAS). */                            \
STC_GEMM_TARGET static int stc_gemm_##SUFFIX(                                               \
    char transa, char transb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const T *a,            \
    ptrdiff_t lda, const T *b, ptrdiff_t ldb, int beta, T *c, ptrdiff_t ldc)                \
{                                                                                           \
    enum { MR = STC_GEMM_MR_BYTES / sizeof(T), NR = STC_GEMM_NR };                          \
    if (m <= 0 || n <= 0)                                                                   \
        return 0;                                                                           \
    if (k <= 0) {                                                                           \
        if (!beta)                                                                          \
            for (ptrdiff_t j = 0; j < n; j++) memset(c + j * ldc, 0, m * sizeof(T));        \
        return 0;                                                                           \
    }                                                                                       \
    ptrdiff_t kc_max = k < STC_GEMM_KC ? k : STC_GEMM_KC;                                   \
    ptrdiff_t mc_max = m < STC_GEMM_MC ? m : STC_GEMM_MC;                                   \
    ptrdiff_t nc_max = n < STC_GEMM_NC ? n : STC_GEMM_NC;                                   \
    mc_max = (mc_max + MR - 1) / MR * MR;                                                   \
    nc_max = (nc_max + NR - 1) / NR * NR;                                                   \
    void *memory = NULL;                                                                    \
    if (posix_memalign(&memory, 64, (size_t) (mc_max + nc_max) * kc_max * sizeof(T)))       \
        return -1;                                                                          \
    T *apack = (T *) memory;                                                                \
    T *bpack = apack + mc_max * kc_max;                                                     \
    for (ptrdiff_t jc = 0; jc < n; jc += STC_GEMM_NC) {                                     \
        ptrdiff_t nc = n - jc < STC_GEMM_NC ? n - jc : STC_GEMM_NC;                         \
        for (ptrdiff_t pc = 0; pc < k; pc += STC_GEMM_KC) {                                 \
            ptrdiff_t kc = k - pc < STC_GEMM_KC ? k - pc : STC_GEMM_KC;                     \
            int accumulate = beta || pc > 0;                                                \
            stc_gemm_pack_b_##SUFFIX(bpack, transb, b, ldb, pc, kc, jc, nc);                \
            for (ptrdiff_t ic = 0; ic < m; ic += STC_GEMM_MC) {                             \
                ptrdiff_t mc = m - ic < STC_GEMM_MC ? m - ic : STC_GEMM_MC;                 \
                stc_gemm_pack_a_##SUFFIX(apack, transa, a, lda, ic, mc, pc, kc);            \
                for (ptrdiff_t jr = 0; jr < nc; jr += NR)                                   \
                    for (ptrdiff_t ir = 0; ir < mc; ir += MR)                               \
                        stc_gemm_tile_##SUFFIX(                                             \
                            kc, apack + ir * kc, bpack + jr * kc,                           \
                            c + (ic + ir) + (jc + jr) * ldc, ldc, accumulate,               \
                            mc - ir < MR ? mc - ir : MR, nc - jr < NR ? nc - jr : NR);      \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
    free(memory);                                                                           \
    return 0;                                                                               \
}


/* Implicit-GEMM convolution: out_g (cout x positions) = W_g (cout x depth) @ columns,
 * the columns never built.  The large input is first copied phase by phase (one
 * zero-padded plane per stride phase, see _layout.implicit_tables), after which the
 * column of tap (ci, t) is one contiguous run of that copy: position u of the padded
 * output grid reads a[a_offset[p] + u].  So the micro-kernel loads its MR rows of A
 * straight from the copy -- no im2col, no A pack -- and multiplies them with
 * pre-packed weight panels of NR output channels.  Grid positions that are no
 * output (out_offset -1: the padded rows' tails) are computed and dropped. */
#define STC_IMPLICIT_DEFINE(T, SUFFIX, LANES)                                               \
STC_GEMM_TARGET static void stc_implicit_tile_##SUFFIX(                                     \
    ptrdiff_t depth, const T *a, const ptrdiff_t *a_offset, const T *bp, T *tile)          \
{                                                                                           \
    enum { NR = STC_GEMM_NR };                                                              \
    stc_gv_##SUFFIX lo[NR], hi[NR];                                                         \
    if (!a_offset) /* never: tells the inlined loop that A is implicit */                   \
        return;                                                                             \
    stc_gemm_accumulate_##SUFFIX(depth, a, a_offset, bp, lo, hi);                           \
    for (int j = 0; j < NR; j++) {                                                          \
        ((stc_gv_##SUFFIX *) tile)[2 * j] = lo[j];                                          \
        ((stc_gv_##SUFFIX *) tile)[2 * j + 1] = hi[j];                                      \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* The same for a tile of at most one vector of positions (a grid's last, short     \
 * tile); the tile's second vector is left as it was. */                                  \
STC_GEMM_TARGET static void stc_implicit_half_tile_##SUFFIX(                                \
    ptrdiff_t depth, const T *a, const ptrdiff_t *a_offset, const T *bp, T *tile)          \
{                                                                                           \
    enum { NR = STC_GEMM_NR };                                                              \
    stc_gv_##SUFFIX lo[NR];                                                                 \
    if (!a_offset) /* never: tells the inlined loop that A is implicit */                   \
        return;                                                                             \
    stc_gemm_accumulate_half_##SUFFIX(depth, a, a_offset, bp, lo);                          \
    for (int j = 0; j < NR; j++)                                                            \
        ((stc_gv_##SUFFIX *) tile)[2 * j] = lo[j];                                          \
}                                                                                           \
                                                                                            \
/* panels[jp][p][j] = w[(jp NR + j) depth + p] (0 past cout): one group's weight, its   \
 * rows (output channels) depth long, as NR-channel panels */                              \
static void stc_implicit_pack_##SUFFIX(T *panels, const T *w, ptrdiff_t cout,               \
                                       ptrdiff_t depth)                                     \
{                                                                                           \
    enum { NR = STC_GEMM_NR };                                                              \
    for (ptrdiff_t c0 = 0; c0 < cout; c0 += NR)                                             \
        for (ptrdiff_t p = 0; p < depth; p++)                                               \
            for (ptrdiff_t j = 0; j < NR; j++)                                              \
                *panels++ = c0 + j < cout ? w[(c0 + j) * depth + p] : 0;                    \
}                                                                                           \
                                                                                            \
/* Grid positions [u_begin, u_end) of one sample and group, output channels            \
 * [c_begin, c_end) of its cout: out[co * out_pitch + out_offset[u]] = bias[co] +        \
 * (W_g @ columns)[co, u].  The channels' panels stay in cache while the tiles sweep    \
 * them, and the tiles' runs of A while the panels do. */                                  \
STC_GEMM_TARGET static void stc_implicit_conv_##SUFFIX(                                     \
    const T *a, const ptrdiff_t *a_offset, ptrdiff_t depth, const T *panels,               \
    ptrdiff_t cout, const T *bias, T *out, ptrdiff_t out_pitch,                             \
    const ptrdiff_t *out_offset, ptrdiff_t u_begin, ptrdiff_t u_end, ptrdiff_t c_begin,    \
    ptrdiff_t c_end)                                                                        \
{                                                                                           \
    enum { MR = STC_GEMM_MR_BYTES / sizeof(T), NR = STC_GEMM_NR };                          \
    stc_gv_##SUFFIX tile_memory[2 * NR];                                                    \
    T *tile = (T *) tile_memory;                                                            \
    /* the tile's outputs as runs of consecutive positions (whole rows of the grid): \
     * each written with vector stores, not element by element */                      \
    ptrdiff_t run_start[MR], run_length[MR], run_at[MR];                                    \
    {                                                                                       \
        ptrdiff_t b0 = c_begin, b1 = c_end;                                                 \
        for (ptrdiff_t u0 = u_begin; u0 < u_end; u0 += MR) {                                \
            ptrdiff_t rows = u_end - u0 < MR ? u_end - u0 : MR, runs = 0;                   \
            for (ptrdiff_t i = 0; i < rows; i++) {                                          \
                ptrdiff_t at = out_offset[u0 + i];                                          \
                if (at < 0)                                                                 \
                    continue;                                                               \
                if (runs && run_start[runs - 1] + run_length[runs - 1] == i                 \
                        && run_at[runs - 1] + run_length[runs - 1] == at) {                 \
                    run_length[runs - 1]++;                                                 \
                } else {                                                                    \
                    run_start[runs] = i;                                                    \
                    run_length[runs] = 1;                                                   \
                    run_at[runs++] = at;                                                    \
                }                                                                           \
            }                                                                               \
            for (ptrdiff_t c0 = b0; c0 < b1; c0 += NR) {                                    \
                if (rows <= LANES)                                                          \
                    stc_implicit_half_tile_##SUFFIX(depth, a + u0, a_offset,                \
                                                    panels + c0 * depth, tile);             \
                else                                                                        \
                    stc_implicit_tile_##SUFFIX(depth, a + u0, a_offset,                     \
                                               panels + c0 * depth, tile);                  \
                ptrdiff_t cols = cout - c0 < NR ? cout - c0 : NR;                           \
                for (ptrdiff_t j = 0; j < cols; j++) {                                      \
                    T b = bias ? bias[c0 + j] : 0;                                          \
                    for (ptrdiff_t r = 0; r < runs; r++) {                                  \
                        T *restrict o = out + (c0 + j) * out_pitch + run_at[r];             \
                        const T *restrict t = tile + j * MR + run_start[r];                 \
                        for (ptrdiff_t i = 0; i < run_length[r]; i++)                       \
                            o[i] = b + t[i];                                                \
                    }                                                                       \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
}

#if STC_OWN_GEMM
STC_GEMM_DEFINE(float, int, f, 16)
STC_GEMM_DEFINE(double, long long, d, 8)
STC_IMPLICIT_DEFINE(float, f, 16)
STC_IMPLICIT_DEFINE(double, d, 8)
#else
/* never called (stc_gemm_available() is 0); here so the kernels link */
static int stc_gemm_f(char ta, char tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a,
                      ptrdiff_t lda, const float *b, ptrdiff_t ldb, int beta, float *c,
                      ptrdiff_t ldc) { return -1; }
static int stc_gemm_d(char ta, char tb, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const double *a,
                      ptrdiff_t lda, const double *b, ptrdiff_t ldb, int beta, double *c,
                      ptrdiff_t ldc) { return -1; }
static void stc_implicit_pack_f(float *panels, const float *w, ptrdiff_t cout,
                                ptrdiff_t depth) {}
static void stc_implicit_pack_d(double *panels, const double *w, ptrdiff_t cout,
                                ptrdiff_t depth) {}
static void stc_implicit_conv_f(const float *a, const ptrdiff_t *a_offset, ptrdiff_t depth,
                                const float *panels, ptrdiff_t cout, const float *bias,
                                float *out, ptrdiff_t out_pitch, const ptrdiff_t *out_offset,
                                ptrdiff_t u_begin, ptrdiff_t u_end, ptrdiff_t c_begin,
                                ptrdiff_t c_end) {}
static void stc_implicit_conv_d(const double *a, const ptrdiff_t *a_offset, ptrdiff_t depth,
                                const double *panels, ptrdiff_t cout, const double *bias,
                                double *out, ptrdiff_t out_pitch, const ptrdiff_t *out_offset,
                                ptrdiff_t u_begin, ptrdiff_t u_end, ptrdiff_t c_begin,
                                ptrdiff_t c_end) {}
#endif

#endif
