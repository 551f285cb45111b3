// The CPU's roofline for `qzo bench`, measured rather than taken from a data sheet:
//   qzo_triad  a[i] = b[i] + 3 c[i] over float arrays far larger than the caches (STREAM's triad:
//              12 bytes moved per element; the bandwidth a streaming kernel can reach);
//   qzo_fma    independent fp32 fused multiply-add chains in the widest vectors the compiler
//              targets (-march=native), enough of them to cover the FMA latency: the FLOP rate a
//              dense kernel can reach.
// Both take the thread count as a scalar and run on that many OpenMP threads. The caller times
// the calls. Kernel signature and manifest as in the generated kernel libraries.
#include <cstdint>
#include <cstdio>
#include <omp.h>

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
// Ten accumulators: FMA latency (4-5 cycles) times two FMA ports, in registers on AVX2 and AVX-512.
constexpr int kChains = 10;
typedef float vec __attribute__((vector_size(kLanes * 4)));

}  // namespace

extern "C" {

const char* qzo_manifest(void) {
  static char text[96];
  std::snprintf(text, sizeof text, "{\"probe\":\"roofline\",\"lanes\":%d,\"chains\":%d}", kLanes, kChains);
  return text;
}

// ptrs: a, b, c (float[n]); scalars: n, threads.
int qzo_triad(void** ptrs, const double* scalars, int64_t n_ptrs, int64_t n_scalars) {
  if (n_ptrs != 3 || n_scalars != 2) return 1;
  float* a = static_cast<float*>(ptrs[0]);
  const float* b = static_cast<const float*>(ptrs[1]);
  const float* c = static_cast<const float*>(ptrs[2]);
  const int64_t n = static_cast<int64_t>(scalars[0]);
  const int threads = static_cast<int>(scalars[1]);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) a[i] = b[i] + 3.0f * c[i];
  return 0;
}

// ptrs: out (float[threads], one sum per thread, so the chains are not optimized away);
// scalars: iterations, threads. Each iteration is kChains vector FMAs: 2 * kLanes * kChains FLOPs.
int qzo_fma(void** ptrs, const double* scalars, int64_t n_ptrs, int64_t n_scalars) {
  if (n_ptrs != 1 || n_scalars != 2) return 1;
  float* out = static_cast<float*>(ptrs[0]);
  const int64_t iterations = static_cast<int64_t>(scalars[0]);
  const int threads = static_cast<int>(scalars[1]);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    vec acc[kChains];
    for (int k = 0; k < kChains; ++k) acc[k] = vec{} + (1.0f + 0.001f * (k + t));
    const vec m = vec{} + 0.999999f;
    const vec add = vec{} + 1e-7f;
    for (int64_t it = 0; it < iterations; ++it) {
      for (int k = 0; k < kChains; ++k) acc[k] = acc[k] * m + add;
    }
    float sum = 0.0f;
    for (int k = 0; k < kChains; ++k) {
      for (int l = 0; l < kLanes; ++l) sum += acc[k][l];
    }
    out[t] = sum;
  }
  return 0;
}

}  // extern "C"
