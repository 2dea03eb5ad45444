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
#define VB 64 /* bytes per vector: 16 floats or 8 doubles; the compiler splits it as needed */
#define V ((int)(VB / sizeof(REAL)))
typedef REAL vec __attribute__((vector_size(VB)));

static inline vec ld(const REAL *p) { vec x; memcpy(&x, p, VB); return x; }
static inline void st(REAL *p, vec x) { memcpy(p, &x, VB); }
static inline REAL hsum(vec x) { REAL s = 0; for (int i = 0; i < V; i++) s += x[i]; return s; }
static inline vec vsqrt(vec x) { for (int i = 0; i < V; i++) x[i] = sqrt(x[i]); return x; }

typedef struct { REAL b1, b2, c1, c2, step_size, inv_bc2s, eps; int first; } adam_t;

/* Adam on one vector: src holds the parameters before the step (p itself, or on the first
   step the shared ones, whose moments start at zero and are not read) */
static inline void adam_v(const adam_t *a, const REAL *src, REAL *p, REAL *m, REAL *v, vec g)
{
    vec mi, vi;
    if (a->first) {
        mi = a->c1 * g;
        vi = a->c2 * g * g;
    } else {
        mi = a->b1 * ld(m) + a->c1 * g;
        vi = a->b2 * ld(v) + a->c2 * g * g;
    }
    st(m, mi);
    st(v, vi);
    st(p, ld(src) - a->step_size * mi / (vsqrt(vi) * a->inv_bc2s + a->eps));
}

#define RB 4 /* rows of W per block */
#define HB 4 /* positions per pass: RB x HB vector accumulators for d_in */

/* rows r0..r0+nr of one pair; g (nr x N) holds the weight gradient's partial sums between
   the passes over the positions, in the cache */
static void rows(const adam_t *ad, int nr, int N, int HW, const REAL *src, REAL *W, REAL *m,
                 REAL *v, const REAL *dT, const REAL *hin, REAL *d_in, REAL *g)
{
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
                    if (d_in) {
                        vec w = ld(src + o);
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
                        adam_v(ad, src + o, W + o, m + o, v + o, ld(g + o));
                    }
        } else { /* a short block: row by row, the update in the same pass */
            for (int r = 0; r < nr; r++) {
                vec acc[HB];
                for (int h = 0; h < nh; h++) acc[h] = (vec){0};
                for (int n = 0; n < N; n += V) {
                    size_t o = (size_t)r * N + n;
                    vec gv = h0 ? ld(g + o) : (vec){0};
                    vec w = d_in ? ld(src + o) : (vec){0};
                    for (int h = 0; h < nh; h++) {
                        vec t = ld(dT + (size_t)(h0 + h) * N + n);
                        if (d_in) acc[h] += w * t;
                        gv += hin[r * HW + h0 + h] * t;
                    }
                    if (last)
                        adam_v(ad, src + o, W + o, m + o, v + o, gv);
                    else
                        st(g + o, gv);
                }
                if (d_in)
                    for (int h = 0; h < nh; h++) d_in[r * HW + h0 + h] = hsum(acc[h]);
            }
        }
    }
}

/* W, m, v: (P, cin, N), updated in place. shared: NULL, or on Adam's first step the weights
   all pairs start from (cin, N); W is then written from them and the moments from zero.
   dT: (P, HW, N). hin: (P, cin, HW). d_in: (P, cin, HW), or NULL for no input gradient.
   work: RB * N values. N must be a multiple of V. step: Adam's step count, from 1. */
void adgan_conv_backward_adam(int P, int cin, int N, int HW, REAL *W, const REAL *shared,
                              REAL *m, REAL *v, const REAL *dT, const REAL *hin, REAL *d_in,
                              REAL *work, double lr, double b1, double b2, double eps,
                              double step)
{
    double bc1 = 1 - pow(b1, step), bc2 = 1 - pow(b2, step);
    adam_t ad = {(REAL)b1, (REAL)b2, (REAL)(1 - b1), (REAL)(1 - b2), (REAL)(lr / bc1),
                 (REAL)(1 / sqrt(bc2)), (REAL)eps, shared != NULL};
    for (int p = 0; p < P; p++) {
        size_t off = (size_t)p * cin * N;
        const REAL *src = shared ? shared : W + off;
        for (int r0 = 0; r0 < cin; r0 += RB) {
            int nr = cin - r0 < RB ? cin - r0 : RB;
            size_t o = (size_t)r0 * N;
            rows(&ad, nr, N, HW, src + o, W + off + o, m + off + o, v + off + o,
                 dT + (size_t)p * HW * N, hin + ((size_t)p * cin + r0) * HW,
                 d_in ? d_in + ((size_t)p * cin + r0) * HW : NULL, work);
        }
    }
}

int adgan_native_vector(void) { return V; }


/* The forward product of a layer: out[p, hw, n] = sum_r h[p, r, hw] W[p, r, n], h (P, cin,
   HW), W (P, cin, N), out (P, HW, N); N a multiple of V. A block of HB_ positions and NB_
   vectors of n keeps HB_ x NB_ (16) vector accumulators while KB rows of W stream past; the
   row KB ahead of each is prefetched (the rows are N apart, too many streams for the
   hardware prefetchers: measured 44 -> 81 GFLOP/s on 4x4 maps, one core). */
#define KB 32
#define PF 8 /* vectors ahead */
#define FWD(HB_, NB_)                                                                       \
    static int fwd_##HB_##_##NB_(int cin, int N, int HW, int hw0, int n0, const REAL *h,  \
                                 const REAL *W, REAL *out)                                 \
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
                    const REAL *w_r = W + (size_t)r * N + n;                                \
                    vec w[NB_];                                                             \
                    if (n + (PF + NB_) * V <= N) __builtin_prefetch(w_r + PF * V);          \
                    for (int j = 0; j < NB_; j++) w[j] = ld(w_r + j * V);                   \
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
FWD(4, 1)
FWD(2, 8)
FWD(2, 1)
FWD(1, 1)

/* HW = 1 (the first layer): the rows in order, four at a time, summed into out (N values) */
static void fwd_rows(int cin, int N, const REAL *h, const REAL *W, REAL *out)
{
    int r = 0;
    for (; r + 4 <= cin; r += 4) {
        REAL a0 = h[r], a1 = h[r + 1], a2 = h[r + 2], a3 = h[r + 3];
        const REAL *w0 = W + (size_t)r * N, *w1 = w0 + N, *w2 = w1 + N, *w3 = w2 + N;
        for (int n = 0; n < N; n += V) {
            vec o = r ? ld(out + n) : (vec){0};
            o += a0 * ld(w0 + n) + a1 * ld(w1 + n) + a2 * ld(w2 + n) + a3 * ld(w3 + n);
            st(out + n, o);
        }
    }
    for (; r < cin; r++)
        for (int n = 0; n < N; n += V) {
            vec o = r ? ld(out + n) : (vec){0};
            st(out + n, o + h[r] * ld(W + (size_t)r * N + n));
        }
}

void adgan_forward(int P, int cin, int N, int HW, const REAL *h, const REAL *W, REAL *out)
{
    for (int p = 0; p < P; p++) {
        const REAL *hp = h + (size_t)p * cin * HW, *Wp = W + (size_t)p * cin * N;
        REAL *op = out + (size_t)p * HW * N;
        if (HW == 1) {
            fwd_rows(cin, N, hp, Wp, op);
            continue;
        }
        for (int hw0 = 0; hw0 < HW;) {
            int left = HW - hw0;
            if (left >= 16) {
                fwd_16_1(cin, N, HW, hw0, 0, hp, Wp, op);
                hw0 += 16;
            } else if (left >= 8) {
                fwd_8_1(cin, N, HW, hw0, fwd_8_2(cin, N, HW, hw0, 0, hp, Wp, op), hp, Wp, op);
                hw0 += 8;
            } else if (left >= 4) {
                fwd_4_1(cin, N, HW, hw0, fwd_4_4(cin, N, HW, hw0, 0, hp, Wp, op), hp, Wp, op);
                hw0 += 4;
            } else if (left >= 2) {
                fwd_2_1(cin, N, HW, hw0, fwd_2_8(cin, N, HW, hw0, 0, hp, Wp, op), hp, Wp, op);
                hw0 += 2;
            } else {
                fwd_1_1(cin, N, HW, hw0, 0, hp, Wp, op);
                hw0 += 1;
            }
        }
    }
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
