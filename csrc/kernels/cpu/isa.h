// Instruction-set builds of the vectorized kernels (se_a.cpp, env_mat.cpp, embed.cpp). CMake
// compiles those files up to three times: for baseline x86-64 (or whatever the target is)
// into namespace dpx::cpu::generic; with -mavx2 -mfma and DPX_KERNEL_ISA=avx2 into
// dpx::cpu::avx2; and with AVX-512 (F, DQ, VL) into dpx::cpu::avx512 (x86-64 with GCC or
// Clang only; each defines DPX_HAVE_AVX2 / DPX_HAVE_AVX512 for the op layer). The op layer
// calls DPX_CPU_KERNEL, which picks one build per process: one wheel runs on every x86-64
// CPU and uses the widest vectors the CPU has.
#pragma once

// the namespace that a kernel source being compiled defines its functions in
#ifndef DPX_KERNEL_ISA
#define DPX_KERNEL_ISA generic
#endif

namespace dpx::cpu {

enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };

// What the CPU has (cpuid, asked once): AVX2 and FMA; AVX-512 F, DQ and VL.
bool has_avx2();
bool has_avx512();

// The build to run: the widest that is in this library and that the CPU has, capped by the
// environment variable DPX_CPU_ISA ("generic", "avx2" or "avx512": to compare the builds, or
// to rule one out). Decided once per process.
Isa isa();

}  // namespace dpx::cpu

// ns::fn of the build this process runs, e.g. DPX_CPU_KERNEL(se_a_reduce<T>)(args...)
#if defined(DPX_HAVE_AVX512) && defined(DPX_HAVE_AVX2)
#define DPX_CPU_KERNEL(fn)                                                          \
  (::dpx::cpu::isa() == ::dpx::cpu::Isa::avx512 ? ::dpx::cpu::avx512::fn          \
   : ::dpx::cpu::isa() == ::dpx::cpu::Isa::avx2 ? ::dpx::cpu::avx2::fn            \
                                                : ::dpx::cpu::generic::fn)
#elif defined(DPX_HAVE_AVX2)
#define DPX_CPU_KERNEL(fn) \
  (::dpx::cpu::isa() == ::dpx::cpu::Isa::avx2 ? ::dpx::cpu::avx2::fn : ::dpx::cpu::generic::fn)
#else
#define DPX_CPU_KERNEL(fn) ::dpx::cpu::generic::fn
#endif
