/* The one CPU-feature probe of the C kernels (CKernels, CGemm, CQuantKernels), and the configure call that
 * caps what they may use. Every kernel family dispatches on cpu_usable(): the probed features masked by the
 * cap, so a cap set by the runtime (RuntimeOptions.kernels) applies to all of them at once. */
#ifndef CPUFEATURES_H
#define CPUFEATURES_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CPU_AVX2_FMA = 1 << 0,       /* AVX2 + FMA, and the OS saves the YMM state */
    CPU_AVX_VNNI = 1 << 1,       /* AVX-VNNI (256-bit vpdpbusd) */
    CPU_AVX512F = 1 << 2,        /* AVX-512 F, and the OS saves the opmask and ZMM state */
    CPU_AVX512_BW_VL_DQ = 1 << 3,/* AVX-512 BW + VL + DQ (with F) */
    CPU_AVX512_VNNI = 1 << 4,    /* AVX-512 VNNI (with F + BW + VL) */
    CPU_AVX512_BF16 = 1 << 5,    /* AVX-512 BF16 (with F + BW + VL): vdpbf16ps */
};

/* What the CPU has (probed once; racing first calls store the same value). */
unsigned cpu_features(void);

/* The features the kernels may use: cpu_features() under the cap. */
unsigned cpu_usable(void);

/* Caps the kernels: isa_cap 0 = scalar only, 1 = up to AVX2/FMA/AVX-VNNI, 2 = everything the CPU has;
 * packed_quantized 0 turns off the packed int8 / q4 kernels (products read the stored codes). */
void cpu_configure(int isa_cap, int packed_quantized);

/* 1 unless cpu_configure turned the packed int8 / q4 kernels off. */
int cpu_packed_quantized_allowed(void);

#ifdef __cplusplus
}
#endif
#endif
