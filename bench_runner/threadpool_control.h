// Control of ExecuTorch's process-wide thread pool (used by XNNPACK and the
// optimized CPU kernels).
#pragma once

#include <cstddef>

namespace fbnet_bench {

// True when the runner was built against ExecuTorch's thread pool library.
bool threadpool_available();

// Resizes the pool to `threads` (>= 1). Must be called before any method is
// loaded: the XNNPACK delegate captures the pool when a method is initialised,
// so resizing afterwards would leave loaded methods pointing at a destroyed
// pool. Returns false when resizing failed or no pool is available.
bool set_threadpool_size(size_t threads);

// Current pool size; 1 when no pool is available.
size_t threadpool_size();

}  // namespace fbnet_bench
