// accel's own GEMM: C = op(A) @ op(B), so a captured step keeps its matmuls
// inside one CUDA graph (CuPy refuses cuBLAS calls during stream capture).
#include "common.cuh"

// Tile shape: each block computes a GEMM_BM x GEMM_BN tile of C, stepping
// through k GEMM_BK at a time; GEMM_THREADS threads each own a 4x4 micro-tile,
// strided by 16 (rows ty + 16*r, columns tx + 16*c) so a warp reads shared
// memory without bank conflicts and stores 16 consecutive columns of C.
#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
#define GEMM_THREADS 256
#define GEMM_PAD 4  // skews the shared rows so the k-fastest stores of a non-transposed A spread over banks

// op(A) is m x k, op(B) is k x n, C is m x n row-major with row stride ldc.
// trans_a = 0: op(A)[i, p] = a[i*lda + p]; 1: op(A)[i, p] = a[p*lda + i] (the
// transposed view of a row-major array). Likewise b with trans_b and ldb. The
// leading dimensions are row strides in elements, so column slices and
// transposed views run without copies. k == 0 is the launcher's (zeros).
// block: GEMM_THREADS (256) threads in x. grid: (any, any, splits); the tiles
// are grid-strided in x and y. Split-k:
// block z sums p in [z*k_split, (z+1)*k_split) only and writes its partial C
// at c + z*ldz (gemm_sum_splits adds the partials); one split: k_split >= k.
template <typename T>
__global__ void __launch_bounds__(GEMM_THREADS, 3)
    gemm_tiled(T* __restrict__ c, const T* __restrict__ a, const T* __restrict__ b, int m, int n, int k,
               long long lda, long long ldb, long long ldc, int trans_a, int trans_b, long long k_split,
               long long ldz) {
  typedef ACC(T) A;
  __shared__ A as[GEMM_BK][GEMM_BM + GEMM_PAD];  // as[p][i] = op(A)[i0 + i, p0 + p]
  __shared__ A bs[GEMM_BK][GEMM_BN + GEMM_PAD];  // bs[p][j] = op(B)[p0 + p, j0 + j]
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const long long k0 = blockIdx.z * k_split, k1 = k0 + k_split < k ? k0 + k_split : k;
  c += blockIdx.z * ldz;
  for (long long i0 = (long long)blockIdx.y * GEMM_BM; i0 < m; i0 += (long long)gridDim.y * GEMM_BM)
    for (long long j0 = (long long)blockIdx.x * GEMM_BN; j0 < n; j0 += (long long)gridDim.x * GEMM_BN) {
      A acc[4][4];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[r][q] = A(0);
      for (long long p0 = k0; p0 < k1; p0 += GEMM_BK) {
        // Each tile holds 64 x 16 = 4 * 256 elements. The thread -> element map
        // follows the operand's memory order, so a warp's loads are coalesced.
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int e = tid + r * GEMM_THREADS;
          const int i = trans_a ? e % GEMM_BM : e / GEMM_BK, p = trans_a ? e / GEMM_BM : e % GEMM_BK;
          const long long gi = i0 + i;
          const long long gp = p0 + p;
          A v = A(0);
          if (gi < m && gp ACCEL_LE k1) v = ld(a, trans_a ? gp * lda + gi : gi * lda + gp);  // ACCEL_LE: <
          as[p][i] = v;
        }
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int e = tid + r * GEMM_THREADS;
          const int j = trans_b ? e / GEMM_BK : e % GEMM_BN, p = trans_b ? e % GEMM_BK : e / GEMM_BN;
          const long long gj = j0 + j;
          const long long gp = p0 + p;
          A v = A(0);
          if (gj < n && gp < k1) v = ld(b, trans_b ? gj * ldb + gp : gp * ldb + gj);
          bs[p][j] = v;
        }
        __syncthreads();
#pragma unroll
        for (int p = 0; p < GEMM_BK; ++p) {
          A x[4], y[4];
#pragma unroll
          for (int r = 0; r < 4; ++r) x[r] = as[p][ty + 16 * r];
#pragma unroll
          for (int q = 0; q < 4; ++q) y[q] = bs[p][tx + 16 * q];
#pragma unroll
          for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[r][q] += x[r] * y[q];
        }
#ifndef ACCEL_BUG_MISSING_SYNC  // planted mutation: TSan must see the tiles overwritten while read
        __syncthreads();  // the next k step overwrites the tiles
#endif
      }
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const long long gi = i0 + ty + 16 * r;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const long long gj = j0 + tx + 16 * q;
          if (gi < m && gj < n) st(c, gi * ldc + gj, acc[r][q]);
        }
      }
    }
}

// c[i] = sum over z of parts[z*mn + i], z in order (deterministic): the
// partials of a split-k gemm_tiled, C-contiguous [splits, m, n] into [m, n].
template <typename T>
__global__ void gemm_sum_splits(T* c, const T* parts, int splits, long long mn) {
  typedef ACC(T) A;
  GRID_STRIDE(i, mn) {
    A s = ld(parts, i);
    for (int z = 1; z < splits; ++z) s += ld(parts, z * mn + i);
    st(c, i, s);
  }
}
