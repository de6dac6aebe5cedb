"""accel.fused.gemm on a real GPU against cupy.matmul (cuBLAS), and inside a CUDA graph capture, where
cupy.matmul cannot run (CuPy refuses cuBLAS calls during stream capture). Skipped without a CUDA device.

Tolerances: the worst-case rounding bound of a length-k dot product (references.assert_gemm_close) for the
kernel against float64, and the same against cuBLAS' own result through float64 of the inputs."""

import numpy as np
import pytest

from accel import backend

import references as R

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not backend.has_gpu(), reason="no CUDA device")]

if backend.has_gpu():
    from accel import fused

    cp = backend.cupy()

DTYPES = [np.float32, np.float64]


def operand(rows, cols, layout, dt, rng):
    """A cupy rows x cols operand in `layout`: C, F (a transposed C-contiguous array) or slice (columns
    2..2+cols of a wider matrix: a row stride larger than the row)."""
    if layout == "C":
        return cp.asarray(rng.standard_normal((rows, cols)).astype(dt))
    if layout == "F":
        return cp.asarray(rng.standard_normal((cols, rows)).astype(dt)).T
    return cp.asarray(rng.standard_normal((rows, cols + 5)).astype(dt))[:, 2:2 + cols]


def check(got, a, b):
    R.assert_gemm_close(cp.asnumpy(got), cp.asnumpy(a), cp.asnumpy(b))
    R.assert_gemm_close(cp.asnumpy(cp.matmul(a, b)), cp.asnumpy(a), cp.asnumpy(b))  # cuBLAS within the same bound


SHAPES = [  # (m, k, n, layout of a, layout of b)
    (1, 1, 1, "C", "C"), (5, 1, 70, "C", "C"), (70, 1, 5, "F", "C"),
    *((33, 17, 65, la, lb) for la in ("C", "F") for lb in ("C", "F")),
    *((65, 33, 130, la, lb) for la in ("C", "F") for lb in ("C", "F")),
    (32, 784, 512, "C", "C"), (32, 512, 10, "C", "C"),  # the MLP forward
    (784, 32, 512, "F", "C"), (512, 32, 10, "F", "C"),  # x^T @ dy
    (32, 10, 512, "C", "F"), (32, 512, 784, "C", "F"),  # dy @ W^T
    (33, 17, 65, "slice", "slice"), (33, 17, 65, "slice", "F"),
    (1000, 300, 700, "C", "C"),  # many tiles
]


@pytest.mark.parametrize("dt", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("m,k,n,la,lb", SHAPES)
def test_gemm_matches_cupy_matmul(m, k, n, la, lb, dt):
    rng = np.random.default_rng(m + k + n)
    a, b = operand(m, k, la, dt, rng), operand(k, n, lb, dt, rng)
    assert fused.gemm_serves(a, b)
    before = dict(fused.launches)
    got = fused.gemm(a, b)
    splits, _ = fused._gemm_splits(m, n, k, fused._multiprocessors())
    assert fused.launches["gemm_tiled"] == before.get("gemm_tiled", 0) + 1
    assert fused.launches["gemm_sum_splits"] == before.get("gemm_sum_splits", 0) + (splits > 1)
    assert got.shape == (m, n) and got.dtype == dt and got.flags.c_contiguous
    check(got, a, b)
    out = cp.full((m, n), cp.nan, dt)
    assert fused.gemm(a, b, out=out) is out
    check(out, a, b)


@pytest.mark.parametrize("m,k,n", [(0, 3, 4), (3, 4, 0), (3, 0, 4), (0, 0, 0)])
def test_gemm_size_zero(m, k, n):
    a, b = cp.ones((m, k), np.float32), cp.ones((k, n), np.float32)
    before = fused.launches["gemm_tiled"]
    got = fused.gemm(a, b)
    assert got.shape == (m, n)
    assert fused.launches["gemm_tiled"] == before
    np.testing.assert_array_equal(cp.asnumpy(got), np.zeros((m, n), np.float32))
    out = cp.full((m, n), cp.nan, np.float32)
    np.testing.assert_array_equal(cp.asnumpy(fused.gemm(a, b, out=out)), np.zeros((m, n), np.float32))


@pytest.mark.parametrize("dt", DTYPES, ids=["float32", "float64"])
def test_an_mlp_steps_gemms_capture_into_one_cuda_graph_and_replay(dt):
    """x@W1, h@W2, dy@W2^T, x^T@dh and h^T@dy (transposed views, no copies) captured on one stream, then
    replayed on new inputs written into the captured buffers."""
    rng = np.random.default_rng(0)
    host = lambda *s: rng.standard_normal(s).astype(dt)  # noqa: E731
    x, w1, w2, dy = (cp.asarray(host(*s)) for s in ((32, 784), (784, 512), (512, 10), (32, 10)))
    h, y, dh, dw1, dw2 = (cp.empty(s, dt) for s in ((32, 512), (32, 10), (32, 512), (784, 512), (512, 10)))

    def step():
        fused.gemm(x, w1, out=h)
        fused.gemm(h, w2, out=y)
        fused.gemm(dy, w2.T, out=dh)
        fused.gemm(x.T, dh, out=dw1)
        fused.gemm(h.T, dy, out=dw2)

    stream = cp.cuda.Stream(non_blocking=True)
    pool = cp.cuda.MemoryPool()  # the graph's own memory (split-k workspaces): nothing else reuses it
    with stream:
        step()  # compiles and loads the module outside the capture
        stream.synchronize()
        before = fused.launches["gemm_tiled"]
        with cp.cuda.using_allocator(pool.malloc):
            stream.begin_capture()
            try:
                step()
            finally:
                graph = stream.end_capture()
        assert fused.launches["gemm_tiled"] == before + 5
        for _ in range(2):
            for buf in (x, dy):
                buf[...] = cp.asarray(host(*buf.shape))
            for buf in (h, y, dh, dw1, dw2):
                buf.fill(cp.nan)
            graph.launch(stream)
            stream.synchronize()
            check(h, x, w1)
            check(y, h, w2)
            check(dh, dy, w2.T)
            check(dw1, x.T, dh)
            check(dw2, h.T, dy)


def test_a_first_gemm_inside_a_capture_after_gemm_prepare():
    """The plan's path: nothing launched the kernel before the capture, only gemm_prepare loaded it."""
    fused._modules.clear()
    fused.gemm_prepare(np.float32)
    rng = np.random.default_rng(2)
    # C of 4 tiles and k = 300: split in two (a workspace allocated in the capture, then the partials' sum)
    a, b = (cp.asarray(rng.standard_normal(s).astype(np.float32)) for s in ((32, 300), (300, 200)))
    assert fused._gemm_splits(32, 200, 300, fused._multiprocessors())[0] == 2
    out = cp.empty((32, 200), np.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    pool = cp.cuda.MemoryPool()
    with stream, cp.cuda.using_allocator(pool.malloc):
        stream.begin_capture()
        try:
            fused.gemm(a, b, out=out)
        finally:
            graph = stream.end_capture()
        out.fill(cp.nan)
        graph.launch(stream)
        stream.synchronize()
    check(out, a, b)


def test_cupy_matmul_cannot_be_captured():
    """Why the kernel exists: the capture refuses cuBLAS (if a CuPy release lifts this, the test says so)."""
    a = cp.ones((4, 4), np.float32)
    cp.matmul(a, a)  # cuBLAS handle created outside the capture
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            with pytest.raises(NotImplementedError, match="capture"):
                cp.matmul(a, a)
        finally:
            stream.end_capture()
