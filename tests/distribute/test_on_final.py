"""The tape's per-source "gradient is final" notification (GradientTape._on_final), which accel.distribute uses
to start a bucket's all-reduce while the rest of the backward pass runs."""

import contextlib

import numpy as np
import pytest

import accel as tf
from accel.indexed_slices import IndexedSlices

RNG = np.random.default_rng(3)


def _vars(*shapes):
    return [tf.Variable(RNG.normal(size=s).astype(np.float32)) for s in shapes]


def _marker(events, name):
    """Identity whose backward records `name` in events when the pass reaches it."""
    @tf.custom_gradient
    def mark(x):
        def grad(dy):
            events.append(name)
            return dy
        return tf.identity(x), grad
    return mark


def _mlp(events):
    x = tf.constant(RNG.normal(size=(4, 5)).astype(np.float32))
    vs = _vars((5, 6), (6,), (6, 3), (3,))

    def loss():
        h = _marker(events, "backward reached layer 1")(tf.nn.relu(tf.matmul(x, vs[0]) + vs[1]))
        return tf.reduce_sum(tf.matmul(h, vs[2]) + vs[3])
    return vs, vs, loss


def _shared(events):
    x = tf.constant(RNG.normal(size=(3, 4)).astype(np.float32))
    (w,) = _vars((4, 4))

    def loss():  # w is read twice: its gradient is final only after the earlier read
        h = _marker(events, "backward between the reads")(tf.tanh(tf.matmul(x, w)))
        return tf.reduce_sum(tf.matmul(h, w) ** 2)
    return [w], [w], loss


def _duplicate(events):
    (w,) = _vars((3,))
    return [w], [w, w], lambda: tf.reduce_sum(w * w)


def _unconnected(events):
    w, u = _vars((3,), (2,))
    return [w, u], [w, u], lambda: tf.reduce_sum(tf.exp(w))


def _target_is_source(events):
    (w,) = _vars((3,))
    return [w], [w], lambda: w


def _sparse(events):
    (table,) = _vars((10, 2))
    return [table], [table], lambda: tf.reduce_sum(tf.gather(table, [1, 7, 1]))


CASES = {  # name: (builder, sources that must be final before the marker's backward runs)
    "mlp": (_mlp, [2, 3]),
    "shared weight": (_shared, []),
    "source listed twice": (_duplicate, []),
    "unconnected source": (_unconnected, []),
    "target is a source": (_target_is_source, []),
    "sparse (gather)": (_sparse, []),
}


def _dense(g):
    return tf.convert_to_tensor(g).numpy()


def _gradients(build, outer, on_final=None):
    """(events, gradients) of a fresh case; `outer`: under another recording tape (a recorded pass)."""
    global RNG
    RNG = np.random.default_rng(3)  # the same values every time
    events = []
    watched, sources, loss_fn = build(events)
    with contextlib.ExitStack() as stack:
        if outer:
            stack.enter_context(tf.GradientTape())
        with tf.GradientTape() as t:
            for v in watched:
                t.watch(v)
            loss = loss_fn()
        events.clear()
        t._on_final = None if on_final is None else lambda i, g: on_final(events, i, g)
        return events, t.gradient(loss, sources)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("outer", [False, True], ids=["eager", "recorded"])
def test_on_final_fires_once_per_source_with_the_returned_value(name, outer):
    build, early = CASES[name]
    _, want = _gradients(build, outer)
    calls = []

    def on_final(events, i, g):
        calls.append((i, g))
        events.append(("final", i))

    events, got = _gradients(build, outer, on_final)
    assert sorted(i for i, _ in calls) == [i for i, g in enumerate(want) if g is not None]  # once each, never None
    for i, g in calls:
        assert g is got[i]  # the very object gradient() returns
        assert isinstance(g, IndexedSlices) == isinstance(want[i], IndexedSlices)
        np.testing.assert_allclose(_dense(g), _dense(want[i]), rtol=1e-6)
    for i in early:  # an eager pass reports early sources before the rest of the pass; a recorded one at its end
        before = events.index(("final", i)) < events.index("backward reached layer 1")
        assert before == (not outer), events


def test_mlp_sources_become_final_in_reverse_layer_order():
    events = []
    vs, sources, loss_fn = _mlp(events)
    with tf.GradientTape() as t:
        loss = loss_fn()
    order = []
    t._on_final = lambda i, g: order.append(i)
    t.gradient(loss, sources)
    assert order[:2] in ([2, 3], [3, 2]) and sorted(order[2:]) == [0, 1]


def test_no_callback_no_change():
    events = []
    vs, sources, loss_fn = _mlp(events)
    with tf.GradientTape() as t:
        loss = loss_fn()
    assert t._on_final is None
    assert all(g is not None for g in t.gradient(loss, sources))
