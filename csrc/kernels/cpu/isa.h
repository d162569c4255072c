// Instruction-set builds of the vectorized kernels (se_a.cpp, env_mat.cpp). CMake compiles
// those files twice: for baseline x86-64 (or whatever the target is) into namespace
// dpx::cpu::generic, and with -mavx2 -mfma and DPX_KERNEL_ISA=avx2 into dpx::cpu::avx2 (on
// x86-64 with GCC or Clang only; it then defines DPX_HAVE_AVX2 for the op layer). The op layer
// calls DPX_CPU_KERNEL, which picks one build per process: one wheel runs on every x86-64 CPU
// and uses AVX2 and FMA where the CPU has them.
#pragma once

// the namespace that a kernel source being compiled defines its functions in
#ifndef DPX_KERNEL_ISA
#define DPX_KERNEL_ISA generic
#endif

namespace dpx::cpu {

// The CPU has AVX2 and FMA (cpuid, asked once).
bool has_avx2();

// Run the avx2 kernels: they are in this library, has_avx2(), and the environment variable
// DPX_CPU_ISA is not "generic" (set it to compare the builds, or to rule the avx2 one out).
// Decided once per process.
bool use_avx2();

}  // namespace dpx::cpu

// ns::fn of the build this process runs, e.g. DPX_CPU_KERNEL(se_a_reduce<T>)(args...)
#ifdef DPX_HAVE_AVX2
#define DPX_CPU_KERNEL(fn) \
  (::dpx::cpu::use_avx2() ? ::dpx::cpu::avx2::fn : ::dpx::cpu::generic::fn)
#else
#define DPX_CPU_KERNEL(fn) ::dpx::cpu::generic::fn
#endif
