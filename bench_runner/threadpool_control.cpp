#include "threadpool_control.h"

#include <cstdint>

#if defined(FBNET_WITH_THREADPOOL) && FBNET_WITH_THREADPOOL

// The pip wheel exports get_threadpool() from libexecutorch_threadpool.so but
// does not ship extension/threadpool/threadpool.h (which also pulls in
// pthreadpool.h). Declare the two non-virtual members we call; their mangled
// names and signatures match ExecuTorch's ThreadPool:
//   size_t ThreadPool::get_thread_count() const;
//   bool   ThreadPool::_unsafe_reset_threadpool(uint32_t num_threads);
//   ThreadPool* get_threadpool();
// This translation unit deliberately never includes the real header, so only
// one declaration of the class is ever visible to the compiler here. The
// object is only used through a pointer, so its layout is irrelevant.
namespace executorch {
namespace extension {
namespace threadpool {
class ThreadPool final {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);

 private:
  ThreadPool() = delete;
};
ThreadPool* get_threadpool();
}  // namespace threadpool
}  // namespace extension
}  // namespace executorch

namespace fbnet_bench {

bool threadpool_available() { return true; }

bool set_threadpool_size(size_t threads) {
  if (threads < 1) return false;
  auto* pool = ::executorch::extension::threadpool::get_threadpool();
  if (pool == nullptr) return false;
  if (pool->get_thread_count() == threads) return true;
  if (!pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads))) {
    return false;
  }
  return pool->get_thread_count() == threads;
}

size_t threadpool_size() {
  auto* pool = ::executorch::extension::threadpool::get_threadpool();
  return pool == nullptr ? 1 : pool->get_thread_count();
}

}  // namespace fbnet_bench

#else  // no thread pool library linked

namespace fbnet_bench {
bool threadpool_available() { return false; }
bool set_threadpool_size(size_t threads) { return threads == 1; }
size_t threadpool_size() { return 1; }
}  // namespace fbnet_bench

#endif
