// Shared helpers for accel's kernel families (kernels/*.cu).
// Compiled by NVRTC (cupy.RawModule; accel.kernel_registry inlines this file)
// and by g++ through kernels/cpu_shim for CPU tests: no inline PTX, and no
// __CUDA_ARCH__-only code.
#pragma once
#include <cuda_fp16.h>

// Compute ("accumulator") type: __half loads widen to float, math runs in
// float, and the result is rounded once on store.
template <typename T> struct acc_type { typedef T type; };
template <> struct acc_type<__half> { typedef float type; };
#define ACC(T) typename acc_type<T>::type

__device__ __forceinline__ float ld(const __half* p, long long i) { return __half2float(p[i]); }
__device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ double ld(const double* p, long long i) { return p[i]; }
__device__ __forceinline__ void st(__half* p, long long i, float v) { p[i] = __float2half(v); }
__device__ __forceinline__ void st(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void st(double* p, long long i, double v) { p[i] = v; }

// Overloads so templated code calls the float or double libm function.
__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float m_erf(float x) { return erff(x); }
__device__ __forceinline__ double m_erf(double x) { return erf(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return fabs(x); }
__device__ __forceinline__ float m_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double m_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float m_sin(float x) { return sinf(x); }
__device__ __forceinline__ double m_sin(double x) { return sin(x); }
__device__ __forceinline__ float m_cos(float x) { return cosf(x); }
__device__ __forceinline__ double m_cos(double x) { return cos(x); }
__device__ __forceinline__ float m_sinh(float x) { return sinhf(x); }
__device__ __forceinline__ double m_sinh(double x) { return sinh(x); }
__device__ __forceinline__ float m_cosh(float x) { return coshf(x); }
__device__ __forceinline__ double m_cosh(double x) { return cosh(x); }
__device__ __forceinline__ float m_floor(float x) { return floorf(x); }
__device__ __forceinline__ double m_floor(double x) { return floor(x); }
// -inf and NaN without <math.h> macros (NVRTC has no libc headers).
template <typename A> struct lim;
template <> struct lim<float> {
  static __device__ __forceinline__ float ninf() { return __int_as_float(0xff800000); }
  static __device__ __forceinline__ float nan() { return __int_as_float(0x7fc00000); }
};
template <> struct lim<double> {
  static __device__ __forceinline__ double ninf() { return __longlong_as_double(0xfff0000000000000LL); }
  static __device__ __forceinline__ double nan() { return __longlong_as_double(0x7ff8000000000000LL); }
};
__device__ __forceinline__ float m_max(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double m_max(double a, double b) { return fmax(a, b); }

// 64-bit grid-stride loop. ACCEL_BUG_OOB is a planted mutation (tests only):
// it lets the loop run one element past the end, which ASan must report.
#ifdef ACCEL_BUG_OOB
#define ACCEL_LE <=
#else
#define ACCEL_LE <
#endif
#define GRID_STRIDE(i, n)                                                        \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i ACCEL_LE(n); \
       i += (long long)blockDim.x * gridDim.x)

// ---- block reductions (blockDim.x must be a multiple of 32, at most 1024) ----
struct SumOp {
  template <typename A> __device__ __forceinline__ A operator()(A a, A b) const { return a + b; }
};
struct MaxOp {
  template <typename A> __device__ __forceinline__ A operator()(A a, A b) const { return m_max(a, b); }
};

template <typename A, typename Op> __device__ __forceinline__ A warp_reduce(A v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}

// Reduces v over the x-dimension of the block; every thread gets the result.
// red: __shared__ scratch of 32 elements, owned by the caller.
template <typename A, typename Op>
__device__ __forceinline__ A block_reduce(A v, A* red, Op op, A identity) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = warp_reduce(v, op);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < nwarps ? red[lane] : identity;
    v = warp_reduce(v, op);
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  v = red[0];
#ifndef ACCEL_BUG_MISSING_SYNC  // planted mutation: TSan must see the race on red[]
  __syncthreads();  // red[] is rewritten by the next reduction
#endif
  return v;
}
