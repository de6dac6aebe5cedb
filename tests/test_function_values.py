"""Tensors whose values Python reads inside accel.function: an int index tensor is an input of the plan
(getitem_at), and a value that decides a shape or an argument (a mask's true positions, a shape tensor,
axes, a segment count) is guarded, so a call with another value traces its own path. Each case: several
calls with changing values, each equal to eager (values and, where it applies, gradients)."""

import numpy as np
import pytest

import accel as tf

rng = np.random.default_rng(3)
X = np.arange(24, dtype=np.float32).reshape(4, 6) / 7.0


def _i(*v):
    return tf.constant(np.array(v, np.int32))


def _b(*v):
    return tf.constant(np.array(v, bool))


# name -> (fn, [args per call], traces expected: None where a guard path per distinct value is expected)
CASES = {
    "scalar_index": (lambda x, i: x[i] * 2.0, [(X, _i(1)[0]), (X, _i(3)[0]), (X, _i(-1)[0])], 1),
    "index_vector": (lambda x, i: x[i], [(X, _i(0, 2)), (X, _i(3, 3)), (X, _i(-1, 0))], 1),
    "index_and_slice": (lambda x, i: x[i, 1:4], [(X, _i(2)[0]), (X, _i(0)[0])], 1),
    "two_index_tensors": (lambda x, i, j: x[i, j], [(X, _i(0, 1), _i(5, 5)), (X, _i(3, 3), _i(0, 2))], 1),
    "index_on_axis_1": (lambda x, j: x[:, j], [(X, _i(1, 4)), (X, _i(5, 0))], 1),
    "bool_mask_key": (lambda x, m: tf.reduce_sum(x[m]), [(X, _b(1, 0, 1, 0)), (X, _b(1, 1, 1, 0)),
                                                         (X, _b(1, 0, 1, 0))], None),
    "boolean_mask": (lambda x, m: tf.boolean_mask(x, m) * 3.0, [(X, _b(0, 1, 0, 0)), (X, _b(1, 1, 0, 1))], None),
    "where_one_argument": (lambda m: tf.where(m), [(_b(1, 0, 1, 0),), (_b(0, 0, 0, 1),)], None),
    "reshape_to_a_shape_tensor": (lambda x, s: tf.reshape(x, s), [(X, _i(6, 4)), (X, _i(3, 8))], None),
    "reduce_over_an_axis_tensor": (lambda x, a: tf.reduce_sum(x, axis=a), [(X, _i(0)[0]), (X, _i(1)[0])], None),
    "tile_multiples_tensor": (lambda x, m: tf.tile(x, m), [(X, _i(1, 2)), (X, _i(2, 1))], None),
    "zeros_of_a_shape_tensor": (lambda s: tf.zeros(s) + 1.0, [(_i(2, 3),), (_i(1, 4),)], None),
    "segment_count_tensor": (lambda d, s, n: tf.math.unsorted_segment_sum(d, s, n),
                             [(X, _i(0, 1, 0, 1), _i(2)[0]), (X, _i(0, 1, 2, 1), _i(3)[0])], None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_read_inside_a_function_follow_each_call(name):
    fn, calls, traces = CASES[name]
    f = tf.function(fn)
    for args in calls:
        args = [tf.constant(a) if isinstance(a, np.ndarray) else a for a in args]
        got, want = f(*args), fn(*args)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    if traces is not None:
        assert f.experimental_get_tracing_count() == traces


@pytest.mark.parametrize("repeat", [False, True])
def test_gradients_through_index_tensors_equal_eager(repeat):
    """getitem_at's rule: the cotangent scattered to the indexed places (accumulated where indices repeat)."""
    v = tf.Variable(X)

    def step(i, j):
        with tf.GradientTape() as t:
            loss = tf.reduce_sum(v[i, j] * 3.0) + tf.reduce_sum(tf.square(v[i]))
        return loss, t.gradient(loss, v)

    f = tf.function(step)
    for i, j in ([(1, [0, 0, 3] if repeat else [0, 2, 3]), (2, [5, 5, 5] if repeat else [1, 4, 5]),
                  (-1, [0, 1, 2])]):
        args = (_i(i)[0], _i(*j))
        (lg, gg), (le, ge) = f(*args), step(*args)
        np.testing.assert_array_equal(lg.numpy(), le.numpy())
        np.testing.assert_array_equal(gg.numpy(), ge.numpy())
    assert f.experimental_get_tracing_count() == 1


def test_index_tensor_gradient_matches_finite_differences():
    x = rng.standard_normal((5, 3))
    idx = np.array([4, 0, 4, 2])

    def loss(a):
        return tf.reduce_sum(tf.sin(tf.constant(a)[tf.constant(idx)]))

    a = tf.Variable(x)
    with tf.GradientTape() as t:
        val = tf.reduce_sum(tf.sin(a[tf.constant(idx)]))
    g = t.gradient(val, a).numpy()
    eps, fd = 1e-6, np.zeros_like(x)
    for k in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[k] = eps
        fd[k] = (loss(x + d).numpy() - loss(x - d).numpy()) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_a_value_guard_shows_in_explain():
    f = tf.function(lambda x, m: tf.boolean_mask(x, m))
    f(tf.constant(X), _b(1, 0, 1, 0))
    assert "1 guards" in f.explain(), f.explain()


def test_explain_lists_each_guard_with_what_it_checks():
    f = tf.function(lambda x, m: tf.boolean_mask(x, m) if tf.reduce_sum(x) > 2.0 else x)
    f(tf.constant(X[0]), _b(1, 0, 1, 0, 0, 1))
    text = f.explain()
    assert "guard: bool() of the result of greater was True" in text, text
    assert "guard: value of an input was [ True False  True False False  True]" in text, text
