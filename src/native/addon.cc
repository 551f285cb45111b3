// qzo_native: loads a generated kernel library (a shared object) and calls its
// exported kernels with JavaScript typed arrays passed by pointer, without copies.
//
// A kernel library exports:
//   const char* qzo_manifest(void);     JSON describing the kernels
//   const char* qzo_last_error(void);   optional: the message of the last failure
//   int NAME(void** ptrs, const double* scalars, int64_t n_ptrs, int64_t n_scalars);
//                                       one per kernel; 0 = success
//
// JavaScript API (wrapped by src/native/index.ts):
//   open(path) -> Library
//   lib.manifest() -> string
//   lib.has(name) -> boolean
//   lib.call(name, args) -> number     args: (TypedArray | number | bigint)[]
//   lib.lastError() -> string | null
//   lib.close()
//   mpiLoad, mpiInit, mpiIallreduce, mpiIbcast, mpiTest, mpiFinalize, mpiAbort
//                                       the MPI binding (mpi.cc)
//
// Built without C++ exceptions: failures become pending JavaScript exceptions.

#include <napi.h>

#include <dlfcn.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

void InitMpi(Napi::Env env, Napi::Object exports);  // mpi.cc

namespace {

using KernelFn = int (*)(void**, const double*, int64_t, int64_t);
using StringFn = const char* (*)();

// OpenMP runtimes start worker threads that outlive a kernel call; unloading the
// runtime under them (when the last kernel library that needs it is closed)
// crashes the process. Pin whichever of them a library brought in.
const char* const kPinnedRuntimes[] = {"libgomp.so.1", "libomp.so", "libomp.so.5", "libiomp5.so"};

void PinRuntimes() {
  for (const char* name : kPinnedRuntimes) {
    // Only promotes a library that is already loaded; the handle is never closed.
    (void)dlopen(name, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
  }
}

std::string DlError(const char* fallback) {
  const char* e = dlerror();
  return e != nullptr ? std::string(e) : std::string(fallback);
}

napi_value ThrowError(napi_env env, const std::string& message) {
  napi_throw_error(env, nullptr, message.c_str());
  return nullptr;
}

napi_value ThrowTypeError(napi_env env, const std::string& message) {
  napi_throw_type_error(env, nullptr, message.c_str());
  return nullptr;
}

class Library : public Napi::ObjectWrap<Library> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Library",
                       {
                           InstanceMethod<&Library::Manifest>("manifest"),
                           InstanceMethod<&Library::Has>("has"),
                           InstanceMethod<&Library::Call>("call"),
                           InstanceMethod<&Library::LastError>("lastError"),
                           InstanceMethod<&Library::Close>("close"),
                           InstanceAccessor<&Library::Path>("path"),
                       });
  }

  explicit Library(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Library>(info) {
    napi_env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) {
      ThrowTypeError(env, "open(path): the path must be a string");
      return;
    }
    path_ = info[0].As<Napi::String>().Utf8Value();
    dlerror();
    handle_ = dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) {
      ThrowError(env, DlError("dlopen failed"));
      return;
    }
    PinRuntimes();
    last_error_ = reinterpret_cast<StringFn>(dlsym(handle_, "qzo_last_error"));
  }

  ~Library() override { Unload(); }

 private:
  bool CheckOpen(napi_env env) {
    if (handle_ != nullptr) return true;
    ThrowError(env, "the kernel library is closed");
    return false;
  }

  Napi::Value Path(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), path_); }

  Napi::Value Manifest(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    if (!CheckOpen(env)) return Napi::Value();
    dlerror();
    auto fn = reinterpret_cast<StringFn>(dlsym(handle_, "qzo_manifest"));
    if (fn == nullptr) return Napi::Value(env, ThrowError(env, "does not export qzo_manifest"));
    const char* json = fn();
    if (json == nullptr) return Napi::Value(env, ThrowError(env, "qzo_manifest returned NULL"));
    return Napi::String::New(env, json);
  }

  // Looks a kernel up once; later calls hit the cache. Null when not exported.
  KernelFn Lookup(const std::string& name) {
    auto it = kernels_.find(name);
    if (it != kernels_.end()) return it->second;
    dlerror();
    auto fn = reinterpret_cast<KernelFn>(dlsym(handle_, name.c_str()));
    if (fn != nullptr) kernels_.emplace(name, fn);
    return fn;
  }

  Napi::Value Has(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    if (!CheckOpen(env)) return Napi::Value();
    if (info.Length() < 1 || !info[0].IsString()) {
      return Napi::Value(env, ThrowTypeError(env, "has(name): the name must be a string"));
    }
    return Napi::Boolean::New(env, Lookup(info[0].As<Napi::String>().Utf8Value()) != nullptr);
  }

  Napi::Value Call(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    if (!CheckOpen(env)) return Napi::Value();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) {
      return Napi::Value(env, ThrowTypeError(env, "call(name, args): expected a kernel name and an array of arguments"));
    }
    std::string name = info[0].As<Napi::String>().Utf8Value();
    KernelFn fn = Lookup(name);
    if (fn == nullptr) return Napi::Value(env, ThrowError(env, "exports no kernel '" + name + "'"));

    napi_value args = info[1];
    uint32_t count = 0;
    if (napi_get_array_length(env, args, &count) != napi_ok) return Napi::Value();
    ptrs_.clear();
    scalars_.clear();
    for (uint32_t i = 0; i < count; i++) {
      napi_value v;
      if (napi_get_element(env, args, i, &v) != napi_ok) return Napi::Value();
      bool is_typed = false;
      napi_is_typedarray(env, v, &is_typed);
      if (is_typed) {
        napi_typedarray_type type;
        size_t length = 0;
        void* data = nullptr;  // already advanced by the view's byteOffset
        napi_value buffer;
        size_t byte_offset = 0;
        if (napi_get_typedarray_info(env, v, &type, &length, &data, &buffer, &byte_offset) != napi_ok) {
          return Napi::Value();
        }
        ptrs_.push_back(data);
        continue;
      }
      napi_valuetype t;
      napi_typeof(env, v, &t);
      if (t == napi_number) {
        double d = 0;
        napi_get_value_double(env, v, &d);
        scalars_.push_back(d);
      } else if (t == napi_bigint) {
        int64_t x = 0;
        bool lossless = false;
        napi_get_value_bigint_int64(env, v, &x, &lossless);
        double d = static_cast<double>(x);
        // Scalars travel as doubles: refuse a bigint that a double cannot hold exactly.
        if (!lossless || d >= 9223372036854775808.0 || static_cast<int64_t>(d) != x) {
          return Napi::Value(env, ThrowError(env, "call('" + name + "'): argument " + std::to_string(i) +
                                                      " is a bigint that a double cannot hold exactly"));
        }
        scalars_.push_back(d);
      } else {
        return Napi::Value(env, ThrowTypeError(env, "call('" + name + "'): argument " + std::to_string(i) +
                                                        " must be a typed array, a number or a bigint"));
      }
    }
    int rc = fn(ptrs_.data(), scalars_.data(), static_cast<int64_t>(ptrs_.size()),
                static_cast<int64_t>(scalars_.size()));
    return Napi::Number::New(env, rc);
  }

  Napi::Value LastError(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    if (!CheckOpen(env)) return Napi::Value();
    const char* msg = last_error_ != nullptr ? last_error_() : nullptr;
    if (msg == nullptr) return info.Env().Null();
    return Napi::String::New(env, msg);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Unload();
    return info.Env().Undefined();
  }

  void Unload() {
    kernels_.clear();
    last_error_ = nullptr;
    if (handle_ != nullptr) {
      dlclose(handle_);
      handle_ = nullptr;
    }
  }

  std::string path_;
  void* handle_ = nullptr;
  StringFn last_error_ = nullptr;
  std::unordered_map<std::string, KernelFn> kernels_;
  std::vector<void*> ptrs_;      // reused across calls
  std::vector<double> scalars_;  // reused across calls
};

struct AddonData {
  Napi::FunctionReference library;
};

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonData* data = env.GetInstanceData<AddonData>();
  napi_value arg = info.Length() > 0 ? static_cast<napi_value>(info[0]) : env.Undefined();
  napi_value result = nullptr;
  // A pending exception from the constructor propagates to the caller of open().
  napi_new_instance(env, data->library.Value(), 1, &arg, &result);
  return Napi::Value(env, result);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function library = Library::Define(env);
  auto* data = new AddonData();
  data->library = Napi::Persistent(library);
  env.SetInstanceData<AddonData>(data);
  exports.Set("open", Napi::Function::New<Open>(env, "open"));
  exports.Set("Library", library);
  InitMpi(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(qzo_native, Init)
