// Vectors for the hand-written loops of the CPU kernels (se_a.cpp, embed.cpp), in the GCC/Clang
// vector extensions: a Vec<T, Bytes> is Bytes / sizeof(T) lanes of T in registers, with the
// arithmetic operators lane by lane. Left to itself the auto-vectorizer's choices for register
// blocks differ between float and double and between the builds (shuffles, spilled
// accumulators); spelled out, each build gets the loop as written, with FMAs where it has them.
//
// Included by files compiled once per instruction-set build (kernels/cpu/isa.h): everything
// here lives in that build's namespace, so an AVX-512 or AVX2 copy of a helper that the
// compiler keeps out of line cannot stand in for the generic build's. The width is a template
// parameter: each kernel file chooses its own (a wider vector changes the order of the sums
// that lanes split), and no generic-build code names more than kMaxBytes.
#pragma once
#if !defined(__GNUC__)
#error "kernels/cpu/simd.h uses the GCC/Clang vector extensions"
#endif
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels/cpu/isa.h"

namespace dpx::cpu::DPX_KERNEL_ISA::simd {

// the widest vector of this build: 64 bytes with AVX-512, 32 with AVX2, 16 with SSE2 (or NEON)
#if defined(__AVX512F__)
constexpr int kMaxBytes = 64;
#elif defined(__AVX2__)
constexpr int kMaxBytes = 32;
#else
constexpr int kMaxBytes = 16;
#endif

// (a struct: GCC ignores vector_size on an alias of a dependent type)
template <typename T, int Bytes>
struct VecOf {
  static_assert(Bytes <= kMaxBytes, "wider than this build's vectors");
  typedef T type __attribute__((vector_size(Bytes)));
};
template <typename T, int Bytes>
using Vec = typename VecOf<T, Bytes>::type;
template <typename T, int Bytes>
constexpr int64_t kLanes = Bytes / sizeof(T);

// the lane type of a vector V
template <typename V>
using Lane = std::decay_t<decltype(std::declval<V>()[0])>;

// a V from p, unaligned
template <typename V, typename T>
inline V load(const T* p) {
  static_assert(std::is_same_v<Lane<V>, T>);
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// v to p, unaligned
template <typename T, typename V>
inline void store(T* p, V v) {
  static_assert(std::is_same_v<Lane<V>, T>);
  std::memcpy(p, &v, sizeof v);
}

// sum of the lanes of v: add its halves until one lane is left (vector adds, no stack), so
// lane l of W lanes meets lane l + W/2 first: the order is fixed by the width
template <typename V>
inline Lane<V> lane_sum(V v) {
  using T = Lane<V>;
  constexpr int Bytes = sizeof(V);
  if constexpr (Bytes == sizeof(T)) {
    return v[0];
  } else {
    Vec<T, Bytes / 2> lo, hi;
    std::memcpy(&lo, &v, Bytes / 2);
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + Bytes / 2, Bytes / 2);
    return lane_sum(lo + hi);
  }
}

// the integer of T's width (for exponent bits), and a vector's bits read as another type
template <typename T>
using IntOf = std::conditional_t<std::is_same_v<T, double>, int64_t, int32_t>;
template <typename To, typename From>
inline To bits_as(From v) {
  static_assert(sizeof(To) == sizeof(From));
  To out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}

}  // namespace dpx::cpu::DPX_KERNEL_ISA::simd
