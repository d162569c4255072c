#include "kernels/cpu/isa.h"

#include <cstdlib>
#include <cstring>

namespace dpx::cpu {

bool has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

bool has_avx512() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool yes = has_avx2() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return yes;
#else
  return false;
#endif
}

Isa isa() {
  static const Isa chosen = [] {
    Isa best = Isa::generic;
#ifdef DPX_HAVE_AVX2
    if (has_avx2()) best = Isa::avx2;
#endif
#ifdef DPX_HAVE_AVX512
    if (has_avx512()) best = Isa::avx512;
#endif
    const char* cap = std::getenv("DPX_CPU_ISA");
    if (cap && std::strcmp(cap, "generic") == 0) return Isa::generic;
    if (cap && std::strcmp(cap, "avx2") == 0 && best == Isa::avx512) return Isa::avx2;
    return best;
  }();
  return chosen;
}

}  // namespace dpx::cpu

// The build this process runs, "avx512", "avx2" or "generic": for tests and benchmarks,
// through ctypes (no op schema, no torch).
extern "C" const char* dpx_cpu_isa() {
  switch (dpx::cpu::isa()) {
    case dpx::cpu::Isa::avx512:
      return "avx512";
    case dpx::cpu::Isa::avx2:
      return "avx2";
    default:
      return "generic";
  }
}
