// Activation backward kernels: gx = g * f'(.) in one pass.
// Signature: output, upstream g, the saved value, scalars, n.
// Which saved value each kernel reads (the op must save exactly that):
//   x   (forward input):  relu, relu6, leaky_relu, gelu, gelu_tanh, silu, softplus
//   out (forward output): elu, selu, sigmoid, tanh
// For relu/relu6/leaky_relu (alpha > 0), out works too: the sign tests agree.
// Subgradients follow TensorFlow: relu'(0) = 0, relu6' = 1 only on (0, 6),
// leaky_relu' = alpha for x <= 0.
#include "common.cuh"

template <typename T>
__global__ void relu_bwd(T* gx, const T* g, const T* x, long long n) {
  GRID_STRIDE(i, n) st(gx, i, ld(x, i) > 0 ? ld(g, i) : ACC(T)(0));
}

template <typename T>
__global__ void relu6_bwd(T* gx, const T* g, const T* x, long long n) {
  GRID_STRIDE(i, n) {
    ACC(T) xi = ld(x, i);
    st(gx, i, (xi > 0 && xi < 6) ? ld(g, i) : ACC(T)(0));
  }
}

template <typename T>
__global__ void leaky_relu_bwd(T* gx, const T* g, const T* x, ACC(T) alpha, long long n) {
  GRID_STRIDE(i, n) {
    ACC(T) gi = ld(g, i);
    st(gx, i, ld(x, i) > 0 ? gi : gi * alpha);
  }
}

// From out: elu(x) = alpha*(exp(x)-1) for x <= 0, so f' = out + alpha there.
// At x = 0 this gives alpha: TF's EluGrad for alpha = 1, and the slope of
// Keras' where(x > 0, elu, alpha*elu) composite for other alphas.
template <typename T>
__global__ void elu_bwd(T* gx, const T* g, const T* out, ACC(T) alpha, long long n) {
  GRID_STRIDE(i, n) {
    ACC(T) yi = ld(out, i), gi = ld(g, i);
    st(gx, i, yi > 0 ? gi : gi * (yi + alpha));
  }
}

// TF's SeluGrad: out < 0 ? g*(out + scale*alpha) : g*scale (scale at x = 0).
template <typename T>
__global__ void selu_bwd(T* gx, const T* g, const T* out, long long n) {
  typedef ACC(T) A;
  const A scale = A(1.0507009873554804934193349852946);
  const A scale_alpha = A(1.7580993408473768599402175208123);
  GRID_STRIDE(i, n) {
    A yi = ld(out, i), gi = ld(g, i);
    st(gx, i, yi < 0 ? gi * (yi + scale_alpha) : gi * scale);
  }
}

// gelu(x) = x*Phi(x): f' = Phi(x) + x*phi(x).
template <typename T>
__global__ void gelu_bwd(T* gx, const T* g, const T* x, long long n) {
  typedef ACC(T) A;
  const A rsqrt2 = A(0.70710678118654752440), rsqrt2pi = A(0.39894228040143267794);
  GRID_STRIDE(i, n) {
    A xi = ld(x, i);
    A cdf = A(0.5) * (A(1) + m_erf(xi * rsqrt2));
    A pdf = rsqrt2pi * m_exp(A(-0.5) * xi * xi);
    st(gx, i, ld(g, i) * (cdf + xi * pdf));
  }
}

// gelu(x) = 0.5*x*(1 + tanh(u)), u = c*(x + k*x^3).
template <typename T>
__global__ void gelu_tanh_bwd(T* gx, const T* g, const T* x, long long n) {
  typedef ACC(T) A;
  const A c = A(0.79788456080286535588), k = A(0.044715);
  GRID_STRIDE(i, n) {
    A xi = ld(x, i), x2 = xi * xi;
    A t = m_tanh(c * (xi + k * x2 * xi));
    A d = A(0.5) * (A(1) + t) + A(0.5) * xi * (A(1) - t * t) * c * (A(1) + A(3) * k * x2);
    st(gx, i, ld(g, i) * d);
  }
}

// silu(x) = x*s, s = sigmoid(x): f' = s*(1 + x*(1 - s)).
template <typename T>
__global__ void silu_bwd(T* gx, const T* g, const T* x, long long n) {
  typedef ACC(T) A;
  GRID_STRIDE(i, n) {
    A xi = ld(x, i);
    A s = A(1) / (A(1) + m_exp(-xi));
    st(gx, i, ld(g, i) * s * (A(1) + xi * (A(1) - s)));
  }
}

template <typename T>
__global__ void sigmoid_bwd(T* gx, const T* g, const T* out, long long n) {
  typedef ACC(T) A;
  GRID_STRIDE(i, n) {
    A yi = ld(out, i);
    st(gx, i, ld(g, i) * yi * (A(1) - yi));
  }
}

template <typename T>
__global__ void tanh_bwd(T* gx, const T* g, const T* out, long long n) {
  typedef ACC(T) A;
  GRID_STRIDE(i, n) {
    A yi = ld(out, i);
    st(gx, i, ld(g, i) * (A(1) - yi * yi));
  }
}

// softplus' = sigmoid(x), written so that exp never overflows.
template <typename T>
__global__ void softplus_bwd(T* gx, const T* g, const T* x, long long n) {
  typedef ACC(T) A;
  GRID_STRIDE(i, n) {
    A xi = ld(x, i);
    A e = m_exp(xi > 0 ? -xi : xi);
    A s = xi > 0 ? A(1) / (A(1) + e) : e / (A(1) + e);
    st(gx, i, ld(g, i) * s);
  }
}
