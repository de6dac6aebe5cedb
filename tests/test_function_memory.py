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


def _kernel_placed(plan):
    """slot -> arena buffer, for the values fused kernels make (matmul steps have buffers too)."""
    made_by_kernels = {sl for k in plan.kernels for sl in k.outputs}
    return {sl: b for sl, b in plan.memory.buffer_of.items() if sl in made_by_kernels}


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
    placed = _kernel_placed(plan)
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
    assert len(_kernel_placed(_plan(f))) == 2, _plan(f).source


def _mlp_step(x, y, ws, opt):
    with tf.GradientTape() as tape:
        h = x
        for i in range(0, len(ws), 2):
            h = tf.matmul(h, ws[i]) + ws[i + 1]
            if i + 2 < len(ws):
                h = tf.nn.relu(h)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    grads = tape.gradient(loss, ws)
    opt.apply_gradients(zip(grads, ws))
    return loss


def _batched(a, b):
    return tf.reduce_sum(tf.matmul(a, b) * 2.0)


def _returns_matmuls(a, b):
    m = tf.matmul(a, b)
    return m, tf.reshape(tf.matmul(a, b, transpose_b=True), [-1]), tf.reduce_sum(m)


@pytest.mark.parametrize("mode", ["never", "auto"])
def test_matmul_steps_write_into_the_arena_and_training_matches_eager_bitwise(mode):
    """Forward matmuls and the matmul gradient rules compute into arena buffers (_Into), the gradients the
    optimizer reads included (it borrows them): weights after each step equal eager's bitwise."""
    shapes = [(6, 8), (8,), (8, 3), (3,)]
    init = [rng.standard_normal(s).astype(np.float32) * 0.5 for s in shapes]
    runs = {}
    for how in ("eager", "function"):
        ws = [tf.Variable(w) for w in init]
        opt = tf.keras.optimizers.Adam(0.05)
        opt.build(ws)
        step = tf.function(_mlp_step) if how == "function" else _mlp_step
        data = np.random.default_rng(1)
        hist = []
        with tf.config.fused(mode):
            for _ in range(4):
                x = tf.constant(data.standard_normal((5, 6)).astype(np.float32))
                y = tf.constant(data.integers(0, 3, 5).astype(np.int32))
                hist.append([float(step(x, y, ws, opt))] + [w.numpy().copy() for w in ws])
        runs[how] = hist
        if how == "function":
            plan = _plan(step)
            assert len(plan.memory.into) >= 5, plan.source  # 2 forward matmuls, 3 gradient matmuls
    for e, f in zip(runs["eager"], runs["function"]):
        assert e[0] == f[0]
        for a, b in zip(e[1:], f[1:]):
            np.testing.assert_array_equal(a, b)


def _flat(x):
    return [t for e in x for t in _flat(e)] if isinstance(x, (tuple, list)) else [x]


@pytest.mark.parametrize("fn,shapes,placed", [
    (_batched, [(3, 4, 5), (5, 2)], True),  # a batched matmul whose gradient sums the batch back
    (_batched, [(4, 5), (2, 5, 6)], True),
    (_returns_matmuls, [(4, 5), (5, 5)], False),  # returned, and viewed then returned: never in the arena
], ids=["batched-a", "batched-b", "returned"])
def test_matmul_into_arena_matches_eager_with_gradients(fn, shapes, placed):
    def with_grads(*xs):
        with tf.GradientTape() as tape:
            tape.watch(xs)
            out = fn(*xs)
            target = out[-1] if isinstance(out, tuple) else out
        return out, tape.gradient(target, xs)

    f = tf.function(with_grads)
    held = []
    for _ in range(3):
        xs = _values(*shapes)
        got, want = f(*xs), with_grads(*xs)
        held.append((got, [t.numpy().copy() for t in _flat(got)]))
        for g, w in zip(_flat(got), _flat(want)):
            np.testing.assert_array_equal(g.numpy(), w.numpy())
    for got, first in held:  # later replays did not overwrite what earlier ones returned
        for g, w in zip(_flat(got), first):
            np.testing.assert_array_equal(g.numpy(), w)
    plan = _plan(f)
    returned = {r[1] for r in plan.out_refs if r[0] == "slot"}
    assert bool(plan.memory.into) == placed and not returned & set(plan.memory.buffer_of), plan.source


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


@pytest.mark.parametrize("make, fast", [
    (lambda: tf.keras.optimizers.Adam(1e-2), True),
    (lambda: tf.keras.optimizers.AdamW(1e-2, weight_decay=0.1), True),
    (lambda: tf.keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), False),  # no multi-tensor kernel
    (lambda: tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.ExponentialDecay(1e-2, 2, 0.5)), True),
    (lambda: tf.keras.optimizers.Adam(1e-2, clipnorm=0.5), False),
])
def test_replayed_update_skips_apply_where_it_can_and_equals_eager(monkeypatch, make, fast):
    """A replay whose update apply would run as multi-tensor groups calls those kernels directly
    (Optimizer._replay_multi); the result is bitwise eager's, step for step, schedules included."""
    from accel.optimizers import base  # noqa: PLC0415

    used = []
    real = base.Optimizer._replay_multi
    monkeypatch.setattr(base.Optimizer, "_replay_multi", lambda self, *a: (used.append(1), real(self, *a)))
    r = np.random.default_rng(5)
    init = [r.standard_normal((6, 4)).astype(np.float32), r.standard_normal(4).astype(np.float32)]
    runs = []
    for compiled in (False, True):
        vs, opt = [tf.Variable(a) for a in init], make()

        def step(x, vs=vs, opt=opt):
            with tf.GradientTape() as t:
                loss = tf.reduce_sum(tf.tanh(tf.matmul(x, vs[0]) + vs[1]))
            opt.apply_gradients(zip(t.gradient(loss, vs), vs))
            return loss

        f = tf.function(step) if compiled else step
        out = []
        for k in range(5):
            loss = f(tf.constant(init[0][:, :3].T * (k + 1)))
            out.append([loss.numpy()] + [v.numpy() for v in vs] + [opt.iterations.numpy()])
        runs.append(out)
    for eager, captured in zip(*runs):
        for a, b in zip(eager, captured):
            np.testing.assert_array_equal(a, b)
    assert bool(used) is fast
