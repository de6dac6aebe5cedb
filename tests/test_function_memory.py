"""accel.function's memory plan and in-place stores, against eager: arena buffers for fused kernels' values
that never leave the plan (reused between values whose lifetimes do not overlap, the same pointers on every
replay), values that leave it (returned, viewed, handed to host steps) never placed there, Variables written
in place by the kernel that computes their new value, replays on several threads at once, and
accel.profiler counting the device operations of a replay."""

import threading

import numpy as np
import pytest

import accel as tf
from accel import profiler
from accel.function import _numba_ready
from accel.tensor import Tensor

pytestmark = pytest.mark.skipif(not _numba_ready(), reason="fusion needs numba")

rng = np.random.default_rng(0)


def _plan(f):
    plans = [p for cf in f._cache.values() for p in cf.plans]
    assert len(plans) == 1
    return plans[0]


def _chain(x, w):
    a = tf.tanh(x * 2.0 + 1.0)  # fused kernel: value read only by the matmul
    b = tf.matmul(a, w)
    c = tf.tanh(b * 0.5 - 1.0)  # a second kernel of the same shape, after a's last reader
    d = tf.matmul(c, w)
    return tf.reduce_sum(d * d)


def _values(*shapes):
    return [tf.constant(rng.standard_normal(s).astype(np.float32)) for s in shapes]


def test_contained_kernel_values_share_one_arena_buffer_with_stable_pointers():
    f = tf.function(_chain, jit_compile=True)
    x, w = _values((4, 4), (4, 4))
    f(x, w)
    plan = _plan(f)
    assert len(plan.kernels) >= 2, f.explain()
    placed = plan.memory.buffer_of
    assert len(placed) >= 2 and len(set(placed.values())) == 1, (placed, plan.source)
    ptrs = None
    for _ in range(3):
        x, w = _values((4, 4), (4, 4))
        np.testing.assert_allclose(f(x, w).numpy(), _chain(x, w).numpy(), rtol=1e-5)
        now = [b.ctypes.data for b in plan.arena]
        assert ptrs is None or now == ptrs
        ptrs = now
    assert "arena" in f.explain()


def _returns_kernel_values(x):
    a = tf.sigmoid(x * 3.0 - 1.0)
    return a, tf.reshape(tf.exp(x - 1.0) + 1.0, [-1]), tf.reduce_sum(a)


def test_values_that_leave_the_plan_are_never_overwritten_by_the_next_call():
    f = tf.function(_returns_kernel_values, jit_compile=True)
    x1, x2 = _values((3, 5), (3, 5))
    f(x2)  # the trace
    held = f(x1)  # a replay: its results are the caller's
    first = [t.numpy().copy() for t in held]
    f(x2)
    for got, want in zip(held, first):
        np.testing.assert_array_equal(got.numpy(), want)
    assert not _plan(f).memory.buffer_of


def _view_of_contained(x, w):
    a = tf.tanh(x + 1.0) * 2.0
    flat = tf.reshape(a, [4, 4])  # a view of the kernel's output: a's last direct reader
    c = tf.sigmoid(x * 3.0) - 0.5  # a kernel of a's shape that runs before the view is read
    s = tf.reduce_sum(c)
    return tf.matmul(flat, w) + s


def test_a_view_keeps_its_base_buffer_alive_until_the_view_is_read():
    f = tf.function(_view_of_contained, jit_compile=True)
    for _ in range(3):
        x, w = _values((2, 8), (4, 4))
        np.testing.assert_allclose(f(x, w).numpy(), _view_of_contained(x, w).numpy(), rtol=1e-6)
    assert len(_plan(f).memory.buffer_of) == 2, _plan(f).source


def test_assign_of_a_fused_value_is_stored_in_place_and_matches_eager_bitwise():
    def make():
        return (tf.Variable(rng.standard_normal((6, 3)).astype(np.float32)),
                tf.Variable(np.zeros((6, 3), np.float32)))

    def step(w, m, x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.matmul(x, w)))
        g = tape.gradient(loss, w)
        m.assign(m * 0.9 + g)  # multiply, add, assign: one kernel writing m
        w.assign_sub(m * 0.01)  # multiply, assign_sub: one kernel writing w
        return loss

    we, me = make()
    wc, mc = tf.Variable(we.numpy()), tf.Variable(me.numpy())
    captured = tf.function(lambda x: step(wc, mc, x))  # default: fuses what is IEEE-exact
    for _ in range(4):
        (x,) = _values((5, 6))
        le = step(we, me, x)
        lc = captured(x)
        np.testing.assert_array_equal(lc.numpy(), le.numpy())
        np.testing.assert_array_equal(wc.numpy(), we.numpy())
        np.testing.assert_array_equal(mc.numpy(), me.numpy())
    plan = _plan(captured)
    stores = [(v, how) for k in plan.kernels for v, how, _ in k.stores]
    assert {how for _, how in stores} == {"assign", "sub"}, captured.explain()
    assert not any(n[0] == "assign" for n in plan.nodes), plan.source


def _captured_and_eager(make_step, init, inputs, **function_args):
    """make_step(v) -> step(*args) on Variable v: a captured copy and an eager copy run side by side on the
    same inputs; results and Variables must agree bitwise."""
    vc, ve = tf.Variable(init), tf.Variable(init)
    captured, eager = tf.function(make_step(vc), **function_args), make_step(ve)
    for args in inputs:
        np.testing.assert_array_equal(captured(*args).numpy(), eager(*args).numpy())
        np.testing.assert_array_equal(vc.numpy(), ve.numpy())
    return captured


def test_a_store_is_refused_when_the_kernel_reads_memory_of_the_variable():
    def make_step(v):
        def step():
            # a row of the Variable's own array (public ops copy such views: ops.core._detached; the tape's
            # backward pass and internal callers can hand one over), broadcast along the rows: a store in place
            # would change it while the loop still reads it
            row = Tensor(v._data[0])
            v.assign(v * 0.5 + row)
            return tf.reduce_sum(v)
        return step

    f = _captured_and_eager(make_step, rng.standard_normal((3, 4)).astype(np.float32), [()] * 3)
    assert not any(k.stores for k in _plan(f).kernels), f.explain()


def test_guard_miss_after_a_store_rolls_the_variable_back():
    def make_step(v):
        def step(x):
            v.assign(v * 0.5 + x)
            if tf.reduce_sum(v) > 0:
                return v * 1.0
            return v * -1.0
        return step

    xs = ([1, 1, 1, 1], [1, 1, 1, 1], [-9, -9, -9, -9], [5, 5, 5, 5], [-9, -9, -9, -9])
    f = _captured_and_eager(make_step, np.ones(4, np.float32), [(tf.constant(np.array(x, np.float32)),) for x in xs])
    assert any(k.stores for p in (p for cf in f._cache.values() for p in cf.plans) for k in p.kernels)


def test_replays_on_several_threads_at_once_match_eager():
    f = tf.function(_chain, jit_compile=True)
    x, w = _values((4, 4), (4, 4))
    f(x, w)
    inputs = [_values((4, 4), (4, 4)) for _ in range(8)]
    want = [_chain(*xs).numpy() for xs in inputs]
    errors = []

    def work(k):
        for i in range(40):
            j = (k + i) % len(inputs)
            got = f(*inputs[j]).numpy()
            if not np.allclose(got, want[j], rtol=1e-5):
                errors.append((k, i, got, want[j]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


def _mlp_loss(x, w, b):
    with tf.GradientTape() as tape:
        tape.watch([w, b])
        h = tf.nn.relu(tf.matmul(x, w) + b)
        loss = tf.reduce_mean(tf.square(h - 0.5))
    gw, gb = tape.gradient(loss, [w, b])
    return loss, gw, gb


def _count(fn, *args):
    with profiler.profile() as prof:
        fn(*args)
    return prof


def test_profiler_counts_the_device_operations_of_a_replay():
    args = _values((8, 5), (5, 7), (7,))
    with tf.config.fused("never"):  # eager and the unfused plan run the same array operations
        eager = _count(_mlp_loss, *args)
        f = tf.function(_mlp_loss, jit_compile=False)
        f(*args)
        replay = _count(f, *args)
    assert replay.total_ops == eager.total_ops > 0, (str(replay), str(eager))
    fused = tf.function(_mlp_loss, jit_compile=True)
    fused(*args)
    prof = _count(fused, *args)
    n_kernels = len(_plan(fused).kernels)
    assert n_kernels >= 1 and dict((r[0], r[1]) for r in prof.rows())["fused kernel"] == n_kernels
    assert prof.total_ops < eager.total_ops, (str(prof), str(eager))
