#pragma once
// Device state and memory: the stream, the device flags, status/init, dalloc/dfree (live and peak
// bytes), the weight cache (device_copy), the grow-only workspaces and code_values.
#include "common.cuh"

namespace qzo {

// ---------------------------------------------------------------------------------------------
// Device memory. Every allocation goes through dalloc/dfree so that the library can report its
// live and peak bytes (qzo_cuda_stats).
// ---------------------------------------------------------------------------------------------
static size_t live_bytes = 0, peak_bytes = 0;
static cudaStream_t the_stream = nullptr;
static int* dev_flags = nullptr;
static bool initialized = false;

static void* dalloc(size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) return nullptr;
  live_bytes += bytes;
  peak_bytes = std::max(peak_bytes, live_bytes);
  return p;
}
static void dfree(void* p, size_t bytes) {
  if (!p) return;
  cudaFree(p);
  live_bytes -= bytes;
}

static std::string status_text;
// "ok: <device> (sm_XY)", or why the library cannot run here.
static const char* status() {
  void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) { status_text = "no CUDA driver (libcuda.so.1) found"; return status_text.c_str(); }
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    status_text = std::string("no CUDA device (") + (e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices") + ")";
    return status_text.c_str();
  }
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) { status_text = "no CUDA device (cudaGetDeviceProperties failed)"; return status_text.c_str(); }
  if (p.major < 8) {
    status_text = std::string("CUDA device ") + p.name + " has compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) + "; the kernels need 8.0 or newer";
    return status_text.c_str();
  }
  status_text = std::string("ok: ") + p.name + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ")";
  return status_text.c_str();
}

static bool init() {
  if (initialized) return true;
  const char* s = status();
  if (std::strncmp(s, "ok:", 3) != 0) { last_error = s; return false; }
  if (cudaStreamCreateWithFlags(&the_stream, cudaStreamNonBlocking) != cudaSuccess) { last_error = "cudaStreamCreate failed"; return false; }
  dev_flags = (int*)dalloc(4 * sizeof(int));
  if (!dev_flags) { last_error = "out of device memory"; return false; }
  initialized = true;
  return true;
}

// Weights and master copies on the device, keyed by host pointer (and checked by size).
struct DevCopy { void* dev; size_t bytes; };
static std::unordered_map<const void*, DevCopy> weight_cache;

static void* device_copy(const void* host, size_t bytes, bool* uploaded = nullptr) {
  auto it = weight_cache.find(host);
  if (it != weight_cache.end() && it->second.bytes == bytes) return it->second.dev;
  if (it != weight_cache.end()) { dfree(it->second.dev, it->second.bytes); weight_cache.erase(it); }
  void* d = dalloc(bytes);
  if (!d) { last_error = "out of device memory while uploading weights (" + std::to_string(bytes) + " bytes)"; return nullptr; }
  if (cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice) != cudaSuccess) { last_error = "cudaMemcpy of a weight failed"; dfree(d, bytes); return nullptr; }
  weight_cache[host] = {d, bytes};
  if (uploaded) *uploaded = true;
  return d;
}

// A grow-only set of device buffers (one per index).
struct Workspace {
  std::vector<void*> ptr;
  std::vector<size_t> size;
  void* get(size_t i, size_t bytes) {
    if (ptr.size() <= i) { ptr.resize(i + 1, nullptr); size.resize(i + 1, 0); }
    if (size[i] < bytes) {
      dfree(ptr[i], size[i]);
      ptr[i] = dalloc(bytes);
      size[i] = ptr[i] ? bytes : 0;
      if (!ptr[i]) last_error = "out of device memory (" + std::to_string(bytes) + " bytes)";
    }
    return ptr[i];
  }
  void release() {
    for (size_t i = 0; i < ptr.size(); i++) dfree(ptr[i], size[i]);
    ptr.clear();
    size.clear();
  }
};
static Workspace perturbed_ws;  // the perturbed copies of the trainable tensors, index t
static Workspace code_ws;       // code values of the large-M matmul (slot 0; slot 1: a GLU's second weight)
static uint16_t* code_values(int slot, size_t elems) { return (uint16_t*)code_ws.get((size_t)slot, elems * sizeof(uint16_t)); }

static void release_all() {
  for (auto& kv : weight_cache) dfree(kv.second.dev, kv.second.bytes);
  weight_cache.clear();
  perturbed_ws.release();
  code_ws.release();
}

}  // namespace qzo
