/* Spherical harmonics of low degree as monomials times a constant table, fused (CPU).
 *
 * Per vector v (of its direction u = v / |v| with `normalize`):
 *
 *     Y[j] = sum_k M_k(u) C[k, j],   M = [x^a y^b z^c], a + b + c <= lmax,
 *
 * with the monomials in the order of geobasis.o3._harmonic_polynomials (degree by degree;
 * in degree d: x times all of degree d - 1, y times the last d of them, z times the last
 * one) and C block-diagonal in the degree.  Backward, for the output gradient g:
 *
 *     dM_k = sum_j C[k, j] g[j],  then the recursion in reverse to du,
 *     dv = (du - u (u . du)) / |v|   (with `normalize`; else dv = du).
 *
 * Why C: each vector needs a few hundred multiply-adds but PyTorch's form is a dozen
 * passes over [N]-long rows plus a GEMM with a short output row.  Here TILE vectors at a
 * time are one vector register per monomial and per harmonic (lane t: vector t), and each
 * vector's row of Y is written once.
 *
 * Layouts: vectors [N, 3], out and grad [N, D], D = (lmax + 1)^2, grad_vectors [N, 3],
 * contiguous; C [num_monomials, c_stride] (columns past D ignored).  Compiled once per
 * element type (REAL float or double); single-threaded, the caller splits the vectors.
 */
#include <math.h>
#include <stdint.h>

#ifndef REAL
#define REAL float
#endif
typedef REAL real;
#define SQRT(x) _Generic((x), float: sqrtf, default: sqrt)(x)

/* TILE vectors at a time as one vector register (GCC / Clang vector extensions: the
 * compiler's own unrolling of a 16-long loop was left scalar, 3x slower; measured). */
#define TILE 16
typedef real vec __attribute__((vector_size(TILE * sizeof(real))));
#define MAX_LMAX 8
#define MAX_MONOMIALS ((MAX_LMAX + 1) * (MAX_LMAX + 2) * (MAX_LMAX + 3) / 6)
#define MAX_DIM ((MAX_LMAX + 1) * (MAX_LMAX + 1))
#define EPS 1e-12 /* e3nn's: shorter vectors have no direction (their harmonics: u = 0) */

static inline int64_t start(int64_t d) { return d * (d + 1) * (d + 2) / 6; } /* first row */

/* Monomials mono[k] of the tile's `width` vectors (their directions with normalize; the
 * lanes past width zero) and inv = 1/|v| (zero for the zero vector). */
static void monomials(int64_t lmax, const real *v, int64_t width, int normalize, vec *mono,
                      vec *inv) {
    vec x = {0}, y = {0}, z = {0}, one = {0};
    for (int64_t t = 0; t < width; ++t) {
        x[t] = v[3 * t];
        y[t] = v[3 * t + 1];
        z[t] = v[3 * t + 2];
    }
    const vec square = x * x + y * y + z * z;
    for (int64_t t = 0; t < TILE; ++t) {
        (*inv)[t] = square[t] > (real)(EPS * EPS) ? 1 / SQRT(square[t]) : 0;
        one[t] = 1;
    }
    if (normalize) {
        x *= *inv;
        y *= *inv;
        z *= *inv;
    }
    mono[0] = one;
    mono[1] = x;
    mono[2] = y;
    mono[3] = z;
    for (int64_t d = 2; d <= lmax; ++d) {
        const int64_t prev = start(d - 1), cur = start(d), n = d * (d + 1) / 2;
        for (int64_t r = 0; r < n; ++r) mono[cur + r] = mono[prev + r] * x;
        for (int64_t r = 0; r < d; ++r) mono[cur + n + r] = mono[prev + n - d + r] * y;
        mono[cur + n + d] = mono[prev + n - 1] * z;
    }
}

static void forward_tile(int64_t lmax, const real *v, const real *table, int64_t c_stride,
                         int normalize, real *out, int64_t width) {
    vec mono[MAX_MONOMIALS], y[MAX_DIM], inv;
    const int64_t dim = (lmax + 1) * (lmax + 1);
    monomials(lmax, v, width, normalize, mono, &inv);
    for (int64_t l = 0; l <= lmax; ++l) {
        for (int64_t j = l * l; j < (l + 1) * (l + 1); ++j) {
            vec acc = {0};
            for (int64_t k = start(l); k < start(l + 1); ++k) acc += table[k * c_stride + j] * mono[k];
            y[j] = acc;
        }
    }
    for (int64_t t = 0; t < width; ++t)
        for (int64_t j = 0; j < dim; ++j) out[t * dim + j] = y[j][t];
}

void harmonics_forward(int64_t count, int64_t lmax, const real *vectors, const real *table,
                       int64_t c_stride, int64_t normalize, real *out) {
    const int64_t dim = (lmax + 1) * (lmax + 1);
    for (int64_t first = 0; first < count; first += TILE) {
        const int64_t width = count - first < TILE ? count - first : TILE;
        forward_tile(lmax, vectors + 3 * first, table, c_stride, normalize, out + first * dim,
                     width);
    }
}

static void backward_tile(int64_t lmax, const real *v, const real *table, int64_t c_stride,
                          int normalize, const real *grad, real *grad_vectors, int64_t width) {
    vec mono[MAX_MONOMIALS], g_mono[MAX_MONOMIALS], g[MAX_DIM], inv, g_u[3] = {{0}};
    const int64_t dim = (lmax + 1) * (lmax + 1);
    monomials(lmax, v, width, normalize, mono, &inv);
    for (int64_t j = 0; j < dim; ++j) g[j] = (vec){0};
    for (int64_t t = 0; t < width; ++t)
        for (int64_t j = 0; j < dim; ++j) g[j][t] = grad[t * dim + j];
    for (int64_t l = 0; l <= lmax; ++l) { /* dM = C g, degree by degree */
        for (int64_t k = start(l); k < start(l + 1); ++k) {
            vec acc = {0};
            for (int64_t j = l * l; j < (l + 1) * (l + 1); ++j) acc += table[k * c_stride + j] * g[j];
            g_mono[k] = acc;
        }
    }
    for (int64_t d = lmax; d >= 2; --d) { /* the monomial recursion in reverse */
        const int64_t prev = start(d - 1), cur = start(d), n = d * (d + 1) / 2;
        const int64_t parts[3][3] = {{0, 0, n}, {1, n, d}, {2, n + d, 1}}; /* u_k, first, rows */
        for (int64_t p = 0; p < 3; ++p) {
            const int64_t k = parts[p][0], first = parts[p][1], rows = parts[p][2];
            for (int64_t r = 0; r < rows; ++r) {
                const int64_t tail = prev + n - rows + r;
                g_u[k] += g_mono[cur + first + r] * mono[tail];
                g_mono[tail] += g_mono[cur + first + r] * mono[1 + k];
            }
        }
    }
    vec gx = {0}, gy = {0}, gz = {0};
    if (lmax >= 1) {
        gx = g_u[0] + g_mono[1];
        gy = g_u[1] + g_mono[2];
        gz = g_u[2] + g_mono[3];
    }
    if (normalize) { /* through u = v / |v|: drop the radial part, divide by |v| */
        const vec radial = gx * mono[1] + gy * mono[2] + gz * mono[3];
        gx = (gx - radial * mono[1]) * inv;
        gy = (gy - radial * mono[2]) * inv;
        gz = (gz - radial * mono[3]) * inv;
    }
    for (int64_t t = 0; t < width; ++t) {
        grad_vectors[3 * t] = gx[t];
        grad_vectors[3 * t + 1] = gy[t];
        grad_vectors[3 * t + 2] = gz[t];
    }
}

void harmonics_backward(int64_t count, int64_t lmax, const real *vectors, const real *table,
                        int64_t c_stride, int64_t normalize, const real *grad,
                        real *grad_vectors) {
    const int64_t dim = (lmax + 1) * (lmax + 1);
    for (int64_t first = 0; first < count; first += TILE) {
        const int64_t width = count - first < TILE ? count - first : TILE;
        backward_tile(lmax, vectors + 3 * first, table, c_stride, normalize, grad + first * dim,
                      grad_vectors + 3 * first, width);
    }
}
