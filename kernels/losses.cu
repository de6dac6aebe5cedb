// Loss kernels.
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
template <typename T, typename L, typename A>
__device__ __forceinline__ void sparse_xent_bwd_row(T* dlogits, const T* logits, const L* labels, long long r,
                                                    int cols, A gr, A* red) {
  const long long off = r * cols;
  A mx, sum;
  row_softmax_stats(logits + off, cols, red, mx, sum);
  const L lab = labels[r];
  const bool bad = lab < 0 || lab >= cols;
  const A scale = gr / sum;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    A d = m_exp(ld(logits, off + j) - mx) * scale - (j == lab ? gr : A(0));
    st(dlogits, off + j, bad ? lim<A>::nan() : d);
  }
}

template <typename T, typename L>
__global__ void softmax_xent_sparse_bwd(T* dlogits, const T* logits, const L* labels, const T* g,
                                        long long g_stride, long long rows, int cols) {
  typedef ACC(T) A;
  __shared__ A red[32];
  for (long long r = blockIdx.x; r < rows; r += gridDim.x)
    sparse_xent_bwd_row(dlogits, logits, labels, r, cols, A(ld(g, r * g_stride)), red);
}

// The loss gradient of mean(sparse softmax cross-entropy) in one launch: g is the
// mean's cotangent (one element) and every row takes g / rows, computed here
// instead of by a separate division and broadcast (rows >= 1).
template <typename T, typename L>
__global__ void softmax_xent_sparse_mean_bwd(T* dlogits, const T* logits, const L* labels, const T* g,
                                             long long rows, int cols) {
  typedef ACC(T) A;
  __shared__ A red[32];
  const A gr = ld(g, 0) / A(rows);
  for (long long r = blockIdx.x; r < rows; r += gridDim.x)
    sparse_xent_bwd_row(dlogits, logits, labels, r, cols, gr, red);
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

// v reduced over the warp, every lane gets the result (butterfly: a fixed order).
template <typename A, typename Op> __device__ __forceinline__ A warp_all(A v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// mean over the rows of the sparse softmax cross-entropy loss, in ONE block (launch
// grid 1; other blocks return): warp w takes rows w, w + warps, ... (a warp per row,
// lanes over the classes), its lane 0 keeps the warp's running sum of the row losses,
// then the block adds the warps' sums and thread 0 writes sum / rows. The loss rows
// never reach memory. Deterministic, but not NumPy's pairwise summation order.
// An out-of-range label makes the mean NaN. rows >= 1.
template <typename T, typename L>
__global__ void softmax_xent_sparse_mean_fwd(T* mean, const T* logits, const L* labels, long long rows, int cols) {
  typedef ACC(T) A;
  __shared__ A red[32];
  if (blockIdx.x != 0) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  A acc = 0;
  for (long long r = warp; r < rows; r += warps) {  // uniform over the warp
    const T* x = logits + r * cols;
    A mx = lim<A>::ninf();
    for (int j = lane; j < cols; j += 32) mx = m_max(mx, ld(x, j));
    mx = warp_all(mx, MaxOp());
    A sum = 0;
    for (int j = lane; j < cols; j += 32) sum += m_exp(ld(x, j) - mx);
    sum = warp_all(sum, SumOp());
    if (lane == 0) {
      const L lab = labels[r];
      const bool bad = lab < 0 || lab >= cols;
      acc += bad ? lim<A>::nan() : m_log(sum) - (ld(x, lab) - mx);
    }
  }
  const A total = block_reduce(acc, red, SumOp(), A(0));
  if (threadIdx.x == 0) st(mean, 0, total / A(rows));
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
