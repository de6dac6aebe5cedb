// Loss backward kernels.
// softmax_xent_*: dlogits = g[:, None] * (softmax(logits) - labels), the row
// softmax recomputed in the same kernel (nothing but logits is saved). One
// block per row (rows grid-strided), blockDim.x a multiple of 32. g is read at
// r * g_stride: stride 0 takes the broadcast cotangent of a mean without a copy.
#include "common.cuh"

// Row max and sum of exp(x - max), in A; every thread of the block gets both.
template <typename T, typename A>
__device__ __forceinline__ void row_softmax_stats(const T* x, int cols, A* red, A& mx, A& sum) {
  A m = lim<A>::ninf();
  for (int j = threadIdx.x; j < cols; j += blockDim.x) m = m_max(m, ld(x, j));
  mx = block_reduce(m, red, MaxOp(), lim<A>::ninf());
  A s = 0;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) s += m_exp(ld(x, j) - mx);
  sum = block_reduce(s, red, SumOp(), A(0));
}

// Dense labels [rows, cols] (one-hot or soft).
template <typename T>
__global__ void softmax_xent_dense_bwd(T* dlogits, const T* logits, const T* labels, const T* g,
                                       long long g_stride, long long rows, int cols) {
  typedef ACC(T) A;
  __shared__ A red[32];
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {  // uniform over the block
    const long long off = r * cols;
    A mx, sum;
    row_softmax_stats(logits + off, cols, red, mx, sum);
    const A gr = ld(g, r * g_stride);
    const A scale = gr / sum;
    for (int j = threadIdx.x; j < cols; j += blockDim.x)
      st(dlogits, off + j, m_exp(ld(logits, off + j) - mx) * scale - gr * ld(labels, off + j));
  }
}

// Sparse integer labels [rows]. An out-of-range label gives a NaN row (what
// TensorFlow's GPU kernel does; its CPU kernel raises).
template <typename T, typename L>
__global__ void softmax_xent_sparse_bwd(T* dlogits, const T* logits, const L* labels, const T* g,
                                        long long g_stride, long long rows, int cols) {
  typedef ACC(T) A;
  __shared__ A red[32];
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const long long off = r * cols;
    A mx, sum;
    row_softmax_stats(logits + off, cols, red, mx, sum);
    const L lab = labels[r];
    const bool bad = lab < 0 || lab >= cols;
    const A gr = ld(g, r * g_stride), scale = gr / sum;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      A d = m_exp(ld(logits, off + j) - mx) * scale - (j == lab ? gr : A(0));
      st(dlogits, off + j, bad ? lim<A>::nan() : d);
    }
  }
}

// Forward loss of sparse softmax cross-entropy, one block per row:
// loss[r] = log(sum exp(x - max)) - (x[label] - max), as log_softmax then pick.
// An out-of-range label gives NaN.
template <typename T, typename L>
__global__ void softmax_xent_sparse_fwd(T* loss, const T* logits, const L* labels, long long rows, int cols) {
  typedef ACC(T) A;
  __shared__ A red[32];
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const long long off = r * cols;
    A mx, sum;
    row_softmax_stats(logits + off, cols, red, mx, sum);
    if (threadIdx.x == 0) {
      const L lab = labels[r];
      const bool bad = lab < 0 || lab >= cols;
      st(loss, r, bad ? lim<A>::nan() : m_log(sum) - (ld(logits, off + lab) - mx));
    }
  }
}

// Sigmoid cross-entropy backward, elementwise: gx = g*(sigmoid(x) - z).
template <typename T>
__global__ void sigmoid_xent_bwd(T* gx, const T* x, const T* z, const T* g, long long n) {
  typedef ACC(T) A;
  GRID_STRIDE(i, n) {
    A xi = ld(x, i);
    A e = m_exp(xi > 0 ? -xi : xi);
    A s = xi > 0 ? A(1) / (A(1) + e) : e / (A(1) + e);
    st(gx, i, ld(g, i) * (s - ld(z, i)));
  }
}
