/* Quantizers, dequantizers, the scalar reference products and the run-time dispatch.
 * The schemes are documented in include/cquantkernels.h. */
#include "quant_internal.h"
#include "cpufeatures.h"
#include <stdatomic.h>
#include <stdlib.h>

#pragma STDC FP_CONTRACT OFF

/* ------------------------------------------------------------------ dispatch */

/* 0 = scalar, 1 = AVX2 (+FMA), 2 = AVX2 (+FMA) and AVX-VNNI (the int8 product uses 256-bit vpdpbusd,
 * everything else the AVX2 kernels), from the shared probe under the runtime's cap (cpu_configure). */
static inline int dq_level(void) {
    unsigned f = cpu_usable();
    if (!(f & CPU_AVX2_FMA)) return 0;
    return (f & CPU_AVX_VNNI) ? 2 : 1;
}

const char *dq_kernel_isa(void) {
    int v = dq_level();
    return v == 2 ? "avxvnni" : v == 1 ? "avx2" : "scalar";
}

/* ------------------------------------------------------------------ int8 */

void dq_quantize_weights_int8(const float *w, size_t n, size_t k, int8_t *q, float *scales) {
    for (size_t o = 0; o < n; o++) scales[o] = dq_quantize_span_scalar(w + o * k, k, q + o * k);
}

void dq_dequantize_weights_int8(const int8_t *q, const float *scales, size_t n, size_t k, float *w) {
    for (size_t o = 0; o < n; o++) {
        float s = scales[o];
        for (size_t j = 0; j < k; j++) w[o * k + j] = (float)q[o * k + j] * s;
    }
}

void dq_quantize_activations_int8_scalar(const float *x, size_t m, size_t k, size_t ldx, int8_t *q,
                                         float *scales) {
    for (size_t r = 0; r < m; r++) scales[r] = dq_quantize_span_scalar(x + r * ldx, k, q + r * k);
}

void dq_quantize_activations_int8(const float *x, size_t m, size_t k, size_t ldx, int8_t *q, float *scales) {
#if defined(__x86_64__)
    const unsigned avx512 = CPU_AVX512F | CPU_AVX512_BW_VL_DQ;
    if ((cpu_usable() & avx512) == avx512) {
        dq_quantize_activations_int8_avx512(x, m, k, ldx, q, scales);
        return;
    }
    if (dq_level() >= 1) {
        dq_quantize_activations_int8_avx2(x, m, k, ldx, q, scales);
        return;
    }
#endif
    dq_quantize_activations_int8_scalar(x, m, k, ldx, q, scales);
}

void dq_gemm_int8_scalar(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const int8_t *wq,
                         const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin,
                         size_t n_end) {
    if (n_end > n) n_end = n;
    for (size_t r = 0; r < m; r++) {
        const int8_t *xr = xq + r * k;
        for (size_t o = n_begin; o < n_end; o++) {
            const int8_t *wo = wq + o * k;
            int32_t acc = 0;
            for (size_t j = 0; j < k; j++) acc += (int32_t)xr[j] * (int32_t)wo[j];
            float s = xs[r] * ws[o];
            float v = s * (float)acc;
            if (bias) v = v + bias[o];
            y[r * ldy + o] = v;
        }
    }
}

void dq_gemm_int8(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const int8_t *wq,
                  const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end) {
#if defined(__x86_64__)
    int level = dq_level();
    if (level == 2) {
        dq_gemm_int8_avxvnni(m, n, k, xq, xs, wq, ws, bias, y, ldy, n_begin, n_end);
        return;
    }
    if (level == 1) {
        dq_gemm_int8_avx2(m, n, k, xq, xs, wq, ws, bias, y, ldy, n_begin, n_end);
        return;
    }
#endif
    dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, bias, y, ldy, n_begin, n_end);
}

int dq_gemm_int8_isa(const char *isa, size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                     const int8_t *wq, const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin,
                     size_t n_end) {
    if (strcmp(isa, "scalar") == 0) {
        dq_gemm_int8_scalar(m, n, k, xq, xs, wq, ws, bias, y, ldy, n_begin, n_end);
        return 1;
    }
#if defined(__x86_64__)
    int level = dq_level();
    if (strcmp(isa, "avx2") == 0 && level >= 1) {
        dq_gemm_int8_avx2(m, n, k, xq, xs, wq, ws, bias, y, ldy, n_begin, n_end);
        return 1;
    }
    if (strcmp(isa, "avxvnni") == 0 && level >= 2) {
        dq_gemm_int8_avxvnni(m, n, k, xq, xs, wq, ws, bias, y, ldy, n_begin, n_end);
        return 1;
    }
#endif
    return 0;
}

/* ------------------------------------------------------------------ int8, packed weights */

/* 2 = AVX-512 F + BW + VL + VNNI (512-bit packed kernel), 1 = AVX2 + FMA + AVX-VNNI (256-bit packed kernel),
 * 0 = none (scalar reference). */
static inline int dq_packed_level(void) {
    unsigned f = cpu_usable();
    if ((f & (CPU_AVX512F | CPU_AVX512_VNNI)) == (CPU_AVX512F | CPU_AVX512_VNNI)) return 2;
    return dq_level() == 2 ? 1 : 0;
}

const char *dq_int8_packed_isa(void) {
    int v = dq_packed_level();
    return v == 2 ? "avx512vnni" : v == 1 ? "avxvnni" : "scalar";
}

int dq_int8_packed_preferred(void) { return dq_packed_level() >= 1 && cpu_packed_quantized_allowed(); }

size_t dq_int8_packed_size(size_t n, size_t k) {
    return (n + DQ_INT8_PANEL - 1) / DQ_INT8_PANEL * ((k + 3) / 4) * (DQ_INT8_PANEL * 4);
}

void dq_pack_weights_int8(const int8_t *q, size_t n, size_t k, uint8_t *packed) {
    /* Row by row (sequential reads): 4 codes at a time to their place in each group, biased by +128, which
     * for bytes is x ^ 0x80. Every byte of `packed` is written once (padding channels and the k padding of
     * the last group as 0). */
    size_t np = (n + DQ_INT8_PANEL - 1) / DQ_INT8_PANEL, kg = (k + 3) / 4, kf = k / 4, rest = k % 4;
    for (size_t p = 0; p < np; p++) {
        uint8_t *panel = packed + p * kg * (DQ_INT8_PANEL * 4);
        size_t first = 0; /* groups already written for every channel of this panel */
#if defined(__x86_64__)
        if ((p + 1) * DQ_INT8_PANEL <= n && dq_level() >= 1) first = dq_pack_panel_int8_avx2(q + p * DQ_INT8_PANEL * k, k, panel);
#endif
        for (size_t c = 0; c < DQ_INT8_PANEL; c++) {
            size_t o = p * DQ_INT8_PANEL + c;
            uint8_t *dst = panel + c * 4;
            if (o >= n) {
                for (size_t g = 0; g < kg; g++) memset(dst + g * (DQ_INT8_PANEL * 4), 0, 4);
                continue;
            }
            const int8_t *row = q + o * k;
            for (size_t g = first; g < kf; g++) {
                uint32_t v;
                memcpy(&v, row + 4 * g, 4);
                v ^= 0x80808080u;
                memcpy(dst + g * (DQ_INT8_PANEL * 4), &v, 4);
            }
            if (rest) {
                uint8_t b[4] = {0, 0, 0, 0};
                for (size_t j = 0; j < rest; j++) b[j] = (uint8_t)((int)row[4 * kf + j] + 128);
                memcpy(dst + kf * (DQ_INT8_PANEL * 4), b, 4);
            }
        }
    }
}

void dq_unpack_weights_int8(const uint8_t *packed, size_t n, size_t k, int8_t *q) {
    size_t kg = (k + 3) / 4;
    for (size_t o = 0; o < n; o++) {
        size_t p = o / DQ_INT8_PANEL, c = o % DQ_INT8_PANEL;
        for (size_t kk = 0; kk < k; kk++)
            q[o * k + kk] = (int8_t)((int)packed[(p * kg + kk / 4) * (DQ_INT8_PANEL * 4) + c * 4 + kk % 4] - 128);
    }
}

void dq_int8_packed_column_range(size_t n, size_t parts, size_t part, size_t *begin, size_t *end) {
    /* Strips of DQ_INT8_STRIP panels (the kernel's register tile) are dealt out evenly; the last strip may
     * be shorter. Part sizes differ by at most one strip. */
    size_t panels = (n + DQ_INT8_PANEL - 1) / DQ_INT8_PANEL;
    size_t strips = (panels + DQ_INT8_STRIP - 1) / DQ_INT8_STRIP;
    if (parts == 0 || part >= parts) {
        *begin = *end = n;
        return;
    }
    size_t s0 = strips * part / parts, s1 = strips * (part + 1) / parts;
    size_t b = s0 * DQ_INT8_STRIP * DQ_INT8_PANEL, e = s1 * DQ_INT8_STRIP * DQ_INT8_PANEL;
    *begin = b < n ? b : n;
    *end = e < n ? e : n;
}

void dq_gemm_int8_packed_scalar(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                                const uint8_t *packed, const float *ws, const float *bias, float *y, size_t ldy,
                                size_t n_begin, size_t n_end) {
    if (n_end > n) n_end = n;
    if (n_begin >= n_end) return;
    size_t kg = (k + 3) / 4;
    size_t p_begin = n_begin / DQ_INT8_PANEL, p_end = (n_end + DQ_INT8_PANEL - 1) / DQ_INT8_PANEL;
    for (size_t r = 0; r < m; r++) {
        const int8_t *xr = xq + r * k;
        int32_t rowsum = 0;
        for (size_t j = 0; j < k; j++) rowsum += xr[j];
        for (size_t p = p_begin; p < p_end; p++) {
            /* The kernel's arithmetic: Σ (w + 128)·x in 32-bit lanes that wrap (unsigned here, so that the
             * wrap is defined), minus 128·rowsum: exactly Σ w·x, which fits int32. */
            uint32_t acc[DQ_INT8_PANEL] = {0};
            const uint8_t *wp = packed + p * kg * (DQ_INT8_PANEL * 4);
            for (size_t g = 0; g < kg; g++) {
                int8_t xg[4] = {0, 0, 0, 0};
                for (size_t j = 0; j < 4 && g * 4 + j < k; j++) xg[j] = xr[g * 4 + j];
                const uint8_t *wg = wp + g * (DQ_INT8_PANEL * 4);
                for (size_t c = 0; c < DQ_INT8_PANEL; c++)
                    for (size_t j = 0; j < 4; j++) acc[c] += (uint32_t)((int32_t)wg[c * 4 + j] * (int32_t)xg[j]);
            }
            for (size_t c = 0; c < DQ_INT8_PANEL; c++) {
                size_t o = p * DQ_INT8_PANEL + c;
                if (o < n_begin || o >= n_end) continue;
                int32_t dot = (int32_t)(acc[c] - ((uint32_t)rowsum << 7));
                float s = xs[r] * ws[o];
                float v = s * (float)dot;
                if (bias) v = v + bias[o];
                y[r * ldy + o] = v;
            }
        }
    }
}

void dq_gemm_int8_packed(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *packed,
                         const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end) {
#if defined(__x86_64__)
    int level = dq_packed_level();
    if (level == 2) {
        dq_gemm_int8_packed_avx512vnni(m, n, k, xq, xs, packed, ws, bias, y, ldy, n_begin, n_end);
        return;
    }
    if (level == 1) {
        dq_gemm_int8_packed_avxvnni(m, n, k, xq, xs, packed, ws, bias, y, ldy, n_begin, n_end);
        return;
    }
#endif
    dq_gemm_int8_packed_scalar(m, n, k, xq, xs, packed, ws, bias, y, ldy, n_begin, n_end);
}

int dq_gemm_int8_packed_isa(const char *isa, size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                            const uint8_t *packed, const float *ws, const float *bias, float *y, size_t ldy,
                            size_t n_begin, size_t n_end) {
    if (strcmp(isa, "scalar") == 0) {
        dq_gemm_int8_packed_scalar(m, n, k, xq, xs, packed, ws, bias, y, ldy, n_begin, n_end);
        return 1;
    }
#if defined(__x86_64__)
    if (strcmp(isa, "avx512vnni") == 0 && dq_packed_level() == 2) {
        dq_gemm_int8_packed_avx512vnni(m, n, k, xq, xs, packed, ws, bias, y, ldy, n_begin, n_end);
        return 1;
    }
    /* the AVX-VNNI kernel also runs on AVX-512 machines that have AVX-VNNI (Sapphire Rapids, Zen 5) */
    if (strcmp(isa, "avxvnni") == 0 && dq_level() == 2) {
        dq_gemm_int8_packed_avxvnni(m, n, k, xq, xs, packed, ws, bias, y, ldy, n_begin, n_end);
        return 1;
    }
#endif
    return 0;
}

/* ------------------------------------------------------------------ q4 */

size_t dq_q4_padded_k(size_t k) { return (k + DQ_BLOCK - 1) / DQ_BLOCK * DQ_BLOCK; }

/* min(15, (int)(p + 8.5f)) for p = x · id, as ggml's reference (truncation toward zero); for finite
 * inputs p + 8.5f lies in [0, 16.5]. NaN -> 8, otherwise clamped to [0, 15] (no undefined cast). */
static inline uint8_t dq_q4_code(float p) {
    float v = p + 8.5f;
    if (v != v) return 8;
    if (v >= 15.0f) return 15;
    if (v <= 0.0f) return 0;
    return (uint8_t)(int)v;
}

void dq_quantize_weights_q4(const float *w, size_t n, size_t k, uint8_t *packed, float *scales) {
    size_t kp = dq_q4_padded_k(k), nb = kp / DQ_BLOCK;
    for (size_t o = 0; o < n; o++) {
        const float *row = w + o * k;
        for (size_t b = 0; b < nb; b++) {
            float xb[DQ_BLOCK];
            size_t j0 = b * DQ_BLOCK;
            for (size_t j = 0; j < DQ_BLOCK; j++) xb[j] = j0 + j < k ? row[j0 + j] : 0.0f;
            float amax = 0.0f, mx = 0.0f;
            for (size_t j = 0; j < DQ_BLOCK; j++) {
                float a = fabsf(xb[j]);
                if (amax < a) { /* strict: the first element of largest magnitude wins */
                    amax = a;
                    mx = xb[j];
                }
            }
            float d = mx / -8.0f; /* an all-zero block gets d = -0.0f, as in ggml */
            float id = d != 0.0f ? 1.0f / d : 0.0f;
            uint8_t *pb = packed + o * (kp / 2) + b * (DQ_BLOCK / 2);
            for (size_t j = 0; j < DQ_BLOCK / 2; j++) {
                float p0 = xb[j] * id;
                float p1 = xb[j + DQ_BLOCK / 2] * id;
                pb[j] = (uint8_t)(dq_q4_code(p0) | (dq_q4_code(p1) << 4));
            }
            scales[o * nb + b] = d;
        }
    }
}

void dq_dequantize_weights_q4(const uint8_t *packed, const float *scales, size_t n, size_t k, float *w) {
    size_t kp = dq_q4_padded_k(k), nb = kp / DQ_BLOCK;
    for (size_t o = 0; o < n; o++) {
        for (size_t j = 0; j < k; j++) {
            size_t b = j / DQ_BLOCK, e = j % DQ_BLOCK;
            uint8_t byte = packed[o * (kp / 2) + b * (DQ_BLOCK / 2) + (e & 15)];
            int q = e < 16 ? (byte & 15) : (byte >> 4);
            w[o * k + j] = (float)(q - 8) * scales[o * nb + b];
        }
    }
}

void dq_quantize_activations_q8_blocks_scalar(const float *x, size_t m, size_t k, size_t ldx, int8_t *q,
                                              float *scales) {
    size_t kp = dq_q4_padded_k(k), nb = kp / DQ_BLOCK;
    for (size_t r = 0; r < m; r++) dq_quantize_row_q8_blocks_scalar(x + r * ldx, k, q + r * kp, scales + r * nb);
}

void dq_quantize_activations_q8_blocks(const float *x, size_t m, size_t k, size_t ldx, int8_t *q,
                                       float *scales) {
#if defined(__x86_64__)
    if (dq_level() >= 1) {
        dq_quantize_activations_q8_blocks_avx2(x, m, k, ldx, q, scales);
        return;
    }
#endif
    dq_quantize_activations_q8_blocks_scalar(x, m, k, ldx, q, scales);
}

void dq_gemm_q4_scalar(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *wq,
                       const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end) {
    size_t kp = dq_q4_padded_k(k), nb = kp / DQ_BLOCK;
    if (n_end > n) n_end = n;
    for (size_t r = 0; r < m; r++) {
        const int8_t *xr = xq + r * kp;
        for (size_t o = n_begin; o < n_end; o++) {
            const uint8_t *wo = wq + o * (kp / 2);
            float p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *pw = wo + b * (DQ_BLOCK / 2);
                const int8_t *px = xr + b * DQ_BLOCK;
                int32_t isum = 0;
                for (size_t j = 0; j < DQ_BLOCK / 2; j++) {
                    isum += ((int32_t)(pw[j] & 15) - 8) * (int32_t)px[j];
                    isum += ((int32_t)(pw[j] >> 4) - 8) * (int32_t)px[j + DQ_BLOCK / 2];
                }
                float s = ws[o * nb + b] * xs[r * nb + b];
                float t = s * (float)isum;
                p[b & 7] = p[b & 7] + t;
            }
            float v = dq_q4_tree(p);
            if (bias) v = v + bias[o];
            y[r * ldy + o] = v;
        }
    }
}

void dq_gemm_q4(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *wq,
                const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end) {
#if defined(__x86_64__)
    if (dq_level() >= 1) {
        dq_gemm_q4_avx2(m, n, k, xq, xs, wq, ws, bias, y, ldy, n_begin, n_end);
        return;
    }
#endif
    dq_gemm_q4_scalar(m, n, k, xq, xs, wq, ws, bias, y, ldy, n_begin, n_end);
}

/* ------------------------------------------------------------------ q4 on packed weights */

size_t dq_q4_packed_size(size_t n, size_t k) {
    return (n + DQ_Q4_PANEL - 1) / DQ_Q4_PANEL * (dq_q4_padded_k(k) / DQ_BLOCK) * 256;
}

size_t dq_q4_packed_scales_size(size_t n, size_t k) {
    return (n + DQ_Q4_PANEL - 1) / DQ_Q4_PANEL * (dq_q4_padded_k(k) / DQ_BLOCK) * DQ_Q4_PANEL;
}

void dq_pack_weights_q4(const uint8_t *wq, const float *ws, size_t n, size_t k, uint8_t *packed, float *pscales) {
    size_t kp = dq_q4_padded_k(k), nb = kp / DQ_BLOCK, np = (n + DQ_Q4_PANEL - 1) / DQ_Q4_PANEL;
    for (size_t p = 0; p < np; p++) {
        for (size_t b = 0; b < nb; b++) {
            uint8_t *dst = packed + (p * nb + b) * 256;
            float *sd = pscales + (p * nb + b) * DQ_Q4_PANEL;
            for (size_t c = 0; c < DQ_Q4_PANEL; c++) {
                size_t o = p * DQ_Q4_PANEL + c;
                if (o >= n) {
                    for (size_t h = 0; h < 4; h++) memset(dst + h * 64 + 4 * c, 0, 4);
                    sd[c] = 0.0f;
                    continue;
                }
                const uint8_t *blk = wq + o * (kp / 2) + b * (DQ_BLOCK / 2);
                uint8_t code[DQ_BLOCK];
                for (size_t e = 0; e < DQ_BLOCK / 2; e++) {
                    code[e] = blk[e] & 15;
                    code[e + DQ_BLOCK / 2] = blk[e] >> 4;
                }
                for (size_t h = 0; h < 4; h++)
                    for (size_t j = 0; j < 4; j++)
                        dst[h * 64 + 4 * c + j] = (uint8_t)(code[8 * h + j] | code[8 * h + 4 + j] << 4);
                sd[c] = ws[o * nb + b];
            }
        }
    }
}

int dq_q4_packed_preferred(void) { return dq_packed_level() == 2 && cpu_packed_quantized_allowed(); }

void dq_gemm_q4_packed_scalar(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *packed,
                              const float *pscales, const float *bias, float *y, size_t ldy, size_t n_begin,
                              size_t n_end) {
    if (n_end > n) n_end = n;
    if (n_begin >= n_end) return;
    size_t kp = dq_q4_padded_k(k), nb = kp / DQ_BLOCK;
    size_t p_begin = n_begin / DQ_Q4_PANEL, p_end = (n_end + DQ_Q4_PANEL - 1) / DQ_Q4_PANEL;
    for (size_t r = 0; r < m; r++) {
        const int8_t *xr = xq + r * kp;
        for (size_t p = p_begin; p < p_end; p++) {
            float part[DQ_Q4_PANEL][8];
            memset(part, 0, sizeof part);
            for (size_t b = 0; b < nb; b++) {
                const int8_t *xb = xr + b * DQ_BLOCK;
                int32_t bsum = 0;
                for (size_t j = 0; j < DQ_BLOCK; j++) bsum += xb[j];
                const uint8_t *wb = packed + (p * nb + b) * 256;
                for (size_t c = 0; c < DQ_Q4_PANEL; c++) {
                    int32_t acc = 0;
                    for (size_t h = 0; h < 4; h++)
                        for (size_t j = 0; j < 4; j++) {
                            uint8_t v = wb[h * 64 + 4 * c + j];
                            acc += (int32_t)(v & 15) * xb[8 * h + j] + (int32_t)(v >> 4) * xb[8 * h + 4 + j];
                        }
                    int32_t isum = acc - 8 * bsum;
                    float s = pscales[(p * nb + b) * DQ_Q4_PANEL + c] * xs[r * nb + b];
                    float t = s * (float)isum;
                    part[c][b & 7] = part[c][b & 7] + t;
                }
            }
            for (size_t c = 0; c < DQ_Q4_PANEL; c++) {
                size_t o = p * DQ_Q4_PANEL + c;
                if (o < n_begin || o >= n_end) continue;
                float v = dq_q4_tree(part[c]);
                if (bias) v = v + bias[o];
                y[r * ldy + o] = v;
            }
        }
    }
}

void dq_gemm_q4_packed(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *packed,
                       const float *pscales, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end) {
#if defined(__x86_64__)
    if (dq_packed_level() == 2) {
        dq_gemm_q4_packed_avx512vnni(m, n, k, xq, xs, packed, pscales, bias, y, ldy, n_begin, n_end);
        return;
    }
#endif
    dq_gemm_q4_packed_scalar(m, n, k, xq, xs, packed, pscales, bias, y, ldy, n_begin, n_end);
}

int dq_gemm_q4_packed_isa(const char *isa, size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                          const uint8_t *packed, const float *pscales, const float *bias, float *y, size_t ldy,
                          size_t n_begin, size_t n_end) {
    if (strcmp(isa, "scalar") == 0) {
        dq_gemm_q4_packed_scalar(m, n, k, xq, xs, packed, pscales, bias, y, ldy, n_begin, n_end);
        return 1;
    }
#if defined(__x86_64__)
    if (strcmp(isa, "avx512vnni") == 0 && dq_packed_level() == 2) {
        dq_gemm_q4_packed_avx512vnni(m, n, k, xq, xs, packed, pscales, bias, y, ldy, n_begin, n_end);
        return 1;
    }
#endif
    return 0;
}
