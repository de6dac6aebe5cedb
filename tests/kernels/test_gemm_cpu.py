"""Layer C for kernels/gemm.cu: gemm_tiled run on the CPU through kernels/cpu_shim (real barriers between
the 256 threads of a block) against NumPy in float64, with tails in m, n and k, every transpose combination,
leading dimensions larger than the row, and a grid smaller than the tile count (the grid-stride loops).

Operands and C live in NaN-filled buffers: an element read outside the view (a tail or the gap of a
leading dimension) turns results NaN, and a write outside C's view is seen in the guard.

Then the launcher: accel.fused's layout rules (transpose flag and leading dimension from strides) and
gemm_serves on NumPy views, and fused.gemm's own launch (arguments, grid, block) intercepted and replayed
here on the same addresses. Not shown: GPU numerics (FMA, -ftz), races between blocks, speed."""

import shutil

import numpy as np
import pytest

import cpu_build
import references as R

pytestmark = pytest.mark.skipif(not shutil.which("g++"), reason="g++ not installed")

CT = {np.float32: "float", np.float64: "double"}
TILE = 64
GUARD = 16


@pytest.fixture(scope="module")
def lib():
    return cpu_build.load()


def stored(rows, cols, trans, extra, dt, rng):
    """A logical rows x cols operand, stored row-major (trans=0) or as its transpose (trans=1), in a row of
    stride ld = stored columns + extra starting `extra` elements in (a column slice of a wider matrix).
    Returns (logical matrix, flat buffer from the view's first element, ld)."""
    m = rng.standard_normal((rows, cols)).astype(dt)
    srows, scols = (cols, rows) if trans else (rows, cols)
    ld, off = scols + extra, min(extra, 2)
    buf = np.full(off + srows * ld + GUARD, np.nan, dt)
    buf[off:off + srows * ld].reshape(srows, ld)[:, :scols] = m.T if trans else m
    return m, buf[off:], ld


def run(lib, dt, m, k, n, ta=0, tb=0, extra=(0, 0, 0), grid=None, seed=0, k_split=None):
    """C = op(A) @ op(B) by gemm_tiled; with k_split, by partial sums over stretches of k into a [splits, m, n]
    workspace (grid z = splits) that gemm_sum_splits adds up."""
    rng = np.random.default_rng(seed)
    a, abuf, lda = stored(m, k, ta, extra[0], dt, rng)
    b, bbuf, ldb = stored(k, n, tb, extra[1], dt, rng)
    ldc = n + extra[2]
    c = np.full(m * ldc + GUARD, np.nan, dt)
    if grid is None:
        grid = (-(-n // TILE), -(-m // TILE))
    name = "<%s>" % CT[dt]
    if k_split is None:
        lib.launch("gemm_tiled" + name, grid, 256, c, abuf, bbuf, m, n, k, lda, ldb, ldc, ta, tb, k, 0,
                   threaded=True)
    else:
        assert extra[2] == 0, "the partials are C-contiguous"
        splits = -(-k // k_split)
        parts = np.full(splits * m * n + GUARD, np.nan, dt)
        lib.launch("gemm_tiled" + name, grid + (splits,), 256, parts, abuf, bbuf, m, n, k, lda, ldb, n, ta, tb,
                   k_split, m * n, threaded=True)
        assert not np.isnan(parts[:splits * m * n]).any() and np.isnan(parts[splits * m * n:]).all()
        lib.launch("gemm_sum_splits" + name, 3, 128, c, parts, splits, m * n)
    rows = c[:m * ldc].reshape(m, ldc)
    assert np.isnan(rows[:, n:]).all() and np.isnan(c[m * ldc:]).all(), "wrote outside C's view"
    return rows[:, :n], a, b


# (m, k, n, trans_a, trans_b, extra leading dimension of a, b, c, grid or None = one block per tile[, k_split])
CASES = {
    "1x1x1": (1, 1, 1, 0, 0, (0, 0, 0), None),
    "1x1x1-tt": (1, 1, 1, 1, 1, (0, 0, 0), None),
    "k=1": (5, 1, 70, 0, 0, (0, 0, 0), None),
    "k=1-tn": (70, 1, 5, 1, 0, (0, 0, 0), None),
    "one-tile": (64, 16, 64, 0, 0, (0, 0, 0), None),
    **{"tails-%s" % f: (33, 17, 65, int(f[0] == "t"), int(f[1] == "t"), (0, 0, 0), None)
       for f in ("nn", "nt", "tn", "tt")},
    **{"tiles-%s" % f: (65, 33, 130, int(f[0] == "t"), int(f[1] == "t"), (0, 0, 0), None)
       for f in ("nn", "nt", "tn", "tt")},
    "mlp-x@W1": (32, 784, 512, 0, 0, (0, 0, 0), None),
    "mlp-h@W2": (32, 512, 10, 0, 0, (0, 0, 0), None),
    "mlp-x^T@dy": (784, 32, 512, 1, 0, (0, 0, 0), None),
    "mlp-h^T@dy2": (512, 32, 10, 1, 0, (0, 0, 0), None),
    "mlp-dy@W2^T": (32, 10, 512, 0, 1, (0, 0, 0), None),
    "ld-a-slice": (33, 17, 65, 0, 0, (5, 0, 0), None),
    "ld-all-tt": (33, 17, 65, 1, 1, (3, 7, 0), None),
    "ld-c": (33, 40, 65, 0, 1, (0, 1, 9), None),
    "grid-stride": (130, 20, 200, 0, 0, (0, 0, 0), (2, 1)),
    "grid-stride-y": (200, 20, 70, 1, 0, (0, 0, 0), (1, 2)),
    "split-k-mlp": (32, 784, 512, 0, 0, (0, 0, 0), None, 144),  # what fused.gemm picks on 132 multiprocessors
    "split-k-tails-tt": (33, 100, 65, 1, 1, (2, 3, 0), None, 32),  # the last split sums 4 of k
    "split-k-grid-stride": (130, 70, 100, 0, 1, (0, 0, 0), (1, 1), 16),
    "split-k-one-each": (3, 5, 4, 0, 0, (0, 0, 0), None, 1),  # k_split below the k step
}
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dt", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_gemm_matches_numpy(lib, case, dt):
    m, k, n, ta, tb, extra, grid, *k_split = CASES[case]
    got, a, b = run(lib, dt, m, k, n, ta, tb, extra, grid, seed=m * 7 + n, k_split=(k_split or [None])[0])
    R.assert_gemm_close(got, a, b)


def test_the_comparison_sees_a_wrong_transpose_flag(lib):
    got, a, b = run(lib, np.float32, 33, 17, 65, ta=1)
    rng = np.random.default_rng(1)
    other = rng.standard_normal(a.shape).astype(np.float32)
    with pytest.raises(AssertionError, match="elements off"):
        R.assert_gemm_close(got, other, b)  # a product of other operands
    # the same storage read with the flag flipped (a square a, so shapes still fit): another matrix
    sq, abuf, lda = stored(17, 17, 1, 0, np.float32, rng)
    b2, bbuf, ldb = stored(17, 5, 0, 0, np.float32, rng)
    c = np.full(17 * 5, np.nan, np.float32)
    lib.launch("gemm_tiled<float>", (1, 1), 256, c, abuf, bbuf, 17, 5, 17, lda, ldb, 5, 0, 0, 17, 0, threaded=True)
    with pytest.raises(AssertionError, match="elements off"):
        R.assert_gemm_close(c.reshape(17, 5), sq, b2)
    R.assert_gemm_close(c.reshape(17, 5), sq.T, b2)


def test_double_gemm_accumulates_in_double(lib):
    """k products of exactly 1 - 2**-24 sum to k*(1 - 2**-24) in a double accumulator; a float one loses
    every 2**-24 once the sum passes 2 and returns k."""
    k = 1024
    a, b = np.full(k, 1 + 2.0**-12), np.full(k, 1 - 2.0**-12)
    c = np.full(1, np.nan)
    lib.launch("gemm_tiled<double>", (1, 1), 256, c, a, b, 1, 1, k, k, 1, 1, 0, 0, k, 0, threaded=True)
    assert c[0] == k * (1 - 2.0**-24)
    c32 = np.full(1, np.nan, np.float32)
    lib.launch("gemm_tiled<float>", (1, 1), 256, c32, a.astype(np.float32), b.astype(np.float32), 1, 1, k, k, 1, 1,
               0, 0, k, 0, threaded=True)
    R.assert_gemm_close(c32.reshape(1, 1), a.astype(np.float32).reshape(1, k), b.astype(np.float32).reshape(k, 1))


# ---- the launcher's layout rules (accel.fused._gemm_layout) run through the kernel on NumPy views ----

def _views(rng, dt):
    """name -> function (rows, cols) -> a view holding random values in that layout."""
    r = lambda *s: rng.standard_normal(s).astype(dt)  # noqa: E731
    return {
        "C": lambda m, k: r(m, k),
        "F": lambda m, k: r(k, m).T,
        "column-slice": lambda m, k: r(m, k + 5)[:, 2:2 + k],
        "transposed-slice": lambda m, k: r(k, m + 3)[:, 1:1 + m].T,
        "every-other-row": lambda m, k: r(2 * m, k)[::2],
        "broadcast-rows": lambda m, k: np.broadcast_to(r(1, k), (m, k)),  # row stride 0
    }


def _flat(x):
    """A C-contiguous 1-D array starting at x's first element (what the kernel gets as the pointer)."""
    root = x
    while root.base is not None:
        root = root.base
    return root.reshape(-1)[(x.ctypes.data - root.ctypes.data) // x.itemsize:]


LAYOUTS = ["C", "F", "column-slice", "transposed-slice", "every-other-row", "broadcast-rows"]


@pytest.mark.parametrize("dt", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("lb", LAYOUTS)
@pytest.mark.parametrize("la", LAYOUTS)
def test_launcher_layouts_run_right_through_the_kernel(lib, la, lb, dt):
    from accel import fused

    rng = np.random.default_rng(3)
    views = _views(rng, dt)
    for m, k, n in ((33, 17, 65), (1, 5, 3), (4, 1, 1)):
        a, b = views[la](m, k), views[lb](k, n)
        assert fused.gemm_serves(a, b)
        (ta, lda), (tb, ldb) = fused._gemm_layout(a), fused._gemm_layout(b)
        c = np.full((m, n), np.nan, dt)
        lib.launch("gemm_tiled<%s>" % CT[dt], (-(-n // TILE), -(-m // TILE)), 256, c, _flat(a), _flat(b), m, n, k,
                   lda, ldb, n, ta, tb, k, 0, threaded=True)
        R.assert_gemm_close(c, a, b)


_z = np.zeros
SERVES = [
    # (a, b, served)
    (_z((3, 4), np.float32), _z((4, 5), np.float32), True),
    (_z((4, 3)).T, _z((5, 4)).T, True),
    (_z((3, 8))[:, ::2], _z((4, 5)), False),  # column stride 2 in both dimensions of the layout
    (_z((1, 8))[:, ::2], _z((4, 5)), True),  # one row with stride 2: read as a transposed column
    (_z((3, 4))[::-1], _z((4, 5)), False),  # negative row stride
    (_z((3, 4)), _z((4, 5))[:, ::-1], False),  # negative column stride
    (_z((0, 4)), _z((4, 5)), True),
    (_z((3, 0)), _z((0, 5)), True),
    (_z((3, 4), np.float32), _z((4, 5), np.float64), False),
    (_z((3, 4), np.int32), _z((4, 5), np.int32), False),
    (_z((3, 4), np.float16), _z((4, 5), np.float16), False),
    (_z((3, 4)), _z((3, 5)), False),
    (_z((2, 3, 4)), _z((4, 5)), False),
    (_z(4), _z((4, 5)), False),
    ([[1.0, 2.0]], _z((2, 1)), False),
    (np.broadcast_to(_z((1, 4)), (3, 4)), _z((4, 5)), True),  # row stride 0: rows read repeatedly
]


@pytest.mark.parametrize("a,b,served", SERVES, ids=[str(i) for i in range(len(SERVES))])
def test_gemm_serves_numpy_table(a, b, served):
    from accel import fused

    assert fused.gemm_serves(a, b) is served
    problem = fused._gemm_problem(a, b)
    assert (problem is None) is served, problem


# ---- fused.gemm end to end on the CPU: its launch (arguments, grid, block) replayed on the shim ----

def _root(x):
    while x.base is not None:
        x = x.base
    return x


def _as_cupy(cupy, x):
    """A cupy array over x's host addresses (never dereferenced: the launch is intercepted)."""
    root = _root(x)
    mem = cupy.cuda.UnownedMemory(root.ctypes.data, root.nbytes, None, 0)
    return cupy.ndarray(x.shape, x.dtype, cupy.cuda.MemoryPointer(mem, x.ctypes.data - root.ctypes.data),
                        strides=x.strides)


@pytest.mark.parametrize("dt", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("la,lb", [("C", "C"), ("F", "C"), ("C", "F"), ("F", "F"), ("column-slice", "every-other-row"),
                                   ("transposed-slice", "broadcast-rows")])
def test_fused_gemm_launch_runs_right_on_the_shim(lib, monkeypatch, la, lb, dt):
    cupy = pytest.importorskip("cupy")
    from types import SimpleNamespace

    from accel import fused

    launched, host = [], {}  # host: device pointer -> the NumPy array behind a stand-in cupy array

    def stand_in(x):
        y = _as_cupy(cupy, x)
        host[y.data.ptr] = x
        return y

    monkeypatch.setattr(fused, "_launch", lambda *call: launched.append(call))
    monkeypatch.setattr(cupy.cuda, "Device", lambda *_: SimpleNamespace(id=0))  # the current device, no driver
    monkeypatch.setitem(fused._sm_count, 0, 132)  # an H100's multiprocessors: small C splits k
    monkeypatch.setattr(cupy, "empty", lambda shape, dtype: stand_in(np.full(shape, np.nan, dtype)))
    rng = np.random.default_rng(5)
    views = _views(rng, dt)
    for m, k, n, splits in ((33, 17, 65, 1), (130, 20, 70, 1), (1, 3, 1, 1), (32, 400, 130, 3), (70, 300, 20, 2)):
        a, b = views[la](m, k), views[lb](k, n)
        c = np.full((m, n), np.nan, dt)
        out = stand_in(c)
        assert fused.gemm(stand_in(a), stand_in(b), out=out) is out
        assert [call[0] for call in launched] == ["gemm_tiled"] + ["gemm_sum_splits"] * (splits > 1)
        assert launched[0][2][2] == splits
        for kernel, types, grid, block, args in launched:
            assert types == (np.dtype(dt),)
            flat = [_flat(host[x.data.ptr]) if isinstance(x, cupy.ndarray) else x for x in args]
            lib.launch("%s<%s>" % (kernel, CT[dt]), grid, block[0], *flat, threaded=kernel == "gemm_tiled")
        launched.clear()
        R.assert_gemm_close(c, a, b)


@pytest.mark.parametrize("m,k,n,sms,want", [
    (32, 784, 512, 132, (6, 144)),  # 8 tiles: 6 splits of at least 128 of k
    (32, 512, 512, 132, (4, 128)),
    (32, 784, 512, 8, (1, 784)),  # as many tiles as multiprocessors
    (784, 32, 512, 132, (1, 32)),  # k too short to split
    (1, 4096, 1, 132, (16, 256)),  # at most 16 splits
    (32, 300, 10, 132, (2, 160)),  # k_split a multiple of the k step 16; the last split sums 140
    (1000, 1000, 1000, 132, (1, 1000)),
])
def test_gemm_split_choice(m, k, n, sms, want):
    from accel import fused

    assert fused._gemm_splits(m, n, k, sms) == want
    splits, k_split = want
    assert (splits - 1) * k_split < k <= splits * k_split  # every split sums some of k
