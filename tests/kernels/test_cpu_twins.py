"""accel.cpu_kernels: the generated activation loops equal the ops' rules and an independent float64
formula; the optimizer loops equal Keras' op order."""

import numpy as np
import pytest

from accel import cpu_kernels as ck
from accel.ops import core, generated_loops
from accel.ops.core import REGISTRY

import generated_refs as GR
import references as R

SIZES = [0, 1, 31, 1000]
FLOATS = [np.float32, np.float64]
ALL = [np.float16, np.float32, np.float64]
ids = lambda dts: [np.dtype(d).name for d in dts]  # noqa: E731
needs_numba = pytest.mark.skipif(not ck.available(), reason="numba not installed (or ACCEL_NUMBA=0)")
ULP_TOL = {np.float32: dict(rtol=4e-7, atol=1e-7), np.float64: dict(rtol=1e-15, atol=1e-16)}
# numba calls scalar libm (and uses float64 constants); NumPy uses SIMD float32 ufuncs
TRANSCENDENTAL = {"gelu", "gelu_tanh", "silu", "softplus"}
TRANSC_TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-13, atol=1e-14)}
REF_TOL = {
    np.float16: dict(rtol=2e-3, atol=2e-3),
    np.float32: dict(rtol=2e-6, atol=1e-5),
    np.float64: dict(rtol=1e-13, atol=1e-13),
}


def test_generated_kernels_are_the_referenced_activations_reading_the_same_saved_value():
    for name, (saved, _, _) in R.ACTIVATIONS.items():
        assert generated_loops.KERNELS[name]["saved"] == (saved,), name


def _rule_on_numpy(act, g, saved):
    """The op's own gradient rule on NumPy arrays: the generic path the generated loop replaces."""
    spec = generated_loops.KERNELS[act]
    op = REGISTRY[spec["op"]]
    attrs = dict(spec["attrs"], **{s: GR.SCALAR for s in spec["scalars"]})
    x, out = (saved, None) if spec["saved"] == ("x",) else (None, saved)
    return op.rules[0](core.array_ns(np), g, out, x, **attrs)


@needs_numba
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
@pytest.mark.parametrize("act", GR.KERNELS)
def test_generated_loop_equals_the_rule_and_the_float64_formula(act, dt, n):
    g, saved = GR.act_inputs(act, n, dt, np.random.default_rng(n))
    got = ck.activation_bwd(act, g, saved, alpha=GR.alpha(act))
    assert got.dtype == dt and got.shape == (n,)
    with np.errstate(all="ignore"):
        rule = _rule_on_numpy(act, g, saved)
    np.testing.assert_allclose(got, rule, **(TRANSC_TOL[dt] if act in TRANSCENDENTAL else ULP_TOL[dt]))
    np.testing.assert_allclose(got, GR.act_grad_ref(act, g, saved), **REF_TOL[dt])


F32_SPECIAL = np.array([0.0, -0.0, 1e-30, -1e-30, 0.5, -0.75, 3.0, -3.0, 9.5, -9.5, 20.0, -20.0, 88.0, -88.0,
                        1e4, -1e4, np.inf, -np.inf], np.float32)


@needs_numba
@pytest.mark.parametrize("n", SIZES + [4099])
@pytest.mark.parametrize("act", sorted(TRANSCENDENTAL))
def test_generated_f32_loop_matches_float64_at_the_edges(act, n):
    """accel.cpu_math's float32 exp/erf/tanh in the generated loop against the float64 loop: 2e-6 of the
    largest |f'| plus 2e-6 relative, on random values and at the edges (saturation, tiny, huge, inf)."""
    rng = np.random.default_rng(n)
    x = np.concatenate([(rng.standard_normal(n) * 4).astype(np.float32), F32_SPECIAL if n > 31 else []])
    x = x.astype(np.float32)
    g = np.ones_like(x)
    got = ck.activation_bwd(act, g, x)
    with np.errstate(invalid="ignore", over="ignore"):
        want = ck.activation_bwd(act, g.astype(np.float64), x.astype(np.float64))
    finite = np.isfinite(want)
    scale = max(1.0, np.abs(want[finite]).max(initial=0))
    np.testing.assert_allclose(got[finite], want[finite], rtol=2e-6, atol=2e-6 * scale)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(ck.activation_bwd(act, np.ones(1, np.float32), np.array([np.nan], np.float32)))[0]


@needs_numba
@pytest.mark.parametrize("act", GR.KERNELS)
def test_generated_f32_loop_vectorizes(act):
    from llvm_ir import vector_float32_problems

    import numba

    loop = numba.njit(error_model="numpy")(ck.generated_loop(act + "_bwd", np.float32))  # uncached: inspectable
    ones = np.ones(64, np.float32)
    loop(np.empty_like(ones), ones, ones, *((np.float32(GR.alpha(act)),) if GR.alpha(act) is not None else ()))
    assert vector_float32_problems(loop) == []


@needs_numba
def test_activation_out_buffer_is_used_and_bad_calls_rejected():
    g, x = np.ones(4, np.float32), np.arange(4, dtype=np.float32) - 1
    out = np.empty(4, np.float32)
    assert ck.activation_bwd("relu", g, x, out=out) is out
    np.testing.assert_array_equal(out, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="unknown kernel 'rleu'"):
        ck.activation_bwd("rleu", g, x)
    with pytest.raises(ValueError, match="saved has shape"):
        ck.activation_bwd("relu", g, x[:3])
    with pytest.raises(ValueError, match="takes the scalar alpha, got alpha=None"):
        ck.activation_bwd("leaky_relu", g, x)
    with pytest.raises(ValueError, match="needs numba and C-contiguous float32 or float64"):
        ck.activation_bwd("relu", g.astype(np.float16), x.astype(np.float16))


# ---- optimizers ----

HP = dict(lr=1e-2, b1=0.9, b2=0.999, eps=1e-7, t=4, rho=0.9, momentum=0.9)
OPTS = [
    ("adam", dict(wd=0.0, ams=False)),
    ("adamw_amsgrad", dict(wd=0.004, ams=True)),
    ("sgd", dict(wd=0.0, mom=False)),
    ("sgd_momentum", dict(wd=0.01, mom=True, nesterov=False)),
    ("sgd_nesterov", dict(wd=0.0, mom=True, nesterov=True)),
    ("rmsprop", dict(wd=0.0, mom=False, centered=False)),
    ("rmsprop_centered", dict(wd=0.0, mom=True, centered=True)),
    ("adagrad", dict(wd=0.0)),
    ("lion", dict(wd=0.1)),
]


def _state(n, dt, seed):
    rng = np.random.default_rng(seed)
    p, g, m, mg = (rng.standard_normal(n) * s for s in (1, 1, 0.1, 0.01))
    v = np.abs(rng.standard_normal(n)) * 0.01 + mg * mg
    vh = v + np.abs(rng.standard_normal(n)) * 0.01
    return [a.astype(dt) for a in (p, g, m, v, vh, mg)]


def run_opt(kind, o, st):
    """Applies optimizer `kind` in place with the numba loop generated from its rule."""
    p, g, m, v, vh, mg = st
    f = lambda name: getattr(ck, name)  # noqa: E731
    if kind.startswith("adam"):
        alpha = ck.adam_alpha(HP["lr"], HP["b1"], HP["b2"], HP["t"], p.dtype)
        f("adam_update")(
            p, g, m, v, vh if o["ams"] else None, alpha, HP["b1"], HP["b2"], HP["eps"], HP["lr"], o["wd"]
        )
    elif kind.startswith("sgd"):
        f("sgd_update")(
            p, g, HP["lr"], m if o["mom"] else None, HP["momentum"], o.get("nesterov", False), o["wd"]
        )
    elif kind.startswith("rmsprop"):
        f("rmsprop_update")(
            p,
            g,
            v,
            HP["lr"],
            HP["rho"],
            HP["eps"],
            m if o["mom"] else None,
            HP["momentum"],
            mg if o["centered"] else None,
            o["wd"],
        )
    elif kind == "adagrad":
        f("adagrad_update")(p, g, v, HP["lr"], HP["eps"], o["wd"])
    elif kind == "lion":
        f("lion_update")(p, g, m, HP["lr"], HP["b1"], HP["b2"], o["wd"])


def keras_ref(kind, o, st):
    p, g, m, v, vh, mg = [a.astype(np.float32) if a.dtype == np.float16 else a.copy() for a in st]
    if kind.startswith("adam"):
        r = R.keras_adam(
            p, g, m, v, vh if o["ams"] else None, HP["lr"], HP["b1"], HP["b2"], HP["eps"], HP["t"], o["wd"]
        )
        return [r[0], g, r[1], r[2], r[3] if o["ams"] else vh, mg]
    if kind.startswith("sgd"):
        r = R.keras_sgd(
            p, g, m if o["mom"] else None, HP["lr"], HP["momentum"], o.get("nesterov", False), o["wd"]
        )
        return [r[0], g, r[1] if o["mom"] else m, v, vh, mg]
    if kind.startswith("rmsprop"):
        r = R.keras_rmsprop(
            p,
            g,
            v,
            m if o["mom"] else None,
            mg if o["centered"] else None,
            HP["lr"],
            HP["rho"],
            HP["momentum"],
            HP["eps"],
            o["wd"],
        )
        return [r[0], g, r[2] if o["mom"] else m, r[1], vh, r[3] if o["centered"] else mg]
    if kind == "adagrad":
        r = R.keras_adagrad(p, g, v, HP["lr"], HP["eps"], o["wd"])
        return [r[0], g, m, r[1], vh, mg]
    r = R.keras_lion(p, g, m, HP["lr"], HP["b1"], HP["b2"], o["wd"])
    return [r[0], g, r[1], v, vh, mg]


@needs_numba
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
@pytest.mark.parametrize("kind,o", OPTS, ids=[k for k, _ in OPTS])
def test_optimizer_twins_equal_keras_bitwise(kind, o, dt, n):
    want = [np.asarray(a).astype(dt) for a in keras_ref(kind, o, _state(n, dt, n))]
    st = _state(n, dt, n)
    run_opt(kind, o, st)
    for k, (got, w) in enumerate(zip(st, want, strict=False)):
        np.testing.assert_array_equal(got, w, err_msg="%s state %d" % (kind, k))


@needs_numba
def test_optimizer_twins_refuse_what_they_cannot_run():
    p = np.zeros(3, np.float16)
    with pytest.raises(ValueError, match="sgd_update: needs numba and C-contiguous float32 or float64"):
        ck.sgd_update(p, p.copy(), 0.1)


def test_optimizer_rejects_mismatched_state():
    p, g = np.zeros(3, np.float32), np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="adam_update: m has shape"):
        ck.adam_update(
            p, g, np.zeros(4, np.float32), np.zeros(3, np.float32), None, 1e-3, 0.9, 0.999, 1e-7, 1e-3
        )
    with pytest.raises(ValueError, match="v has shape .* dtype float64"):
        ck.adagrad_update(p, g, np.zeros(3, np.float64), 0.1, 1e-7) if False else ck.adam_update(
            p, g, p.copy(), np.zeros(3, np.float64), None, 1e-3, 0.9, 0.999, 1e-7, 1e-3
        )


def test_adam_alpha_matches_keras():
    for dt in FLOATS:
        assert ck.adam_alpha(1e-3, 0.9, 0.999, 7, dt) == R.keras_adam_alpha(1e-3, 0.9, 0.999, 7, dt)


# ---- multi-tensor Adam: one call, the same bits as one adam_update per tensor ----


@pytest.mark.parametrize("ams,wd", [(False, 0.0), (True, 0.004)], ids=["adam", "adamw_amsgrad"])
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_adam_multi_equals_per_tensor_bitwise(dt, ams, wd):
    sizes = [0, 1, 31, 1000, 7]
    states = [_state(n, dt, 10 + k) for k, n in enumerate(sizes)]
    alpha = ck.adam_alpha(HP["lr"], HP["b1"], HP["b2"], HP["t"], dt)
    want = [[a.copy() for a in st] for st in states]
    for p, g, m, v, vh, _ in want:
        ck.adam_update(p, g, m, v, vh if ams else None, alpha, HP["b1"], HP["b2"], HP["eps"], HP["lr"], wd)
    for _ in range(2):  # the second call reuses the cached pointer table
        got = [[a.copy() for a in st] for st in states]
        ps, gs, ms, vs, vhs = ([st[i] for st in got] for i in range(5))
        ck.adam_multi_update(ps, gs, ms, vs, vhs if ams else None, alpha, HP["b1"], HP["b2"], HP["eps"],
                             HP["lr"], wd)
        for k, (a, b) in enumerate(zip(got, want, strict=True)):
            for j in range(5):
                np.testing.assert_array_equal(a[j], b[j], err_msg="tensor %d state %d" % (k, j))


def test_adam_multi_reads_each_calls_gradients():
    """The cached pointer table must not keep the previous step's gradients."""
    rng = np.random.default_rng(5)
    ps = [rng.standard_normal(n).astype(np.float32) for n in (3, 40)]
    ms, vs = [np.zeros_like(p) for p in ps], [np.zeros_like(p) for p in ps]
    ref = [[a.copy() for a in ps], [a.copy() for a in ms], [a.copy() for a in vs]]
    for _ in range(3):
        gs = [rng.standard_normal(p.size).astype(np.float32) for p in ps]  # new arrays every step
        ck.adam_multi_update(ps, gs, ms, vs, None, 1e-2, 0.9, 0.999, 1e-7, 1e-2)
        for k in range(2):
            ck.adam_update(ref[0][k], gs[k], ref[1][k], ref[2][k], None, 1e-2, 0.9, 0.999, 1e-7, 1e-2)
    for a, b in zip(ps + ms + vs, ref[0] + ref[1] + ref[2], strict=True):
        np.testing.assert_array_equal(a, b)


def test_adam_multi_rejects_mismatched_lists_before_touching_anything():
    p = [np.ones(3, np.float32), np.ones(2, np.float32)]
    keep = [a.copy() for a in p]
    z = lambda: [np.zeros(3, np.float32), np.zeros(2, np.float32)]  # noqa: E731
    with pytest.raises(ValueError, match="gs has 1 tensors, expected 2"):
        ck.adam_multi_update(p, z()[:1], z(), z(), None, 1e-3, 0.9, 0.999, 1e-7, 1e-3)
    with pytest.raises(ValueError, match=r"tensor 1.*m has shape \(3,\)"):
        ck.adam_multi_update(p, z(), [np.zeros(3, np.float32)] * 2, z(), None, 1e-3, 0.9, 0.999, 1e-7, 1e-3)
    with pytest.raises(ValueError, match="ps\\[1\\] has dtype float64"):
        q = [p[0], np.ones(2)]
        ck.adam_multi_update(q, [np.zeros(3, np.float32), np.zeros(2)], [np.zeros(3, np.float32), np.zeros(2)],
                             [np.zeros(3, np.float32), np.zeros(2)], None, 1e-3, 0.9, 0.999, 1e-7, 1e-3)
    for a, b in zip(p, keep, strict=True):
        np.testing.assert_array_equal(a, b)


# ---- softmax cross-entropy backward, fused with the row softmax ----

XENT_SHAPES = [(0, 4), (1, 1), (5, 10), (3, 257), (32, 10)]


@pytest.mark.parametrize("rows,cols", XENT_SHAPES)
@pytest.mark.parametrize("labels", ["dense", "int32", "int64"])
@pytest.mark.parametrize("g_kind", ["rows", "broadcast"])
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_softmax_xent_twin_matches_float64(dt, g_kind, labels, rows, cols):
    rng = np.random.default_rng(rows * cols + 1)
    logits = (3 * rng.standard_normal((rows, cols))).astype(dt)
    g = rng.standard_normal(rows).astype(dt) if g_kind == "rows" else np.broadcast_to(dt(0.25), (rows,))
    if labels == "dense":
        lab = rng.dirichlet(np.ones(cols), rows).astype(dt) if rows else np.zeros((0, cols), dt)
    else:
        lab = rng.integers(0, cols, rows).astype(labels)
    want = R.softmax_xent_ref(logits, lab, np.asarray(g), labels != "dense")
    tol = dict(rtol=1e-5, atol=1e-6) if dt == np.float32 else dict(rtol=1e-12, atol=1e-14)
    got = ck.softmax_xent_bwd(logits, lab, g, sparse=labels != "dense")
    np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(ck.softmax_xent_bwd_numpy(logits, lab, np.asarray(g), labels != "dense"), want, **tol)


@pytest.mark.parametrize("rows,cols", XENT_SHAPES)
@pytest.mark.parametrize("lt", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_softmax_xent_sparse_fwd_twin_matches_float64(dt, lt, rows, cols):
    rng = np.random.default_rng(rows * cols + 2)
    logits = (3 * rng.standard_normal((rows, cols))).astype(dt)
    lab = rng.integers(0, cols, rows).astype(lt)
    want = R.sparse_xent_loss_ref(logits, lab)
    tol = dict(rtol=1e-5, atol=1e-6) if dt == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ck.softmax_xent_sparse_fwd(logits, lab), want, **tol)
    strided = np.asfortranarray(logits)  # not C-contiguous: the NumPy path
    np.testing.assert_allclose(ck.softmax_xent_sparse_fwd(strided, lab), want, **tol)
    if rows:
        with pytest.raises(ValueError, match=r"labels must lie in \[0, %d\)" % cols):
            ck.softmax_xent_sparse_fwd(logits, np.full(rows, cols, lt))


@pytest.mark.parametrize(
    "args, msg",
    [
        ((np.zeros(4, np.float32), np.zeros(4, np.int32), np.zeros(4, np.float32)), "logits must be 2-D"),
        ((np.zeros((2, 3), np.float32), np.array([0, 3], np.int32), np.zeros(2, np.float32)),
         r"labels must lie in \[0, 3\), got values from 0 to 3"),
        ((np.zeros((2, 3), np.float32), np.array([0, 1.0]), np.zeros(2, np.float32)), "int32/int64 array of shape"),
        ((np.zeros((2, 3), np.float32), np.array([0, 1]), np.zeros(3, np.float32)), r"g must be a float32 array of "
         r"shape \(2,\), got float32 \(3,\)"),
        ((np.zeros((2, 3), np.float32), np.array([0, 1]), np.zeros(2, np.float64)), "g must be a float32"),
    ],
)
def test_softmax_xent_twin_rejects_bad_arguments(args, msg):
    with pytest.raises(ValueError, match=msg):
        ck.softmax_xent_bwd(*args, sparse=True)


# ---- mean of sparse softmax cross-entropy in one kernel (accel.function's loss step) ----

MEAN_SHAPES = [(1, 1), (7, 10), (32, 10), (129, 3), (300, 257)]


@pytest.mark.parametrize("rows,cols", MEAN_SHAPES)
@pytest.mark.parametrize("lt", [np.int32, np.int64], ids=["int32", "int64"])
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_sparse_xent_mean_twins_equal_the_row_kernels_bitwise(dt, lt, rows, cols):
    """The one-kernel mean equals np.mean of the row kernel's losses, and its gradient equals the row
    gradient kernel fed g / N broadcast (what eager runs): bitwise, so a plan may use them by default."""
    rng = np.random.default_rng(rows * cols + 3)
    logits = (3 * rng.standard_normal((rows, cols))).astype(dt)
    lab = rng.integers(0, cols, rows).astype(lt)
    mean = ck.softmax_xent_sparse_mean_fwd(logits, lab)
    assert mean.shape == (1,) and mean.dtype == dt
    assert mean.tobytes() == np.asarray(np.mean(ck.softmax_xent_sparse_fwd(logits, lab)), dt).reshape(1).tobytes()
    tol = dict(rtol=1e-5, atol=1e-6) if dt == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mean[0], R.sparse_xent_loss_ref(logits, lab).mean(), **tol)
    g = np.asarray(rng.standard_normal(), dt)
    d = ck.softmax_xent_sparse_mean_bwd(logits, lab, g)
    want = ck.softmax_xent_bwd(logits, lab, np.broadcast_to((g / rows).reshape(1), (rows,)), sparse=True)
    assert d.tobytes() == want.tobytes()
    np.testing.assert_allclose(d, R.softmax_xent_ref(logits, lab, np.full(rows, g / rows), True), **tol)
    out = np.full((rows, cols), np.nan, dt)
    assert ck.softmax_xent_sparse_mean_bwd(logits, lab, g.reshape(1), out=out) is out and out.tobytes() == d.tobytes()


def test_sparse_xent_mean_twin_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    logits, lab = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    d = ck.softmax_xent_sparse_mean_bwd(logits, lab, np.array(1.5))
    eps, num = 1e-6, np.zeros_like(logits)
    for i in np.ndindex(logits.shape):
        hi, lo = logits.copy(), logits.copy()
        hi[i] += eps
        lo[i] -= eps
        f_hi, f_lo = ck.softmax_xent_sparse_mean_fwd(hi, lab)[0], ck.softmax_xent_sparse_mean_fwd(lo, lab)[0]
        num[i] = 1.5 * (f_hi - f_lo) / (2 * eps)
    np.testing.assert_allclose(d, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "fn, args, msg",
    [
        ("fwd", (np.zeros((0, 3), np.float32), np.zeros(0, np.int32)), r"N, C >= 1, got shape \(0, 3\)"),
        ("fwd", (np.zeros(3, np.float32), np.zeros(3, np.int32)), "logits must be 2-D"),
        ("fwd", (np.zeros((2, 3), np.float32), np.array([0, 3])), r"labels must lie in \[0, 3\)"),
        ("fwd", (np.zeros((2, 3), np.int32), np.array([0, 1])), "logits must be float16/32/64"),
        ("bwd", (np.zeros((2, 3), np.float32), np.array([0, 1]), np.zeros(2, np.float32)), "g must be a float32 "
         r"array of 1 element, got float32 \(2,\)"),
        ("bwd", (np.zeros((2, 3), np.float32), np.array([0, 1]), np.zeros((), np.float64)), "g must be a float32"),
        ("bwd", (np.zeros((2, 3), np.float32), np.array([[0, 1]]), np.zeros((), np.float32)), "labels must be an "
         r"int32/int64 array of shape \(2,\)"),
    ],
)
def test_sparse_xent_mean_twins_reject_bad_arguments(fn, args, msg):
    f = ck.softmax_xent_sparse_mean_fwd if fn == "fwd" else ck.softmax_xent_sparse_mean_bwd
    with pytest.raises(ValueError, match=msg):
        f(*args)


# ---- accumulate, and the numba switch ----


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dt", ALL, ids=ids(ALL))
def test_accumulate(dt, n):
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)
    want = a + b
    assert ck.accumulate_(a, b) is a
    np.testing.assert_array_equal(a, want)


def test_accel_numba_0_forces_numpy(monkeypatch):
    monkeypatch.setattr(ck.settings, "ENV", ck.settings.ENV._replace(numba=False))  # ACCEL_NUMBA=0, read at import
    assert not ck.available()
    g = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="needs numba"):  # the dispatcher then runs the op's rule
        ck.activation_bwd("relu", g, g)


# ---- dropout and sigmoid cross-entropy backward ----


@pytest.mark.parametrize("n", SIZES + [4099])
@pytest.mark.parametrize("dt", ALL, ids=ids(ALL))
def test_dropout_twin(dt, n):
    rng = np.random.default_rng(n)
    g = rng.standard_normal(n).astype(dt)
    mask = rng.uniform(size=n) > 0.3
    want = np.where(mask, g.astype(np.float64) / 0.7, 0)
    tol = REF_TOL[dt]
    np.testing.assert_allclose(ck.dropout_bwd(g, mask, 1 / 0.7), want, **tol)
    np.testing.assert_allclose(ck.dropout_bwd(g[::-1], mask[::-1], 1 / 0.7), want[::-1], **tol)  # strided: NumPy
    with pytest.raises(ValueError, match="mask must be a bool array of shape"):
        ck.dropout_bwd(g, mask.astype(np.uint8), 2.0)


@pytest.mark.parametrize("n", SIZES + [4099])
@pytest.mark.parametrize("dt", ALL, ids=ids(ALL))
def test_sigmoid_xent_twin(dt, n):
    rng = np.random.default_rng(n + 1)
    x = np.concatenate([rng.standard_normal(n) * 8, [-100.0, 100.0, 0.0] if n > 31 else []]).astype(dt)
    z = rng.uniform(size=x.size).astype(dt)
    g = rng.standard_normal(x.size).astype(dt)
    x64 = x.astype(np.float64)
    want = g * (1 / (1 + np.exp(-x64)) - z)
    np.testing.assert_allclose(ck.sigmoid_xent_bwd(x, z, g), want, **REF_TOL[dt])
    with pytest.raises(ValueError, match="z has shape"):
        ck.sigmoid_xent_bwd(x, z[:-1] if x.size else np.zeros(1, dt), g)


@needs_numba
def test_sigmoid_xent_f32_loop_vectorizes():
    from llvm_ir import vector_float32_problems

    a = np.ones(64, np.float32)
    ck.sigmoid_xent_bwd(a, a, a)
    assert vector_float32_problems(ck._sigmoid_xent_f32()) == []


# ---- layer normalization backward ----


@pytest.mark.parametrize("rows,cols", [(0, 4), (1, 1), (7, 33), (64, 300)])
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_layer_norm_twin_matches_float64(dt, rows, cols):
    rng = np.random.default_rng(rows + cols)
    x = (rng.standard_normal((rows, cols)) * 2 + 5).astype(dt)
    g = rng.standard_normal((rows, cols)).astype(dt)
    gamma = rng.standard_normal(cols).astype(dt)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    mean = x64.mean(1, keepdims=True)
    rstd = 1 / np.sqrt(((x64 - mean) ** 2).mean(1, keepdims=True) + 1e-3)
    xh = (x64 - mean) * rstd
    gh = g64 * gamma
    want = (rstd * (gh - gh.mean(1, keepdims=True) - xh * (gh * xh).mean(1, keepdims=True)),
            (g64 * xh).sum(0), g64.sum(0))
    tol = dict(rtol=2e-5, atol=2e-5) if dt == np.float32 else dict(rtol=1e-11, atol=1e-11)
    for impl in ("auto", "strided"):
        args = (g, x) if impl == "auto" else (np.asfortranarray(g), np.asfortranarray(x))  # NumPy path
        for got, w in zip(ck.layer_norm_bwd(*args, gamma, 1e-3), want, strict=True):
            assert got.dtype == dt
            np.testing.assert_allclose(got, w, **tol)
    with pytest.raises(ValueError, match="gamma must be a"):
        ck.layer_norm_bwd(g, x, gamma[:-1] if cols else np.ones(1, dt), 1e-3)


@needs_numba
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dt", FLOATS, ids=ids(FLOATS))
def test_erf_twin_matches_float64(dt, n):
    """erf's twin (erf_array's path for float32 arrays of fused size; cpu_math's erf_f32, libm for float64)."""
    import math

    x = np.concatenate([np.random.default_rng(n).standard_normal(n) * 3, F32_SPECIAL[:min(n, 18)]]).astype(dt)
    got = ck.erf(x)
    want = np.array([math.erf(v) for v in x.astype(np.float64)])
    assert got.dtype == dt and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-7 if dt == np.float32 else 1e-15)
    out = np.empty_like(x)
    assert ck.erf(x, out=out) is out and np.array_equal(out, got)
    with pytest.raises(ValueError, match="erf: out has shape"):
        ck.erf(x, out=np.empty(x.size + 1, dt))


@needs_numba
def test_erf_array_takes_the_twin_for_large_float32_arrays_only():
    from accel.ops import fusion

    ck.wait_warmed(300)
    big = np.random.default_rng(0).standard_normal(fusion.CPU_MIN_SIZE).astype(np.float32)
    import accel

    with accel.config.fused("auto"):
        np.testing.assert_array_equal(core.erf_array(np, big), ck.erf(big))
        small = big[:100].copy()
        np.testing.assert_allclose(core.erf_array(np, small), ck.erf(small), rtol=0, atol=2e-7)
    with accel.config.fused("never"):
        scipy_erf = core.erf_array(np, big)
    assert not np.array_equal(scipy_erf, ck.erf(big))  # the two paths differ in the last bits somewhere
    np.testing.assert_allclose(scipy_erf, ck.erf(big), rtol=0, atol=2e-7)
