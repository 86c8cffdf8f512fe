// Vectors of eight floats for the addon's own loops (GCC's vector extension; scripts/build-native.sh builds those files
// for AVX2, where one is a register): loads and stores at any alignment.
#pragma once
#include <cstdint>
#include <cstring>

namespace lanes {

constexpr int64_t WIDTH = 8;
typedef float Lanes __attribute__((vector_size(WIDTH * sizeof(float))));

inline Lanes load(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, Lanes v) { std::memcpy(p, &v, sizeof v); }

}  // namespace lanes
