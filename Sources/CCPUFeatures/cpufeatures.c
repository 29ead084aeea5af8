#include "cpufeatures.h"
#include <stdatomic.h>

static _Atomic int probed = -1;
static _Atomic unsigned cap_mask = ~0u;
static _Atomic int packed_allowed = 1;

unsigned cpu_features(void) {
    int v = atomic_load_explicit(&probed, memory_order_relaxed);
    if (v >= 0) return (unsigned)v;
    unsigned f = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    /* __builtin_cpu_supports checks the CPUID bits and that the OS saves the register state (XGETBV). */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        f |= CPU_AVX2_FMA;
        if (__builtin_cpu_supports("avxvnni")) f |= CPU_AVX_VNNI;
        if (__builtin_cpu_supports("avx512f")) {
            f |= CPU_AVX512F;
            int bwvl = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
            if (bwvl && __builtin_cpu_supports("avx512dq")) f |= CPU_AVX512_BW_VL_DQ;
            if (bwvl && __builtin_cpu_supports("avx512vnni")) f |= CPU_AVX512_VNNI;
            if (bwvl && __builtin_cpu_supports("avx512bf16")) f |= CPU_AVX512_BF16;
        }
    }
#endif
    atomic_store_explicit(&probed, (int)f, memory_order_relaxed);
    return f;
}

unsigned cpu_usable(void) { return cpu_features() & atomic_load_explicit(&cap_mask, memory_order_relaxed); }

void cpu_configure(int isa_cap, int packed_quantized) {
    unsigned mask = isa_cap <= 0 ? 0u : isa_cap == 1 ? (unsigned)(CPU_AVX2_FMA | CPU_AVX_VNNI) : ~0u;
    atomic_store_explicit(&cap_mask, mask, memory_order_relaxed);
    atomic_store_explicit(&packed_allowed, packed_quantized != 0, memory_order_relaxed);
}

int cpu_packed_quantized_allowed(void) { return atomic_load_explicit(&packed_allowed, memory_order_relaxed); }
