/*
 * Pensieve's BLAS shim for MLX's CPU backend.
 *
 * libmlx calls the unprefixed `cblas_sgemm`, which the mlx-cpu wheel resolves
 * to its bundled reference BLAS. Loaded with RTLD_GLOBAL before mlx, this
 * module provides `cblas_sgemm` itself and forwards it to an optimised BLAS
 * whose functions are bound at run time (`pensieve_blas_bind`), so nothing is
 * linked at build time. Single-row products (M == 1: every matmul of a decode
 * step) go to sgemv, which optimised BLAS libraries run about twice as fast as
 * an sgemm with one row. Products of a few rows with a transposed matrix
 * (every layer of a decode step over a small batch) go to `few_rows` below:
 * OpenBLAS's sgemm runs them 3-5x slower than sgemv, so a batch of 4 would
 * decode hardly faster than one sequence.
 *
 * It is also an (empty) Python extension module, so that setuptools builds it
 * and importlib can find it.
 */
#include <Python.h>
#include <pthread.h>
#include <string.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *,
                         int, const float *, int, float, float *, int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);

static sgemm_fn bound_sgemm = NULL;
static sgemv_fn bound_sgemv = NULL;
static int bound_threads = 1;

static int few_rows_on = 0;

void pensieve_blas_bind(void *sgemm, void *sgemv) {
  bound_sgemm = (sgemm_fn)sgemm;
  bound_sgemv = (sgemv_fn)sgemv;
}


/* ---- few rows: C (m x n) = alpha * A (m x k) . B^T (B is n x k) + beta * C.
 * Each row of B (a weight row) is read once and multiplied with every row
 * of A, which stays in cache: one pass over the weights for the whole batch,
 * as sgemv makes for one row. A large B's rows are split over the threads.
 * Measured on the bundled model (2-core x86_64, float32), decode tok/s of a
 * batch of 2 / 4 / 7: OpenBLAS sgemm 17.9 / 36.4 / 42.0, this 27.4 / 46.4 /
 * 51.3; from 8 rows OpenBLAS's kernel is faster again (63 against 50). */
enum { FEW_ROWS = 7, PARALLEL_MIN = 1 << 21 /* elements of B */ };

typedef float v8 __attribute__((vector_size(32), aligned(4)));

/* On x86 the kernel is built for AVX2 and FMA, and used only where the CPU
 * has them (`few_rows_usable`); elsewhere the compiler's own vectors. */
#if defined(__x86_64__)
#define KERNEL __attribute__((target("avx2,fma"))) static inline
static int few_rows_usable(void) {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
#define KERNEL static inline
static int few_rows_usable(void) { return 1; }
#endif

typedef struct {
  int m, n0, n1, k, lda, ldb, ldc;
  float alpha, beta;
  const float *a, *b;
  float *c;
} span;

KERNEL float sum8(v8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* ROWS rows of A against COLS consecutive rows of B (constants, so that the
 * ROWS x COLS accumulators stay in registers and their FMAs overlap):
 * out[i * COLS + j] = A row i . B row j. */
#define DOT(ROWS, COLS)                                                        \
  KERNEL void dot##ROWS##x##COLS(int k, const float *a, int lda,              \
                                        const float *b, int ldb, float *out) { \
    v8 acc[ROWS][COLS];                                                        \
    _Pragma("GCC unroll 4") for (int i = 0; i < ROWS; i++) {                  \
      _Pragma("GCC unroll 2") for (int j = 0; j < COLS; j++) {                \
        acc[i][j] = (v8){0};                                                   \
      }                                                                        \
    }                                                                          \
    int p = 0;                                                                 \
    for (; p + 8 <= k; p += 8) {                                               \
      v8 w[COLS];                                                              \
      _Pragma("GCC unroll 2") for (int j = 0; j < COLS; j++) {                \
        w[j] = *(const v8 *)(b + (size_t)j * ldb + p);                         \
      }                                                                        \
      for (int i = 0; i < ROWS; i++) {                                         \
        v8 x = *(const v8 *)(a + (size_t)i * lda + p);                         \
        _Pragma("GCC unroll 2") for (int j = 0; j < COLS; j++) {              \
          acc[i][j] += x * w[j];                                               \
        }                                                                      \
      }                                                                        \
    }                                                                          \
    _Pragma("GCC unroll 4") for (int i = 0; i < ROWS; i++) {                  \
      _Pragma("GCC unroll 2") for (int j = 0; j < COLS; j++) {                \
        float total = sum8(acc[i][j]);                                         \
        for (int q = p; q < k; q++) {                                          \
          total += a[(size_t)i * lda + q] * b[(size_t)j * ldb + q];            \
        }                                                                      \
        out[i * COLS + j] = total;                                             \
      }                                                                        \
    }                                                                          \
  }
DOT(4, 2)
DOT(2, 2)
DOT(1, 2)
DOT(4, 1)
DOT(2, 1)
DOT(1, 1)

KERNEL void store(const span *s, int i0, int rows, int j0, int cols,
                         const float *dots) {
  for (int i = 0; i < rows; i++) {
    for (int j = 0; j < cols; j++) {
      float *out = s->c + (size_t)(i0 + i) * s->ldc + j0 + j;
      float value = s->alpha * dots[i * cols + j];
      *out = s->beta == 0.0f ? value : value + s->beta * *out;
    }
  }
}

KERNEL void *few_rows_span(void *arg) {
  const span *s = arg;
  float dots[8];
  for (int j0 = s->n0; j0 < s->n1; j0 += 2) {
    int cols = s->n1 - j0 >= 2 ? 2 : 1;
    const float *b = s->b + (size_t)j0 * s->ldb;
    for (int i0 = 0; i0 < s->m;) {
      const float *a = s->a + (size_t)i0 * s->lda;
      int rows = s->m - i0 >= 4 ? 4 : s->m - i0 >= 2 ? 2 : 1;
      if (cols == 2) {
        if (rows == 4) dot4x2(s->k, a, s->lda, b, s->ldb, dots);
        else if (rows == 2) dot2x2(s->k, a, s->lda, b, s->ldb, dots);
        else dot1x2(s->k, a, s->lda, b, s->ldb, dots);
      } else {
        if (rows == 4) dot4x1(s->k, a, s->lda, b, s->ldb, dots);
        else if (rows == 2) dot2x1(s->k, a, s->lda, b, s->ldb, dots);
        else dot1x1(s->k, a, s->lda, b, s->ldb, dots);
      }
      store(s, i0, rows, j0, cols, dots);
      i0 += rows;
    }
  }
  return NULL;
}

void pensieve_blas_threads(int threads) {
  bound_threads = threads < 1 ? 1 : threads > 16 ? 16 : threads;
  few_rows_on = few_rows_usable();
}

static void few_rows(int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc) {
  int threads = (size_t)n * k >= PARALLEL_MIN ? bound_threads : 1;
  span spans[16];
  pthread_t helpers[16];
  int started = 0;
  for (int t = 0; t < threads; t++) {
    span s = {m, (int)((size_t)n * t / threads),
              (int)((size_t)n * (t + 1) / threads), k, lda, ldb, ldc,
              alpha, beta, a, b, c};
    spans[t] = s;
  }
  for (int t = 1; t < threads; t++) {
    if (pthread_create(&helpers[t], NULL, few_rows_span, &spans[t]) != 0) {
      break;
    }
    started = t;
  }
  for (int t = started + 1; t < threads; t++) {
    few_rows_span(&spans[t]); /* a helper could not start: do its part */
  }
  few_rows_span(&spans[0]);
  for (int t = 1; t <= started; t++) {
    pthread_join(helpers[t], NULL);
  }
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
  if (few_rows_on && layout == ROW_MAJOR && m > 1 && m <= FEW_ROWS && k > 0 &&
      trans_a == NO_TRANS && trans_b == TRANS) {
    few_rows(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
