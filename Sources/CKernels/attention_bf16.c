/* The bf16 tier's attention head (the AVX-512 head of attention_avx512.c with its products in bf16), the quantized
 * tiers' f32 head (P·V in f32), and the scalar references that define their bits. The contracts are in
 * include/ckernels.h. */
#include "ckernels.h"
#include "attention_internal.h"
#include "cgemm_bf16.h"
#include "cpufeatures.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

static int has_bf16_native(void) { return (cpu_usable() & CPU_AVX512_BF16) != 0; }

const char *dk_attention_bf16_isa(void) {
    if (!dk_has_avx512()) return "none";
    return has_bf16_native() ? "avx512bf16" : "avx512";
}

size_t dk_attention_bf16_scratch(size_t t, size_t d, size_t span) { return dk_attention_bf16_scratch_avx512(t, d, span); }

int dk_attention_bf16_position_words(const float *p, size_t rows, size_t d, size_t ldp, uint32_t *words, size_t ldw,
                                     uint32_t *stage) {
    if (!dk_has_avx512() || ldw < rows) return 0;
    dk_attention_bf16_position_words_avx512(p, rows, d, ldp, words, ldw, stage);
    return 1;
}

int dk_attention_head_bf16_words(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                 const float *v, size_t ldv, const uint32_t *pkw, const uint32_t *pqw, size_t ldw,
                                 size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                 float *out, size_t ldo, float *scratch) {
    if (!dk_has_avx512()) return 0;
    dk_attention_head_bf16_avx512(has_bf16_native(), t, d, q, ldq, k, ldk, v, ldv, NULL, NULL, 0, pkw, pqw, ldw, span,
                                  by_distance, key_mask, scale, out, ldo, scratch);
    return 1;
}

int dk_attention_head_bf16_isa(const char *isa, size_t t, size_t d, const float *q, size_t ldq, const float *k,
                               size_t ldk, const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                               size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                               float *out, size_t ldo, float *scratch) {
    int native = strcmp(isa, "avx512bf16") == 0;
    if (!native && strcmp(isa, "avx512") != 0) return 0;
    if (!dk_has_avx512() || (native && !has_bf16_native())) return 0;
    dk_attention_head_bf16_avx512(native, t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, NULL, NULL, 0, span, by_distance,
                                  key_mask, scale, out, ldo, scratch);
    return 1;
}

/* ---- The scalar reference ----------------------------------------------------------------------- */

static float daz(float v) { return fabsf(v) < 0x1p-126f ? copysignf(0.0f, v) : v; }

/* Σ over `pairs` words as vdpbf16ps accumulates one lane: the odd element first, then the even one. */
static float dot_words(const uint32_t *a, const uint32_t *b, size_t b_step, size_t pairs) {
    float acc = 0.0f;
    for (size_t p = 0; p < pairs; p++) {
        uint32_t x = a[p], y = b[p * b_step];
        acc = daz(fmaf(cgb_to_f32((uint16_t)(x >> 16)), cgb_to_f32((uint16_t)(y >> 16)), acc));
        acc = daz(fmaf(cgb_to_f32((uint16_t)x), cgb_to_f32((uint16_t)y), acc));
    }
    return acc;
}

/* Σ a[p] · b[p · b_step] as one fma chain in increasing p, from +0 (the AVX-512 tiles' order). */
static float dot_f32(const float *a, const float *b, size_t b_step, size_t n) {
    float acc = 0.0f;
    for (size_t p = 0; p < n; p++) acc = fmaf(a[p], b[p * b_step], acc);
    return acc;
}

int dk_attention_head_f32_reference(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                    const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                                    size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                    float *out, size_t ldo) {
    const size_t tp = (t + 15) & ~(size_t)15;
    float *s = calloc(tp, sizeof(float)), *p2c = calloc(t * span + 1, sizeof(float));
    int ok = s && p2c;
    if (ok) {
        if (pq)
            for (size_t j = 0; j < t; j++)
                for (size_t r = 0; r < span; r++) p2c[j * span + r] = scale * dot_f32(k + j * ldk, pq + r * ldp, 1, d);
        for (size_t i = 0; i < t; i++) {
            float m = -INFINITY;
            for (size_t j = 0; j < tp; j++) {
                if (j >= t) { s[j] = -INFINITY; continue; }
                size_t r = (size_t)by_distance[(ptrdiff_t)i - (ptrdiff_t)j + (ptrdiff_t)t - 1];
                float x = scale * dot_f32(q + i * ldq, k + j * ldk, 1, d);
                if (pk) x = x + scale * dot_f32(q + i * ldq, pk + r * ldp, 1, d);
                if (pq) x = x + p2c[j * span + r];
                x = x + (key_mask[j] ? 0.0f : -INFINITY);
                s[j] = x;
                if (x > m) m = x;
            }
            if (m == -INFINITY) {
                memset(s, 0, tp * sizeof(float));
            } else {
                for (size_t j = 0; j < tp; j++) s[j] = dk_exp_lane(s[j] - m);
                float inv = dk_inverse_row_sum(s, tp);
                for (size_t j = 0; j < tp; j++) s[j] = s[j] * inv;
            }
            for (size_t c = 0; c < d; c++) out[i * ldo + c] = 1.0f * dot_f32(s, v + c, ldv, t);
        }
    }
    free(s); free(p2c);
    return ok;
}

int dk_attention_head_bf16_reference(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                     const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                                     size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                     float *out, size_t ldo) {
    const size_t tp = (t + 15) & ~(size_t)15, dp = (d + 1) / 2, kp = tp / 2;
    uint32_t *kw = calloc(tp * dp, 4), *pkw = calloc(span * dp, 4), *pqw = calloc(span * dp, 4);
    uint32_t *vw = calloc(kp * d, 4), *qw = calloc(dp, 4), *pw = calloc(kp, 4);
    float *s = calloc(tp, sizeof(float)), *p2c = calloc(t * span, sizeof(float));
    int ok = kw && pkw && pqw && vw && qw && pw && s && p2c;
    if (ok) {
        for (size_t j = 0; j < t; j++) cgb_round_rows_scalar(k + j * ldk, 1, d, ldk, kw + j * dp, dp);
        for (size_t r = 0; r < span; r++) {
            if (pk) cgb_round_rows_scalar(pk + r * ldp, 1, d, ldp, pkw + r * dp, dp);
            if (pq) cgb_round_rows_scalar(pq + r * ldp, 1, d, ldp, pqw + r * dp, dp);
        }
        for (size_t jp = 0; jp < kp; jp++)
            for (size_t c = 0; c < d; c++) {
                uint32_t lo = 2 * jp < t ? cgb_from_f32(v[2 * jp * ldv + c]) : 0;
                uint32_t hi = 2 * jp + 1 < t ? cgb_from_f32(v[(2 * jp + 1) * ldv + c]) : 0;
                vw[jp * d + c] = lo | hi << 16;
            }
        if (pq)
            for (size_t j = 0; j < t; j++)
                for (size_t r = 0; r < span; r++) p2c[j * span + r] = scale * dot_words(kw + j * dp, pqw + r * dp, 1, dp);
        for (size_t i = 0; i < t; i++) {
            cgb_round_rows_scalar(q + i * ldq, 1, d, ldq, qw, dp);
            float m = -INFINITY;
            for (size_t j = 0; j < tp; j++) {
                if (j >= t) { s[j] = -INFINITY; continue; }
                size_t r = (size_t)by_distance[(ptrdiff_t)i - (ptrdiff_t)j + (ptrdiff_t)t - 1];
                float x = scale * dot_words(qw, kw + j * dp, 1, dp);
                if (pk) x = x + scale * dot_words(qw, pkw + r * dp, 1, dp);
                if (pq) x = x + p2c[j * span + r];
                x = x + (key_mask[j] ? 0.0f : -INFINITY);
                s[j] = x;
                if (x > m) m = x;
            }
            if (m == -INFINITY) {
                memset(pw, 0, kp * 4);
            } else {
                for (size_t j = 0; j < tp; j++) s[j] = dk_exp_lane(s[j] - m);
                float inv = dk_inverse_row_sum(s, tp);
                for (size_t jp = 0; jp < kp; jp++)
                    pw[jp] = (uint32_t)cgb_from_f32(s[2 * jp] * inv) | (uint32_t)cgb_from_f32(s[2 * jp + 1] * inv) << 16;
            }
            for (size_t c = 0; c < d; c++) out[i * ldo + c] = 1.0f * dot_words(pw, vw + c, d, kp);
        }
    }
    free(kw); free(pkw); free(pqw); free(vw); free(qw); free(pw); free(s); free(p2c);
    return ok;
}
