// The GPU's roofline for `qzo bench`, measured on the device rather than taken from a data sheet:
//   triad      a[i] = b[i] + 3 c[i] over three 256 MiB float arrays (STREAM's triad, 12 bytes
//              per element): the DRAM bandwidth a streaming kernel reaches;
//   fma_peak   independent fp32 FMA chains on every thread: the CUDA-core FLOP rate;
//   mma_peak   independent mma.sync m16n8k16 (f16 operands, f32 accumulators, the instruction
//              the generated matmuls use) on every warp: the tensor-core FLOP rate.
// One host entry, qzo_roofline, runs all three (best of 5 timed runs after a warm-up, timed with
// CUDA events) and writes [triad bytes/s, fp32 FLOP/s, f16 tensor FLOP/s, SM count] to ptrs[0]
// (double[4]). Kernel signature, manifest and last-error contract as in the generated libraries.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

namespace {

char g_error[256];

bool check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  std::snprintf(g_error, sizeof g_error, "%s: %s", what, cudaGetErrorString(e));
  return false;
}

__global__ void triad(float4* a, const float4* b, const float4* c, size_t n4) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n4; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float4 x = b[i];
    const float4 y = c[i];
    a[i] = make_float4(x.x + 3.0f * y.x, x.y + 3.0f * y.y, x.z + 3.0f * y.z, x.w + 3.0f * y.w);
  }
}

constexpr int kFmaChains = 8;

// Each iteration: kFmaChains FMAs per thread, 2 FLOPs each.
__global__ void fma_peak(float* out, int iterations) {
  float acc[kFmaChains];
  for (int k = 0; k < kFmaChains; ++k) acc[k] = 1.0f + 1e-3f * (threadIdx.x + k);
  const float m = 0.999999f;
  const float add = 1e-7f;
  for (int it = 0; it < iterations; ++it) {
#pragma unroll
    for (int k = 0; k < kFmaChains; ++k) acc[k] = fmaf(acc[k], m, add);
  }
  float sum = 0.0f;
  for (int k = 0; k < kFmaChains; ++k) sum += acc[k];
  out[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

constexpr int kMmaChains = 4;

// Each iteration: kMmaChains mma.sync.m16n8k16 per warp, 16 * 8 * 16 * 2 FLOPs each.
__global__ void mma_peak(float* out, int iterations) {
  const half2 h = __floats2half2_rn(1e-3f, 1e-3f);
  const uint32_t v = *reinterpret_cast<const uint32_t*>(&h);
  const uint32_t a0 = v, a1 = v, a2 = v, a3 = v, b0 = v, b1 = v;
  float c[kMmaChains][4] = {};
  for (int it = 0; it < iterations; ++it) {
#pragma unroll
    for (int k = 0; k < kMmaChains; ++k) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(c[k][0]), "+f"(c[k][1]), "+f"(c[k][2]), "+f"(c[k][3])
          : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    }
  }
  float sum = 0.0f;
  for (int k = 0; k < kMmaChains; ++k) sum += c[k][0] + c[k][1] + c[k][2] + c[k][3];
  out[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

// Best of `reps` timed launches (after one warm-up) in milliseconds, or a negative value on error.
template <typename Launch>
float best_ms(Launch launch, int reps, const char* what) {
  cudaEvent_t start, stop;
  if (!check(cudaEventCreate(&start), what) || !check(cudaEventCreate(&stop), what)) return -1.0f;
  launch();
  float best = 1e30f;
  bool ok = check(cudaGetLastError(), what) && check(cudaDeviceSynchronize(), what);
  for (int r = 0; ok && r < reps; ++r) {
    cudaEventRecord(start);
    launch();
    cudaEventRecord(stop);
    ok = check(cudaEventSynchronize(stop), what) && check(cudaGetLastError(), what);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    if (ms < best) best = ms;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ok ? best : -1.0f;
}

}  // namespace

extern "C" {

const char* qzo_manifest(void) { return "{\"probe\":\"roofline\",\"target\":\"cuda\"}"; }

const char* qzo_last_error(void) { return g_error[0] ? g_error : nullptr; }

// ptrs: out (double[4]); no scalars.
int qzo_roofline(void** ptrs, const double* scalars, int64_t n_ptrs, int64_t n_scalars) {
  (void)scalars;
  if (n_ptrs != 1 || n_scalars != 0) return 1;
  double* out = static_cast<double*>(ptrs[0]);
  int device = 0, sms = 0;
  if (!check(cudaGetDevice(&device), "cudaGetDevice") ||
      !check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute")) {
    return 2;
  }
  const size_t n = size_t{64} << 20;  // floats per array: 256 MiB
  float *a = nullptr, *b = nullptr, *c = nullptr, *sink = nullptr;
  const int blocks = sms * 8, threads = 256;
  int rc = 0;
  if (!check(cudaMalloc(&a, n * 4), "cudaMalloc") || !check(cudaMalloc(&b, n * 4), "cudaMalloc") ||
      !check(cudaMalloc(&c, n * 4), "cudaMalloc") || !check(cudaMalloc(&sink, size_t{4} * blocks * threads), "cudaMalloc") ||
      !check(cudaMemset(b, 0, n * 4), "cudaMemset") || !check(cudaMemset(c, 0, n * 4), "cudaMemset")) {
    rc = 3;
  }
  const int fma_iterations = 1 << 16, mma_iterations = 1 << 14;
  if (rc == 0) {
    const float t = best_ms([&] { triad<<<blocks, threads>>>(reinterpret_cast<float4*>(a), reinterpret_cast<const float4*>(b), reinterpret_cast<const float4*>(c), n / 4); }, 5, "triad");
    const float f = best_ms([&] { fma_peak<<<blocks, threads>>>(sink, fma_iterations); }, 5, "fma_peak");
    const float m = best_ms([&] { mma_peak<<<blocks, threads>>>(sink, mma_iterations); }, 5, "mma_peak");
    if (t <= 0.0f || f <= 0.0f || m <= 0.0f) {
      rc = 4;
    } else {
      const double warps = static_cast<double>(blocks) * threads / 32.0;
      out[0] = 12.0 * static_cast<double>(n) / (t * 1e-3);
      out[1] = 2.0 * kFmaChains * static_cast<double>(fma_iterations) * blocks * threads / (f * 1e-3);
      out[2] = 2.0 * 16 * 8 * 16 * kMmaChains * static_cast<double>(mma_iterations) * warps / (m * 1e-3);
      out[3] = sms;
    }
  }
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  cudaFree(sink);
  return rc;
}

}  // extern "C"
