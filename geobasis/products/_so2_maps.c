/* The per-m SO(2) maps of geobasis.products.SO2Product, forward and backward, fused.
 *
 * In the edge frame, per edge b, order m and channel c (rows in m-major order: per m the
 * n_in rows +m, then the n_in rows -m; m = 0 has only the first):
 *
 *     y+[o] = sum_i W1[o, i] x+[i] - W2[o, i] x-[i]
 *     y-[o] = sum_i W2[o, i] x+[i] + W1[o, i] x-[i]
 *
 * and backward, with g the gradient of y:
 *
 *     dx+[i] = sum_o W1[o, i] g+[o] + W2[o, i] g-[o]
 *     dx-[i] = sum_o W1[o, i] g-[o] - W2[o, i] g+[o]
 *     dW1[o, i] = g+[o] x+[i] + g-[o] x-[i],   dW2[o, i] = g-[o] x+[i] - g+[o] x-[i].
 *
 * The weights are per edge and channel, so there is no matrix product to call: PyTorch's
 * broadcast multiply and sum write and read a temporary twice the weights' size.  Here
 * each weight row is read once, multiplied into accumulators over a tile of channels
 * (vectorised by the compiler) and never stored.  Single-threaded; the caller splits the
 * edges between threads.
 *
 * Tensors are contiguous [B, rows, C] (weights [B, S, C], or [1, S, C] with stride 0 for
 * weights shared by all edges; their gradient is then accumulated).  `blocks` holds
 * 7 integers per m: m, first input row, first output row, n_in, n_out, first row of W1
 * and of W2 in the weights (-1: none).
 */
#include <stdint.h>
#include <string.h>

#define TILE 64 /* channels per pass: the accumulators stay in registers / L1 */

#define SO2_MAPS(T, SUFFIX)                                                                \
void so2_maps_forward_##SUFFIX(int64_t edges, int64_t channels, const T *x,               \
                               int64_t x_rows, const T *w, int64_t w_stride, T *y,        \
                               int64_t y_rows, int64_t n_blocks, const int64_t *blocks) { \
    const int64_t C = channels;                                                            \
    for (int64_t b = 0; b < edges; ++b) {                                                  \
        const T *xb = x + b * x_rows * C, *wb = w + b * w_stride;                          \
        T *yb = y + b * y_rows * C;                                                        \
        for (int64_t k = 0; k < n_blocks; ++k) {                                           \
            const int64_t *bl = blocks + 7 * k;                                            \
            const int64_t m = bl[0], n_in = bl[3], n_out = bl[4];                          \
            const T *w1 = bl[5] >= 0 ? wb + bl[5] * C : NULL;                              \
            const T *w2 = bl[6] >= 0 ? wb + bl[6] * C : NULL;                              \
            const T *xp = xb + bl[1] * C, *xm = xp + n_in * C;                             \
            T *yp = yb + bl[2] * C, *ym = yp + n_out * C;                                  \
            for (int64_t c0 = 0; c0 < C; c0 += TILE) {                                     \
                const int64_t nc = C - c0 < TILE ? C - c0 : TILE;                          \
                for (int64_t o = 0; o < n_out; ++o) {                                      \
                    T ap[TILE] = {0}, am[TILE] = {0};                                      \
                    for (int64_t i = 0; i < n_in; ++i) {                                   \
                        const T *p = xp + i * C + c0, *q = xm + i * C + c0;                \
                        const int64_t row = (o * n_in + i) * C + c0;                       \
                        if (w1 && m) {                                                     \
                            const T *v = w1 + row;                                         \
                            for (int64_t c = 0; c < nc; ++c) {                             \
                                ap[c] += v[c] * p[c];                                      \
                                am[c] += v[c] * q[c];                                      \
                            }                                                              \
                        } else if (w1) {                                                   \
                            const T *v = w1 + row;                                         \
                            for (int64_t c = 0; c < nc; ++c) ap[c] += v[c] * p[c];         \
                        }                                                                  \
                        if (w2) {                                                          \
                            const T *v = w2 + row;                                         \
                            for (int64_t c = 0; c < nc; ++c) {                             \
                                ap[c] -= v[c] * q[c];                                      \
                                am[c] += v[c] * p[c];                                      \
                            }                                                              \
                        }                                                                  \
                    }                                                                      \
                    memcpy(yp + o * C + c0, ap, nc * sizeof(T));                           \
                    if (m) memcpy(ym + o * C + c0, am, nc * sizeof(T));                    \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
}                                                                                          \
                                                                                           \
void so2_maps_backward_##SUFFIX(int64_t edges, int64_t channels, const T *x,              \
                                int64_t x_rows, const T *w, int64_t w_stride, const T *g, \
                                int64_t g_rows, T *gx, int64_t gx_rows, T *gw,           \
                                int64_t n_blocks, const int64_t *blocks) {                 \
    const int64_t C = channels;                                                            \
    for (int64_t b = 0; b < edges; ++b) {                                                  \
        const T *xb = x + b * x_rows * C, *wb = w + b * w_stride, *gb = g + b * g_rows * C; \
        T *gxb = gx ? gx + b * gx_rows * C : NULL, *gwb = gw ? gw + b * w_stride : NULL;    \
        for (int64_t k = 0; k < n_blocks; ++k) {                                           \
            const int64_t *bl = blocks + 7 * k;                                            \
            const int64_t m = bl[0], n_in = bl[3], n_out = bl[4];                          \
            const int64_t r1 = bl[5], r2 = bl[6];                                          \
            const T *xp = xb + bl[1] * C, *xm = xp + n_in * C;                             \
            const T *gp = gb + bl[2] * C, *gm = gp + n_out * C;                            \
            for (int64_t c0 = 0; c0 < C; c0 += TILE) {                                     \
                const int64_t nc = C - c0 < TILE ? C - c0 : TILE;                          \
                for (int64_t i = 0; i < n_in; ++i) {                                       \
                    T ap[TILE] = {0}, am[TILE] = {0};                                      \
                    const T *p = xp + i * C + c0, *q = xm + i * C + c0;                    \
                    for (int64_t o = 0; o < n_out; ++o) {                                  \
                        const T *s = gp + o * C + c0, *t = gm + o * C + c0;                \
                        const int64_t row = (o * n_in + i) * C + c0;                       \
                        if (r1 >= 0) {                                                     \
                            const T *v = wb + r1 * C + row;                                \
                            if (gwb) {                                                     \
                                T *d = gwb + r1 * C + row;                                 \
                                if (w_stride == 0) {                                       \
                                    for (int64_t c = 0; c < nc; ++c)                       \
                                        d[c] += s[c] * p[c] + (m ? t[c] * q[c] : 0);       \
                                } else if (m) {                                            \
                                    for (int64_t c = 0; c < nc; ++c)                       \
                                        d[c] = s[c] * p[c] + t[c] * q[c];                  \
                                } else {                                                   \
                                    for (int64_t c = 0; c < nc; ++c) d[c] = s[c] * p[c];   \
                                }                                                          \
                            }                                                              \
                            if (gxb) {                                                     \
                                for (int64_t c = 0; c < nc; ++c) ap[c] += v[c] * s[c];     \
                                if (m)                                                     \
                                    for (int64_t c = 0; c < nc; ++c) am[c] += v[c] * t[c]; \
                            }                                                              \
                        }                                                                  \
                        if (r2 >= 0) {                                                     \
                            const T *v = wb + r2 * C + row;                                \
                            if (gwb) {                                                     \
                                T *d = gwb + r2 * C + row;                                 \
                                if (w_stride == 0) {                                       \
                                    for (int64_t c = 0; c < nc; ++c)                       \
                                        d[c] += t[c] * p[c] - s[c] * q[c];                 \
                                } else {                                                   \
                                    for (int64_t c = 0; c < nc; ++c)                       \
                                        d[c] = t[c] * p[c] - s[c] * q[c];                  \
                                }                                                          \
                            }                                                              \
                            if (gxb) {                                                     \
                                for (int64_t c = 0; c < nc; ++c) {                         \
                                    ap[c] += v[c] * t[c];                                  \
                                    am[c] -= v[c] * s[c];                                  \
                                }                                                          \
                            }                                                              \
                        }                                                                  \
                    }                                                                      \
                    if (gxb) {                                                             \
                        memcpy(gxb + (bl[1] + i) * C + c0, ap, nc * sizeof(T));            \
                        if (m) memcpy(gxb + (bl[1] + n_in + i) * C + c0, am, nc * sizeof(T)); \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
}

SO2_MAPS(float, f32)
SO2_MAPS(double, f64)
