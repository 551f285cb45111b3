#pragma once
// ---- qzo CUDA runtime: the numerics contract of docs/ARCHITECTURE.md section 4, and the kernels ----
// Device memory is managed here: weights are copied to the device once, cached by host pointer;
// graph inputs, temporaries and outputs live in a grow-only workspace. See docs/CUDA.md.

// Included at the top of every generated .cu (templates/cuda/program.cu.njk). One header per concern,
// each including what it uses, in dependency order.
#include "common.cuh"
#include "numerics.cuh"
#include "readers.cuh"
#include "operand.cuh"
#include "dequant.cuh"
#include "mma.cuh"
#include "tiles.cuh"
#include "pipe.cuh"
#include "launch_tiles.cuh"
#include "small.cuh"
#include "matmul.cuh"
#include "losses.cuh"
#include "embedding.cuh"
#include "norms.cuh"
#include "attention.cuh"
#include "elementwise.cuh"
#include "perturb.cuh"
#include "memory.cuh"
#include "check.cuh"
