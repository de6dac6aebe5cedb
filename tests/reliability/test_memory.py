"""Memory: tapes release what they saved, long training runs stay flat, and very long op chains
differentiate without recursion and in linear time.

The 784-512-512-10 soak is bench/memory_soak.py (too slow for the suite); here a small MLP runs the
same 10,000 steps under tracemalloc.
"""

import gc
import os
import sys
import time
import tracemalloc
import weakref

import numpy as np
import pytest

import accel as tf


@pytest.fixture
def no_gc():
    """Freed means freed by reference counting: a reference cycle would keep arrays until the next
    collection, which in a training loop means memory that grows between collections."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _record_chain(x, w):
    """A few ops of each kind that saves something (inputs, outputs, both); returns loss and the
    intermediates (so the test can weakref them and then drop its own references)."""
    h1 = tf.matmul(x, w)  # saves inputs
    h2 = tf.tanh(h1)  # saves output
    h3 = tf.nn.softmax(h2)  # saves output
    h4 = h3 * h1  # saves both inputs
    h5 = tf.exp(h4)
    h6 = tf.reshape(h5, (-1,))
    h7 = tf.gather(h6, [0, 3, 3, 1])
    loss = tf.reduce_sum(h7) + tf.reduce_mean(tf.square(h2))
    return loss, [h1, h2, h3, h4, h5, h6, h7]


def _refs(ts):
    return [weakref.ref(t) for t in ts] + [weakref.ref(t._data) for t in ts]


def test_non_persistent_tape_frees_saved_arrays_when_gradient_returns(no_gc):
    w = tf.Variable(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
    x = tf.constant(np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss, inter = _record_chain(x, w)
    refs = _refs(inter)
    del inter
    held = sum(r() is not None for r in refs)
    assert held >= 4, "the tape should hold what its backward pass needs until gradient() (held %d)" % held
    g = tape.gradient(loss, w)
    assert g.shape == w.shape
    alive = [i for i, r in enumerate(refs) if r() is not None]
    assert not alive, "still alive after gradient(): %s" % alive
    assert tape._nodes is None or len(tape._nodes) == 0


def test_persistent_tape_keeps_then_frees_on_delete(no_gc):
    w = tf.Variable(np.ones((3, 4), np.float32))
    x = tf.constant(np.ones((2, 3), np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        loss, inter = _record_chain(x, w)
    refs = _refs(inter)
    del inter
    g1 = tape.gradient(loss, w)
    g2 = tape.gradient(loss, [w, x])
    np.testing.assert_array_equal(g1.numpy(), g2[0].numpy())
    held = sum(r() is not None for r in refs)
    assert held >= 4, "a persistent tape must keep what it saved (held %d)" % held
    del tape
    alive = [i for i, r in enumerate(refs) if r() is not None]
    assert not alive, "still alive after deleting the persistent tape: %s" % alive


def test_persistent_tape_frees_on_delete_after_a_missing_gradient(no_gc):
    w = tf.Variable(np.ones((3, 4), np.float32))
    x = tf.constant(np.ones((2, 3), np.float32))  # not watched: its gradient is None
    with tf.GradientTape(persistent=True) as tape:
        loss, inter = _record_chain(x, w)
    refs = _refs(inter)
    del inter
    g = tape.gradient(loss, [w, x])
    assert g[1] is None
    del tape
    alive = [i for i, r in enumerate(refs) if r() is not None]
    assert not alive, "still alive after deleting the persistent tape: %s" % alive


def test_nested_tapes_free_everything(no_gc):
    x = tf.constant([0.3, -1.2, 2.0])
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = tf.tanh(x) * tf.sin(x)
            mid = tf.exp(y)
            loss = tf.reduce_sum(mid)
        g = inner.gradient(loss, x)
        gsum = tf.reduce_sum(g)
    refs = _refs([y, mid])
    del y, mid
    h = outer.gradient(gsum, x)
    assert h.shape == (3,)
    del loss, g, gsum
    alive = [i for i, r in enumerate(refs) if r() is not None]
    assert not alive, "still alive after both gradients: %s" % alive


def test_tape_without_gradient_call_frees_on_delete(no_gc):
    x = tf.constant(np.ones((4, 4), np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss, inter = _record_chain(x, tf.constant(np.ones((4, 4), np.float32)))
    refs = _refs(inter)
    del inter, tape, loss
    alive = [i for i, r in enumerate(refs) if r() is not None]
    assert not alive, alive


def test_failed_gradient_releases_nothing_it_should_not_and_frees_when_dropped(no_gc):
    """A gradient() that raises (unconnected_gradients='raise') still releases the non-persistent tape."""
    x = tf.constant([1.0, 2.0])
    z = tf.constant([3.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.exp(x)
        loss = tf.reduce_sum(y)
    refs = _refs([y])
    del y
    with pytest.raises(ValueError):
        tape.gradient(loss, [x, z], unconnected_gradients="raise")
    assert all(r() is None for r in refs)


# --- a long training run stays flat ---------------------------------------------------------------

def _mlp(sizes, seed=0):
    rng = np.random.default_rng(seed)
    ws = [tf.Variable((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32), name="w%d" % i)
          for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    bs = [tf.Variable(np.zeros(b, np.float32), name="b%d" % i) for i, b in enumerate(sizes[1:])]
    return ws, bs


def _train_step_fn(ws, bs, opt):
    params = ws + bs

    def step(x, y):
        with tf.GradientTape() as tape:
            h = x
            for i, (w, b) in enumerate(zip(ws, bs)):
                h = tf.matmul(h, w) + b
                if i < len(ws) - 1:
                    h = tf.nn.relu(h)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
        grads = tape.gradient(loss, params)
        if opt is not None:
            opt.apply_gradients(zip(grads, params))
        else:
            for p, g in zip(params, grads):
                p.assign_sub(0.01 * g)
        return loss

    return step


def soak(sizes, batch, steps, warmup, report_every=0):
    """Trains an MLP `steps` steps under tracemalloc; returns (traced bytes after warm-up, at the end,
    peak, first loss, last loss, seconds)."""
    ws, bs = _mlp(sizes)
    opt = tf.optimizers.Adam(1e-3) if hasattr(tf, "optimizers") else None
    step = _train_step_fn(ws, bs, opt)
    rng = np.random.default_rng(0)
    data = [(tf.constant(rng.standard_normal((batch, sizes[0])).astype(np.float32)),
             tf.constant(rng.integers(0, sizes[-1], batch).astype(np.int32))) for _ in range(8)]
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        first = float(step(*data[0]).numpy())
        base = None
        for i in range(1, steps):
            loss = step(*data[i % len(data)])
            if i == warmup:
                gc.collect()
                base = tracemalloc.get_traced_memory()[0]
            if report_every and i % report_every == 0:
                print("step %d: traced %d bytes, loss %.4f"
                      % (i, tracemalloc.get_traced_memory()[0], float(loss.numpy())),
                      file=sys.stderr)
        gc.collect()
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return base, end, peak, first, float(loss.numpy()), time.perf_counter() - t0


SOAK_STEPS = int(os.environ.get("ACCEL_SOAK_STEPS", "10000"))


@pytest.mark.slow  # ~45 s on an idle 2-core machine (tracemalloc slows every allocation); -m "not slow" skips it
def test_training_memory_is_flat_over_10000_steps(capsys):
    base, end, peak, first, last, secs = soak([64, 128, 128, 10], batch=16, steps=SOAK_STEPS, warmup=500)
    growth = (end - base) / base
    with capsys.disabled():
        print("\n[memory soak 64-128-128-10, %d steps] traced after warm-up %d B, at end %d B, growth %+.2f%%, "
              "peak %d B, loss %.3f -> %.3f, %.1f s" % (SOAK_STEPS, base, end, 100 * growth, peak, first, last, secs))
    assert last < first, "the model did not train (loss %.3f -> %.3f)" % (first, last)
    assert growth < 0.05, "traced memory grew %.1f%% (%d -> %d bytes) after warm-up" % (100 * growth, base, end)
    assert end - base < (SOAK_STEPS - 500) * 8, "more than 8 bytes leaked per step"


def test_soak_detects_a_leak():
    """The soak measurement itself can fail: a step that keeps every loss tensor shows up as growth."""
    kept = []
    ws, bs = _mlp([8, 8, 4])
    step = _train_step_fn(ws, bs, None)
    x = tf.constant(np.ones((4, 8), np.float32))
    y = tf.constant(np.array([0, 1, 2, 3], np.int32))
    tracemalloc.start()
    try:
        for i in range(300):
            kept.append(step(x, y))
            if i == 50:
                base = tracemalloc.get_traced_memory()[0]
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert (end - base) / base > 0.05


# --- very long chains -----------------------------------------------------------------------------

def _chain(n):
    x = tf.constant(np.array([0.5, -0.25], np.float64))
    t0 = time.process_time()  # CPU time: robust to other processes competing for the cores
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = x
        for i in range(n):
            y = y * 0.9999 + 0.0001 if i % 2 else tf.sin(y) * 0.5 + y * 0.5
        loss = tf.reduce_sum(y)
    g = tape.gradient(loss, x)
    return g.numpy(), time.process_time() - t0


def test_chain_of_100000_ops_differentiates_without_recursion_error():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # the default; a recursive backward pass would hit it at ~1000 ops
    try:
        g, secs = _chain(50_000)  # 50k loop iterations = 100,000+ recorded ops (2 or 3 per iteration)
    finally:
        sys.setrecursionlimit(limit)
    assert np.all(np.isfinite(g)) and np.all(g > 0), g
    # reference: the same recurrence on its derivative, in float64
    x = np.array([0.5, -0.25])
    d = np.ones(2)
    for i in range(50_000):
        if i % 2:
            d = d * 0.9999
            x = x * 0.9999 + 0.0001
        else:
            d = d * (0.5 * np.cos(x) + 0.5)
            x = np.sin(x) * 0.5 + x * 0.5
    np.testing.assert_allclose(g, d, rtol=1e-9)


def test_chain_time_is_linear():
    _chain(200)  # warm up
    times = {}
    # the cyclic GC's full collections scale with everything alive in the test process (earlier tests'
    # objects too), which is not what this measures: time with it off
    gc.collect()
    gc.disable()
    try:
        for n in (500, 5_000, 50_000):  # ~1e3, 1e4, 1e5 recorded ops
            times[n] = min(_chain(n)[1] for _ in range(3 if n < 50_000 else 2))
    finally:
        gc.enable()
    r1 = times[5_000] / times[500]
    r2 = times[50_000] / times[5_000]
    print("\n[chain timing] 1e3 ops %.3fs, 1e4 ops %.3fs, 1e5 ops %.3fs (ratios %.1f, %.1f)"
          % (times[500], times[5_000], times[50_000], r1, r2))
    assert r2 < 20, times
    assert r1 < 30, times  # the small end is noisier (timer granularity, cache effects)
