/* adgan's compiled kernels for the latent search on CPU (see adgan/search/native.py).

   adgan_conv_backward_adam: one layer's backward products and Adam step for P (image, seed)
   pairs, each with its own copy of the layer's weights W (cin x N, N = cout * k * k), in one
   pass over each block of RB rows of W:
     d_in[r, hw] = sum_n W[r, n] dT[hw, n]        (the input gradient, from the old weights)
     g[r, n]     = sum_hw hin[r, hw] dT[hw, n]     (the weight gradient)
     Adam on W[r, :], m[r, :], v[r, :] with g      (as torch's fused Adam computes it)
   dT is the gradient of the layer's output patches, (HW, N) per pair; hin the layer's input,
   (cin, HW) per pair. The weight gradient never leaves the cache, and each pair's weights are
   read from memory once per step for the two products and the update, instead of once per
   operation.
   adgan_forward, adgan_fold, adgan_patches: the forward product per pair, col2im and im2col
   of DCGAN's transposed convolutions (kernel 4, stride 2, padding 1) in the same layout.
   Compiled once per machine with REAL = float and REAL = double. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#ifndef REAL
#define REAL float
#endif
/* bytes per vector: the machine's widest registers. Wider generic vectors than the registers
   are legal but GCC lowers them poorly: 64-byte vectors on an AVX2 machine (AMD Zen 3) ran a
   dot-product loop at 2.4 GFLOP/s against 16.1 with 32-byte ones, and the whole search 2.5x
   slower than torch's operations. */
#ifndef VB
#if defined(__AVX512F__)
#define VB 64
#elif defined(__AVX__)
#define VB 32
#else
#define VB 16
#endif
#endif
#define V ((int)(VB / sizeof(REAL)))
typedef REAL vec __attribute__((vector_size(VB)));

static inline vec ld(const REAL *p) { vec x; memcpy(&x, p, VB); return x; }
static inline void st(REAL *p, vec x) { memcpy(p, &x, VB); }
static inline REAL hsum(vec x) { REAL s = 0; for (int i = 0; i < V; i++) s += x[i]; return s; }
static inline vec vsqrt(vec x) { for (int i = 0; i < V; i++) x[i] = sqrt(x[i]); return x; }

/* bfloat16 storage (precision "mixed", REAL = float only): the upper half of a float's bits,
   rounded to nearest even */
typedef unsigned short u16;
#define IS_float 1
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#if CAT(IS_, REAL)
#if defined(__AVX512F__) && VB == 64
#include <immintrin.h>
/* a vec is one 16-float register. (Before, AVX-512 machines took the AVX2 code below in two
   halves, which GCC spilled through the stack: the first layer's "mixed" backward pass ran
   3.7x slower than with these, on AMD Zen 4.) With AVX512-BF16 one instruction converts 16
   floats, rounding to nearest even as below; it also flushes values under 2^-126 to zero,
   which no Adam state here reaches in a way that matters (ADGAN_NO_BF16 builds without it). */
static inline vec ld16(const u16 *p)
{
    __m512i x = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)p)), 16);
    return (vec)_mm512_castsi512_ps(x);
}
static inline void st16(u16 *p, vec x)
{
#if defined(__AVX512BF16__) && !defined(ADGAN_NO_BF16)
    _mm256_storeu_si256((void *)p, (__m256i)_mm512_cvtneps_pbh((__m512)x));
#else
    __m512i u = _mm512_castps_si512((__m512)x);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    u = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
    _mm256_storeu_si256((void *)p, _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16)));
#endif
}
#elif defined(__AVX2__) && (VB == 64 || VB == 32)
#include <immintrin.h>
static inline __m256i round16(__m256i u) /* to nearest even, then the upper half */
{
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    u = _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF)));
    return _mm256_srli_epi32(u, 16);
}
#if VB == 32 /* a vec is one 8-float register */
static inline vec ld16(const u16 *p)
{
    __m256i x8 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const void *)p)), 16);
    vec x;
    memcpy(&x, &x8, 32);
    return x;
}
static inline void st16(u16 *p, vec x)
{
    __m256i u;
    memcpy(&u, &x, 32);
    __m256i h = round16(u);
    _mm_storeu_si128((void *)p, _mm_packus_epi32(_mm256_castsi256_si128(h),
                                                 _mm256_extracti128_si256(h, 1)));
}
#else
/* a vec as two 8-float halves */
static inline vec ld16(const u16 *p)
{
    __m256i lo = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const void *)p)), 16);
    __m256i hi =
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const void *)(p + 8))), 16);
    vec x;
    memcpy(&x, &lo, 32);
    memcpy((char *)&x + 32, &hi, 32);
    return x;
}
static inline void st16(u16 *p, vec x)
{
    __m256i lo, hi;
    memcpy(&lo, &x, 32);
    memcpy(&hi, (char *)&x + 32, 32);
    __m256i h = _mm256_packus_epi32(round16(lo), round16(hi)); /* lanes lo0 hi0 lo1 hi1 */
    _mm256_storeu_si256((void *)p, _mm256_permute4x64_epi64(h, 0xD8));
}
#endif
#else /* portable: one value at a time */
static inline vec ld16(const u16 *p)
{
    vec x;
    for (int i = 0; i < V; i++) {
        unsigned u = (unsigned)p[i] << 16;
        memcpy((char *)&x + 4 * i, &u, 4);
    }
    return x;
}
static inline void st16(u16 *p, vec x)
{
    for (int i = 0; i < V; i++) {
        unsigned u;
        memcpy(&u, (char *)&x + 4 * i, 4);
        p[i] = (u16)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }
}
#endif
#else /* the mixed functions are float only: in the double library they do nothing */
static inline vec ld16(const u16 *p) { (void)p; return (vec){0}; }
#endif

typedef struct {
    REAL b1, b2, c1, c2, step_size, inv_bc2s, eps;
    int first;   /* Adam's first step: the moments start at zero and are not read */
    REAL sc;     /* "mixed": the stored change D is (W - shared) / sc */
    REAL step_sc; /* "mixed": step_size / sc */
    int last;    /* the search's last step, whose moments no one reads: not stored */
} adam_t;

/* mode, a constant in each specialisation: EXACT, or "mixed" on its first step (nothing
   read) or on a later one (the change D read) */
enum { EXACT, MIXED_FIRST, MIXED };

/* The weights of pair p at offset o before the step: src itself (exact, or the shared
   weights on the first step), or shared + sc * D */
static inline __attribute__((always_inline)) vec
src_at(const int mode, const adam_t *ad, const REAL *src, const u16 *D, size_t o)
{
    if (mode == MIXED) return ld(src + o) + ad->sc * ld16(D + o);
    return ld(src + o);
}
#define SRC(o) src_at(mode, ad, src, D, o)

/* Adam on one vector with gradient g. Exact: src holds the parameters before the step (p
   itself, or on the first step the shared ones), p, m, v in REAL. Mixed (D not NULL): the
   change D and the moments m16, v16 in bfloat16, p unused. */
static inline __attribute__((always_inline)) void
adam_v(const int mode, const adam_t *a, const REAL *src, REAL *p, REAL *m, REAL *v, u16 *D,
       u16 *m16, u16 *v16, vec g)
{
    vec mi, vi;
    if (mode == MIXED_FIRST || (mode == EXACT && a->first)) {
        mi = a->c1 * g;
        vi = a->c2 * g * g;
    } else if (mode == MIXED) {
        mi = a->b1 * ld16(m16) + a->c1 * g;
        vi = a->b2 * ld16(v16) + a->c2 * g * g;
    } else {
        mi = a->b1 * ld(m) + a->c1 * g;
        vi = a->b2 * ld(v) + a->c2 * g * g;
    }
#if CAT(IS_, REAL)
    if (mode != EXACT) {
        vec q = mi / (vsqrt(vi) * a->inv_bc2s + a->eps);
        vec d = mode == MIXED ? ld16(D) - a->step_sc * q : -a->step_sc * q;
        st16(D, d);
        if (!a->last) {
            st16(m16, mi);
            st16(v16, vi);
        }
        return;
    }
#endif
    if (!a->last) {
        st(m, mi);
        st(v, vi);
    }
    st(p, ld(src) - a->step_size * mi / (vsqrt(vi) * a->inv_bc2s + a->eps));
}

/* vector registers: 32 with AVX-512, 16 otherwise (AVX2, SSE, NEON's 32 are not counted) */
#ifndef NREG
#if VB == 64
#define NREG 32
#else
#define NREG 16
#endif
#endif
/* RB rows of W per block (at most 4: the caller's work holds 4 rows), HB positions per pass:
   RB x HB vector accumulators for d_in, HB for the positions' gradients, then the weights and
   the weight gradient. With 16 registers 4 x 4 spills; 2 x 4 measured fastest on AVX2 (AMD
   Zen 3, one core, benchmarks/native_layers.py: the 8x8 layer 49.6 -> 56.0 GFLOP/s, against
   4 x 2 53.4 and 3 x 3 49.9). With 32 (AVX-512), 2 x 8 against the 4 x 4 before: half the
   passes over a block's weights and gradient, the 8x8 layer's backward 6.5 -> 5.6 ms for 12
   pairs on AMD Zen 4 (one core), the others unchanged. */
#ifndef RB
#define RB 2
#endif
#ifndef HB
#define HB (NREG >= 32 ? 8 : 4)
#endif
#if RB > 4
#error "RB > 4: the caller's work holds 4 rows"
#endif

/* rows r0..r0+nr of one pair; g (nr x N) holds the weight gradient's partial sums between
   the passes over the positions, in the cache. W, m, v (exact) or D, m16, v16 (mixed) are
   the rows' storage, src the weights before the step (see SRC). */
static inline __attribute__((always_inline)) void
rows(const int mode, const adam_t *ad, int nr, int N, int HW, const REAL *src, REAL *W, REAL *m, REAL *v,
     u16 *D, u16 *m16, u16 *v16, const REAL *dT, const REAL *hin, REAL *d_in, REAL *g)
{
#define UPDATE(o, gv)                                                                       \
    adam_v(mode, ad, src + (o), mode == EXACT ? W + (o) : NULL, mode == EXACT ? m + (o) : NULL, \
           mode == EXACT ? v + (o) : NULL, mode != EXACT ? D + (o) : NULL,                      \
           mode != EXACT ? m16 + (o) : NULL, mode != EXACT ? v16 + (o) : NULL, gv)
    for (int h0 = 0; h0 < HW; h0 += HB) {
        int nh = HW - h0 < HB ? HW - h0 : HB;
        int last = h0 + nh == HW;
        if (nr == RB && nh == HB) {
            vec acc[RB][HB];
            REAL a[RB][HB];
            for (int r = 0; r < RB; r++)
                for (int h = 0; h < HB; h++) {
                    acc[r][h] = (vec){0};
                    a[r][h] = hin[r * HW + h0 + h];
                }
            for (int n = 0; n < N; n += V) {
                vec t[HB];
                for (int h = 0; h < HB; h++) t[h] = ld(dT + (size_t)(h0 + h) * N + n);
                for (int r = 0; r < RB; r++) {
                    size_t o = (size_t)r * N + n;
                    vec gv = h0 ? ld(g + o) : (vec){0};
                    if (!h0 && !last) { /* the moments the update will read, fetched into
                                            the cache while the passes compute */
                        if (mode == EXACT && !ad->first) {
                            __builtin_prefetch(m + o, 0, 2);
                            __builtin_prefetch(v + o, 0, 2);
                        } else if (mode == MIXED && (n & (2 * V - 1)) == 0) {
                            __builtin_prefetch(m16 + o, 0, 2);
                            __builtin_prefetch(v16 + o, 0, 2);
                        }
                    }
                    if (d_in) {
                        vec w = SRC(o);
                        for (int h = 0; h < HB; h++) acc[r][h] += w * t[h];
                    }
                    for (int h = 0; h < HB; h++) gv += a[r][h] * t[h];
                    st(g + o, gv);
                }
            }
            if (d_in)
                for (int r = 0; r < RB; r++)
                    for (int h = 0; h < HB; h++) d_in[r * HW + h0 + h] = hsum(acc[r][h]);
            if (last) /* after the block's products: fewer registers live (measured faster) */
                for (int r = 0; r < RB; r++)
                    for (int n = 0; n < N; n += V) {
                        size_t o = (size_t)r * N + n;
                        UPDATE(o, ld(g + o));
                    }
        } else { /* a short block: row by row, the update in the same pass */
            for (int r = 0; r < nr; r++) {
                vec acc[HB];
                for (int h = 0; h < nh; h++) acc[h] = (vec){0};
                for (int n = 0; n < N; n += V) {
                    size_t o = (size_t)r * N + n;
                    vec gv = h0 ? ld(g + o) : (vec){0};
                    vec w = d_in ? SRC(o) : (vec){0};
                    for (int h = 0; h < nh; h++) {
                        vec t = ld(dT + (size_t)(h0 + h) * N + n);
                        if (d_in) acc[h] += w * t;
                        gv += hin[r * HW + h0 + h] * t;
                    }
                    if (last)
                        UPDATE(o, gv);
                    else
                        st(g + o, gv);
                }
                if (d_in)
                    for (int h = 0; h < nh; h++) d_in[r * HW + h0 + h] = hsum(acc[h]);
            }
        }
    }
#undef UPDATE
}

static inline __attribute__((always_inline)) void
backward_adam(const int mode, const adam_t *ad, int P, int cin, int N, int HW, REAL *W, const REAL *shared,
              REAL *m, REAL *v, u16 *D, u16 *m16, u16 *v16, const REAL *dT, const REAL *hin,
              REAL *d_in, REAL *work)
{
    for (int p = 0; p < P; p++) {
        size_t off = (size_t)p * cin * N;
        /* mixed: the shared weights are every pair's base */
        const REAL *src = mode != EXACT || ad->first ? shared : W + off;
        for (int r0 = 0; r0 < cin; r0 += RB) {
            int nr = cin - r0 < RB ? cin - r0 : RB;
            size_t o = (size_t)r0 * N;
#define AT(x) (x ? x + off + o : NULL)
            rows(mode, ad, nr, N, HW, src + o, AT(W), AT(m), AT(v), AT(D), AT(m16), AT(v16),
                 dT + (size_t)p * HW * N, hin + ((size_t)p * cin + r0) * HW,
                 d_in ? d_in + ((size_t)p * cin + r0) * HW : NULL, work);
#undef AT
        }
    }
}

static adam_t adam_consts(double lr, double b1, double b2, double eps, double step, int first)
{
    double bc1 = 1 - pow(b1, step), bc2 = 1 - pow(b2, step);
    adam_t ad = {(REAL)b1, (REAL)b2, (REAL)(1 - b1), (REAL)(1 - b2), (REAL)(lr / bc1),
                 (REAL)(1 / sqrt(bc2)), (REAL)eps, first, (REAL)1, (REAL)(lr / bc1), 0};
    return ad;
}

/* W, m, v: (P, cin, N), updated in place. shared: NULL, or on Adam's first step the weights
   all pairs start from (cin, N); W is then written from them and the moments from zero.
   dT: (P, HW, N). hin: (P, cin, HW). d_in: (P, cin, HW), or NULL for no input gradient.
   work: RB * N values. N must be a multiple of V. step: Adam's step count, from 1. last: the
   search's last step (the moments, never read again, are not written). */
void adgan_conv_backward_adam(int P, int cin, int N, int HW, REAL *W, const REAL *shared,
                              REAL *m, REAL *v, const REAL *dT, const REAL *hin, REAL *d_in,
                              REAL *work, double lr, double b1, double b2, double eps,
                              double step, int last)
{
    adam_t ad = adam_consts(lr, b1, b2, eps, step, shared != NULL);
    ad.last = last;
    backward_adam(EXACT, &ad, P, cin, N, HW, W, shared, m, v, NULL, NULL, NULL, dT, hin, d_in,
                  work);
}

/* precision "mixed": as adgan_conv_backward_adam, with each pair's weights shared + sc * D
   (shared (cin, N) always given); D, m, v (P, cin, N) in bfloat16. first: Adam's first step
   (D and the moments start at zero, not read); last: the search's last step (the moments
   are not written). */
void adgan_conv_backward_adam_mixed(int P, int cin, int N, int HW, u16 *D, const REAL *shared,
                                    u16 *m, u16 *v, const REAL *dT, const REAL *hin,
                                    REAL *d_in, REAL *work, double lr, double b1, double b2,
                                    double eps, double step, double sc, int first, int last)
{
#if CAT(IS_, REAL)
    adam_t ad = adam_consts(lr, b1, b2, eps, step, first);
    ad.sc = (REAL)sc;
    ad.step_sc = (REAL)(lr / (1 - pow(b1, step)) / sc);
    ad.last = last;
    if (first)
        backward_adam(MIXED_FIRST, &ad, P, cin, N, HW, NULL, shared, NULL, NULL, D, m, v, dT,
                      hin, d_in, work);
    else
        backward_adam(MIXED, &ad, P, cin, N, HW, NULL, shared, NULL, NULL, D, m, v, dT, hin,
                      d_in, work);
#else
    (void)P, (void)cin, (void)N, (void)HW, (void)D, (void)shared, (void)m, (void)v, (void)dT;
    (void)hin, (void)d_in, (void)work, (void)lr, (void)b1, (void)b2, (void)eps, (void)step;
    (void)sc, (void)first, (void)last;
#endif
}

int adgan_native_vector(void) { return V; }
int adgan_native_real_bytes(void) { return (int)sizeof(REAL); }


/* The forward product of a layer: out[p, hw, n] = sum_r h[p, r, hw] W[p, r, n], h (P, cin,
   HW), W (P, cin, N), out (P, HW, N); N a multiple of V. A block of HB_ positions and NB_
   vectors of n keeps HB_ x NB_ (16, or 8 with FT 2) vector accumulators while KB rows of W stream past; the
   row KB ahead of each is prefetched (the rows are N apart, too many streams for the
   hardware prefetchers: measured 44 -> 81 GFLOP/s on 4x4 maps, one core). */
#define KB 32
/* the forward's tiles (positions x vectors of n): FT 0 for 32 registers (16 accumulators),
   FT 2 for 16 (at most 8: on AVX2 the 4x4 -> 8x8 layer 33.6 -> 41.0 GFLOP/s, one core;
   tiles of 4 x 3 and 2 x 4 measured 29.3) */
#ifndef FT
#define FT (NREG >= 32 ? 0 : 2)
#endif
#if FT != 0 && FT != 2
#error "FT: 0 (16 accumulators) or 2 (8)"
#endif
#define PF 8 /* vectors ahead */
/* a row's weights at offset o: W itself, or with D (precision "mixed") W + sc * D, the
   shared weights plus the pair's change stored in bfloat16 */
#define WLOAD(o) (mix ? ld(W + (o)) + sc * ld16(D + (o)) : ld(W + (o)))
#define FWD(HB_, NB_)                                                                       \
    static inline __attribute__((always_inline)) int fwd_##HB_##_##NB_(                    \
        const int mix, int cin, int N, int HW, int hw0, int n0, const REAL *h,             \
        const REAL *W, const u16 *D, REAL sc, REAL *out)                                   \
    {                                                                                       \
        int n = n0;                                                                         \
        for (int r0 = 0; r0 < cin; r0 += KB) {                                              \
            int r1 = r0 + KB < cin ? r0 + KB : cin;                                         \
            for (n = n0; n + NB_ * V <= N; n += NB_ * V) {                                  \
                vec acc[HB_][NB_];                                                          \
                for (int i = 0; i < HB_; i++)                                               \
                    for (int j = 0; j < NB_; j++)                                           \
                        acc[i][j] = r0 ? ld(out + (size_t)(hw0 + i) * N + n + j * V)        \
                                       : (vec){0};                                          \
                for (int r = r0; r < r1; r++) {                                             \
                    size_t o_r = (size_t)r * N + n;                                         \
                    vec w[NB_];                                                             \
                    if (n + (PF + NB_) * V <= N) {                                          \
                        __builtin_prefetch(W + o_r + PF * V);                               \
                        if (mix) __builtin_prefetch(D + o_r + PF * V);                      \
                    }                                                                       \
                    for (int j = 0; j < NB_; j++) w[j] = WLOAD(o_r + j * V);                \
                    for (int i = 0; i < HB_; i++) {                                         \
                        REAL a = h[(size_t)r * HW + hw0 + i];                               \
                        for (int j = 0; j < NB_; j++) acc[i][j] += a * w[j];                \
                    }                                                                       \
                }                                                                           \
                for (int i = 0; i < HB_; i++)                                               \
                    for (int j = 0; j < NB_; j++)                                           \
                        st(out + (size_t)(hw0 + i) * N + n + j * V, acc[i][j]);             \
            }                                                                               \
        }                                                                                   \
        return n; /* the first n not done */                                                \
    }
FWD(16, 1)
FWD(8, 2)
FWD(8, 1)
FWD(4, 4)
FWD(4, 2)
FWD(4, 1)
FWD(2, 8)
FWD(2, 4)
FWD(2, 1)
FWD(1, 1)

/* HW = 1 (the first layer): the rows in order, four at a time, summed into out (N values) */
static inline __attribute__((always_inline)) void
fwd_rows(const int mix, int cin, int N, const REAL *h, const REAL *W, const u16 *D, REAL sc,
         REAL *out)
{
    int r = 0;
    for (; r + 4 <= cin; r += 4) {
        REAL a0 = h[r], a1 = h[r + 1], a2 = h[r + 2], a3 = h[r + 3];
        size_t o0 = (size_t)r * N, o1 = o0 + N, o2 = o1 + N, o3 = o2 + N;
        for (int n = 0; n < N; n += V) {
            vec o = r ? ld(out + n) : (vec){0};
            o += a0 * WLOAD(o0 + n) + a1 * WLOAD(o1 + n) + a2 * WLOAD(o2 + n) +
                 a3 * WLOAD(o3 + n);
            st(out + n, o);
        }
    }
    for (; r < cin; r++)
        for (int n = 0; n < N; n += V) {
            vec o = r ? ld(out + n) : (vec){0};
            st(out + n, o + h[r] * WLOAD((size_t)r * N + n));
        }
}

/* h (P, cin, HW), out (P, HW, N); W (P, cin, N) with D NULL, else the shared weights
   (cin, N) and D (P, cin, N) each pair's change over sc, in bfloat16 */
static inline __attribute__((always_inline)) void
forward(const int mix, int P, int cin, int N, int HW, const REAL *h, const REAL *W0,
        const u16 *D0, REAL sc, REAL *out)
{
    for (int p = 0; p < P; p++) {
        const REAL *hp = h + (size_t)p * cin * HW;
        const REAL *W = mix ? W0 : W0 + (size_t)p * cin * N;
        const u16 *D = mix ? D0 + (size_t)p * cin * N : NULL;
        REAL *op = out + (size_t)p * HW * N;
        if (HW == 1) {
            fwd_rows(mix, cin, N, hp, W, D, sc, op);
            continue;
        }
        for (int hw0 = 0; hw0 < HW;) {
            int left = HW - hw0;
/* a block of H positions: tiles of NB vectors, then the vectors left one at a time */
#define ARGS mix, cin, N, HW, hw0
#define TAIL hp, W, D, sc, op
#define TILE(H, NB) (fwd_##H##_1(ARGS, fwd_##H##_##NB(ARGS, 0, TAIL), TAIL), hw0 += H)
#if FT == 2 /* at most 8 accumulators */
            if (left >= 8)
                (fwd_8_1(ARGS, 0, TAIL), hw0 += 8);
            else if (left >= 4)
                TILE(4, 2);
            else if (left >= 2)
                TILE(2, 4);
#else /* at most 16 */
            if (left >= 16)
                (fwd_16_1(ARGS, 0, TAIL), hw0 += 16);
            else if (left >= 8)
                TILE(8, 2);
            else if (left >= 4)
                TILE(4, 4);
            else if (left >= 2)
                TILE(2, 8);
#endif
            else
                (fwd_1_1(ARGS, 0, TAIL), hw0 += 1);
#undef TILE
#undef TAIL
#undef ARGS
        }
    }
}

__attribute__((flatten)) void adgan_forward(int P, int cin, int N, int HW, const REAL *h,
                                            const REAL *W, REAL *out)
{
    forward(0, P, cin, N, HW, h, W, NULL, 0, out);
}

/* precision "mixed": the forward product with each pair's weights shared + sc * D[p], D
   (P, cin, N) in bfloat16 */
__attribute__((flatten)) void adgan_forward_mixed(int P, int cin, int N, int HW,
                                                  const REAL *h, const REAL *shared,
                                                  const u16 *D, double sc, REAL *out)
{
#if CAT(IS_, REAL)
    forward(1, P, cin, N, HW, h, shared, D, (REAL)sc, out);
#else
    (void)P, (void)cin, (void)N, (void)HW, (void)h, (void)shared, (void)D, (void)sc, (void)out;
#endif
}

/* fold (col2im) of a transposed convolution with stride 2 and padding 1 from the forward
   product's layout: out[p, c, 2y - 1 + i, 2x - 1 + j] += cols[p, y * side + x, (c, i, j)],
   cols (P, side * side, C * k * k), out (P, C, 2 * side, 2 * side), overwritten. */
void adgan_fold(int P, int C, int k, int side, const REAL *cols, REAL *out)
{
    int N = C * k * k, S = 2 * side;
    for (int p = 0; p < P; p++) {
        const REAL *cp = cols + (size_t)p * side * side * N;
        REAL *op = out + (size_t)p * C * S * S;
        memset(op, 0, sizeof(REAL) * (size_t)C * S * S);
        for (int c = 0; c < C; c++) {
            REAL *plane = op + (size_t)c * S * S;
            for (int y = 0; y < side; y++)
                for (int x = 0; x < side; x++) {
                    const REAL *w = cp + (size_t)(y * side + x) * N + (size_t)c * k * k;
                    for (int i = 0; i < k; i++) {
                        int oy = 2 * y - 1 + i;
                        if (oy < 0 || oy >= S) continue;
                        for (int j = 0; j < k; j++) {
                            int ox = 2 * x - 1 + j;
                            if (ox >= 0 && ox < S) plane[oy * S + ox] += w[i * k + j];
                        }
                    }
                }
        }
    }
}

/* The patches of a stride-2 transposed convolution's output gradient, in the layout the
   backward pass reads: out[p, y * side + x, (c, i, j)] = dp[p, c, 2y + i, 2x + j], from dp
   (P, C, 2 * side + 2, 2 * side + 2), the gradient inside a zero border of one. */
void adgan_patches(int P, int C, int k, int side, const REAL *dp, REAL *out)
{
    int S = 2 * side + 2, N = C * k * k;
    for (int p = 0; p < P; p++) {
        const REAL *src = dp + (size_t)p * C * S * S;
        REAL *o = out + (size_t)p * side * side * N;
        for (int y = 0; y < side; y++)
            for (int x = 0; x < side; x++, o += N)
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < k; i++)
                        memcpy(o + (c * k + i) * k, src + ((size_t)c * S + 2 * y + i) * S + 2 * x,
                               sizeof(REAL) * k);
    }
}
