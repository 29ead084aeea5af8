/* Packing, the scalar reference product, the scalar GELU and the run-time dispatch.
 * The contract (layout, epilogues, rounding, column ranges) is documented in include/cgemm.h. */
#include "gemm_internal.h"
#include "cpufeatures.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

/* ------------------------------------------------------------------ dispatch */

/* 0 = scalar, 1 = AVX2 + FMA, 2 = AVX-512 F (+ AVX2 + FMA), from the shared probe under the runtime's cap
 * (cpu_configure). */
static inline int cg_level_of(unsigned f) {
    if (!(f & CPU_AVX2_FMA)) return 0;
    return (f & CPU_AVX512F) ? 2 : 1;
}

static inline int cg_level(void) { return cg_level_of(cpu_usable()); }

/* What the CPU has, whatever the cap (the forced-ISA entry points of the tests and benchmarks). */
static inline int cg_cpu_level(void) { return cg_level_of(cpu_features()); }

const char *cg_kernel_isa(void) {
    int level = cg_level();
    return level == 2 ? "avx512" : level == 1 ? "avx2" : "scalar";
}

/* ------------------------------------------------------------------ packing */

size_t cg_panel_stride(size_t k) { return (CG_NR * k + 15) / 16 * 16; }

size_t cg_packed_size(size_t n, size_t k) { return (n + CG_NR - 1) / CG_NR * cg_panel_stride(k); }

/* W [n, k] with row stride ldw. */
static void cg_pack_weights_ld(const float *w, size_t n, size_t k, size_t ldw, float *packed) {
    size_t stride = cg_panel_stride(k), panels = (n + CG_NR - 1) / CG_NR;
    for (size_t p = 0; p < panels; p++) {
        float *dst = packed + p * stride;
        size_t cols = n - p * CG_NR < CG_NR ? n - p * CG_NR : CG_NR;
#if defined(__x86_64__)
        if (cols == CG_NR && cg_level() >= 1) {
            cg_pack_panel_avx2(w + p * CG_NR * ldw, k, ldw, dst);
            for (size_t i = CG_NR * k; i < stride; i++) dst[i] = 0.0f;
            continue;
        }
#endif
        /* Blocks of 8 k values: the 24 source rows are read sequentially, the destination stays in L1. */
        for (size_t k0 = 0; k0 < k; k0 += 8) {
            size_t kn = k - k0 < 8 ? k - k0 : 8;
            for (size_t j = 0; j < CG_NR; j++) {
                if (j >= cols) {
                    for (size_t kk = 0; kk < kn; kk++) dst[(k0 + kk) * CG_NR + j] = 0.0f;
                    continue;
                }
                const float *src = w + (p * CG_NR + j) * ldw + k0;
                for (size_t kk = 0; kk < kn; kk++) dst[(k0 + kk) * CG_NR + j] = src[kk];
            }
        }
        for (size_t i = CG_NR * k; i < stride; i++) dst[i] = 0.0f;
    }
}

void cg_pack_strided(const float *b, size_t n, size_t k, size_t stride_n, size_t stride_k, float *packed) {
    if (stride_k == 1) {
        cg_pack_weights_ld(b, n, k, stride_n, packed);
        return;
    }
    size_t stride = cg_panel_stride(k), panels = (n + CG_NR - 1) / CG_NR;
    for (size_t p = 0; p < panels; p++) {
        float *dst = packed + p * stride;
        size_t cols = n - p * CG_NR < CG_NR ? n - p * CG_NR : CG_NR;
        for (size_t kk = 0; kk < k; kk++) {
            const float *src = b + kk * stride_k + p * CG_NR * stride_n;
            for (size_t j = 0; j < CG_NR; j++) dst[kk * CG_NR + j] = j < cols ? src[j * stride_n] : 0.0f;
        }
        for (size_t i = CG_NR * k; i < stride; i++) dst[i] = 0.0f;
    }
}

void cg_pack_weights(const float *w, size_t n, size_t k, float *packed) { cg_pack_weights_ld(w, n, k, k, packed); }

void cg_unpack_weights(const float *packed, size_t n, size_t k, float *w) {
    size_t stride = cg_panel_stride(k);
    for (size_t o = 0; o < n; o++)
        for (size_t j = 0; j < k; j++) w[o * k + j] = packed[(o / CG_NR) * stride + j * CG_NR + o % CG_NR];
}

void cg_column_range(size_t n, size_t parts, size_t part, size_t *begin, size_t *end) {
    size_t panels = (n + CG_NR - 1) / CG_NR;
    if (parts == 0) parts = 1;
    if (part >= parts) {
        *begin = *end = n;
        return;
    }
    size_t b = panels * part / parts, e = panels * (part + 1) / parts;
    *begin = b * CG_NR < n ? b * CG_NR : n;
    *end = e * CG_NR < n ? e * CG_NR : n;
}

/* ------------------------------------------------------------------ scalar reference */

/* 1 when the column range is acceptable (see the header), 0 otherwise. */
static int cg_range_ok(size_t n, size_t n_begin, size_t n_end) {
    if (n_begin % CG_NR != 0 || n_begin > n_end || n_end > n) return 0;
    return n_end % CG_NR == 0 || n_end == n;
}

void cg_gemm_packed_scalar(size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *packed,
                           const float *bias, int epilogue, const float *residual, size_t ldr, float *y,
                           size_t ldy, size_t n_begin, size_t n_end) {
    if (!cg_range_ok(n, n_begin, n_end)) return;
    size_t stride = cg_panel_stride(k);
    for (size_t r = 0; r < m; r++) {
        const float *xr = x + r * ldx;
        for (size_t o0 = n_begin; o0 < n_end; o0 += CG_NR) {
            size_t cols = n_end - o0 < CG_NR ? n_end - o0 : CG_NR;
            const float *wp = packed + (o0 / CG_NR) * stride;
            float acc[CG_NR];
            for (size_t j = 0; j < CG_NR; j++) {
                float a = 0.0f;
                if (j < cols) {
                    if (bias && epilogue >= CG_EPILOGUE_BIAS && epilogue <= CG_EPILOGUE_BIAS_RESIDUAL) a = bias[o0 + j];
                    if (epilogue == CG_EPILOGUE_BIAS_RESIDUAL) {
                        float res = residual[r * ldr + o0 + j];
                        a = bias ? a + res : res;
                    }
                }
                acc[j] = a;
            }
            for (size_t kk = 0; kk < k; kk++) {
                float xv = xr[kk];
                const float *wk = wp + kk * CG_NR;
                for (size_t j = 0; j < CG_NR; j++) acc[j] = fmaf(xv, wk[j], acc[j]);
            }
            float *yr = y + r * ldy + o0;
            if (epilogue == CG_EPILOGUE_BIAS_GELU)
                for (size_t j = 0; j < cols; j++) yr[j] = cg_gelu_ref(acc[j]);
            else
                for (size_t j = 0; j < cols; j++) yr[j] = acc[j];
        }
    }
}

void cg_gemm_packed(size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *packed,
                    const float *bias, int epilogue, const float *residual, size_t ldr, float *y, size_t ldy,
                    size_t n_begin, size_t n_end) {
    if (m == 0 || n_begin >= n_end || !cg_range_ok(n, n_begin, n_end)) return;
#if defined(__x86_64__)
    int level = cg_level();
    if (k > 0 && level == 2) {
        cg_gemm_packed_avx512(m, n, k, x, ldx, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
        return;
    }
    if (k > 0 && level == 1) {
        cg_gemm_packed_avx2(m, n, k, x, ldx, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
        return;
    }
#endif
    cg_gemm_packed_scalar(m, n, k, x, ldx, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
}

size_t cg_unpacked_scratch_size(size_t columns, size_t k) { return cg_packed_size(columns > 0 ? columns : 1, k); }

void cg_gemm_unpacked(size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *w, size_t ldw,
                      const float *bias, int epilogue, const float *residual, size_t ldr, float *y, size_t ldy,
                      size_t n_begin, size_t n_end, float *scratch, size_t scratch_size) {
    if (m == 0 || n_begin >= n_end || !cg_range_ok(n, n_begin, n_end)) return;
    size_t panels = scratch_size / cg_panel_stride(k);
    if (panels == 0) return;
    size_t chunk = panels * CG_NR;
    for (size_t c0 = n_begin; c0 < n_end; c0 += chunk) {
        size_t width = n_end - c0 < chunk ? n_end - c0 : chunk;
        cg_pack_weights_ld(w + c0 * ldw, width, k, ldw, scratch);
        cg_gemm_packed(m, width, k, x, ldx, scratch, bias ? bias + c0 : NULL, epilogue,
                       residual ? residual + c0 : NULL, ldr, y + c0, ldy, 0, width);
    }
}

int cg_gemm_packed_isa(const char *isa, size_t m, size_t n, size_t k, const float *x, size_t ldx,
                       const float *packed, const float *bias, int epilogue, const float *residual, size_t ldr,
                       float *y, size_t ldy, size_t n_begin, size_t n_end) {
    if (strcmp(isa, "scalar") == 0) {
        cg_gemm_packed_scalar(m, n, k, x, ldx, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
        return 1;
    }
#if defined(__x86_64__)
    int have = cg_cpu_level();
    int want = strcmp(isa, "avx512") == 0 ? 2 : strcmp(isa, "avx2") == 0 ? 1 : -1;
    if (want < 1 || have < want) return 0;
    if (m == 0 || n_begin >= n_end || !cg_range_ok(n, n_begin, n_end) || k == 0) {
        cg_gemm_packed_scalar(m, n, k, x, ldx, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
        return 1;
    }
    if (want == 2)
        cg_gemm_packed_avx512(m, n, k, x, ldx, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
    else
        cg_gemm_packed_avx2(m, n, k, x, ldx, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
    return 1;
#else
    return 0;
#endif
}

/* ------------------------------------------------------------------ GELU */

void cg_gelu_scalar(const float *x, float *y, size_t count) {
    for (size_t i = 0; i < count; i++) y[i] = cg_gelu_ref(x[i]);
}

void cg_phi_scalar(const float *x, float *y, size_t count) {
    for (size_t i = 0; i < count; i++) y[i] = cg_phi_ref(x[i]);
}

void cg_gelu(const float *x, float *y, size_t count) {
#if defined(__x86_64__)
    if (cg_level() == 2) {
        cg_gelu_avx512(x, y, count);
        return;
    }
    if (cg_level() == 1) {
        cg_gelu_avx2(x, y, count);
        return;
    }
#endif
    cg_gelu_scalar(x, y, count);
}

double cg_fma_peak_loop(size_t iterations) {
#if defined(__x86_64__)
    int level = cg_cpu_level();
    if (level == 2) return cg_fma_peak_loop_avx512(iterations);
    if (level == 1) return cg_fma_peak_loop_avx2(iterations);
#endif
    (void)iterations;
    return 0;
}
