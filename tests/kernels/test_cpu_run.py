"""Layer C: the unchanged kernels/*.cu run on the CPU through kernels/cpu_shim
(g++, ctypes) and match NumPy references.

Proves kernel logic (indexing, grid-stride tails, block reductions with shared
memory, barriers and warp shuffles, fp16 rounding); not GPU numerics or races
between blocks (blocks run one after another here).
"""

import shutil

import numpy as np
import pytest

from accel import kernel_registry as reg

import cpu_build
import generated_refs as GR
import references as R

pytestmark = pytest.mark.skipif(not shutil.which("g++"), reason="g++ not installed")

DTYPES = {"float16": np.float16, "float32": np.float32, "float64": np.float64}
CT = {np.float16: "__half", np.float32: "float", np.float64: "double", np.int32: "int", np.int64: "long long"}
TOL = {
    np.float16: dict(rtol=2e-3, atol=2e-3),
    np.float32: dict(rtol=2e-6, atol=1e-6),
    np.float64: dict(rtol=1e-13, atol=1e-14),
}
# (n, grid, block): one element; a partial warp; a non-multiple of the block with the
# grid-stride loop taken several times (3*128 < 1000); a large array.
SIZES = [(1, 1, 32), (31, 1, 32), (1000, 3, 128), (1 << 18, 16, 256)]


@pytest.fixture(scope="module")
def lib():
    return cpu_build.load()


def name(kernel, *types):
    return "%s<%s>" % (kernel, ", ".join(CT[np.dtype(t).type] for t in types))


def close(got, want, dt):
    np.testing.assert_allclose(
        got.astype(np.float64), np.asarray(want, np.float64).astype(dt).astype(np.float64), **TOL[dt]
    )


def test_every_registry_instantiation_is_in_the_shim(lib):
    assert set(lib.index) == set(reg.all_name_expressions())


@pytest.mark.parametrize("n,grid,block", SIZES)
@pytest.mark.parametrize("dt", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("act", GR.KERNELS)
def test_activation_bwd(lib, act, dt, n, grid, block):
    rng = np.random.default_rng(n)
    g, saved = GR.act_inputs(act, n, dt, rng)
    gx = np.full(n + 1, np.nan, dt)  # one guard element past the end
    args = (gx, g, saved) + ((GR.alpha(act),) if GR.alpha(act) is not None else ()) + (n,)
    lib.launch(name(act + "_bwd", dt), grid, block, *args)
    if act in R.CANCELS and dt != np.float16:
        # f' = a - b with a ~ b in the tails: float32/64 math loses absolute accuracy there
        np.testing.assert_allclose(
            gx[:n],
            GR.act_grad_ref(act, g, saved),
            rtol=TOL[dt]["rtol"],
            atol=1e-5 if dt == np.float32 else 1e-13,
        )
    else:
        close(gx[:n], GR.act_grad_ref(act, g, saved), dt)
    assert np.isnan(gx[n]), "wrote past n"


# ---- optimizers: float32/float64 must equal Keras' op order bit for bit ----


def _state(n, dt, rng, k):
    return [(rng.standard_normal(n) * s).astype(dt) for s in (1.0, 1.0, 0.1, 0.01, 0.01, 0.1)[:k]]


def _check_exact(got, want, dt):
    # float16 state: the kernel computes in float32 and rounds each stored value once,
    # so the float32 reference rounded to float16 must match exactly too.
    np.testing.assert_array_equal(got, np.asarray(want).astype(dt))


def _f32(*arrays):
    return [
        None if a is None else (a.astype(np.float32) if a.dtype == np.float16 else a.copy()) for a in arrays
    ]


OPT_CASES = [
    # (label, kernel, hyperparameters)
    ("adam", "adam_update", dict(lr=1e-3, b1=0.9, b2=0.999, eps=1e-7, t=3, wd=0.0, amsgrad=False)),
    ("adamw_amsgrad", "adam_update", dict(lr=1e-2, b1=0.8, b2=0.99, eps=1e-7, t=11, wd=0.004, amsgrad=True)),
    ("sgd", "sgd_update", dict(lr=0.1, wd=0.0)),
    ("sgd_wd", "sgd_update", dict(lr=0.1, wd=0.01)),
    ("momentum", "sgd_momentum_update", dict(lr=0.05, momentum=0.9, nesterov=False, wd=0.0)),
    ("nesterov", "sgd_momentum_update", dict(lr=0.05, momentum=0.9, nesterov=True, wd=0.0)),
    ("rmsprop", "rmsprop_update", dict(lr=1e-3, rho=0.9, momentum=0.0, eps=1e-7, centered=False, wd=0.0)),
    (
        "rmsprop_centered_mom",
        "rmsprop_update",
        dict(lr=1e-3, rho=0.95, momentum=0.5, eps=1e-7, centered=True, wd=0.0),
    ),
    ("adagrad", "adagrad_update", dict(lr=1e-2, eps=1e-7, wd=0.0)),
    ("lion", "lion_update", dict(lr=1e-4, b1=0.9, b2=0.99, wd=0.0)),
    ("lion_wd", "lion_update", dict(lr=1e-4, b1=0.9, b2=0.99, wd=0.1)),
]


def run_optimizer(lib, kernel, hp, dt, n, grid, block, rng):
    """Runs kernel and the Keras reference; returns [(got, want), ...]."""
    p, g, m, v, vh, mg = _state(n, dt, rng, 6)
    v = (np.abs(v) + mg.astype(np.float32) ** 2).astype(dt)  # centered RMSprop needs v >= mg^2
    vh = np.abs(v) + np.abs(vh)
    cdt = np.float64 if dt == np.float64 else np.float32
    c = lambda x: cdt(x)  # noqa: E731
    if kernel == "adam_update":
        vhat = vh if hp["amsgrad"] else None
        want = R.keras_adam(
            *_f32(p, g, m, v, vhat), hp["lr"], hp["b1"], hp["b2"], hp["eps"], hp["t"], hp["wd"]
        )
        alpha = R.keras_adam_alpha(hp["lr"], hp["b1"], hp["b2"], hp["t"], cdt)
        lib.launch(
            name(kernel, dt),
            grid,
            block,
            p,
            m,
            v,
            vhat,
            g,
            alpha,
            c(1 - hp["b1"]),
            c(1 - hp["b2"]),
            hp["eps"],
            hp["lr"],
            hp["wd"],
            n,
        )
        return [(p, want[0]), (m, want[1]), (v, want[2])] + ([(vhat, want[3])] if vhat is not None else [])
    if kernel == "sgd_update":
        want = R.keras_sgd(*_f32(p, g), None, hp["lr"], 0.0, False, hp["wd"])
        lib.launch(name(kernel, dt), grid, block, p, g, hp["lr"], hp["wd"], n)
        return [(p, want[0])]
    if kernel == "sgd_momentum_update":
        want = R.keras_sgd(*_f32(p, g, m), hp["lr"], hp["momentum"], hp["nesterov"], hp["wd"])
        lib.launch(
            name(kernel, dt), grid, block, p, m, g, hp["lr"], hp["momentum"], int(hp["nesterov"]), hp["wd"], n
        )
        return [(p, want[0]), (m, want[1])]
    if kernel == "rmsprop_update":
        mom = m if hp["momentum"] > 0 else None
        mgr = mg if hp["centered"] else None
        want = R.keras_rmsprop(
            *_f32(p, g, v, mom, mgr), hp["lr"], hp["rho"], hp["momentum"], hp["eps"], hp["wd"]
        )
        lib.launch(
            name(kernel, dt),
            grid,
            block,
            p,
            v,
            mom,
            mgr,
            g,
            hp["lr"],
            hp["rho"],
            c(1 - hp["rho"]),
            hp["momentum"],
            hp["eps"],
            hp["wd"],
            n,
        )
        out = [(p, want[0]), (v, want[1])]
        return (
            out
            + ([(mom, want[2])] if mom is not None else [])
            + ([(mgr, want[3])] if mgr is not None else [])
        )
    if kernel == "adagrad_update":
        want = R.keras_adagrad(*_f32(p, g, v), hp["lr"], hp["eps"], hp["wd"])
        lib.launch(name(kernel, dt), grid, block, p, v, g, hp["lr"], hp["eps"], hp["wd"], n)
        return [(p, want[0]), (v, want[1])]
    if kernel == "lion_update":
        want = R.keras_lion(*_f32(p, g, m), hp["lr"], hp["b1"], hp["b2"], hp["wd"])
        lib.launch(
            name(kernel, dt),
            grid,
            block,
            p,
            m,
            g,
            hp["lr"],
            hp["b1"],
            c(1) - c(hp["b1"]),
            hp["b2"],
            c(1) - c(hp["b2"]),
            hp["wd"],
            n,
        )
        return [(p, want[0]), (m, want[1])]
    raise AssertionError(kernel)


@pytest.mark.parametrize("n,grid,block", SIZES)
@pytest.mark.parametrize("dt", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("label,kernel,hp", OPT_CASES, ids=[c[0] for c in OPT_CASES])
def test_optimizer_matches_keras_exactly(lib, label, kernel, hp, dt, n, grid, block):
    rng = np.random.default_rng(7)
    for got, want in run_optimizer(lib, kernel, hp, dt, n, grid, block, rng):
        _check_exact(got, want, dt)


@pytest.mark.parametrize("dt", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_multi_update_equals_single(lib, dt, amsgrad):
    rng = np.random.default_rng(3)
    sizes = [1, 31, 1000, 4097]
    hp = dict(lr=1e-3, b1=0.9, b2=0.999, eps=1e-7, t=5, wd=0.01)
    cdt = np.float64 if dt == np.float64 else np.float32
    alpha = R.keras_adam_alpha(hp["lr"], hp["b1"], hp["b2"], hp["t"], cdt)
    scal = (alpha, cdt(1 - hp["b1"]), cdt(1 - hp["b2"]), hp["eps"], hp["lr"], hp["wd"])
    multi, single = [], []
    for n in sizes:
        p, g, m, v, vh = _state(n, dt, rng, 5)
        v, vh = np.abs(v), np.abs(v) + np.abs(vh)
        multi.append([p, m, v, vh if amsgrad else None, g])
        single.append([a.copy() if a is not None else None for a in multi[-1]])
    ptrs = lambda k: np.array([t[k].ctypes.data for t in multi], np.uint64)  # noqa: E731
    lib.launch(
        name("adam_multi_update", dt),
        (2, len(sizes)),
        64,
        ptrs(0),
        ptrs(1),
        ptrs(2),
        ptrs(3) if amsgrad else None,
        ptrs(4),
        np.array(sizes, np.int64),
        *scal,
    )
    for (p, m, v, vh, g), n in zip(single, sizes, strict=False):
        lib.launch(name("adam_update", dt), 2, 64, p, m, v, vh, g, *scal, n)
    for a, b in zip(multi, single, strict=False):
        for x, y in zip(a, b, strict=False):
            if x is not None:
                np.testing.assert_array_equal(x, y)


# ---- losses and reductions: block reductions run with real threads per block ----

SOFTMAX_SHAPES = [(1, 1), (5, 10), (3, 257), (9, 33)]


@pytest.mark.parametrize("rows,cols", SOFTMAX_SHAPES)
@pytest.mark.parametrize("labels", ["dense", "int32", "int64"])
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
def test_softmax_xent_bwd(lib, dt, labels, rows, cols):
    rng = np.random.default_rng(rows * cols)
    logits = (3 * rng.standard_normal((rows, cols))).astype(dt)
    g = rng.standard_normal(rows).astype(dt)
    out = np.full((rows, cols), np.nan, dt)
    if labels == "dense":
        lab = rng.dirichlet(np.ones(cols), rows).astype(dt)
        lib.launch(name("softmax_xent_dense_bwd", dt), 4, 64, out, logits, lab, g, 1, rows, cols, threaded=True)
    else:
        lab = rng.integers(0, cols, rows).astype(labels)
        lib.launch(
            name("softmax_xent_sparse_bwd", dt, lab.dtype),
            4,
            64,
            out,
            logits,
            lab,
            g,
            1,
            rows,
            cols,
            threaded=True,
        )
    close(out, R.softmax_xent_ref(logits, lab, g, labels != "dense"), dt)
    if labels == "int32":  # g read with stride 0: one value broadcast over the rows
        out0 = np.full((rows, cols), np.nan, dt)
        lib.launch(name("softmax_xent_sparse_bwd", dt, lab.dtype), 2, 64, out0, logits, lab, g, 0, rows, cols,
                   threaded=True)
        close(out0, R.softmax_xent_ref(logits, lab, np.full(rows, g[0]), True), dt)


@pytest.mark.parametrize("rows,cols", SOFTMAX_SHAPES)
@pytest.mark.parametrize("lt", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
def test_softmax_xent_sparse_fwd(lib, dt, lt, rows, cols):
    rng = np.random.default_rng(rows + cols)
    logits = (3 * rng.standard_normal((rows, cols))).astype(dt)
    lab = rng.integers(0, cols, rows).astype(lt)
    loss = np.full(rows, np.nan, dt)
    lib.launch(name("softmax_xent_sparse_fwd", dt, lt), 4, 64, loss, logits, lab, rows, cols, threaded=True)
    close(loss, R.sparse_xent_loss_ref(logits, lab), dt)


def test_softmax_xent_sparse_fwd_bad_label_gives_nan(lib):
    loss = np.zeros(3, np.float32)
    lab = np.array([1, 4, -1], np.int32)
    lib.launch("softmax_xent_sparse_fwd<float, int>", 1, 32, loss, np.zeros((3, 4), np.float32), lab, 3, 4,
               threaded=True)
    np.testing.assert_allclose(loss[0], np.log(4), rtol=1e-6)
    assert np.isnan(loss[1:]).all()


def test_softmax_xent_sparse_bad_label_gives_nan_row(lib):
    logits = np.zeros((3, 4), np.float32)
    lab = np.array([1, 4, -1], np.int32)
    out = np.zeros((3, 4), np.float32)
    lib.launch(
        "softmax_xent_sparse_bwd<float, int>",
        1,
        32,
        out,
        logits,
        lab,
        np.ones(3, np.float32),
        1,
        3,
        4,
        threaded=True,
    )
    assert np.isfinite(out[0]).all() and np.isnan(out[1:]).all()


# (rows, cols, block): one row; fewer rows than warps; rows over several turns of the warps, with the
# classes over several turns of the lanes
MEAN_CASES = [(1, 1, 32), (7, 10, 128), (32, 10, 64), (100, 70, 128), (33, 257, 512)]


@pytest.mark.parametrize("rows,cols,block", MEAN_CASES)
@pytest.mark.parametrize("lt", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
def test_softmax_xent_sparse_mean_fwd(lib, dt, lt, rows, cols, block):
    rng = np.random.default_rng(rows * cols + 7)
    logits = (3 * rng.standard_normal((rows, cols))).astype(dt)
    lab = rng.integers(0, cols, rows).astype(lt)
    want = R.sparse_xent_loss_ref(logits, lab).mean()
    for grid in (1, 3):  # one block computes the mean; any other block returns at once
        mean = np.full(2, np.nan, dt)  # one guard element past the end
        lib.launch(name("softmax_xent_sparse_mean_fwd", dt, lt), grid, block, mean, logits, lab, rows, cols,
                   threaded=True)
        close(mean[:1], [want], dt)
        assert np.isnan(mean[1])


def test_softmax_xent_sparse_mean_fwd_bad_label_gives_nan(lib):
    mean = np.zeros(1, np.float32)
    lib.launch("softmax_xent_sparse_mean_fwd<float, int>", 1, 64, mean, np.zeros((3, 4), np.float32),
               np.array([1, 4, 0], np.int32), 3, 4, threaded=True)
    assert np.isnan(mean[0])


@pytest.mark.parametrize("rows,cols", SOFTMAX_SHAPES + [(32, 10)])
@pytest.mark.parametrize("lt", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
def test_softmax_xent_sparse_mean_bwd(lib, dt, lt, rows, cols):
    rng = np.random.default_rng(rows * cols + 8)
    logits = (3 * rng.standard_normal((rows, cols))).astype(dt)
    lab = rng.integers(0, cols, rows).astype(lt)
    g = rng.standard_normal(1).astype(dt)
    out = np.full((rows, cols), np.nan, dt)
    lib.launch(name("softmax_xent_sparse_mean_bwd", dt, lt), 4, 64, out, logits, lab, g, rows, cols, threaded=True)
    close(out, R.softmax_xent_ref(logits, lab, np.full(rows, g[0] / rows), True), dt)
    # the same as the row kernel given g / rows with stride 0 (what eager launches after its division)
    row = np.full((rows, cols), np.nan, dt)
    lib.launch(name("softmax_xent_sparse_bwd", dt, lt), 4, 64, row, logits, lab, (g / dt(rows)).astype(dt), 0,
               rows, cols, threaded=True)
    np.testing.assert_array_equal(out, row)


@pytest.mark.parametrize("n,grid,block", SIZES)
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
def test_sigmoid_xent_bwd(lib, dt, n, grid, block):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 30).astype(dt)  # large |x|: exp must not overflow
    z = rng.random(n).astype(dt)
    g = rng.standard_normal(n).astype(dt)
    out = np.full(n, np.nan, dt)
    lib.launch(name("sigmoid_xent_bwd", dt), grid, block, out, x, z, g, n)
    close(out, g.astype(np.float64) * (R._sigmoid(x) - z), dt)


COLSUM_SHAPES = [(1, 1), (37, 70), (1000, 3), (64, 129)]


@pytest.mark.parametrize("rows,cols", COLSUM_SHAPES)
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
def test_bias_add_bwd(lib, dt, rows, cols):
    g = np.random.default_rng(rows).standard_normal((rows, cols)).astype(dt)
    db = np.full(cols, np.nan, dt)
    lib.launch(name("bias_add_bwd", dt), 2, (32, 4), db, g, rows, cols, threaded=True)
    close(db, g.astype(np.float64).sum(axis=0), dt)


@pytest.mark.parametrize("n,grid,block", SIZES)
@pytest.mark.parametrize("dt", DTYPES.values(), ids=DTYPES.keys())
def test_dropout_bwd(lib, dt, n, grid, block):
    rng = np.random.default_rng(n)
    g = rng.standard_normal(n).astype(dt)
    mask = rng.random(n) < 0.7
    out = np.full(n, np.nan, dt)
    lib.launch(name("dropout_bwd", dt), grid, block, out, g, mask.view(np.uint8), 1 / 0.7, n)
    close(out, np.where(mask, g.astype(np.float64) / 0.7, 0), dt)


@pytest.mark.parametrize("rows,cols", [(1, 1), (5, 10), (3, 257), (33, 64)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
def test_layer_norm_bwd(lib, dt, affine, rows, cols):
    rng = np.random.default_rng(rows + cols)
    x = rng.standard_normal((rows, cols)).astype(dt)
    g = rng.standard_normal((rows, cols)).astype(dt)
    mean = x.astype(np.float64).mean(axis=1)
    rstd = 1 / np.sqrt(x.astype(np.float64).var(axis=1) + 1e-3)
    mean, rstd = mean.astype(dt), rstd.astype(dt)
    gamma = rng.standard_normal(cols).astype(dt) if affine else None
    dx = np.full((rows, cols), np.nan, dt)
    dgamma, dbeta = np.full(cols, np.nan, dt), np.full(cols, np.nan, dt)
    lib.launch(name("layer_norm_bwd", dt), 4, 64, dx, g, x, mean, rstd, gamma, rows, cols, threaded=True)
    lib.launch(
        name("layer_norm_bwd_params", dt),
        2,
        (32, 4),
        dgamma,
        dbeta,
        g,
        x,
        mean,
        rstd,
        rows,
        cols,
        threaded=True,
    )
    want = R.layer_norm_ref(g, x, mean, rstd, gamma)
    tol = dict(rtol=1e-4, atol=1e-5) if dt == np.float32 else TOL[dt]
    for got, w in zip((dx, dgamma, dbeta), want, strict=False):
        np.testing.assert_allclose(got, w, **tol)


# ---- accumulate ----


@pytest.mark.parametrize("n,grid,block", SIZES)
@pytest.mark.parametrize("dt", DTYPES.values(), ids=DTYPES.keys())
def test_accumulate(lib, dt, n, grid, block):
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)
    want = (a.astype(np.float32) + b).astype(dt) if dt == np.float16 else a + b
    lib.launch(name("accumulate", dt), grid, block, a, b, n)
    np.testing.assert_array_equal(a, want)


def _scatter_case(dt, it, nidx, rows, cols, rng):
    idx = rng.integers(-1, rows + 1, nidx).astype(it)  # repeats, plus out-of-range rows that must be skipped
    src = rng.standard_normal((nidx, cols)).astype(dt)
    out = rng.standard_normal((rows, cols)).astype(dt)
    want = out.astype(np.float64)
    ok = (idx >= 0) & (idx < rows)
    np.add.at(want, idx[ok], src[ok].astype(np.float64))
    return idx, src, out, want


SCATTER_SHAPES = [(1, 1, 1), (50, 7, 3), (1000, 20, 33)]


@pytest.mark.parametrize("nidx,rows,cols", SCATTER_SHAPES)
@pytest.mark.parametrize("it", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("dt", DTYPES.values(), ids=DTYPES.keys())
def test_scatter_add_rows(lib, dt, it, nidx, rows, cols):
    idx, src, out, want = _scatter_case(dt, it, nidx, rows, cols, np.random.default_rng(nidx))
    lib.launch(name("scatter_add_rows", dt, it), 3, 64, out, idx, src, nidx, cols, rows)
    # fp16 rounds after each add; float32 sums of ~50 terms lose ~1e-6 absolute
    tol = {np.float16: dict(rtol=1e-2, atol=2e-2), np.float32: dict(rtol=1e-5, atol=1e-5)}.get(dt, TOL[dt])
    np.testing.assert_allclose(out, want, **tol)


@pytest.mark.parametrize("nidx,rows,cols", SCATTER_SHAPES)
@pytest.mark.parametrize("it", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("dt", DTYPES.values(), ids=DTYPES.keys())
def test_scatter_add_rows_sorted(lib, dt, it, nidx, rows, cols):
    idx, src, out, want = _scatter_case(dt, it, nidx, rows, cols, np.random.default_rng(nidx))
    perm = np.argsort(idx, kind="stable").astype(it)
    sidx = idx[perm]
    starts = np.flatnonzero(np.r_[True, sidx[1:] != sidx[:-1]])
    seg = np.r_[starts, nidx].astype(np.int64)
    seg_row = sidx[starts].astype(it)
    lib.launch(
        name("scatter_add_rows_sorted", dt, it), 3, 64, out, src, perm, seg, seg_row, len(starts), cols, rows
    )
    tol = {np.float32: dict(rtol=1e-5, atol=1e-5)}.get(dt, TOL[dt])  # sums in float32/64, rounds once
    np.testing.assert_allclose(out, want, **tol)
