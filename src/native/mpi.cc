// qzo_native's MPI binding: the few MPI calls a data-parallel QZO run needs, bound
// at run time with dlopen so that the addon builds and loads where no MPI is
// installed. One MPI world per process, so the state here is process-global.
//
// Supported library: Open MPI (4.x, 5.x; libmpi.so.40). Its handles are the
// addresses of exported objects (ompi_mpi_comm_world, ompi_mpi_double, ...),
// MPI_IN_PLACE is (void*)1 and MPI_STATUS_IGNORE is NULL; a library without
// ompi_mpi_comm_world is refused with a message saying so.
//
// JavaScript API (wrapped by src/runtime/parallel/mpi.ts):
//   mpiLoad(candidates: string[]) -> string     the path loaded (RTLD_GLOBAL: Open MPI's
//                                                plugins resolve their symbols from it)
//   mpiInit() -> {rank, size, version}
//   mpiIallreduce(values: Float64Array, op: "sum" | "max" | "min") -> id
//   mpiIbcast(bytes: Uint8Array, root: number) -> id
//   mpiTest(id) -> null (pending) | Float64Array | Uint8Array (the result; the id is freed)
//   mpiFinalize()
//   mpiAbort(code)
// Buffers of pending operations are owned here (copies of the arguments), so a
// garbage collection cannot move them while MPI works on them.

#include <napi.h>

#include <dlfcn.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

using Handle = void*;
using InitFn = int (*)(int*, char***);
using IntOutFn = int (*)(Handle, int*);
using IallreduceFn = int (*)(const void*, void*, int, Handle, Handle, Handle, Handle*);
using IbcastFn = int (*)(void*, int, Handle, int, Handle, Handle*);
using TestFn = int (*)(Handle*, int*, void*);
using FinalizeFn = int (*)();
using AbortFn = int (*)(Handle, int);
using VersionFn = int (*)(char*, int*);

constexpr int kMpiSuccess = 0;
void* const kInPlace = reinterpret_cast<void*>(1);

struct Api {
  void* lib = nullptr;
  std::string path;
  InitFn init = nullptr;
  IntOutFn comm_rank = nullptr;
  IntOutFn comm_size = nullptr;
  IallreduceFn iallreduce = nullptr;
  IbcastFn ibcast = nullptr;
  TestFn test = nullptr;
  FinalizeFn finalize = nullptr;
  AbortFn abort = nullptr;
  VersionFn version = nullptr;
  Handle comm_world = nullptr;
  Handle type_double = nullptr;
  Handle type_byte = nullptr;
  Handle op_sum = nullptr;
  Handle op_max = nullptr;
  Handle op_min = nullptr;
  bool initialized = false;
  bool finalized = false;
};

struct Pending {
  Handle request = nullptr;
  bool is_bytes = false;
  std::vector<double> doubles;
  std::vector<uint8_t> bytes;
};

Api g_api;
std::map<int32_t, Pending> g_pending;
int32_t g_next_id = 1;

napi_value Throw(const Napi::Env& env, const std::string& message) {
  napi_throw_error(env, nullptr, message.c_str());
  return nullptr;
}

bool Ready(const Napi::Env& env) {
  if (!g_api.initialized) {
    Throw(env, "MPI is not initialized");
    return false;
  }
  if (g_api.finalized) {
    Throw(env, "MPI is finalized");
    return false;
  }
  return true;
}

template <typename T>
bool Bind(void* lib, const char* name, T* out, std::string* missing) {
  void* p = dlsym(lib, name);
  if (p == nullptr) {
    if (!missing->empty()) *missing += ", ";
    *missing += name;
    return false;
  }
  *out = reinterpret_cast<T>(p);
  return true;
}

Napi::Value MpiLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_api.lib != nullptr) return Napi::String::New(env, g_api.path);
  if (info.Length() < 1 || !info[0].IsArray()) return Napi::Value(env, Throw(env, "mpiLoad(candidates): expected an array of library names"));
  Napi::Array names = info[0].As<Napi::Array>();
  std::string errors;
  void* lib = nullptr;
  std::string path;
  for (uint32_t i = 0; i < names.Length() && lib == nullptr; i++) {
    path = names.Get(i).As<Napi::String>().Utf8Value();
    dlerror();
    lib = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
    if (lib == nullptr) {
      const char* e = dlerror();
      if (!errors.empty()) errors += "; ";
      errors += e != nullptr ? e : path + ": cannot be loaded";
    }
  }
  if (lib == nullptr) return Napi::Value(env, Throw(env, "no MPI library could be loaded (" + errors + ")"));
  if (dlsym(lib, "ompi_mpi_comm_world") == nullptr) {
    return Napi::Value(env, Throw(env, path + " is not Open MPI (it exports no ompi_mpi_comm_world); qzo's MPI binding reads Open MPI's handles"));
  }
  Api a;
  std::string missing;
  Bind(lib, "MPI_Init", &a.init, &missing);
  Bind(lib, "MPI_Comm_rank", &a.comm_rank, &missing);
  Bind(lib, "MPI_Comm_size", &a.comm_size, &missing);
  Bind(lib, "MPI_Iallreduce", &a.iallreduce, &missing);
  Bind(lib, "MPI_Ibcast", &a.ibcast, &missing);
  Bind(lib, "MPI_Test", &a.test, &missing);
  Bind(lib, "MPI_Finalize", &a.finalize, &missing);
  Bind(lib, "MPI_Abort", &a.abort, &missing);
  Bind(lib, "MPI_Get_library_version", &a.version, &missing);
  Bind(lib, "ompi_mpi_comm_world", &a.comm_world, &missing);
  Bind(lib, "ompi_mpi_double", &a.type_double, &missing);
  Bind(lib, "ompi_mpi_byte", &a.type_byte, &missing);
  Bind(lib, "ompi_mpi_op_sum", &a.op_sum, &missing);
  Bind(lib, "ompi_mpi_op_max", &a.op_max, &missing);
  Bind(lib, "ompi_mpi_op_min", &a.op_min, &missing);
  if (!missing.empty()) return Napi::Value(env, Throw(env, path + " lacks " + missing + " (MPI 3 or newer is needed)"));
  a.lib = lib;
  a.path = path;
  g_api = a;
  return Napi::String::New(env, path);
}

Napi::Value MpiInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_api.lib == nullptr) return Napi::Value(env, Throw(env, "mpiInit: no MPI library loaded"));
  if (g_api.finalized) return Napi::Value(env, Throw(env, "MPI is finalized"));
  if (!g_api.initialized) {
    if (g_api.init(nullptr, nullptr) != kMpiSuccess) return Napi::Value(env, Throw(env, "MPI_Init failed"));
    g_api.initialized = true;
  }
  int rank = 0;
  int size = 0;
  g_api.comm_rank(g_api.comm_world, &rank);
  g_api.comm_size(g_api.comm_world, &size);
  char version[8192] = {0};  // MPI_MAX_LIBRARY_VERSION_STRING is 256 in Open MPI, 8192 in MPICH
  int len = 0;
  g_api.version(version, &len);
  std::string v(version, static_cast<size_t>(len > 0 ? len : 0));
  while (!v.empty() && (v.back() == '\n' || v.back() == '\0' || v.back() == ' ')) v.pop_back();
  Napi::Object out = Napi::Object::New(env);
  out.Set("rank", rank);
  out.Set("size", size);
  out.Set("version", v.substr(0, v.find('\n')));
  return out;
}

Napi::Value MpiIallreduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Ready(env)) return Napi::Value();
  if (info.Length() < 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || !info[1].IsString()) {
    return Napi::Value(env, Throw(env, "mpiIallreduce(values, op): expected a Float64Array and an op name"));
  }
  Napi::Float64Array values = info[0].As<Napi::Float64Array>();
  std::string op_name = info[1].As<Napi::String>().Utf8Value();
  Handle op = op_name == "sum" ? g_api.op_sum : op_name == "max" ? g_api.op_max : op_name == "min" ? g_api.op_min : nullptr;
  if (op == nullptr) return Napi::Value(env, Throw(env, "mpiIallreduce: unknown op '" + op_name + "' (sum, max, min)"));
  int32_t id = g_next_id++;
  Pending& p = g_pending[id];
  p.doubles.assign(values.Data(), values.Data() + values.ElementLength());
  int rc = g_api.iallreduce(kInPlace, p.doubles.data(), static_cast<int>(p.doubles.size()), g_api.type_double, op, g_api.comm_world, &p.request);
  if (rc != kMpiSuccess) {
    g_pending.erase(id);
    return Napi::Value(env, Throw(env, "MPI_Iallreduce failed (code " + std::to_string(rc) + ")"));
  }
  return Napi::Number::New(env, id);
}

Napi::Value MpiIbcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Ready(env)) return Napi::Value();
  if (info.Length() < 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || !info[1].IsNumber()) {
    return Napi::Value(env, Throw(env, "mpiIbcast(bytes, root): expected a Uint8Array and a rank"));
  }
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  if (bytes.ElementLength() > 0x7fffffff) return Napi::Value(env, Throw(env, "mpiIbcast: more than 2^31-1 bytes"));
  int root = info[1].As<Napi::Number>().Int32Value();
  int32_t id = g_next_id++;
  Pending& p = g_pending[id];
  p.is_bytes = true;
  p.bytes.assign(bytes.Data(), bytes.Data() + bytes.ElementLength());
  int rc = g_api.ibcast(p.bytes.data(), static_cast<int>(p.bytes.size()), g_api.type_byte, root, g_api.comm_world, &p.request);
  if (rc != kMpiSuccess) {
    g_pending.erase(id);
    return Napi::Value(env, Throw(env, "MPI_Ibcast failed (code " + std::to_string(rc) + ")"));
  }
  return Napi::Number::New(env, id);
}

Napi::Value MpiTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Ready(env)) return Napi::Value();
  if (info.Length() < 1 || !info[0].IsNumber()) return Napi::Value(env, Throw(env, "mpiTest(id): expected an operation id"));
  int32_t id = info[0].As<Napi::Number>().Int32Value();
  auto it = g_pending.find(id);
  if (it == g_pending.end()) return Napi::Value(env, Throw(env, "mpiTest: no pending operation " + std::to_string(id)));
  int done = 0;
  int rc = g_api.test(&it->second.request, &done, nullptr);
  if (rc != kMpiSuccess) {
    g_pending.erase(it);
    return Napi::Value(env, Throw(env, "MPI_Test failed (code " + std::to_string(rc) + ")"));
  }
  if (!done) return env.Null();
  Napi::Value result;
  if (it->second.is_bytes) {
    auto out = Napi::Uint8Array::New(env, it->second.bytes.size());
    if (!it->second.bytes.empty()) std::memcpy(out.Data(), it->second.bytes.data(), it->second.bytes.size());
    result = out;
  } else {
    auto out = Napi::Float64Array::New(env, it->second.doubles.size());
    if (!it->second.doubles.empty()) std::memcpy(out.Data(), it->second.doubles.data(), it->second.doubles.size() * sizeof(double));
    result = out;
  }
  g_pending.erase(it);
  return result;
}

Napi::Value MpiFinalize(const Napi::CallbackInfo& info) {
  if (g_api.initialized && !g_api.finalized) {
    g_api.finalized = true;
    g_api.finalize();
  }
  return info.Env().Undefined();
}

Napi::Value MpiAbort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  if (g_api.initialized && !g_api.finalized) g_api.abort(g_api.comm_world, code);
  return env.Undefined();
}

}  // namespace

void InitMpi(Napi::Env env, Napi::Object exports) {
  exports.Set("mpiLoad", Napi::Function::New<MpiLoad>(env, "mpiLoad"));
  exports.Set("mpiInit", Napi::Function::New<MpiInit>(env, "mpiInit"));
  exports.Set("mpiIallreduce", Napi::Function::New<MpiIallreduce>(env, "mpiIallreduce"));
  exports.Set("mpiIbcast", Napi::Function::New<MpiIbcast>(env, "mpiIbcast"));
  exports.Set("mpiTest", Napi::Function::New<MpiTest>(env, "mpiTest"));
  exports.Set("mpiFinalize", Napi::Function::New<MpiFinalize>(env, "mpiFinalize"));
  exports.Set("mpiAbort", Napi::Function::New<MpiAbort>(env, "mpiAbort"));
}
