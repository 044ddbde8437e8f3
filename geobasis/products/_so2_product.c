/* The SO(2) product of geobasis.products.SO2Product, edge by edge, fused (CPU).
 *
 * Per edge, with T_l its rotation of degree l into the edge frame (rows m = -l..l, e3nn's
 * order) and the features of a degree as a [2l+1, C] block:
 *
 *     xt_l = T_l^T x_l,   yt = maps(xt),   y_l = T_l yt_l,
 *
 * where the maps act per order m >= 0 on the rows (l1, +m), (l1, -m) of every degree
 * l1 = m..lmax1 of xt and write the rows (l, +m), (l, -m), l = m..lmax_out, of yt:
 *
 *     yt(l, +m) = sum_l1 W1[m, l, l1] xt(l1, +m) - W2[m, l, l1] xt(l1, -m)
 *     yt(l, -m) = sum_l1 W2[m, l, l1] xt(l1, +m) + W1[m, l, l1] xt(l1, -m)
 *
 * (m = 0: only the first, with W1), every product per channel.  Backward, with g the
 * output gradient and gt_l = T_l^T g_l:
 *
 *     dxt(l1, +m) = sum_l W1 gt(l, +m) + W2 gt(l, -m)
 *     dxt(l1, -m) = sum_l W1 gt(l, -m) - W2 gt(l, +m)
 *     dW1 = gt(l, +m) xt(l1, +m) + gt(l, -m) xt(l1, -m),
 *     dW2 = gt(l, -m) xt(l1, +m) - gt(l, +m) xt(l1, -m),
 *     dx_l = T_l dxt_l,   dT_l = x_l dxt_l^T + g_l yt_l^T (summed over channels).
 *
 * Why C: the weights are per edge and channel, so no step is a matrix product PyTorch
 * could call well; its batched form writes the rotated features, a temporary twice the
 * weights' size and the reordered rows to memory and reads them back.  Here one edge's
 * rotated features stay in a few KiB of cache, each weight is read once per pass, and
 * every rotation uses only the 2l+1 rows of its own degree.
 *
 * Layouts (contiguous): x [E, D1, C], g and out [E, Dout, C], D = (lmax + 1)^2;
 * angles [E, 4 L + 3] (see frames), L = max(lmax1, lmax_out); the rotations T_l, built
 * per edge (frames) and never stored, and their gradient [E, Q]: per degree l = 0..L the
 * row-major [2l+1, 2l+1] block, one after the other;
 * weights [E, S, C] (or [1, S, C] with w_stride 0: shared by all edges, their gradient is
 * then added to); weight_rows [2 (min(lmax1, lmax_out) + 1)]: per m the first row of W1
 * and of W2 in the weights (-1: none), each [n_out, n_in] l-major.  Compiled once per
 * element type (REAL float or double); single-threaded, the caller splits the edges.
 * so2_forward and so2_backward return 0, or 1 when their per-edge scratch memory (a few
 * KiB) cannot be allocated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef REAL
#define REAL float
#endif
typedef REAL real;

/* Row (l, m) of a degree-major layout. */
static inline int64_t row(int64_t l, int64_t m) { return l * l + l + m; }

/* Channels are handled TILE at a time, the partial sums kept in registers: each helper
 * below is inlined twice, with width TILE (a constant the compiler unrolls) and with the
 * remainder. */
#define TILE 16
#if defined(__GNUC__)
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

INLINE void rotate_tile(const real *t, int64_t n, int64_t C, const real *x, real *y,
                        int transpose, int64_t width) {
    for (int64_t a = 0; a < n; ++a) {
        real acc[TILE] = {0};
        for (int64_t j = 0; j < n; ++j) {
            const real coef = transpose ? t[j * n + a] : t[a * n + j];
            const real *src = x + j * C;
            for (int64_t c = 0; c < width; ++c) acc[c] += coef * src[c];
        }
        for (int64_t c = 0; c < width; ++c) y[a * C + c] = acc[c];
    }
}

/* y_l = T_l^T x_l (transpose) or T_l x_l for l = 0..lmax; x, y [D, C]; t per degree
 * [2l+1, 2l+1] row-major, one after the other. */
static void rotate(const real *t, int64_t lmax, int64_t C, const real *x, real *y,
                   int transpose) {
    for (int64_t l = 0; l <= lmax; ++l) {
        const int64_t n = 2 * l + 1, first = l * l * C;
        int64_t c0 = 0;
        for (; c0 + TILE <= C; c0 += TILE)
            rotate_tile(t, n, C, x + first + c0, y + first + c0, transpose, TILE);
        if (c0 < C) rotate_tile(t, n, C, x + first + c0, y + first + c0, transpose, C - c0);
        t += n * n;
    }
}

/* The rotations T_l of one edge, l = 0..lmax, into t (per degree [2l+1, 2l+1] row-major):
 *
 *     T_l = Z_l(alpha) X_l(beta),   X_l(beta) = sum_k cos(k beta) C_lk + sin(k beta) S_lk,
 *
 * with X_l = J_l Z_l(beta) J_l^T the tilted pole rotation, whose constant terms C_lk
 * (k = 0..l) and S_lk (k = 1..l) come in `terms` (per degree, those 2l + 1 matrices one
 * after the other), and Z_l(alpha) the rotation about the pole: Z[r, r] = cos(|m_r| a),
 * Z[r, r'] = -sign(m_r) sin(|m_r| a) with m_r' = -m_r.  `angles`: cos k beta
 * (k = 0..L), sin k beta (k = 1..L), cos k alpha, sin k alpha (k = 0..L), 4 L + 3
 * numbers; `x`: receives every X_l (the layout of t).  (2l+1)^3 multiply-adds per
 * degree, all of them along contiguous rows of (2l+1)^2. */
static void frames(const real *terms, const real *angles, int64_t L, int64_t lmax, real *x,
                   real *t) {
    /* sb[k] for k >= 1 (sin 0 is never read: m = 0 has no partner row) */
    const real *cb = angles, *sb = angles + L, *ca = angles + 2 * L + 1, *sa = ca + L + 1;
    for (int64_t l = 0; l <= lmax; ++l) {
        const int64_t n = 2 * l + 1, nn = n * n;
        for (int64_t e = 0; e < nn; ++e) x[e] = cb[0] * terms[e];
        for (int64_t k = 1; k <= l; ++k) {
            const real c = cb[k], s = sb[k], *ck = terms + k * nn, *sk = terms + (l + k) * nn;
            for (int64_t e = 0; e < nn; ++e) x[e] += c * ck[e] + s * sk[e];
        }
        for (int64_t d = 0; d < n; ++d) { /* t = Z(alpha) x */
            const int64_t m = d - l, k = m < 0 ? -m : m, p = n - 1 - d;
            const real c = ca[k], s = m > 0 ? -sa[k] : (m < 0 ? sa[k] : 0);
            for (int64_t j = 0; j < n; ++j) t[d * n + j] = c * x[d * n + j] + s * x[p * n + j];
        }
        terms += n * nn;
        x += nn;
        t += nn;
    }
}

/* The gradient of the angles (layout of `angles`, written) from the gradient dt of every
 * T_l, with x the X_l of frames and `work` (2 L + 1)^2 reals:
 *   dX[d] = c_d dT[d] + s_p dT[p] (p the partner row of d),
 *   d cos(k a) = sum_{|m_d| = k} dT[d] . X[d],  d sin(k a) = sum -sign(m_d) dT[d] . X[p],
 *   d cos(k b) = <dX_l, C_lk>,  d sin(k b) = <dX_l, S_lk>. */
static void frame_gradient(const real *terms, const real *angles, int64_t L, const real *x,
                           const real *dt, real *work, real *grad) {
    const real *ca = angles + 2 * L + 1, *sa = ca + L + 1;
    real *g_cb = grad, *g_sb = grad + L, *g_ca = grad + 2 * L + 1, *g_sa = g_ca + L + 1;
    for (int64_t i = 0; i < 4 * L + 3; ++i) grad[i] = 0;
    for (int64_t l = 0; l <= L; ++l) {
        const int64_t n = 2 * l + 1, nn = n * n;
        real *dx = work;
        for (int64_t d = 0; d < n; ++d) {
            const int64_t m = d - l, k = m < 0 ? -m : m, p = n - 1 - d;
            const real c = ca[k], sign = m > 0 ? -1 : (m < 0 ? 1 : 0);
            real along = 0, across = 0;
            for (int64_t j = 0; j < n; ++j) {
                along += dt[d * n + j] * x[d * n + j];
                across += dt[d * n + j] * x[p * n + j];
            }
            g_ca[k] += along;
            g_sa[k] += sign * across;
            for (int64_t j = 0; j < n; ++j) dx[d * n + j] = c * dt[d * n + j];
        }
        for (int64_t d = 0; d < n; ++d) { /* the partner rows: X[p] enters T[d] with s_d */
            const int64_t m = d - l, k = m < 0 ? -m : m, p = n - 1 - d;
            const real s = m > 0 ? -sa[k] : (m < 0 ? sa[k] : 0);
            for (int64_t j = 0; j < n; ++j) dx[p * n + j] += s * dt[d * n + j];
        }
        for (int64_t k = 0; k <= l; ++k) {
            const real *ck = terms + k * nn, *sk = terms + (l + k) * nn;
            real c = 0, s = 0;
            for (int64_t e = 0; e < nn; ++e) c += dx[e] * ck[e];
            g_cb[k] += c;
            if (k > 0) {
                for (int64_t e = 0; e < nn; ++e) s += dx[e] * sk[e];
                g_sb[k] += s;
            }
        }
        terms += n * nn;
        x += nn;
        dt += nn;
    }
}

typedef struct {
    int64_t lmax1, lmax_out, C;
    const int64_t *weight_rows;
} shape;

static int64_t orders(const shape *s) {
    return (s->lmax1 < s->lmax_out ? s->lmax1 : s->lmax_out) + 1;
}

/* One order m of the maps on channels [c0, c0 + width): yt rows (l, +-m) from xt. */
INLINE void maps_order(const shape *s, int64_t m, const real *xt, const real *w, real *yt,
                       int64_t c0, int64_t width) {
    const int64_t C = s->C, r1 = s->weight_rows[2 * m], r2 = s->weight_rows[2 * m + 1];
    const int64_t n_in = s->lmax1 - m + 1, n_out = s->lmax_out - m + 1;
    for (int64_t o = 0; o < n_out; ++o) {
        real ap[TILE] = {0}, am[TILE] = {0};
        for (int64_t i = 0; i < n_in; ++i) {
            const real *xp = xt + row(m + i, m) * C + c0, *xm = xt + row(m + i, -m) * C + c0;
            const int64_t k = (o * n_in + i) * C + c0;
            if (r1 >= 0) {
                const real *v = w + r1 * C + k;
                for (int64_t c = 0; c < width; ++c) {
                    ap[c] += v[c] * xp[c];
                    am[c] += v[c] * xm[c];
                }
            }
            if (r2 >= 0) {
                const real *v = w + r2 * C + k;
                for (int64_t c = 0; c < width; ++c) {
                    ap[c] -= v[c] * xm[c];
                    am[c] += v[c] * xp[c];
                }
            }
        }
        real *yp = yt + row(m + o, m) * C + c0, *ym = yt + row(m + o, -m) * C + c0;
        for (int64_t c = 0; c < width; ++c) yp[c] = ap[c];
        if (m > 0)
            for (int64_t c = 0; c < width; ++c) ym[c] = am[c];
    }
}

/* yt = maps(xt) with the weights w of one edge; yt [Dout, C], rows no map reaches zero.
 * (At m = 0 the rows +m and -m are one row: am is computed and dropped.) */
static void maps_forward(const shape *s, const real *xt, const real *w, real *yt) {
    const int64_t C = s->C;
    memset(yt, 0, (s->lmax_out + 1) * (s->lmax_out + 1) * C * sizeof(real));
    for (int64_t m = 0; m < orders(s); ++m) {
        if (s->weight_rows[2 * m] < 0 && s->weight_rows[2 * m + 1] < 0) continue;
        int64_t c0 = 0;
        for (; c0 + TILE <= C; c0 += TILE) maps_order(s, m, xt, w, yt, c0, TILE);
        if (c0 < C) maps_order(s, m, xt, w, yt, c0, C - c0);
    }
}

/* The backward of one order m on channels [c0, c0 + width): gxt rows (l1, +-m) (if gxt)
 * and the weight gradient gw (if gw; added to when accumulate, else written). */
INLINE void maps_order_backward(const shape *s, int64_t m, const real *xt, const real *gt,
                                const real *w, real *gxt, real *gw, int accumulate,
                                int64_t c0, int64_t width) {
    const int64_t C = s->C, r1 = s->weight_rows[2 * m], r2 = s->weight_rows[2 * m + 1];
    const int64_t n_in = s->lmax1 - m + 1, n_out = s->lmax_out - m + 1;
    const real sides = m > 0; /* m = 0: the -m rows are the +m rows; count them once */
    for (int64_t i = 0; i < n_in; ++i) {
        const real *xp = xt + row(m + i, m) * C + c0, *xm = xt + row(m + i, -m) * C + c0;
        real dp[TILE] = {0}, dm[TILE] = {0};
        for (int64_t o = 0; o < n_out; ++o) {
            const real *gp = gt + row(m + o, m) * C + c0, *gm = gt + row(m + o, -m) * C + c0;
            const int64_t k = (o * n_in + i) * C + c0;
            if (r1 >= 0) {
                const real *v = w + r1 * C + k;
                for (int64_t c = 0; c < width; ++c) {
                    dp[c] += v[c] * gp[c];
                    dm[c] += v[c] * gm[c];
                }
                if (gw) {
                    real *d = gw + r1 * C + k;
                    for (int64_t c = 0; c < width; ++c) {
                        const real value = gp[c] * xp[c] + sides * gm[c] * xm[c];
                        d[c] = accumulate ? d[c] + value : value;
                    }
                }
            }
            if (r2 >= 0) {
                const real *v = w + r2 * C + k;
                for (int64_t c = 0; c < width; ++c) {
                    dp[c] += v[c] * gm[c];
                    dm[c] -= v[c] * gp[c];
                }
                if (gw) {
                    real *d = gw + r2 * C + k;
                    for (int64_t c = 0; c < width; ++c) {
                        const real value = gm[c] * xp[c] - gp[c] * xm[c];
                        d[c] = accumulate ? d[c] + value : value;
                    }
                }
            }
        }
        if (gxt) {
            real *p = gxt + row(m + i, m) * C + c0, *q = gxt + row(m + i, -m) * C + c0;
            for (int64_t c = 0; c < width; ++c) p[c] = dp[c];
            if (m > 0)
                for (int64_t c = 0; c < width; ++c) q[c] = dm[c];
        }
    }
}

/* The maps' backward for one edge: gxt [D1, C] (may be NULL; rows no map reads zero) and
 * the weight gradient gw (may be NULL; added to when accumulate, else written). */
static void maps_backward(const shape *s, const real *xt, const real *gt, const real *w,
                          real *gxt, real *gw, int accumulate) {
    const int64_t C = s->C;
    if (gxt) memset(gxt, 0, (s->lmax1 + 1) * (s->lmax1 + 1) * C * sizeof(real));
    for (int64_t m = 0; m < orders(s); ++m) {
        int64_t c0 = 0;
        for (; c0 + TILE <= C; c0 += TILE)
            maps_order_backward(s, m, xt, gt, w, gxt, gw, accumulate, c0, TILE);
        if (c0 < C) maps_order_backward(s, m, xt, gt, w, gxt, gw, accumulate, c0, C - c0);
    }
}

/* dT_l += a_l b_l^T (summed over channels) for l = 0..lmax; a, b [D, C]. */
static void add_outer(int64_t lmax, int64_t C, const real *a, const real *b, real *dt) {
    for (int64_t l = 0; l <= lmax; ++l) {
        const int64_t n = 2 * l + 1;
        const real *al = a + l * l * C, *bl = b + l * l * C;
        for (int64_t j = 0; j < n; ++j) {
            for (int64_t k = 0; k < n; ++k) {
                real partial[TILE] = {0}, sum = 0;
                int64_t c0 = 0;
                for (; c0 + TILE <= C; c0 += TILE)
                    for (int64_t c = 0; c < TILE; ++c)
                        partial[c] += al[j * C + c0 + c] * bl[k * C + c0 + c];
                for (int64_t c = c0; c < C; ++c) sum += al[j * C + c] * bl[k * C + c];
                for (int64_t c = 0; c < TILE; ++c) sum += partial[c];
                dt[j * n + k] += sum;
            }
        }
        dt += n * n;
    }
}

static int64_t entry_count(int64_t lmax) {
    return (lmax + 1) * (4 * lmax * lmax + 8 * lmax + 3) / 3; /* sum of (2l+1)^2 */
}

int so2_forward(int64_t edges, int64_t lmax1, int64_t lmax_out, int64_t C, const real *x,
                 const real *angles, const real *terms, const real *w, int64_t w_stride,
                 const int64_t *weight_rows, real *out) {
    const shape s = {lmax1, lmax_out, C, weight_rows};
    const int64_t L = lmax1 > lmax_out ? lmax1 : lmax_out, q = entry_count(L);
    const int64_t d1 = (lmax1 + 1) * (lmax1 + 1), d_out = (lmax_out + 1) * (lmax_out + 1);
    real *xt = malloc(((d1 + d_out) * C + 2 * q) * sizeof(real));
    if (xt == NULL) return 1;
    real *yt = xt + d1 * C, *t = yt + d_out * C, *work = t + q;
    for (int64_t b = 0; b < edges; ++b) {
        frames(terms, angles + b * (4 * L + 3), L, L, work, t);
        rotate(t, lmax1, C, x + b * d1 * C, xt, 1);
        maps_forward(&s, xt, w + b * w_stride, yt);
        rotate(t, lmax_out, C, yt, out + b * d_out * C, 0);
    }
    free(xt);
    return 0;
}

/* gx [E, D1, C], gw (per edge, or [1, S, C] added to when w_stride is 0) and grad_angles
 * [E, 4 L + 3] (written) may each be NULL. */
int so2_backward(int64_t edges, int64_t lmax1, int64_t lmax_out, int64_t C, const real *x,
                  const real *angles, const real *terms, const real *w, int64_t w_stride,
                  const int64_t *weight_rows, const real *g, real *gx, real *gw,
                  real *grad_angles) {
    const shape s = {lmax1, lmax_out, C, weight_rows};
    const int64_t L = lmax1 > lmax_out ? lmax1 : lmax_out, q = entry_count(L);
    const int64_t d1 = (lmax1 + 1) * (lmax1 + 1), d_out = (lmax_out + 1) * (lmax_out + 1);
    real *xt = malloc((2 * (d1 + d_out) * C + 3 * q + (2 * L + 1) * (2 * L + 1)) * sizeof(real));
    if (xt == NULL) return 1;
    real *gt = xt + d1 * C, *gxt = gt + d_out * C, *yt = gxt + d1 * C;
    real *t = yt + d_out * C, *tilts = t + q, *dt = tilts + q, *work = dt + q;
    const int need_gxt = gx != NULL || grad_angles != NULL;
    for (int64_t b = 0; b < edges; ++b) {
        const real *xb = x + b * d1 * C, *gb = g + b * d_out * C;
        frames(terms, angles + b * (4 * L + 3), L, L, tilts, t);
        rotate(t, lmax1, C, xb, xt, 1);
        rotate(t, lmax_out, C, gb, gt, 1);
        maps_backward(&s, xt, gt, w + b * w_stride, need_gxt ? gxt : NULL,
                      gw ? gw + b * w_stride : NULL, w_stride == 0);
        if (gx) rotate(t, lmax1, C, gxt, gx + b * d1 * C, 0);
        if (grad_angles) {
            memset(dt, 0, q * sizeof(real));
            maps_forward(&s, xt, w + b * w_stride, yt);
            add_outer(lmax1, C, xb, gxt, dt);
            add_outer(lmax_out, C, gb, yt, dt);
            frame_gradient(terms, angles + b * (4 * L + 3), L, tilts, dt, work,
                           grad_angles + b * (4 * L + 3));
        }
    }
    free(xt);
    return 0;
}
