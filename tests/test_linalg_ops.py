"""tf.linalg's decompositions, solves, inverses, determinants, diagonals and bands against TF 2.21.

Recorded values: tools/record_tf_linalg.py -> tests/data/tf_linalg.npz (inputs, outputs, and the gradients of
sum_i sum(out_i * r_i)); the same case functions run here with accel. Gradients are also checked against float64
finite differences, to second order for the solves, inverse, determinants and factorizations.
"""

import importlib.util
import os

import numpy as np
import pytest

import accel as tf
from accel.errors import InvalidArgumentError, NotFoundError
from accel.ops import linalg as linalg_ops
from tests.gradcheck import check_grads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("record_tf_linalg", os.path.join(ROOT, "tools", "record_tf_linalg.py"))
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)
TF = dict(np.load(os.path.join(ROOT, "tests", "data", "tf_linalg.npz")))
KEYS = sorted({k.split("/")[0] for k in TF if "/" in k})


def _recorded(key, what):
    out = []
    while "%s/%s%d" % (key, what, len(out)) in TF:
        out.append(TF["%s/%s%d" % (key, what, len(out))])
    return out


def test_recorded_with_tf_2_21():
    assert str(TF["tensorflow_version"]).startswith("2.21")
    assert len(KEYS) == len(record.CASES) + len(record.F32)


@pytest.mark.parametrize("key", KEYS)
def test_matches_tensorflow(key, device):
    name = key[:-4] if key.endswith("_f32") else key
    fn = record.CASES[name][0]
    ins, want_outs, want_grads = _recorded(key, "in"), _recorded(key, "out"), _recorded(key, "grad")
    dtype = ins[0].dtype
    rtol, atol = (2e-3, 2e-4) if dtype == np.float32 else (1e-7, 1e-9)
    xs = [tf.constant(a) for a in ins]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        outs = list(fn(tf, *xs))
        rs = record.projections(name, [o.shape for o in outs])
        loss = tf.add_n([tf.reduce_sum(o * tf.constant(r.astype(dtype))) for o, r in zip(outs, rs)])
    assert len(outs) == len(want_outs)
    for i, (o, w) in enumerate(zip(outs, want_outs)):
        assert o.dtype == dtype and o.shape == w.shape, "output %d: %s %s, TF %s %s" % (i, o.dtype, o.shape, w.dtype,
                                                                                       w.shape)
        np.testing.assert_allclose(o.numpy(), w, rtol=rtol, atol=atol, err_msg="output %d" % i)
    if not want_grads:
        return
    for k, (g, w) in enumerate(zip(tape.gradient(loss, xs, unconnected_gradients="zero"), want_grads)):
        assert g.dtype == dtype
        np.testing.assert_allclose(g.numpy(), w, rtol=rtol * 10, atol=atol * 10, err_msg="gradient of input %d" % k)


# --- finite differences ---------------------------------------------------------------------------------------

def _flat(outs):
    return tf.concat([tf.reshape(o, [-1]) for o in outs], axis=0)


def _sym(a):
    return (a + tf.linalg.matrix_transpose(a)) / 2


# cholesky reads the lower triangle but its gradient (TF's) is symmetric: differentiate through a symmetric input
SYMMETRIZED = {"cholesky", "cholesky_batch", "cholesky_1x1", "logdet"}
FD_CASES = [n for n in record.CASES if not n.endswith("_forward") and n != "cholesky_upper_ignored"]


def _fd_fn(name):
    fn = record.CASES[name][0]
    if name in SYMMETRIZED:
        return lambda a: _flat(fn(tf, _sym(a)))
    return lambda *xs: _flat(fn(tf, *xs))


@pytest.mark.parametrize("name", FD_CASES)
def test_gradient_matches_finite_differences(name, device):
    check_grads(_fd_fn(name), record.inputs_for(name, np.float64), rtol=1e-5, atol=1e-6)


SECOND_ORDER = ["solve", "solve_adjoint_batch", "inv", "inv_adjoint_batch", "det", "det_1x1", "slogdet",
                "cholesky", "cholesky_batch", "logdet", "triangular_solve_lower", "triangular_solve_upper_adjoint",
                "eigh", "svd_square", "svd_tall_batch", "svd_no_uv", "qr_square", "qr_wide", "diag_part_k1", "diag",
                "band_part_1_0", "trace"]


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_second_order_matches_finite_differences(name, device):
    """The rules run on accel ops when an outer tape records: d(|vjp|^2)/dx against finite differences."""
    f = _fd_fn(name)
    arrays = record.inputs_for(name, np.float64)
    r = np.random.default_rng(4).standard_normal(f(*[tf.constant(a) for a in arrays]).shape)

    def grad_norm(*ts):
        with tf.GradientTape() as tape:
            tape.watch(ts)
            y = f(*ts)
        gs = tape.gradient(y, list(ts), output_gradients=tf.constant(r), unconnected_gradients="zero")
        return tf.add_n([tf.reduce_sum(g * g) for g in gs])

    check_grads(grad_norm, arrays, rtol=1e-4, atol=1e-5)


# --- behaviour at the edges, as TF 2.21 -----------------------------------------------------------------------

SING = [[1.0, 2.0], [2.0, 4.0]]


def test_singular_inverse_and_solve_raise_like_tensorflow(device):
    for f in (lambda: tf.linalg.inv(tf.constant(SING)), lambda: tf.linalg.inv(tf.zeros((3, 2, 2))),
              lambda: tf.linalg.inv(tf.constant([[np.nan, 1.0], [1.0, 1.0]]))):
        with pytest.raises(InvalidArgumentError, match="Input is not invertible"):
            f()
    for f in (lambda: tf.linalg.solve(tf.constant(SING), tf.ones((2, 1))),
              lambda: tf.linalg.solve(tf.constant([[np.nan, 1.0], [1.0, 1.0]]), tf.ones((2, 1)))):
        with pytest.raises(InvalidArgumentError, match="Input matrix is not invertible"):
            f()
    # nearly singular is not singular: TF's pivot check passes and the large inverse comes back
    near = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-7]], np.float32)
    np.testing.assert_allclose(tf.linalg.inv(tf.constant(near)).numpy(), np.linalg.inv(near.astype(np.float64)),
                               rtol=1e-3)


def test_singular_determinants_and_their_gradient(device):
    x = tf.constant(SING)
    assert float(tf.linalg.det(x)) == 0.0
    sign, logabs = tf.linalg.slogdet(x)
    assert float(sign) == 0.0 and float(logabs) == -np.inf
    np.testing.assert_array_equal(tf.linalg.det(tf.ones((2, 0, 0))).numpy(), [1.0, 1.0])
    with tf.GradientTape() as tape:  # TF's rule inverts the matrix: it raises too
        tape.watch(x)
        d = tf.linalg.det(x)
    with pytest.raises(InvalidArgumentError, match="not invertible"):
        tape.gradient(d, x)


def test_cholesky_of_non_positive_definite_gives_nan_like_tensorflow(device):
    a = tf.constant([[[1.0, 0.0], [0.0, 4.0]], [[1.0, 2.0], [2.0, 1.0]]])
    got = tf.linalg.cholesky(a).numpy()
    np.testing.assert_array_equal(got[0], [[1.0, 0.0], [0.0, 2.0]])
    assert np.isnan(got[1][np.tril_indices(2)]).all() and got[1][0, 1] == 0.0
    assert np.isnan(float(tf.linalg.logdet(tf.constant([[1.0, 2.0], [2.0, 1.0]]))))
    # only the lower triangle is read
    np.testing.assert_array_equal(tf.linalg.cholesky(tf.constant([[4.0, 100.0], [2.0, 5.0]])).numpy(),
                                  [[2.0, 0.0], [1.0, 2.0]])


def test_eigh_svd_and_triangular_solve_on_bad_values(device):
    with pytest.raises(InvalidArgumentError, match="Self-adjoint eigen decomposition was not successful"):
        tf.linalg.eigh(tf.constant([[np.nan, 1.0], [1.0, 1.0]]))
    e, _ = tf.linalg.eigh(tf.constant([[1.0, np.nan], [1.0, 1.0]]))  # NaN above the diagonal is not read
    np.testing.assert_allclose(e.numpy(), [0.0, 2.0], atol=1e-6)
    s, u, v = tf.linalg.svd(tf.constant([[[np.nan, 1.0], [1.0, 1.0]], [[3.0, 0.0], [0.0, 2.0]]]))
    assert np.isnan(s.numpy()[0]).all() and np.isnan(u.numpy()[0]).all() and np.isnan(v.numpy()[0]).all()
    np.testing.assert_allclose(s.numpy()[1], [3.0, 2.0])
    x = tf.linalg.triangular_solve(tf.constant([[0.0, 0.0], [1.0, 1.0]]), tf.ones((2, 1)))
    np.testing.assert_array_equal(x.numpy(), [[np.inf], [-np.inf]])


@pytest.mark.parametrize("n,batch,lower,adjoint",
                         [(40, (2,), True, False), (40, (), False, True), (5, (3,), True, True)])
@pytest.mark.parametrize("solver", ["default", "substitution"])
def test_triangular_solve_paths_agree_with_a_dense_solve(n, batch, lower, adjoint, solver, monkeypatch, device):
    if solver == "substitution":  # what runs without SciPy
        monkeypatch.setattr(linalg_ops, "_SUBSTITUTION_MAX_N", 10 ** 6)
    rng = np.random.default_rng(0)
    a = rng.standard_normal(batch + (n, n)) + np.eye(n) * (n ** 0.5 + 2)
    b = rng.standard_normal(batch + (n, 3))
    tri = np.tril(a) if lower else np.triu(a)
    want = np.linalg.solve(np.swapaxes(tri, -1, -2) if adjoint else tri, b)
    got = tf.linalg.triangular_solve(tf.constant(a), tf.constant(b), lower=lower, adjoint=adjoint)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)
    sing = np.tril(np.ones((n, n))) if lower else np.triu(np.ones((n, n)))
    sing[n // 2, n // 2] = 0.0
    assert not np.isfinite(tf.linalg.triangular_solve(tf.constant(sing), tf.ones((n, 1), tf.float64),
                                                      lower=lower).numpy()).all()


def test_only_s_of_svd_gives_tensorflows_gradient(device):
    a = tf.constant(record.make_input(np.random.default_rng(0), (3, 5), "gen"))
    grads = []
    for f in (lambda x: tf.linalg.svd(x)[0], lambda x: tf.linalg.svd(x, compute_uv=False)):
        with tf.GradientTape() as tape:
            tape.watch(a)
            s = f(a)
        grads.append(tape.gradient(s, a).numpy())
    _, u, v = tf.linalg.svd(a)
    want = u.numpy() @ v.numpy().T  # u diag(1) v^T
    for g in grads:
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("f,shape,msg", [
    (lambda x: tf.linalg.svd(x, full_matrices=True)[0], (2, 5), "abs\\(m - n\\) > 1"),
    (lambda x: tf.linalg.qr(x, full_matrices=True)[1], (5, 2), "nrows > ncols"),
])
def test_gradients_tensorflow_does_not_define_raise(f, shape, msg):
    x = tf.ones(shape, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = f(x)
    with pytest.raises(NotImplementedError, match=msg):
        tape.gradient(y, x)


def test_float16_where_tensorflow_has_a_kernel():
    a = tf.constant([[2.0, 1.0], [1.0, 4.0]], tf.float16)
    inv = tf.linalg.inv(a)
    assert inv.dtype == tf.float16
    np.testing.assert_allclose(inv.numpy(), np.linalg.inv(a.numpy().astype(np.float64)), rtol=2e-3)
    q, r = tf.linalg.qr(a)
    assert q.dtype == tf.float16 and r.dtype == tf.float16
    np.testing.assert_allclose((q.numpy().astype(np.float32) @ r.numpy()), a.numpy(), atol=1e-2)
    for f in (tf.linalg.det, tf.linalg.cholesky, tf.linalg.eigh, tf.linalg.svd, tf.linalg.slogdet,
              lambda x: tf.linalg.solve(x, x), lambda x: tf.linalg.triangular_solve(x, x)):
        with pytest.raises(NotFoundError, match="no kernel for dtype float16"):
            f(a)


M3 = np.eye(3, dtype=np.float32)
BAD = [
    (lambda: tf.linalg.inv(tf.constant([[1, 2], [3, 4]])), InvalidArgumentError, "inv: input has dtype int32"),
    (lambda: tf.linalg.det(tf.constant([[1, 2], [3, 4]], tf.int64)), InvalidArgumentError, "not in the list"),
    (lambda: tf.linalg.svd(tf.constant([[1, 2], [3, 4]])), InvalidArgumentError, "svd: tensor has dtype int32"),
    (lambda: tf.linalg.solve(tf.constant([[1, 2], [3, 4]]), tf.constant([[1], [2]])), InvalidArgumentError,
     "int32"),
    (lambda: tf.linalg.inv(tf.ones((3,))), InvalidArgumentError, "rank >= 2.*\\(3,\\)"),
    (lambda: tf.linalg.qr(tf.ones((3,))), InvalidArgumentError, "qr: input must have rank >= 2"),
    (lambda: tf.linalg.eigh(tf.ones(())), InvalidArgumentError, "rank >= 2"),
    (lambda: tf.linalg.det(tf.ones((2, 3))), InvalidArgumentError, "det: input must be a square matrix.*\\(2, 3\\)"),
    (lambda: tf.linalg.slogdet(tf.ones((2, 3))), InvalidArgumentError, "square"),
    (lambda: tf.linalg.cholesky(tf.ones((2, 3))), InvalidArgumentError, "square"),
    (lambda: tf.linalg.eigh(tf.ones((2, 3))), InvalidArgumentError, "square"),
    (lambda: tf.linalg.inv(tf.ones((4, 2, 3))), InvalidArgumentError, "square"),
    (lambda: tf.linalg.solve(tf.ones((2, 3)), tf.ones((2, 1))), InvalidArgumentError, "matrix must be a square"),
    (lambda: tf.linalg.solve(M3, tf.ones((2, 1))), InvalidArgumentError, "incompatible.*rhs needs 3 rows"),
    (lambda: tf.linalg.solve(M3, tf.ones((3,))), InvalidArgumentError, "rhs must have rank >= 2"),
    (lambda: tf.linalg.solve(tf.ones((2, 3, 3)), tf.ones((3, 1))), InvalidArgumentError, "same rank"),
    (lambda: tf.linalg.solve(tf.ones((2, 3, 3)), tf.ones((1, 3, 1))), InvalidArgumentError, "outer dimensions"),
    (lambda: tf.linalg.solve(tf.constant(M3), tf.ones((3, 1), tf.float64)), InvalidArgumentError, "same dtype"),
    (lambda: tf.linalg.triangular_solve(tf.ones((2, 3)), tf.ones((2, 1))), InvalidArgumentError, "square"),
    (lambda: tf.linalg.triangular_solve(M3, tf.ones((2, 1))), InvalidArgumentError, "rhs needs 3 rows"),
    (lambda: tf.linalg.triangular_solve(tf.ones((2, 3, 3)), tf.ones((4, 3, 1))), InvalidArgumentError,
     "compatible batch dimensions"),
    (lambda: tf.linalg.diag_part(tf.ones((3,))), InvalidArgumentError, "at least 2-dim"),
    (lambda: tf.linalg.diag_part(tf.ones((3, 4)), k=4), InvalidArgumentError, "k=4 is out of bound"),
    (lambda: tf.linalg.diag_part(tf.ones((3, 4)), k=-3), InvalidArgumentError, "out of bound"),
    (lambda: tf.linalg.diag_part(tf.ones((3, 4)), k=(-1, 1)), NotImplementedError, "only one diagonal"),
    (lambda: tf.linalg.diag(tf.ones(())), InvalidArgumentError, "at least 1-dim"),
    (lambda: tf.linalg.diag(tf.ones((2,)), num_rows=1), InvalidArgumentError, "number of rows is too small"),
    (lambda: tf.linalg.diag(tf.ones((2,)), k=1, num_rows=3, num_cols=4), InvalidArgumentError, "not consistent"),
    (lambda: tf.linalg.trace(tf.ones((3,))), InvalidArgumentError, "at least 2-dim"),
    (lambda: tf.linalg.band_part(tf.ones((3,)), 0, 0), InvalidArgumentError, "at least 2-dim"),
    (lambda: tf.linalg.band_part(tf.ones((3, 4)), 4, 0), InvalidArgumentError, "num_lower.*rows \\(3\\) got: 4"),
    (lambda: tf.linalg.band_part(tf.ones((3, 4)), 0, 5), InvalidArgumentError, "num_upper"),
    (lambda: tf.linalg.band_part(tf.ones((3, 4)), 0.5, 1), TypeError, "num_lower must be an int"),
    (lambda: tf.linalg.matrix_transpose(tf.ones((3,))), ValueError, "rank >= 2"),
]


@pytest.mark.parametrize("f,exc,msg", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_raises_a_clear_error(f, exc, msg):
    with pytest.raises(exc, match=msg):
        f()


@pytest.mark.parametrize("f,want", [
    (lambda x: tf.linalg.trace(x), 5),
    (lambda x: tf.linalg.diag_part(x), [1, 4]),
    (lambda x: tf.linalg.band_part(x, 0, 0), [[1, 0], [0, 4]]),
    (lambda x: tf.linalg.diag(tf.linalg.diag_part(x)), [[1, 0], [0, 4]]),
    (lambda x: tf.linalg.matrix_transpose(x), [[1, 3], [2, 4]]),
])
def test_diagonal_and_band_ops_take_integers_like_tensorflow(f, want):
    got = f(tf.constant([[1, 2], [3, 4]]))
    assert got.dtype == tf.int32
    np.testing.assert_array_equal(got.numpy(), want)


def test_band_part_takes_integer_tensors():
    got = tf.linalg.band_part(tf.ones((2, 2)), tf.constant(0), tf.constant(-1))
    np.testing.assert_array_equal(got.numpy(), [[1.0, 1.0], [0.0, 1.0]])


def test_result_tuples_are_named_like_tensorflows():
    x = tf.constant([[2.0, 1.0], [1.0, 3.0]])
    q, r = tf.linalg.qr(x)
    res = tf.linalg.qr(x)
    assert res._fields == ("q", "r") and res.q is res[0] and res.r is res[1]
    np.testing.assert_allclose((res.q @ res.r).numpy(), x.numpy(), rtol=1e-6)
    ld = tf.linalg.slogdet(x)
    assert ld._fields == ("sign", "log_abs_determinant")
    np.testing.assert_allclose([float(ld.sign), float(ld.log_abs_determinant)], [1.0, np.log(5.0)], rtol=1e-6)
