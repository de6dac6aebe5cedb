"""accel.fused on a real GPU: every wrapper against the NumPy references, and the
launch counter moves. Skipped without a CUDA device.

GPU numerics differ from the CPU (CuPy compiles with -ftz=true; CUDA libm), so
comparisons use tolerances; optimizers (built with --fmad=false) compare to
Keras' op order with a 1-ulp-level tolerance.
"""

import numpy as np
import pytest

from accel import backend

import generated_refs as GR
import references as R

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not backend.has_gpu(), reason="no CUDA device")]

if backend.has_gpu():
    from accel import fused

    cp = backend.cupy()

ALL = [np.float16, np.float32, np.float64]
FLOATS = [np.float32, np.float64]
SIZES = [1, 31, 1000, 1 << 18]
TOL = {
    np.float16: dict(rtol=2e-3, atol=2e-3),
    np.float32: dict(rtol=1e-5, atol=1e-5),
    np.float64: dict(rtol=1e-12, atol=1e-12),
}
ids = lambda dts: [np.dtype(d).name for d in dts]  # noqa: E731


def close(got, want, dt, **tol):
    np.testing.assert_allclose(
        cp.asnumpy(got).astype(np.float64), np.asarray(want, np.float64), **(tol or TOL[dt])
    )


def ran(kernel):
    """Context: asserts `kernel` was launched at least once inside."""

    class _Ran:
        def __enter__(self):
            self.before = fused.launches[kernel]

        def __exit__(self, *exc):
            if exc[0] is None:
                assert fused.launches[kernel] > self.before, "%s did not launch" % kernel

    return _Ran()


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dt", ALL, ids=ids(ALL))
@pytest.mark.parametrize("act", GR.KERNELS)
def test_activation_bwd(act, dt, n):
    g, saved = GR.act_inputs(act, n, dt, np.random.default_rng(n))
    with ran(act + "_bwd"):
        gx = fused.activation_bwd(act, cp.asarray(g), cp.asarray(saved), alpha=GR.alpha(act))
    close(gx, GR.act_grad_ref(act, g, saved), dt)


@pytest.mark.parametrize("rows,cols", [(1, 1), (5, 10), (64, 1000), (3, 5000)])
@pytest.mark.parametrize("labels", ["dense", "int32", "int64"])
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_softmax_xent_bwd(dt, labels, rows, cols):
    rng = np.random.default_rng(rows)
    logits = (3 * rng.standard_normal((rows, cols))).astype(dt)
    g = rng.standard_normal(rows).astype(dt)
    lab = (
        rng.dirichlet(np.ones(cols), rows).astype(dt)
        if labels == "dense"
        else rng.integers(0, cols, rows).astype(labels)
    )
    d = fused.softmax_xent_bwd(cp.asarray(logits), cp.asarray(lab), cp.asarray(g), sparse=labels != "dense")
    close(d, R.softmax_xent_ref(logits, lab, g, labels != "dense"), dt)
    g0 = cp.broadcast_to(cp.asarray(g[:1]), (rows,))  # stride 0: a mean's cotangent
    d = fused.softmax_xent_bwd(cp.asarray(logits), cp.asarray(lab), g0, sparse=labels != "dense")
    close(d, R.softmax_xent_ref(logits, lab, np.broadcast_to(g[:1], (rows,)), labels != "dense"), dt)


@pytest.mark.parametrize("rows,cols", [(1, 1), (5, 10), (64, 1000), (3, 5000)])
@pytest.mark.parametrize("lt", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_softmax_xent_sparse_fwd(dt, lt, rows, cols):
    rng = np.random.default_rng(rows)
    logits = (3 * rng.standard_normal((rows, cols))).astype(dt)
    lab = rng.integers(0, cols, rows).astype(lt)
    loss = fused.softmax_xent_sparse_fwd(cp.asarray(logits), cp.asarray(lab))
    close(loss, R.sparse_xent_loss_ref(logits, lab), dt)


@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_sigmoid_xent_and_dropout_and_bias(dt):
    rng = np.random.default_rng(0)
    x, z, g = (
        (rng.standard_normal(1000) * 10).astype(dt),
        rng.random(1000).astype(dt),
        rng.standard_normal(1000).astype(dt),
    )
    close(fused.sigmoid_xent_bwd(cp.asarray(x), cp.asarray(z), cp.asarray(g)), g * (R._sigmoid(x) - z), dt)
    mask = rng.random(1000) < 0.5
    close(fused.dropout_bwd(cp.asarray(g), cp.asarray(mask), 2.0), np.where(mask, 2.0 * g, 0), dt)
    g2 = rng.standard_normal((300, 70)).astype(dt)
    close(fused.bias_add_bwd(cp.asarray(g2)), g2.astype(np.float64).sum(0), dt, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_layer_norm_bwd(dt, affine):
    rng = np.random.default_rng(1)
    x, g = rng.standard_normal((33, 300)).astype(dt), rng.standard_normal((33, 300)).astype(dt)
    mean = x.mean(1).astype(dt)
    rstd = (1 / np.sqrt(x.var(1) + 1e-3)).astype(dt)
    gamma = rng.standard_normal(300).astype(dt) if affine else None
    got = fused.layer_norm_bwd(
        *(cp.asarray(a) for a in (g, x, mean, rstd)), gamma=None if gamma is None else cp.asarray(gamma)
    )
    for a, b in zip(got, R.layer_norm_ref(g, x, mean, rstd, gamma), strict=False):
        close(a, b, dt, rtol=1e-4, atol=1e-4)


OPT_TOL = {
    np.float16: dict(rtol=1e-3, atol=1e-3),
    np.float32: dict(rtol=1e-6, atol=1e-7),
    np.float64: dict(rtol=1e-14, atol=1e-15),
}


@pytest.mark.parametrize("dt", ALL, ids=ids(ALL))
@pytest.mark.parametrize("amsgrad,wd", [(False, 0.0), (True, 0.004)])
def test_adam_matches_keras(dt, amsgrad, wd):
    from accel.cpu_kernels import adam_alpha

    rng = np.random.default_rng(2)
    n = 100_003
    p, g, m = (rng.standard_normal(n) * s for s in (1, 1, 0.1))
    v = np.abs(rng.standard_normal(n)) * 0.01
    vh = v + 0.001
    p, g, m, v, vh = (a.astype(dt) for a in (p, g, m, v, vh))
    w32 = [a.astype(np.float32) if dt == np.float16 else a for a in (p, g, m, v, vh)]
    want = R.keras_adam(*w32[:4], w32[4] if amsgrad else None, 1e-3, 0.9, 0.999, 1e-7, 3, wd)
    dev = [cp.asarray(a) for a in (p, g, m, v, vh)]
    with ran("adam_update"):
        fused.adam_update(
            dev[0],
            dev[1],
            dev[2],
            dev[3],
            dev[4] if amsgrad else None,
            adam_alpha(1e-3, 0.9, 0.999, 3, dt),
            0.9,
            0.999,
            1e-7,
            1e-3,
            wd,
        )
    for got, w in zip((dev[0], dev[2], dev[3]), want[:3], strict=False):
        close(got, np.asarray(w).astype(dt), dt, **OPT_TOL[dt])


@pytest.mark.parametrize("dt", ALL, ids=ids(ALL))
def test_other_optimizers_match_keras(dt):
    rng = np.random.default_rng(3)
    n = 4097
    p, g, m, mg = (rng.standard_normal(n) * s for s in (1, 1, 0.1, 0.01))
    v = np.abs(rng.standard_normal(n)) * 0.01 + mg * mg
    host = [a.astype(dt) for a in (p, g, m, v, mg)]
    w = lambda: [a.astype(np.float32) if dt == np.float16 else a.copy() for a in host]  # noqa: E731
    d = lambda: [cp.asarray(a) for a in host]  # noqa: E731
    cases = [
        (
            "sgd_momentum_update",
            lambda a: fused.sgd_update(a[0], a[1], 0.1, a[2], 0.9, True, 0.01),
            lambda a: R.keras_sgd(a[0], a[1], a[2], 0.1, 0.9, True, 0.01)[0],
        ),
        (
            "rmsprop_update",
            lambda a: fused.rmsprop_update(a[0], a[1], a[3], 1e-3, 0.9, 1e-7, a[2], 0.5, a[4]),
            lambda a: R.keras_rmsprop(a[0], a[1], a[3], a[2], a[4], 1e-3, 0.9, 0.5, 1e-7)[0],
        ),
        (
            "adagrad_update",
            lambda a: fused.adagrad_update(a[0], a[1], a[3], 1e-2, 1e-7),
            lambda a: R.keras_adagrad(a[0], a[1], a[3], 1e-2, 1e-7)[0],
        ),
        (
            "lion_update",
            lambda a: fused.lion_update(a[0], a[1], a[2], 1e-4, 0.9, 0.99, 0.1),
            lambda a: R.keras_lion(a[0], a[1], a[2], 1e-4, 0.9, 0.99, 0.1)[0],
        ),
    ]
    for kernel, run, ref in cases:
        dev = d()
        with ran(kernel):
            run(dev)
        close(dev[0], np.asarray(ref(w())).astype(dt), dt, **OPT_TOL[dt])


@pytest.mark.parametrize("dt", ALL, ids=ids(ALL))
def test_adam_multi_equals_single(dt):
    rng = np.random.default_rng(4)
    shapes = [(1,), (31,), (100, 10), (4097,)]
    host = [[rng.standard_normal(s).astype(dt) for s in shapes] for _ in range(3)]
    host.append([np.abs(rng.standard_normal(s)).astype(dt) for s in shapes])
    a = [[cp.asarray(x) for x in lst] for lst in host]
    b = [[cp.asarray(x) for x in lst] for lst in host]
    hp = (1e-3, 0.9, 0.999, 1e-7, 1e-3, 0.01)
    with ran("adam_multi_update"):
        fused.adam_multi_update(a[0], a[1], a[2], a[3], None, *hp)
    for k in range(len(shapes)):
        fused.adam_update(b[0][k], b[1][k], b[2][k], b[3][k], None, *hp)
    for la, lb in zip(a, b, strict=False):
        for x, y in zip(la, lb, strict=False):
            np.testing.assert_array_equal(cp.asnumpy(x), cp.asnumpy(y))


@pytest.mark.parametrize("dt", ALL, ids=ids(ALL))
@pytest.mark.parametrize("deterministic", [False, True])
def test_accumulate_and_scatter(dt, deterministic):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(1000).astype(dt), rng.standard_normal(1000).astype(dt)
    da = cp.asarray(a)
    fused.accumulate_(da, cp.asarray(b))
    close(da, a.astype(np.float32) + b if dt == np.float16 else a + b, dt)
    idx = rng.integers(0, 20, 500).astype(np.int32)
    src = rng.standard_normal((500, 33)).astype(dt)
    out = np.zeros((20, 33), dt)
    want = out.astype(np.float64)
    np.add.at(want, idx, src.astype(np.float64))
    dout = cp.asarray(out)
    fused.scatter_add_rows(dout, cp.asarray(idx), cp.asarray(src), deterministic=deterministic)
    close(dout, want, dt, **({np.float16: dict(rtol=2e-2, atol=5e-2)}.get(dt, dict(rtol=1e-5, atol=1e-4))))
    if deterministic:
        again = cp.asarray(out)
        fused.scatter_add_rows(again, cp.asarray(idx), cp.asarray(src), deterministic=True)
        np.testing.assert_array_equal(cp.asnumpy(again), cp.asnumpy(dout))


def test_compiled_once_per_device():
    fused.activation_bwd("relu", cp.ones(4, cp.float32), cp.ones(4, cp.float32))
    key = ("elementwise", cp.cuda.Device().id)
    mod = fused._modules[key]
    fused.activation_bwd("tanh", cp.ones(4, cp.float32), cp.ones(4, cp.float32))
    assert fused._modules[key] is mod
