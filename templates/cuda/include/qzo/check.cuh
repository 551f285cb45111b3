#pragma once
// QZO_CHECK, QZO_LAUNCHED, QZO_ALLOC: the error returns of the generated host code (the message
// goes to qzo::last_error).
#include "common.cuh"

#define QZO_CHECK(call, what)                                                              \
  do {                                                                                     \
    const cudaError_t qzo_e = (call);                                                      \
    if (qzo_e != cudaSuccess) {                                                            \
      qzo::last_error = std::string(what) + ": " + cudaGetErrorString(qzo_e);              \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)
#define QZO_LAUNCHED(what) QZO_CHECK(cudaGetLastError(), what)
#define QZO_ALLOC(ptr, expr)                                                               \
  do {                                                                                     \
    ptr = (expr);                                                                          \
    if (!(ptr)) return 1;                                                                  \
  } while (0)
