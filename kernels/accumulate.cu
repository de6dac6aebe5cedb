// Gradient accumulation and row scatter-add (embedding / gather backward).
#include "common.cuh"

// a += b, in place.
template <typename T>
__global__ void accumulate(T* a, const T* b, long long n) {
  GRID_STRIDE(i, n) st(a, i, ld(a, i) + ld(b, i));
}

// out[idx[i], :] += src[i, :] with atomics: the fast path, but the order of
// the additions (so the float result) varies from run to run when indices
// repeat. Rows outside [0, out_rows) are skipped.
template <typename T, typename I>
__global__ void scatter_add_rows(T* out, const I* idx, const T* src, long long nidx, int cols,
                                 long long out_rows) {
  GRID_STRIDE(k, nidx * cols) {
    const long long i = k / cols, j = k - i * cols;
    const long long r = (long long)idx[i];
    if (r >= 0 && r < out_rows) atomicAdd(out + r * cols + j, src[k]);
  }
}

// Deterministic path. The host sorts the indices (stable argsort `perm`) and
// splits them into nseg runs of equal index: run s covers perm[seg[s]:seg[s+1]]
// and targets output row seg_row[s]. One thread per (run, column) adds its
// run in sorted order, so the result is the same on every run.
template <typename T, typename I>
__global__ void scatter_add_rows_sorted(T* out, const T* src, const I* perm, const long long* seg,
                                        const I* seg_row, long long nseg, int cols, long long out_rows) {
  typedef ACC(T) A;
  GRID_STRIDE(k, nseg * cols) {
    const long long s = k / cols, j = k - s * cols;
    const long long r = (long long)seg_row[s];
    if (r < 0 || r >= out_rows) continue;
    A t = ld(out, r * cols + j);
    for (long long q = seg[s]; q < seg[s + 1]; ++q) t += ld(src, (long long)perm[q] * cols + j);
    st(out, r * cols + j, t);
  }
}
