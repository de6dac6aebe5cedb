// In-place optimizer updates, one pass over memory, matching Keras 3's
// update_step formulas operation by operation (keras/src/optimizers/*.py), so
// that float32 results equal Keras' up to libm differences in sqrt-free code.
// The registry compiles this family with --fmad=false for the same reason.
//
// Scalars are computed on the host in Keras' own precision and passed ready:
//   om_b = (1 - b) as Keras forms it, alpha = lr*sqrt(1-b2^t)/(1-b1^t) for Adam
//   (except the device-step kernels at the end, which form alpha on the device).
// wd != 0 applies Keras' decoupled weight decay first: p = p - p*wd*lr
// (base_optimizer._apply_weight_decay, with the raw learning rate).
// Optional state (vhat, momentum, mean gradient) is passed as a null pointer
// when unused; the test is uniform across the grid.
#include "common.cuh"

template <typename A> __device__ __forceinline__ A decay(A p, A wd, A lr) {
  return wd != A(0) ? p - p * wd * lr : p;
}

// SGD without momentum: p -= g*lr.
template <typename T, typename A>
__device__ __forceinline__ void sgd_step(T* p, const T* g, long long i, A lr, A wd) {
  st(p, i, decay(ld(p, i), wd, lr) - ld(g, i) * lr);
}

template <typename T>
__global__ void sgd_update(T* p, const T* g, ACC(T) lr, ACC(T) wd, long long n) {
  GRID_STRIDE(i, n) sgd_step(p, g, i, lr, wd);
}

// m = m*momentum - g*lr; p += m, or p += m*momentum - g*lr (nesterov).
template <typename T, typename A>
__device__ __forceinline__ void sgd_momentum_step(T* p, T* m, const T* g, long long i, A lr, A momentum,
                                                  int nesterov, A wd) {
  A gl = ld(g, i) * lr;
  A mi = ld(m, i) * momentum - gl;
  st(m, i, mi);
  A pi = decay(ld(p, i), wd, lr);
  st(p, i, nesterov ? pi + (mi * momentum - gl) : pi + mi);
}

template <typename T>
__global__ void sgd_momentum_update(T* p, T* m, const T* g, ACC(T) lr, ACC(T) momentum,
                                    int nesterov, ACC(T) wd, long long n) {
  GRID_STRIDE(i, n) sgd_momentum_step(p, m, g, i, lr, momentum, nesterov, wd);
}

template <typename T, typename A>
__device__ __forceinline__ void adam_step(T* p, T* m, T* v, T* vhat, const T* g, long long i,
                                          A alpha, A om_b1, A om_b2, A eps, A lr, A wd) {
  A gi = ld(g, i);
  A mi = ld(m, i), vi = ld(v, i);
  mi = mi + (gi - mi) * om_b1;
  vi = vi + (gi * gi - vi) * om_b2;
  st(m, i, mi);
  st(v, i, vi);
  if (vhat) {  // amsgrad
    vi = m_max(ld(vhat, i), vi);
    st(vhat, i, vi);
  }
  A pi = decay(ld(p, i), wd, lr);
  st(p, i, pi - (mi * alpha) / (m_sqrt(vi) + eps));
}

// Adam / AdamW (wd != 0) / AMSGrad (vhat != null).
template <typename T>
__global__ void adam_update(T* p, T* m, T* v, T* vhat, const T* g, ACC(T) alpha, ACC(T) om_b1,
                            ACC(T) om_b2, ACC(T) eps, ACC(T) lr, ACC(T) wd, long long n) {
  GRID_STRIDE(i, n) adam_step(p, m, v, vhat, g, i, alpha, om_b1, om_b2, eps, lr, wd);
}

// Multi-tensor Adam: tensor k = blockIdx.y, its elements grid-strided over x.
// vhats is null, or an array whose entries are all non-null (amsgrad).
template <typename T>
__global__ void adam_multi_update(T* const* ps, T* const* ms, T* const* vs, T* const* vhats,
                                  const T* const* gs, const long long* sizes, ACC(T) alpha,
                                  ACC(T) om_b1, ACC(T) om_b2, ACC(T) eps, ACC(T) lr, ACC(T) wd) {
  const int k = blockIdx.y;
  T* vhat = vhats ? vhats[k] : (T*)0;
  GRID_STRIDE(i, sizes[k])
    adam_step(ps[k], ms[k], vs[k], vhat, gs[k], i, alpha, om_b1, om_b2, eps, lr, wd);
}

// RMSprop: v = rho*v + (1-rho)*g^2; centered: mg = rho*mg + (1-rho)*g and
// denom = v - mg^2 + eps, else v + eps (eps inside the sqrt, as Keras);
// incr = lr*g/sqrt(denom); momentum (mom != null): mom = momentum*mom + incr, p -= mom.
template <typename T>
__global__ void rmsprop_update(T* p, T* v, T* mom, T* mg, const T* g, ACC(T) lr, ACC(T) rho,
                               ACC(T) om_rho, ACC(T) momentum, ACC(T) eps, ACC(T) wd, long long n) {
  typedef ACC(T) A;
  GRID_STRIDE(i, n) {
    A gi = ld(g, i);
    A vi = rho * ld(v, i) + om_rho * (gi * gi);
    st(v, i, vi);
    A denom;
    if (mg) {
      A mgi = rho * ld(mg, i) + om_rho * gi;
      st(mg, i, mgi);
      denom = vi - mgi * mgi + eps;
    } else {
      denom = vi + eps;
    }
    A incr = (lr * gi) / m_sqrt(denom);
    A pi = decay(ld(p, i), wd, lr);
    if (mom) {
      A mo = momentum * ld(mom, i) + incr;
      st(mom, i, mo);
      st(p, i, pi - mo);
    } else {
      st(p, i, pi - incr);
    }
  }
}

// Adagrad: acc += g^2; p -= lr*g/sqrt(acc + eps).
template <typename T>
__global__ void adagrad_update(T* p, T* acc, const T* g, ACC(T) lr, ACC(T) eps, ACC(T) wd,
                               long long n) {
  typedef ACC(T) A;
  GRID_STRIDE(i, n) {
    A gi = ld(g, i);
    A ai = ld(acc, i) + gi * gi;
    st(acc, i, ai);
    st(p, i, decay(ld(p, i), wd, lr) - (lr * gi) / m_sqrt(ai + eps));
  }
}

// Lion: p -= lr*sign(m*b1 + g*(1-b1)); m = m*b2 + g*(1-b2).
// sign keeps 0 and propagates NaN, like ops.sign.
template <typename T>
__global__ void lion_update(T* p, T* m, const T* g, ACC(T) lr, ACC(T) b1, ACC(T) om_b1, ACC(T) b2,
                            ACC(T) om_b2, ACC(T) wd, long long n) {
  typedef ACC(T) A;
  GRID_STRIDE(i, n) {
    A gi = ld(g, i), mi = ld(m, i);
    A u = mi * b1 + gi * om_b1;
    A s = u > 0 ? A(1) : (u < 0 ? A(-1) : u);
    st(p, i, decay(ld(p, i), wd, lr) - lr * s);
    st(m, i, mi * b2 + gi * om_b2);
  }
}

// ---- device-step updates: every per-step scalar comes from device memory ----
// A CUDA graph freezes by-value kernel arguments, so the step count t cannot be a
// host scalar there. These read the optimizer's int64 iteration counter instead:
// adam_dev_scalars forms alpha for t = *iterations + 1 (one thread), the update
// reads it, and step_increment advances the counter after the updates.

// r*b as a double-double (rh + rl), b = bh + bl; error about 2^-104 relative.
__device__ __forceinline__ void dd_mul(double& rh, double& rl, double bh, double bl) {
  double p = rh * bh;
  double e = fma(rh, bh, -p) + (rh * bl + rl * bh);
  rh = p + e;
  rl = e - (rh - p);
}

// b^t for an integer t, correctly rounded to double except where the exact value
// lies within about 2^-100 of a rounding boundary (square-and-multiply in
// double-double: at most 126 products for any t). The host computes np.power
// through libm, which is not always correctly rounded, so the two can differ by
// one ulp of b^t for some t (tests/kernels/test_device_step_kernels.py).
__device__ __forceinline__ double pow_int(double b, long long t) {
  unsigned long long n = t < 0 ? 0ull - (unsigned long long)t : (unsigned long long)t;
  double rh = 1.0, rl = 0.0, bh = b, bl = 0.0;
  while (n) {
    if (n & 1ull) dd_mul(rh, rl, bh, bl);
    n >>= 1;
    if (n) dd_mul(bh, bl, bh, bl);
  }
  double r = rh + rl;
  return t < 0 ? 1.0 / r : r;
}

// alpha[0] = lr*sqrt(1 - b2^t)/(1 - b1^t) with t = *iterations + 1, in A and in
// the host's order (accel.cpu_kernels.adam_alpha): t is first rounded to A, as
// the host's A(t) does. b1, b2: A(float32(beta)); one thread does the work.
template <typename A>
__global__ void adam_dev_scalars(const long long* iterations, A* alpha, A lr, A b1, A b2) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    const long long t = (long long)(A)(*iterations + 1);
    const A p2 = (A)pow_int((double)b2, t);
    const A p1 = (A)pow_int((double)b1, t);
    alpha[0] = lr * m_sqrt(A(1) - p2) / (A(1) - p1);
  }
}

// *iterations += 1, after the step's updates (stream order).
template <typename I>
__global__ void step_increment(I* iterations) {
  if (blockIdx.x == 0 && threadIdx.x == 0) iterations[0] += 1;
}

// adam_multi_update with alpha read from device memory (adam_dev_scalars' output).
template <typename T>
__global__ void adam_multi_update_dev(T* const* ps, T* const* ms, T* const* vs, T* const* vhats,
                                      const T* const* gs, const long long* sizes, const ACC(T)* alpha,
                                      ACC(T) om_b1, ACC(T) om_b2, ACC(T) eps, ACC(T) lr, ACC(T) wd) {
  const int k = blockIdx.y;
  const ACC(T) a = alpha[0];
  T* vhat = vhats ? vhats[k] : (T*)0;
  GRID_STRIDE(i, sizes[k])
    adam_step(ps[k], ms[k], vs[k], vhat, gs[k], i, a, om_b1, om_b2, eps, lr, wd);
}

// Multi-tensor SGD (no per-step scalar): tensor k = blockIdx.y; ms null: no momentum.
template <typename T>
__global__ void sgd_multi_update(T* const* ps, T* const* ms, const T* const* gs, const long long* sizes,
                                 ACC(T) lr, ACC(T) momentum, int nesterov, ACC(T) wd) {
  const int k = blockIdx.y;
  if (ms) {
    GRID_STRIDE(i, sizes[k]) sgd_momentum_step(ps[k], ms[k], gs[k], i, lr, momentum, nesterov, wd);
  } else {
    GRID_STRIDE(i, sizes[k]) sgd_step(ps[k], gs[k], i, lr, wd);
  }
}
