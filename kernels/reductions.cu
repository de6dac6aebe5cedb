// Backward kernels with reductions: bias-add, layer norm; plus dropout.
#include "common.cuh"

// Column sums of a row-major [rows, cols] matrix, deterministic (no atomics).
// Block = (32, BY): lane x owns a column of a 32-column tile, the BY rows of
// threads stride over the rows, then thread row 0 adds the BY partials in a
// fixed order. Column tiles are grid-strided over blockIdx.x.
// With xs != null the summand is g*(x - mean[r])*rstd[r] (layer norm's dgamma).
template <typename T, typename A>
__device__ __forceinline__ void column_sums(T* out, const T* g, const T* xs, const A* mean,
                                            const A* rstd, long long rows, int cols, A (*red)[32]) {
  for (int c0 = blockIdx.x * 32; c0 < cols; c0 += gridDim.x * 32) {
    const int c = c0 + threadIdx.x;
    A s = 0;
    if (c < cols)
      for (long long r = threadIdx.y; r < rows; r += blockDim.y) {
        A gv = ld(g, r * cols + c);
        s += xs ? gv * (ld(xs, r * cols + c) - mean[r]) * rstd[r] : gv;
      }
    red[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
      A t = 0;
      for (int k = 0; k < (int)blockDim.y; ++k) t += red[k][threadIdx.x];
      st(out, c, t);
    }
    __syncthreads();  // red[] is rewritten by the next tile
  }
}

// db[c] = sum_r g[r, c]   (blockDim = (32, BY), BY <= 32)
template <typename T>
__global__ void bias_add_bwd(T* db, const T* g, long long rows, int cols) {
  typedef ACC(T) A;
  __shared__ A red[32][32];
  column_sums<T, A>(db, g, (const T*)0, (const A*)0, (const A*)0, rows, cols, red);
}

// Dropout: gx = mask ? g*scale : 0, mask a bool (uint8) array.
template <typename T>
__global__ void dropout_bwd(T* gx, const T* g, const unsigned char* mask, ACC(T) scale, long long n) {
  GRID_STRIDE(i, n) st(gx, i, mask[i] ? ld(g, i) * scale : ACC(T)(0));
}

// Layer norm over the last axis, y = xhat*gamma + beta, xhat = (x - mean)*rstd.
// dx = rstd*(gh - mean_j(gh) - xhat*mean_j(gh*xhat)), gh = g*gamma (gamma may be null = 1).
// One block per row (grid-strided), blockDim.x a multiple of 32.
template <typename T>
__global__ void layer_norm_bwd(T* dx, const T* g, const T* x, const ACC(T) * mean, const ACC(T) * rstd,
                               const T* gamma, long long rows, int cols) {
  typedef ACC(T) A;
  __shared__ A red[32];
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    const long long off = r * cols;
    const A mu = mean[r], rs = rstd[r];
    A s1 = 0, s2 = 0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      A gh = ld(g, off + j) * (gamma ? ld(gamma, j) : A(1));
      s1 += gh;
      s2 += gh * (ld(x, off + j) - mu) * rs;
    }
    s1 = block_reduce(s1, red, SumOp(), A(0)) / cols;
    s2 = block_reduce(s2, red, SumOp(), A(0)) / cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) {
      A gh = ld(g, off + j) * (gamma ? ld(gamma, j) : A(1));
      A xh = (ld(x, off + j) - mu) * rs;
      st(dx, off + j, rs * (gh - s1 - xh * s2));
    }
  }
}

// dgamma[c] = sum_r g*xhat, dbeta[c] = sum_r g   (blockDim = (32, BY))
template <typename T>
__global__ void layer_norm_bwd_params(T* dgamma, T* dbeta, const T* g, const T* x, const ACC(T) * mean,
                                      const ACC(T) * rstd, long long rows, int cols) {
  typedef ACC(T) A;
  __shared__ A red[32][32];
  column_sums<T, A>(dgamma, g, x, mean, rstd, rows, cols, red);
  column_sums<T, A>(dbeta, g, (const T*)0, (const A*)0, (const A*)0, rows, cols, red);
}
