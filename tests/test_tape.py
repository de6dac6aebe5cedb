"""GradientTape semantics, written from TensorFlow's documented behaviour."""

import gc
import threading
import weakref

import numpy as np
import pytest

import accel as tf


def test_linear_model_seed_trains(device):
    # the seed program: fit y = 2x with a Variable and assign_sub
    x = tf.constant([1.0, 2.0, 3.0, 4.0])
    y = x * 2
    w = tf.Variable(0.0)
    for _ in range(100):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(w * x - y))
        dw = tape.gradient(loss, w)
        w.assign_sub(0.05 * dw)
    assert abs(float(w) - 2.0) < 1e-4


def test_watch_plain_tensor_for_input_sensitivity(device):
    x = tf.constant([1.0, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(x ** 2)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [2.0, 4.0])


def test_unwatched_constant_gets_none_while_others_get_gradients(device):
    c = tf.constant(3.0)
    v = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        y = c * v
    gc_, gv = tape.gradient(y, [c, v])
    assert gc_ is None
    assert float(gv) == 3.0


def test_value_computed_before_tape_has_no_path(device):
    v = tf.Variable(1.0)
    y = v * 2
    with tf.GradientTape() as tape:
        z = y + 1
    assert tape.gradient(z, [v]) == [None]


def test_unconnected_zero(device):
    v = tf.Variable([1.0, 2.0])
    u = tf.Variable(3.0)
    with tf.GradientTape() as tape:
        y = u * 2
    g = tape.gradient(y, v, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0])
    with tf.GradientTape() as tape:
        y = u * 2
    assert tape.gradient(y, v, unconnected_gradients="none") is None
    with pytest.raises(ValueError, match="unconnected_gradients"):
        with tf.GradientTape() as tape:
            y = u * 2
        tape.gradient(y, v, unconnected_gradients="bogus")


def test_non_persistent_second_call_raises(device):
    x = tf.Variable(1.0)
    with tf.GradientTape() as tape:
        y = x * x
    tape.gradient(y, x)
    with pytest.raises(RuntimeError, match="non-persistent"):
        tape.gradient(y, x)


def test_persistent_tape_many_calls(device):
    x = tf.constant(3.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = y * y
    assert float(tape.gradient(z, x)) == 108.0
    assert float(tape.gradient(y, x)) == 6.0
    assert float(tape.gradient(z, y)) == 18.0  # intermediate values are sources too


def test_structures_of_targets_and_sources(device):
    a = tf.Variable(1.0)
    b = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        y1 = a * b
        y2 = a + b
    g = tape.gradient({"p": y1, "q": [y2]}, {"a": a, "rest": (b,)})
    assert set(g) == {"a", "rest"} and isinstance(g["rest"], tuple)
    assert float(g["a"]) == 3.0 and float(g["rest"][0]) == 2.0


def test_non_scalar_target_is_summed_and_output_gradients(device):
    x = tf.Variable([1.0, 2.0, 3.0])
    with tf.GradientTape(persistent=True) as tape:
        y = x * x
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [2, 4, 6])
    og = tf.constant([1.0, 0.0, 2.0])
    np.testing.assert_allclose(tape.gradient(y, x, output_gradients=og).numpy(), [2, 0, 12])


def test_watch_accessed_variables_false(device):
    a = tf.Variable(2.0)
    b = tf.Variable(3.0)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(a)
        y = a * b
    ga, gb = tape.gradient(y, [a, b])
    assert float(ga) == 3.0 and gb is None
    assert tape.watched_variables() == (a,)


def test_non_trainable_variable_gets_none(device):
    v = tf.Variable(1.0, trainable=False)
    with tf.GradientTape() as tape:
        y = v * 3
    assert tape.gradient(y, v) is None


def test_watched_variables_lists_accessed(device):
    a = tf.Variable(1.0, name="a")
    b = tf.Variable(1.0, name="b")
    with tf.GradientTape() as tape:
        _ = a * 2
    assert tape.watched_variables() == (a,)
    assert b.name == "b:0"


def test_integer_sources_get_none_and_watch_warns(device):
    i = tf.constant(3)
    with pytest.warns(UserWarning, match="floating"):
        with tf.GradientTape() as tape:
            tape.watch(i)
            y = i * 2
    assert tape.gradient(y, i) is None
    iv = tf.Variable(3)
    with tf.GradientTape() as tape:
        y = iv * 2
    assert tape.gradient(y, iv) is None


def test_stop_recording_and_stop_gradient(device):
    x = tf.Variable(2.0)
    with tf.GradientTape(persistent=True) as tape:
        y = x * x
        with tape.stop_recording():
            z = y * 3
        w = tf.stop_gradient(y) * x
    assert tape.gradient(z, x) is None
    assert float(tape.gradient(w, x)) == 4.0


def test_reset(device):
    x = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        y = x * x
        tape.reset()
        z = x * 3
    assert float(tape.gradient(z, x)) == 3.0
    assert float(y) == 4.0


def test_nested_tapes_second_and_third_derivatives(device):
    x = tf.constant(2.0)
    with tf.GradientTape() as t3:
        t3.watch(x)
        with tf.GradientTape() as t2:
            t2.watch(x)
            with tf.GradientTape() as t1:
                t1.watch(x)
                y = x ** 4
            d1 = t1.gradient(y, x)
        d2 = t2.gradient(d1, x)
    d3 = t3.gradient(d2, x)
    assert (float(d1), float(d2), float(d3)) == (32.0, 48.0, 48.0)


def test_hessian_via_jacobian_of_gradient(device):
    x = tf.Variable([1.0, 2.0])
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            y = x[0] ** 2 * x[1] + tf.sin(x[1])
        g = inner.gradient(y, x)
    h = outer.jacobian(g, x)
    want = np.array([[2 * 2.0, 2 * 1.0], [2 * 1.0, -np.sin(2.0)]])
    np.testing.assert_allclose(h.numpy(), want, rtol=1e-6)


def test_jacobian_and_batch_jacobian(device):
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
    j = tape.jacobian(y, x)
    assert j.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(j.numpy()[1, 0, 1, 0], 6.0)
    assert float(tf.reduce_sum(j)) == float(tf.reduce_sum(2 * x))
    bj = tape.batch_jacobian(y, x)
    assert bj.shape == (2, 2, 2)
    np.testing.assert_allclose(bj.numpy()[1], np.diag([6.0, 8.0]))


def test_where_sqrt_has_finite_gradient(device):
    x = tf.constant([-1.0, 0.0, 4.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.where(x > 0, tf.sqrt(tf.maximum(x, 0.0)), 0.0)
    g = tape.gradient(y, x).numpy()
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [0.0, 0.0, 0.25])


def test_tie_conventions(device):
    x = tf.constant([1.0, 2.0])
    y = tf.constant([1.0, 3.0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, y])
        mx = tf.maximum(x, y)
        mn = tf.minimum(x, y)
        r = tf.reduce_max(tf.constant([1.0, 3.0, 3.0]) * x[0])
        a = tf.abs(x - 1.0)
        rl = tf.nn.relu(x - 1.0)
    np.testing.assert_array_equal(tape.gradient(mx, x).numpy(), [1, 0])  # tie to the first argument
    np.testing.assert_array_equal(tape.gradient(mx, y).numpy(), [0, 1])
    np.testing.assert_array_equal(tape.gradient(mn, x).numpy(), [1, 1])
    np.testing.assert_allclose(tape.gradient(r, x).numpy(), [3.0, 0.0])  # max split over two ties: 3*(1/2+1/2)
    assert tape.gradient(a, x).numpy()[0] == 0 and tape.gradient(rl, x).numpy()[0] == 0


def test_reduce_max_ties_split_evenly(device):
    x = tf.constant([2.0, 5.0, 5.0, 1.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_max(x)
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), [0, 0.5, 0.5, 0])


def test_pow_zero_base_exponent_gradient_is_zero_and_sqrt_at_zero_is_inf(device):
    b = tf.constant(0.0)
    e = tf.constant(2.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([b, e])
        y = tf.pow(b, e)
        s = tf.sqrt(b)
    assert float(tape.gradient(y, e)) == 0.0
    assert np.isinf(float(tape.gradient(s, b)))


def test_softmax_xent_sends_gradient_to_labels(device):
    labels = tf.constant([[0.2, 0.8]])
    logits = tf.constant([[1.0, 2.0]])
    with tf.GradientTape() as tape:
        tape.watch(labels)
        y = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    g = tape.gradient(y, labels).numpy()
    np.testing.assert_allclose(g, -tf.nn.log_softmax(logits).numpy(), rtol=1e-6)


def test_gather_repeated_indices_accumulate(device):
    p = tf.Variable([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(tf.gather(p, [0, 2, 0, 0]))
    g = tape.gradient(y, p)
    assert isinstance(g, tf.IndexedSlices)  # row-sparse, as TF returns for embedding lookups
    assert g.indices.numpy().tolist() == [0, 2, 0, 0] and g.values.shape == (4, 2)
    np.testing.assert_array_equal(tf.convert_to_tensor(g).numpy(), [[3, 3], [0, 0], [1, 1]])


def test_row_sparse_gradient_densifies_when_combined(device):
    p = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(tf.gather(p, [1])) + tf.reduce_sum(p * p)
    g = tape.gradient(y, p)
    np.testing.assert_array_equal(g.numpy(), [[2, 4], [7, 9]])


def test_custom_gradient_and_second_order(device):
    @tf.custom_gradient
    def log1pexp(x):
        e = tf.exp(x)

        def grad(upstream):
            return upstream * (1 - 1 / (1 + e))

        return tf.math.log(1 + e), grad

    x = tf.constant(100.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = log1pexp(x)
    assert float(tape.gradient(y, x)) == 1.0  # the naive gradient would be nan

    # as in TF, f runs unrecorded, so a grad_fn written with ops on x is differentiable again
    @tf.custom_gradient
    def softplus_cg(x):
        def grad(upstream):
            return upstream * tf.sigmoid(x)

        return tf.nn.softplus(x), grad

    x = tf.constant(0.5)
    with tf.GradientTape() as t2:
        t2.watch(x)
        with tf.GradientTape() as t1:
            t1.watch(x)
            y = softplus_cg(x)
        g = t1.gradient(y, x)
    s = 1 / (1 + np.exp(-0.5))
    np.testing.assert_allclose(float(t2.gradient(g, x)), s * (1 - s), rtol=1e-6)


def test_custom_gradient_tuple_and_variables(device):
    v = tf.Variable(3.0)

    @tf.custom_gradient
    def f(x, y):
        def grad(up, variables=None):
            return (up * 10.0, up * 20.0), [up * 30.0]

        return x * y * v, grad

    a, b = tf.constant(1.0), tf.constant(2.0)
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        out = f(a, b)
    ga, gb, gv = tape.gradient(out, [a, b, v])
    assert (float(ga), float(gb), float(gv)) == (10.0, 20.0, 30.0)


def test_gradients_raises_in_eager():
    with pytest.raises(RuntimeError, match="GradientTape"):
        tf.gradients(tf.constant(1.0), tf.constant(2.0))


def test_assign_inside_tape_cuts_the_path(device):
    v = tf.Variable(2.0)
    w = tf.Variable(0.0)
    with tf.GradientTape() as tape:
        y = v * v
        w.assign(y)
        z = w * 1.0
    assert tape.gradient(z, v) is None  # the assignment is not differentiable
    v2 = tf.Variable(3.0)
    with tf.GradientTape() as tape:
        y = v2 * v2
        v2.assign(100.0)  # backward uses the value the op saw
    assert float(tape.gradient(y, v2)) == 6.0


def test_non_persistent_tape_frees_saved_arrays(device):
    x = tf.Variable(np.ones(1000, np.float32))
    with tf.GradientTape() as tape:
        h = tf.exp(x * 2.0)
        y = tf.reduce_sum(h)
    ref = weakref.ref(h)
    del h
    tape.gradient(y, x)
    gc.collect()
    assert ref() is None


def test_persistent_tape_frees_on_delete(device):
    x = tf.Variable(np.ones(10, np.float32))
    with tf.GradientTape(persistent=True) as tape:
        h = tf.exp(x)
        y = tf.reduce_sum(h)
    tape.gradient(y, x)
    ref = weakref.ref(h)
    del h
    gc.collect()
    assert ref() is not None
    del tape
    gc.collect()
    assert ref() is None


def test_tapes_are_thread_local(device):
    results = {}
    dev = device

    def worker(k):
        with tf.device(dev):
            v = tf.Variable(float(k))
            with tf.GradientTape() as tape:
                for _ in range(200):
                    y = v * v
            results[k] = (float(tape.gradient(y, v)), len(tape._nodes or []))

    with tf.GradientTape() as main_tape:
        ts = [threading.Thread(target=worker, args=(k,)) for k in (1, 2, 3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert {k: r[0] for k, r in results.items()} == {1: 2.0, 2: 4.0, 3: 6.0}
    assert main_tape._nodes == []


def test_long_chain_no_recursion_limit(device):
    x = tf.Variable(1.0)
    with tf.GradientTape() as tape:
        y = x
        for _ in range(20000):
            y = y * 1.0
    assert float(tape.gradient(y, x)) == 1.0


def test_gradient_inside_own_context_of_persistent_tape(device):
    x = tf.Variable(2.0)
    with tf.GradientTape(persistent=True) as tape:
        y = x * x
        g = tape.gradient(y, x)
    assert float(g) == 4.0


def test_gradient_flows_through_read_value():
    v = tf.Variable([1.0, 2.0])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(v.read_value() * 3.0)
    np.testing.assert_array_equal(tape.gradient(y, v).numpy(), [3.0, 3.0])
    snap = v.read_value()
    v.assign([5.0, 6.0])
    np.testing.assert_array_equal(snap.numpy(), [1.0, 2.0])
