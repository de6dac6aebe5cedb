"""Numerics at the extremes: stable formulations give finite values and gradients equal to a float64
reference (computed here in NumPy with the textbook stable formula), and check_numerics catches the first
op that produces NaN/Inf, forward and backward."""

import re

import numpy as np
import pytest

import accel as tf
from accel.errors import InvalidArgumentError

DTYPES = [np.float32, np.float64]


def _tol(dt):
    return dict(rtol=2e-6, atol=1e-30) if dt == np.float64 else dict(rtol=1e-5, atol=1e-30)


def _log_softmax_ref(x, axis=-1):
    x = np.asarray(x, np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _softmax_ref(x, axis=-1):
    return np.exp(_log_softmax_ref(x, axis))


def _sigmoid_ref(x):
    x = np.asarray(x, np.float64)
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def _value_and_grads(f, *arrays, r=None):
    """f's value and the vector-Jacobian product with r (default ones) for each input."""
    ts = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        for t in ts:
            tape.watch(t)
        out = f(*ts)
    og = None if r is None else tf.constant(np.asarray(r, arrays[0].dtype))
    grads = tape.gradient(out, ts, output_gradients=og)
    return out.numpy(), [g.numpy() for g in grads]


def _close(actual, expected, dt, what):
    assert np.all(np.isfinite(actual)), "%s not finite: %r" % (what, actual)
    assert actual.dtype == dt, "%s has dtype %s, expected %s" % (what, actual.dtype, dt)
    np.testing.assert_allclose(actual.astype(np.float64), expected, err_msg=what, **_tol(dt))


# logits rows at the extremes: huge positive/negative spreads, all equal and huge, mixed signs
EXTREME_LOGITS = np.array([
    [1e4, -1e4, 0.0, 5.0],
    [-1e4, -1e4 + 1.0, -1e4 + 2.0, -1e4],
    [1e4, 1e4, 1e4, 1e4],
    [1e4, 1e4 - 1.0, -1e4, 3.0],
])


@pytest.mark.parametrize("dt", DTYPES)
def test_log_softmax_extreme(dt):
    x = EXTREME_LOGITS.astype(dt)
    r = np.random.default_rng(0).standard_normal(x.shape)
    val, (g,) = _value_and_grads(lambda t: tf.nn.log_softmax(t), x, r=r)
    ref = _log_softmax_ref(x)
    _close(val, ref, dt, "log_softmax")
    # d/dx sum(r * log_softmax(x)) = r - softmax(x) * sum(r)
    gref = r - _softmax_ref(x) * r.sum(-1, keepdims=True)
    _close(g, gref, dt, "log_softmax gradient")


@pytest.mark.parametrize("dt", DTYPES)
def test_softmax_extreme(dt):
    x = EXTREME_LOGITS.astype(dt)
    r = np.random.default_rng(1).standard_normal(x.shape)
    val, (g,) = _value_and_grads(lambda t: tf.nn.softmax(t), x, r=r)
    s = _softmax_ref(x)
    np.testing.assert_allclose(val, s, rtol=1e-5, atol=1e-7)
    gref = s * (r - (r * s).sum(-1, keepdims=True))
    np.testing.assert_allclose(g, gref, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("dt", DTYPES)
def test_softmax_cross_entropy_extreme(dt):
    x = EXTREME_LOGITS.astype(dt)
    labels = np.array([[0.0, 1.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0],
                       [0.0, 0.0, 0.5, 0.5]], dt)
    val, (gl, gx) = _value_and_grads(
        lambda lab, t: tf.nn.softmax_cross_entropy_with_logits(labels=lab, logits=t), labels, x)
    ls = _log_softmax_ref(x)
    ref = -(labels * ls).sum(-1)
    _close(val, ref, dt, "softmax_cross_entropy value")
    assert val[0] == pytest.approx(2e4, rel=1e-6)  # the loss really is huge, not clipped
    _close(gx, _softmax_ref(x) * labels.sum(-1, keepdims=True) - labels, dt, "gradient wrt logits")
    _close(gl, -ls, dt, "gradient wrt labels")


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("label_dt", [np.int32, np.int64])
def test_sparse_softmax_cross_entropy_extreme(dt, label_dt):
    x = EXTREME_LOGITS.astype(dt)
    labels = np.array([1, 2, 0, 2], label_dt)
    lab = tf.constant(labels)
    val, (gx,) = _value_and_grads(
        lambda t: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=lab, logits=t), x)
    ls = _log_softmax_ref(x)
    ref = -ls[np.arange(4), labels]
    _close(val, ref, dt, "sparse xent value")
    onehot = np.eye(4)[labels]
    _close(gx, _softmax_ref(x) - onehot, dt, "sparse xent gradient")


@pytest.mark.parametrize("dt", DTYPES)
def test_sigmoid_at_100(dt):
    x = np.array([-100.0, -30.0, 0.0, 30.0, 100.0], dt)
    val, (g,) = _value_and_grads(tf.sigmoid, x)
    s = _sigmoid_ref(x)
    _close(val, s, dt, "sigmoid")
    assert val[-1] == 1.0 and 0 < val[0] < 1e-40
    # the gradient s(1 - s) peaks at 0.25: absolute accuracy to an ulp of that, finite, non-negative
    gref = s * _sigmoid_ref(-x)
    assert np.all(np.isfinite(g)) and np.all(g >= 0)
    np.testing.assert_allclose(g, gref, rtol=1e-5, atol=np.finfo(dt).eps)


@pytest.mark.parametrize("dt", DTYPES)
def test_sigmoid_gradient_follows_tensorflow(dt):
    # TF's SigmoidGrad is s * (1 - s): exact for x << 0, and 1 - s cancels to 0 for x >> 0 (absolute
    # error below 1e-13); accel matches TF's numbers rather than the true derivative there
    x = np.array([-100.0, -30.0, 30.0, 100.0], dt)
    _, (g,) = _value_and_grads(tf.sigmoid, x)
    s = tf.sigmoid(tf.constant(x)).numpy()
    np.testing.assert_array_equal(g, s * (1 - s))
    np.testing.assert_allclose(g[:2], _sigmoid_ref(x[:2]) * _sigmoid_ref(-x[:2]), rtol=1e-4, atol=1e-44)
    assert np.all(np.abs(g - _sigmoid_ref(x) * _sigmoid_ref(-x)) < 1e-12)


@pytest.mark.parametrize("dt", DTYPES)
def test_softplus_at_100(dt):
    x = np.array([-100.0, -20.0, 0.0, 20.0, 100.0], dt)
    val, (g,) = _value_and_grads(tf.nn.softplus, x)
    ref = np.maximum(x.astype(np.float64), 0) + np.log1p(np.exp(-np.abs(x.astype(np.float64))))
    np.testing.assert_allclose(val, ref, rtol=1e-6, atol=1e-43 if dt == np.float32 else 1e-300)
    assert val[-1] == 100.0 and val[0] > 0
    np.testing.assert_allclose(g, _sigmoid_ref(x), rtol=1e-5, atol=1e-43 if dt == np.float32 else 1e-300)


@pytest.mark.parametrize("dt", DTYPES)
def test_sigmoid_cross_entropy_extreme(dt):
    x = np.array([1e4, -1e4, 1e4, -1e4, 0.0, 50.0], dt)
    z = np.array([0.0, 1.0, 1.0, 0.0, 0.3, 0.7], dt)
    val, (gz, gx) = _value_and_grads(
        lambda lab, t: tf.nn.sigmoid_cross_entropy_with_logits(labels=lab, logits=t), z, x)
    xd, zd = x.astype(np.float64), z.astype(np.float64)
    ref = np.maximum(xd, 0) - xd * zd + np.log1p(np.exp(-np.abs(xd)))
    _close(val, ref, dt, "sigmoid xent value")
    assert val[0] == pytest.approx(1e4) and val[2] == pytest.approx(0.0, abs=1e-30)
    np.testing.assert_allclose(gx, _sigmoid_ref(xd) - zd, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gz, -xd, rtol=1e-6)
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gz))


@pytest.mark.parametrize("dt", DTYPES)
def test_reduce_logsumexp_large(dt):
    big = 1e4
    x = np.array([[big, big, 0.0], [-big, -big, -big], [big, -big, 1.0]], dt)
    val, (g,) = _value_and_grads(lambda t: tf.reduce_logsumexp(t, axis=1), x)
    xd = x.astype(np.float64)
    m = xd.max(1, keepdims=True)
    ref = (m + np.log(np.exp(xd - m).sum(1, keepdims=True)))[:, 0]
    _close(val, ref, dt, "reduce_logsumexp")
    # exp(x - out) with out rounded at 1e4: float32 loses ~ulp(1e4) = 1e-3 absolute in the exponent
    np.testing.assert_allclose(g, np.exp(xd - ref[:, None]), rtol=1e-3 if dt == np.float32 else 1e-9, atol=1e-7)


@pytest.mark.parametrize("dt, big", [(np.float32, 1e30), (np.float64, 1e300)])
def test_reduce_logsumexp_huge_value(dt, big):
    x = tf.constant(np.array([[big, big, 0.0], [big, -big, 1.0]], dt))
    val = tf.reduce_logsumexp(x, axis=1).numpy()
    np.testing.assert_allclose(val, [big, big], rtol=np.finfo(dt).eps)


@pytest.mark.parametrize("dt, big", [(np.float32, 1e30), (np.float64, 1e300), (np.float64, 1e17)])
def test_reduce_logsumexp_huge_gradient(dt, big):
    x = np.array([[big, big, 0.0], [big, -big, 1.0]], dt)
    _, (g,) = _value_and_grads(lambda t: tf.reduce_logsumexp(t, axis=1), x)
    np.testing.assert_allclose(g, [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dt", DTYPES)
def test_reduce_logsumexp_with_minus_inf(dt):
    x = np.array([[-np.inf, 0.0, 1.0], [-np.inf, -np.inf, 2.0], [3.0, -np.inf, 3.0]], dt)
    val, (g,) = _value_and_grads(lambda t: tf.reduce_logsumexp(t, axis=1), x)
    ref = np.array([np.log(1 + np.e), 2.0, 3.0 + np.log(2.0)])
    _close(val, ref, dt, "reduce_logsumexp with -inf")
    assert np.all(np.isfinite(g)), g
    np.testing.assert_array_equal(g[x == -np.inf], 0.0)  # -inf entries get exactly zero gradient
    np.testing.assert_allclose(g.sum(1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("dt", DTYPES)
def test_reduce_logsumexp_all_minus_inf_value(dt):
    x = tf.constant(np.full((3,), -np.inf, dt))
    with np.errstate(all="ignore"):
        assert tf.reduce_logsumexp(x).numpy() == -np.inf


@pytest.mark.parametrize("dt", DTYPES)
def test_division_near_zero(dt):
    tiny = np.finfo(dt).tiny * 16  # smallest normal numbers
    x = np.array([1.0, -2.0, 0.5], dt)
    y = np.array([1e-20, -1e-20, 4.0], dt) if dt == np.float64 else np.array([1e-10, -1e-10, 4.0], dt)
    val, (gx, gy) = _value_and_grads(tf.divide, x, y)
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    _close(val, xd / yd, dt, "x / y")
    _close(gx, 1 / yd, dt, "d(x/y)/dx")
    _close(gy, -xd / yd ** 2, dt, "d(x/y)/dy")
    # divide_no_nan: 0 where y == 0, value and both gradients finite (zero there)
    x2 = np.array([1.0, 0.0, 3.0, tiny], dt)
    y2 = np.array([0.0, 0.0, 2.0, 0.0], dt)
    val, (gx, gy) = _value_and_grads(tf.math.divide_no_nan, x2, y2)
    np.testing.assert_array_equal(val, np.array([0.0, 0.0, 1.5, 0.0], dt))
    np.testing.assert_array_equal(gx, np.array([0.0, 0.0, 0.5, 0.0], dt))
    np.testing.assert_allclose(gy, np.array([0.0, 0.0, -0.75, 0.0], dt))


@pytest.mark.parametrize("dt", DTYPES)
def test_where_sqrt_trap(dt):
    """where(x > 0, sqrt(x), 0): the untaken branch is NaN (x < 0) or has an infinite derivative (x == 0);
    the gradient must still be finite (0 there) and exact elsewhere."""
    x = np.array([-1.0, 0.0, 4.0, 0.25], dt)
    with np.errstate(invalid="ignore", divide="ignore"):
        val, (g,) = _value_and_grads(lambda t: tf.where(t > 0, tf.sqrt(t), tf.zeros_like(t)), x)
    np.testing.assert_array_equal(val, np.array([0.0, 0.0, 2.0, 0.5], dt))
    assert np.all(np.isfinite(g)), g
    np.testing.assert_allclose(g, np.array([0.0, 0.0, 0.25, 1.0], dt), rtol=1e-6)
    # the double-where idiom
    val, (g,) = _value_and_grads(
        lambda t: tf.where(t > 0, tf.sqrt(tf.where(t > 0, t, tf.ones_like(t))), tf.zeros_like(t)), x)
    np.testing.assert_allclose(g, np.array([0.0, 0.0, 0.25, 1.0], dt), rtol=1e-6)


@pytest.mark.parametrize("dt", DTYPES)
def test_where_log_double_where(dt):
    x = np.array([0.0, -3.0, np.e], dt)
    val, (g,) = _value_and_grads(
        lambda t: tf.where(t > 0, tf.math.log(tf.where(t > 0, t, tf.ones_like(t))), tf.zeros_like(t)), x)
    np.testing.assert_allclose(val, [0.0, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(g, [0.0, 0.0, 1 / np.e], rtol=1e-6)


@pytest.mark.parametrize("dt", DTYPES)
def test_where_log_trap(dt):
    x = np.array([0.0, -3.0, np.e], dt)
    with np.errstate(invalid="ignore", divide="ignore"):
        val, (g,) = _value_and_grads(lambda t: tf.where(t > 0, tf.math.log(t), tf.zeros_like(t)), x)
    np.testing.assert_allclose(val, [0.0, 0.0, 1.0], rtol=1e-6)
    # as in TF 2.21: log's rule is g / x, so the unselected branch gives 0 / 0 = NaN at x = 0 (only sqrt's
    # rule masks a zero incoming gradient); the safe form is the double where above
    assert np.isnan(g[0]) and g[1] == 0.0
    np.testing.assert_allclose(g[2], 1 / np.e, rtol=1e-6)


# --- check_numerics ----------------------------------------------------------------------------

@pytest.fixture
def numerics_on():
    tf.debugging.enable_check_numerics()
    try:
        yield
    finally:
        tf.debugging.disable_check_numerics()


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_check_numerics_rejects(bad, kind):
    t = tf.constant([1.0, bad, 2.0])
    with pytest.raises(InvalidArgumentError, match=r"my_tensor.*%s" % kind):
        tf.debugging.check_numerics(t, "my_tensor")


def test_check_numerics_passes_finite_and_grad_flows():
    x = tf.constant([1.0, 2.0])
    with tf.GradientTape() as t:
        t.watch(x)
        y = tf.debugging.check_numerics(x * 3.0, "y")
        loss = tf.reduce_sum(y)
    np.testing.assert_array_equal(y.numpy(), [3.0, 6.0])
    np.testing.assert_array_equal(t.gradient(loss, x).numpy(), [3.0, 3.0])


def test_check_numerics_int_tensor_is_type_error():
    with pytest.raises(TypeError, match="float"):
        tf.debugging.check_numerics(tf.constant([1, 2]), "ints")


FORWARD_TRAPS = [
    # (builder, the op that must be named as the first offender)
    (lambda x: tf.exp(tf.math.log(x - 2.0) * 2.0), "log"),  # log of negatives -> NaN first at log
    (lambda x: tf.sqrt(x - 5.0) + 1.0, "sqrt"),
    (lambda x: tf.exp(x * 100.0) - 1.0, "exp"),  # overflow to inf at exp, not at the subtract after it
    (lambda x: tf.math.reciprocal(x - 1.0) * 0.0, "reciprocal"),  # 1/0 -> inf; *0 would hide it as NaN
    (lambda x: tf.divide(x, tf.zeros_like(x)), "(divide|truediv|realdiv)"),
]


@pytest.mark.parametrize("build, op", FORWARD_TRAPS)
def test_enable_check_numerics_names_first_forward_op(numerics_on, build, op):
    x = tf.constant([1.0, 2.0, 3.0])
    with np.errstate(all="ignore"):
        with pytest.raises(InvalidArgumentError) as info:
            build(x)
    msg = str(info.value)
    assert re.search(r"op '%s'" % op, msg), msg
    assert "output" in msg
    assert "test_numerics.py" in msg  # names the user's line


def test_enable_check_numerics_backward(numerics_on):
    """sqrt(0) is finite forward; its derivative at 0 is infinite: the backward pass must be caught."""
    x = tf.constant([0.0, 4.0])
    with tf.GradientTape() as t:
        t.watch(x)
        y = tf.reduce_sum(tf.sqrt(x) * 2.0)
    with np.errstate(all="ignore"):
        with pytest.raises(InvalidArgumentError, match=r"gradient.*op '(sqrt|multiply)'"):
            t.gradient(y, x)


def test_enable_check_numerics_backward_names_op(numerics_on):
    x = tf.constant([0.0, 1.0])
    with tf.GradientTape() as t:
        t.watch(x)
        y = tf.reduce_sum(tf.math.log(x + 1.0) + tf.pow(x, 0.5))
    with np.errstate(all="ignore"):
        with pytest.raises(InvalidArgumentError, match=r"gradient.*op 'pow'"):
            t.gradient(y, x)


def test_check_numerics_off_by_default_and_after_disable():
    with np.errstate(all="ignore"):
        assert np.isnan(tf.math.log(tf.constant(-1.0)).numpy())
        tf.debugging.enable_check_numerics()
        try:
            with pytest.raises(InvalidArgumentError):
                tf.math.log(tf.constant(-1.0))
        finally:
            tf.debugging.disable_check_numerics()
        assert np.isnan(tf.math.log(tf.constant(-1.0)).numpy())


def test_check_numerics_clean_training_step_passes(numerics_on):
    """Enabled checks must not fire on a healthy step with extreme-but-finite logits."""
    w = tf.Variable(np.eye(4, dtype=np.float32) * 1e3)
    x = tf.constant(EXTREME_LOGITS.astype(np.float32) / 1e3)
    with tf.GradientTape() as t:
        logits = tf.matmul(x, w)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant([0, 1, 2, 3]), logits=logits))
    g = t.gradient(loss, w)
    assert np.all(np.isfinite(g.numpy())) and np.isfinite(loss.numpy())
