/* adgan's compiled kernel for the latent search on CPU (see adgan/_native.py).

   One layer's backward products and Adam step for P (image, seed) pairs, each with its own
   copy of the layer's weights W (cin x N, N = cout * k * k), in one pass over each block of
   RB rows of W:
     d_in[r, hw] = sum_n W[r, n] dT[hw, n]        (the input gradient, from the old weights)
     g[r, n]     = sum_hw hin[r, hw] dT[hw, n]     (the weight gradient)
     Adam on W[r, :], m[r, :], v[r, :] with g      (as torch's fused Adam computes it)
   dT is the gradient of the layer's output patches, (HW, N) per pair; hin the layer's input,
   (cin, HW) per pair. The weight gradient never leaves the cache, and each pair's weights are
   read from memory once per step for the two products and the update, instead of once per
   operation. Compiled once per machine with REAL = float and REAL = double. */
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

