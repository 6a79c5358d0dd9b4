/*
 * Pensieve's BLAS shim for MLX's CPU backend.
 *
 * libmlx calls the unprefixed `cblas_sgemm`, which the mlx-cpu wheel resolves
 * to its bundled reference BLAS. Loaded with RTLD_GLOBAL before mlx, this
 * module provides `cblas_sgemm` itself and forwards it to an optimised BLAS
 * whose functions are bound at run time (`pensieve_blas_bind`), so nothing is
 * linked at build time. Single-row products (M == 1: every matmul of a decode
 * step) go to sgemv, which optimised BLAS libraries run about twice as fast as
 * an sgemm with one row.
 *
 * It is also an (empty) Python extension module, so that setuptools builds it
 * and importlib can find it.
 */
#include <Python.h>
#include <string.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *,
                         int, const float *, int, float, float *, int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);

static sgemm_fn bound_sgemm = NULL;
static sgemv_fn bound_sgemv = NULL;

void pensieve_blas_bind(void *sgemm, void *sgemv) {
  bound_sgemm = (sgemm_fn)sgemm;
  bound_sgemv = (sgemv_fn)sgemv;
}

int pensieve_blas_is_bound(void) { return bound_sgemm != NULL; }

void cblas_sgemm(int layout, int trans_a, int trans_b, int m, int n, int k,
                 float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc) {
  if (layout == ROW_MAJOR && m == 1 && k > 0 && bound_sgemv != NULL) {
    /* C (1 x n) = alpha * x (1 x k) . op(B) (k x n) + beta * C, so
     * C^T = alpha * op(B)^T . x^T + beta * C^T: one matrix-vector product. */
    int inc_x = trans_a == NO_TRANS ? 1 : lda;
    if (beta == 0.0f) {
      memset(c, 0, sizeof(float) * (size_t)n); /* never read garbage as NaN */
    }
    if (trans_b == NO_TRANS) { /* B is k x n */
      bound_sgemv(ROW_MAJOR, TRANS, k, n, alpha, b, ldb, a, inc_x, beta, c, 1);
    } else { /* B is n x k */
      bound_sgemv(ROW_MAJOR, NO_TRANS, n, k, alpha, b, ldb, a, inc_x, beta, c,
                  1);
    }
    return;
  }
  bound_sgemm(layout, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta,
              c, ldc);
}

static struct PyModuleDef blas_shim_module = {
    PyModuleDef_HEAD_INIT, "_blas_shim",
    "Routes MLX's cblas_sgemm to an optimised BLAS (see pensieve.engine.cpu).",
    -1, NULL};

PyMODINIT_FUNC PyInit__blas_shim(void) {
  return PyModule_Create(&blas_shim_module);
}
