// In-place optimizer updates, one pass over memory, matching Keras 3's
// update_step formulas operation by operation (keras/src/optimizers/*.py), so
// that float32 results equal Keras' up to libm differences in sqrt-free code.
// The registry compiles this family with --fmad=false for the same reason.
//
// Scalars are computed on the host in Keras' own precision and passed ready:
//   om_b = (1 - b) as Keras forms it, alpha = lr*sqrt(1-b2^t)/(1-b1^t) for Adam.
// wd != 0 applies Keras' decoupled weight decay first: p = p - p*wd*lr
// (base_optimizer._apply_weight_decay, with the raw learning rate).
// Optional state (vhat, momentum, mean gradient) is passed as a null pointer
// when unused; the test is uniform across the grid.
#include "common.cuh"

template <typename A> __device__ __forceinline__ A decay(A p, A wd, A lr) {
  return wd != A(0) ? p - p * wd * lr : p;
}

// SGD without momentum: p -= g*lr.
template <typename T>
__global__ void sgd_update(T* p, const T* g, ACC(T) lr, ACC(T) wd, long long n) {
  GRID_STRIDE(i, n) st(p, i, decay(ld(p, i), wd, lr) - ld(g, i) * lr);
}

// m = m*momentum - g*lr; p += m, or p += m*momentum - g*lr (nesterov).
template <typename T>
__global__ void sgd_momentum_update(T* p, T* m, const T* g, ACC(T) lr, ACC(T) momentum,
                                    int nesterov, ACC(T) wd, long long n) {
  typedef ACC(T) A;
  GRID_STRIDE(i, n) {
    A gl = ld(g, i) * lr;
    A mi = ld(m, i) * momentum - gl;
    st(m, i, mi);
    A pi = decay(ld(p, i), wd, lr);
    st(p, i, nesterov ? pi + (mi * momentum - gl) : pi + mi);
  }
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
