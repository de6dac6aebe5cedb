// Runs accel's CUDA kernel *source* on the CPU, for tests only (g++ -std=c++20).
//
// Execution model: blocks run one after another. launch_threaded() runs the
// threads of a block as real std::threads, so __syncthreads() is a real
// barrier (mutex + condvar, which ThreadSanitizer understands) and a
// `__shared__` variable (a function-local static here) is shared by exactly
// the threads of the running block. Full-mask warp shuffles are emulated with
// a per-warp barrier and exchange slots. launch_sequential() runs every
// thread on the calling thread: fast, for kernels without barriers or
// shuffles (those abort with a message there).
//
// Not modelled: races between blocks, warp lockstep, partial-mask shuffles,
// GPU numerics (FTZ, FMA contraction, CUDA libm), occupancy, registers.
#pragma once
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define ACCEL_CPU_SHIM 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static

struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

namespace cpucuda {

[[noreturn]] inline void die(const char* msg) {
  std::fprintf(stderr, "cuda_cpu_shim: %s\n", msg);
  std::abort();
}

class Barrier {
 public:
  explicit Barrier(unsigned n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const unsigned gen = gen_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return gen != gen_; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  unsigned n_, arrived_ = 0, gen_ = 0;
};

struct Block {
  unsigned nthreads = 1;
  bool threaded = false;
  std::unique_ptr<Barrier> barrier;
  std::vector<std::unique_ptr<Barrier>> warp_barriers;
  std::vector<uint64_t> slots;  // one exchange slot per thread
};
inline thread_local Block* current = nullptr;

inline Block* threaded_block(const char* what) {
  if (current == nullptr || !current->threaded) die(what);
  return current;
}
inline unsigned linear_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

// Every lane of the warp publishes v; returns the value of lane `src` of the
// same warp, or v itself when `src` is out of range (CUDA's shfl_down/xor rule).
template <class T> T warp_exchange(T v, unsigned src) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffles of types over 8 bytes are not emulated");
  Block* b = threaded_block("warp shuffles need launch_threaded()");
  const unsigned tid = linear_tid(), warp = tid / 32, base = warp * 32;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  b->slots[tid] = bits;
  b->warp_barriers[warp]->wait();
  T out = v;
  if (src < 32 && base + src < b->nthreads) std::memcpy(&out, &b->slots[base + src], sizeof(T));
  b->warp_barriers[warp]->wait();  // nobody overwrites a slot before all have read
  return out;
}

template <class... P, class... A>
void launch_threaded(void (*kernel)(P...), dim3 grid, dim3 block, A... args) {
  const unsigned nt = block.x * block.y * block.z;
  if (nt == 0 || nt > 1024) die("block size must be 1..1024 threads");
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        Block blk;
        blk.nthreads = nt;
        blk.threaded = true;
        blk.barrier = std::make_unique<Barrier>(nt);
        for (unsigned w = 0; w * 32 < nt; ++w)
          blk.warp_barriers.push_back(std::make_unique<Barrier>(nt - w * 32 < 32 ? nt - w * 32 : 32));
        blk.slots.assign(nt, 0);
        std::vector<std::thread> threads;
        threads.reserve(nt);
        for (unsigned t = 0; t < nt; ++t)
          threads.emplace_back([&, t] {
            current = &blk;
            gridDim = grid;
            blockDim = block;
            blockIdx = {bx, by, bz};
            threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            kernel(args...);
          });
        for (auto& th : threads) th.join();
      }
}

template <class... P, class... A>
void launch_sequential(void (*kernel)(P...), dim3 grid, dim3 block, A... args) {
  Block blk;
  blk.nthreads = block.x * block.y * block.z;
  current = &blk;
  gridDim = grid;
  blockDim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx)
        for (unsigned t = 0; t < blk.nthreads; ++t) {
          blockIdx = {bx, by, bz};
          threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
          kernel(args...);
        }
  current = nullptr;
}

}  // namespace cpucuda

// ---- the device API subset accel's kernels use ----
inline void __syncthreads() { cpucuda::threaded_block("__syncthreads needs launch_threaded()")->barrier->wait(); }

template <class T> T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const unsigned lane = cpucuda::linear_tid() % 32, seg = lane / width * width;
  const unsigned src = lane + delta;
  return cpucuda::warp_exchange(v, src < seg + width ? src : 32u);
}
template <class T> T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  const unsigned lane = cpucuda::linear_tid() % 32, seg = lane / width * width;
  const unsigned src = lane ^ (unsigned)mask;
  return cpucuda::warp_exchange(v, src < seg + width ? src : 32u);
}
template <class T> T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const unsigned lane = cpucuda::linear_tid() % 32, seg = lane / width * width;
  return cpucuda::warp_exchange(v, seg + (unsigned)src % width);
}

// atomicAdd for any trivially copyable arithmetic type (float, double,
// _Float16, integers): compare-and-swap on the bit pattern.
template <class T> T atomicAdd(T* addr, T val) {
  using Bits = std::conditional_t<sizeof(T) == 2, uint16_t, std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>;
  static_assert(sizeof(T) == sizeof(Bits), "atomicAdd: unsupported size");
  std::atomic_ref<Bits> ref(*reinterpret_cast<Bits*>(addr));
  Bits old_bits = ref.load();
  for (;;) {
    T old, sum;
    std::memcpy(&old, &old_bits, sizeof(T));
    sum = (T)(old + val);
    Bits new_bits;
    std::memcpy(&new_bits, &sum, sizeof(T));
    if (ref.compare_exchange_weak(old_bits, new_bits)) return old;
  }
}

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, sizeof f); return f; }
inline float __int_as_float(unsigned i) { float f; std::memcpy(&f, &i, sizeof f); return f; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, sizeof d); return d; }
