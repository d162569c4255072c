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

bool use_avx2() {
#ifdef DPX_HAVE_AVX2
  static const bool yes = [] {
    const char* isa = std::getenv("DPX_CPU_ISA");
    return has_avx2() && !(isa && std::strcmp(isa, "generic") == 0);
  }();
  return yes;
#else
  return false;  // the avx2 build is not in this library
#endif
}

}  // namespace dpx::cpu

// The build this process runs, "avx2" or "generic": for tests and benchmarks, through ctypes
// (no op schema, no torch).
extern "C" const char* dpx_cpu_isa() { return dpx::cpu::use_avx2() ? "avx2" : "generic"; }
