"""Threads: tapes are thread-local. Two threads training two models at once give bitwise the serial
results, and a tape recording in one thread never captures another thread's ops."""

import threading

import numpy as np
import pytest

import accel as tf

STEPS = 150


def _make_model(seed, kind):
    rng = np.random.default_rng(seed)
    w1 = tf.Variable((rng.standard_normal((16, 32)) * 0.3).astype(np.float32), name="w1_%d" % seed)
    b1 = tf.Variable(np.zeros(32, np.float32), name="b1_%d" % seed)
    w2 = tf.Variable((rng.standard_normal((32, 4)) * 0.3).astype(np.float32), name="w2_%d" % seed)
    b2 = tf.Variable(np.zeros(4, np.float32), name="b2_%d" % seed)
    params = [w1, b1, w2, b2]
    x = tf.constant(rng.standard_normal((24, 16)).astype(np.float32))
    y = tf.constant(rng.integers(0, 4, 24).astype(np.int32))
    opt = {"adam": lambda: tf.optimizers.Adam(1e-2), "sgd": lambda: tf.optimizers.SGD(0.05, momentum=0.9),
           "raw": lambda: None}[kind]()
    return params, x, y, opt


def _train(seed, kind, steps=STEPS, barrier=None, trace=None):
    params, x, y, opt = _make_model(seed, kind)
    w1, b1, w2, b2 = params
    losses = []
    for i in range(steps):
        if barrier is not None and i % 10 == 0:
            barrier.wait()  # keep the two threads interleaved step by step
        with tf.GradientTape() as tape:
            h = tf.nn.relu(tf.matmul(x, w1) + b1)
            logits = tf.matmul(h, w2) + b2
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            loss = loss + 1e-3 * tf.add_n([tf.reduce_sum(tf.square(p)) for p in (w1, w2)]) \
                if hasattr(tf, "add_n") else loss + 1e-3 * (tf.reduce_sum(tf.square(w1)) + tf.reduce_sum(tf.square(w2)))
        if trace is not None:
            trace.append(len(tape._nodes))
        grads = tape.gradient(loss, params)
        if opt is None:
            for p, g in zip(params, grads):
                p.assign_sub(0.05 * g)
        else:
            opt.apply_gradients(zip(grads, params))
        losses.append(loss.numpy().copy())
    return [p.numpy().copy() for p in params], np.array(losses)


@pytest.mark.parametrize("kinds", [("adam", "adam"), ("sgd", "raw"), ("adam", "sgd")])
def test_two_threads_training_match_serial_bitwise(kinds):
    serial = [_train(seed, kind) for seed, kind in zip((1, 2), kinds)]
    results = [None, None]
    errors = []
    barrier = threading.Barrier(2, timeout=60)

    def worker(k):
        try:
            results[k] = _train(k + 1, kinds[k], barrier=barrier)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for k in range(2):
        params, losses = results[k]
        sparams, slosses = serial[k]
        np.testing.assert_array_equal(losses, slosses, err_msg="thread %d losses" % k)
        for p, sp in zip(params, sparams):
            np.testing.assert_array_equal(p, sp, err_msg="thread %d parameters" % k)
        assert slosses[-1] < slosses[0]  # they did train


def test_threads_record_the_same_number_of_ops_as_serial():
    serial_trace = []
    _train(3, "adam", steps=20, trace=serial_trace)
    traces = [[], []]
    barrier = threading.Barrier(2, timeout=60)
    threads = [threading.Thread(target=_train, args=(3, "adam"),
                                kwargs=dict(steps=20, barrier=barrier, trace=traces[k]))
               for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert traces[0] == serial_trace and traces[1] == serial_trace


def test_tape_never_records_another_threads_ops():
    """Thread A watches x and records; thread B computes from the very same x while A's tape is open.
    A's tape must hold only A's ops, B's results must have no gradient on A's tape, and B's own tape
    must not see A's ops."""
    x = tf.constant([1.0, 2.0, 3.0])
    a_ready, b_done = threading.Event(), threading.Event()
    out = {}

    def thread_b():
        a_ready.wait(30)
        with tf.GradientTape() as tb:
            tb.watch(x)
            yb = tf.sin(x) * 3.0
            yb2 = tf.exp(x)  # noqa: F841 - recorded on tb only
        out["b_nodes"] = len(tb._nodes)
        out["yb"] = yb
        out["b_grad"] = tb.gradient(yb, x).numpy()
        b_done.set()

    tb_thread = threading.Thread(target=thread_b)
    tb_thread.start()
    with tf.GradientTape(persistent=True) as ta:
        ta.watch(x)
        ya = x * 2.0
        a_ready.set()
        assert b_done.wait(30)
        ya = ya + 1.0
    tb_thread.join(30)
    assert len(ta._nodes) == 2, "A's tape recorded %d ops (B's leaked in?)" % len(ta._nodes)
    assert ta.gradient(out["yb"], x) is None
    np.testing.assert_array_equal(ta.gradient(ya, x).numpy(), [2.0, 2.0, 2.0])
    assert out["b_nodes"] == 3  # sin, multiply, exp: none of A's
    np.testing.assert_allclose(out["b_grad"], 3 * np.cos([1.0, 2.0, 3.0]), rtol=1e-6)


def test_variable_read_in_other_thread_is_not_watched():
    """Reading a trainable variable watches it only on the reading thread's tapes."""
    v = tf.Variable([1.0, 2.0])
    go, done = threading.Event(), threading.Event()

    def other():
        go.wait(30)
        _ = v * 5.0  # accessed on this thread, with no tape here
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with tf.GradientTape() as tape:
        go.set()
        assert done.wait(30)
        c = tf.constant([1.0, 1.0]) * 2.0
    t.join(30)
    assert tape.watched_variables() == ()
    assert tape.gradient(c, v) is None


def test_stop_recording_and_nesting_are_per_thread():
    """A thread pausing its tape, or nesting tapes, does not affect the other thread's tape."""
    x = tf.constant(2.0)
    paused, resumed = threading.Event(), threading.Event()
    res = {}

    def pauser():
        with tf.GradientTape() as t:
            t.watch(x)
            with t.stop_recording():
                paused.set()
                resumed.wait(30)
                _ = x * x
            y = x * 3.0
        res["pauser"] = float(t.gradient(y, x).numpy())

    th = threading.Thread(target=pauser)
    th.start()
    paused.wait(30)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = x * x * x
        dy = inner.gradient(y, x)
    resumed.set()
    th.join(30)
    assert float(dy.numpy()) == 12.0
    assert float(outer.gradient(dy, x).numpy()) == 12.0  # d/dx 3x^2 = 6x
    assert res["pauser"] == 3.0


def test_many_threads_independent_gradients():
    n = 8
    results = [None] * n
    barrier = threading.Barrier(n, timeout=60)

    def work(k):
        x = tf.constant(np.full(5, float(k + 1)))
        barrier.wait()
        for _ in range(50):
            with tf.GradientTape() as t:
                t.watch(x)
                y = tf.reduce_sum(x ** 3)
            g = t.gradient(y, x)
        results[k] = g.numpy()

    ts = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    for k in range(n):
        np.testing.assert_array_equal(results[k], np.full(5, 3.0 * (k + 1) ** 2))


def test_fused_mode_blocks_are_per_thread():
    """`with accel.config.fused(...)` in one thread leaves another thread's mode alone (as tapes do)."""
    from accel import backend

    seen = {}
    inside = threading.Event()
    checked = threading.Event()

    def other():
        inside.wait(10)
        seen["other"] = backend.fused_mode()
        checked.set()

    default = backend.fused_mode()
    t = threading.Thread(target=other)
    t.start()
    with tf.config.fused("never" if default != "never" else "always"):
        seen["mine"] = backend.fused_mode()
        inside.set()
        checked.wait(10)
    t.join(10)
    assert seen["other"] == default and seen["mine"] != default and backend.fused_mode() == default
    with pytest.raises(ValueError, match="fused mode"):
        with tf.config.fused("sometimes"):
            pass
