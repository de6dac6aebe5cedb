"""accel.function against eager: every op-table row (values and gradients; bitwise with fusion off, within
a few ulp fused), whole training runs, guards on data-dependent control flow, random draws and prints on
every call, and the misuse errors."""

import io

import numpy as np
import pytest

import accel as tf
from tests import op_rows, test_ops

ROWS = [r for r in op_rows.rows(test_ops.CASES) if r.backward is None]


def _step(fn, cot_seed=3):
    """The row's forward and the gradient of <forward, cotangent> w.r.t. its float inputs, as one step."""

    def step(*ts):
        floats = [t for t in ts if t.dtype.is_floating]
        with tf.GradientTape() as tape:
            tape.watch(floats)
            y = fn(*ts)
            ys = y if isinstance(y, (list, tuple)) else [y]
            loss = tf.add_n([tf.reduce_sum(tf.cast(v, tf.float64) * _cot(v, cot_seed)) for v in ys
                             if v.dtype.is_floating]) if any(v.dtype.is_floating for v in ys) else None
        grads = tape.gradient(loss, floats, unconnected_gradients="zero") if loss is not None else []
        return list(ys), grads

    return step


def _cot(v, seed):
    return tf.constant(np.random.default_rng(seed).standard_normal(tuple(v.shape)))


def _arrays_like(arrays, seed):
    """Other values of the same shapes and dtypes (integer inputs: indices, kept as they are)."""
    rng = np.random.default_rng(seed)
    return [a if np.asarray(a).dtype.kind in "iub" else np.asarray(a) + 0.01 * rng.standard_normal(np.shape(a))
            for a in arrays]


def _flat(out):
    ys, grads = out
    return [np.asarray(tf.convert_to_tensor(t).numpy()) for t in list(ys) + [g for g in grads if g is not None]]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_op_row_inside_function_equals_eager(row):
    step = _step(row.fn)
    captured = tf.function(step, jit_compile=False)
    exact = tf.function(step)  # the default fuses only what stays bitwise equal to eager
    fused = tf.function(step, jit_compile=True)
    for k, arrays in enumerate([row.arrays, _arrays_like(row.arrays, 11)]):
        with tf.config.fused("never"):  # eager backward through the rules, as the captured plan computes it
            want = _flat(step(*[tf.constant(a) for a in arrays]))
            got = _flat(captured(*[tf.constant(a) for a in arrays]))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w, err_msg="%s call %d" % (row.id, k))
        # the fusing plans are built and run with fusion on (a plan built under "never" fuses nothing), against
        # eager with fusion on (ops with a fused twin take it in both)
        want_fused_mode = _flat(step(*[tf.constant(a) for a in arrays]))
        got = _flat(exact(*[tf.constant(a) for a in arrays]))
        for g, w in zip(got, want_fused_mode):
            np.testing.assert_array_equal(g, w, err_msg="%s default call %d" % (row.id, k))
        got = _flat(fused(*[tf.constant(a) for a in arrays]))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-6 if g.dtype == np.float32 else 1e-12, atol=1e-12,
                                       err_msg="%s fused call %d" % (row.id, k))
    assert captured.experimental_get_tracing_count() == 1


def test_elementwise_chain_is_one_fused_kernel_and_matches_eager():
    def f(x, b):
        return tf.nn.gelu(tf.nn.relu(x * 2.0 + b) - 0.5, approximate=True) * tf.sigmoid(x)

    g = tf.function(f, jit_compile=True)
    x = tf.constant(np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32))
    b = tf.constant(np.random.default_rng(1).standard_normal(32).astype(np.float32))
    np.testing.assert_allclose(g(x, b).numpy(), f(x, b).numpy(), rtol=2e-6, atol=1e-6)
    plan = g._cache[next(iter(g._cache))].plans[0]
    assert plan.counts()["fused_kernels"] == 1 and plan.counts()["ops"] == 0, g.explain()
    exact = tf.function(f)  # by default gelu's tanh and sigmoid's exp stay NumPy's: bitwise equal to eager
    np.testing.assert_array_equal(exact(x, b).numpy(), f(x, b).numpy())


def _mlp(seed=0):
    rng = np.random.default_rng(seed)
    return [tf.Variable(rng.standard_normal(s).astype(np.float32) * 0.1) for s in [(20, 16), (16,), (16, 3), (3,)]]


def _loss(params, x, y):
    w1, b1, w2, b2 = params
    h = tf.nn.relu(tf.matmul(x, w1) + b1)
    logits = tf.matmul(h, w2) + b2
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))


@pytest.mark.parametrize("opt", ["Adam", "SGD"])
def test_training_with_a_captured_step_reaches_eager_weights_step_for_step(opt):
    rng = np.random.default_rng(5)
    data = [(rng.standard_normal((8, 20)).astype(np.float32), rng.integers(0, 3, 8)) for _ in range(12)]
    runs = []
    for capture in (False, True):
        params = _mlp()
        optimizer = getattr(tf.keras.optimizers, opt)(learning_rate=0.05)

        def train_step(x, y, params=params, optimizer=optimizer):
            with tf.GradientTape() as tape:
                loss = _loss(params, x, y)
            optimizer.apply_gradients(zip(tape.gradient(loss, params), params))
            return loss

        step = tf.function(train_step) if capture else train_step
        history = []
        for x, y in data:
            loss = step(tf.constant(x), tf.constant(y))
            history.append((float(loss), [p.numpy().copy() for p in params]))
        runs.append(history)
        if capture:  # Adam creates its slots in the first call, which then traces again (TF: twice in call 1)
            assert step.experimental_get_tracing_count() == (2 if opt == "Adam" else 1)
    for (l0, w0), (l1, w1) in zip(*runs):
        assert l1 == pytest.approx(l0, rel=1e-5)
        for a, b in zip(w0, w1):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_variable_assigns_replay_in_program_order():
    v = tf.Variable(1.0)

    @tf.function
    def f(x):
        a = v * x
        v.assign_add(x)
        b = v * x  # reads the new value
        v.assign(v * 2.0)
        return a, b

    eager_v = tf.Variable(1.0)
    for x in (1.0, 2.0, 3.0):
        a, b = f(tf.constant(x))
        ea = eager_v * x
        eager_v.assign_add(x)
        eb = eager_v * x
        eager_v.assign(eager_v * 2.0)
        assert (float(a), float(b), float(v)) == (float(ea), float(eb), float(eager_v))
    assert f.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("xs", [[1.0, -1.0, 2.0, -3.0], [-1.0, 1.0]])
def test_guard_traces_each_branch_and_matches_eager(xs):
    def f(x):
        if x > 0:
            return x * 2.0
        return -x + 10.0

    g = tf.function(f)
    for x in xs:
        assert float(g(tf.constant(x))) == float(f(tf.constant(x)))
    assert g.experimental_get_tracing_count() == 1  # one signature; each path traced once inside it
    cf = g._cache[next(iter(g._cache))]
    assert len(cf.plans) == 2


def test_guard_after_a_write_rolls_the_write_back_before_tracing_the_other_path():
    v = tf.Variable(0.0)

    @tf.function
    def f(x):
        v.assign_add(x)
        if v > 5.0:
            v.assign(0.0)
        return v * 1.0

    ev = 0.0
    for x in (1.0, 2.0, 3.0, 1.0, 4.0):
        ev += x
        if ev > 5.0:
            ev = 0.0
        assert float(f(tf.constant(x))) == ev
        assert float(v) == ev


def test_while_on_a_tensor_matches_eager():
    def f(x):
        n = tf.constant(0)
        while x < 100.0:
            x = x * 3.0
            n = n + 1
        return x, n

    g = tf.function(f)
    for x in (1.0, 50.0, 1.0, 200.0):
        got, want = g(tf.constant(x)), f(tf.constant(x))
        assert (float(got[0]), int(got[1])) == (float(want[0]), int(want[1]))


def test_random_draws_and_prints_happen_on_every_call():
    out = io.StringIO()

    @tf.function
    def f(x):
        noise = tf.random.uniform([3])
        tf.print("x =", x, output_stream=out)
        return x + noise

    a, b = f(tf.constant(1.0)), f(tf.constant(1.0))
    assert not np.array_equal(a.numpy(), b.numpy())
    assert out.getvalue().count("x = 1") == 2


def test_python_side_effects_run_only_while_tracing():
    calls = []

    @tf.function
    def f(x):
        calls.append(1)
        return x + 1.0

    for _ in range(3):
        f(tf.constant(1.0))
    assert calls == [1]


def test_numpy_and_float_of_a_traced_value_explain_what_to_do():
    @tf.function
    def f(x):
        return float(x * 2.0)

    with pytest.raises(TypeError, match="accel.print"):
        f(tf.constant(1.0))

    @tf.function
    def g(x):
        return (x * 2.0).numpy()

    with pytest.raises(AttributeError, match="Return the tensor"):
        g(tf.constant(1.0))


def test_creating_a_variable_on_a_later_trace_raises_tf_error():
    made = []

    @tf.function
    def f(x):
        made.append(tf.Variable(x))
        return x

    f(tf.constant(1.0))
    with pytest.raises(ValueError, match="Creating variables on a non-first call"):
        f(tf.constant([1.0, 2.0]))


def test_retracing_warning_names_the_changing_argument():
    @tf.function
    def f(x, scale):
        return x * scale

    with pytest.warns(RuntimeWarning, match="'scale'"):
        for s in range(8):
            f(tf.constant(1.0), float(s))


def test_changing_python_scalars_keep_the_cache_bounded():
    @tf.function
    def f(x, k):
        return x + k

    with pytest.warns(RuntimeWarning):
        for k in range(2 * tf.function.__module__ and 600):
            f(tf.constant(1.0), k)
    assert f._cache_size() <= 256


def test_input_signature_none_dims_trace_once():
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def f(x):
        return tf.reduce_sum(x * 2.0, axis=1)

    for n in (1, 4, 7):
        x = np.ones((n, 3), np.float32)
        np.testing.assert_array_equal(f(tf.constant(x)).numpy(), np.full(n, 6, np.float32))
    assert f.experimental_get_tracing_count() == 1
    with pytest.raises(TypeError, match="input_signature|Binding"):
        f(tf.constant(np.ones((2, 4), np.float32)))


def test_explain_reports_the_plan_and_its_peak_memory():
    @tf.function(jit_compile=True)
    def f(x, w):
        with tf.GradientTape() as tape:
            tape.watch(w)
            y = tf.reduce_sum(tf.nn.relu(tf.matmul(x, w) + 1.0) * 2.0)
        return tape.gradient(y, w)

    f(tf.constant(np.ones((4, 3), np.float32)), tf.constant(np.ones((3, 5), np.float32)))
    plan = f._cache[next(iter(f._cache))].plans[0]
    c = plan.counts()
    assert c["fused_kernels"] >= 1 and c["recorded_ops"] > c["ops"]
    # the largest intermediates are (4, 5) float32 arrays: a few of them alive at once, never zero
    assert 80 <= c["peak_bytes"] <= 8 * 80
    assert "peak of intermediates %d bytes" % c["peak_bytes"] in f.explain()


def test_a_trace_waits_for_the_cpu_kernels_so_the_plan_keeps_their_paths(monkeypatch):
    """Fused mode "auto" runs NumPy fallbacks while numba loads in the background; a plan keeps the paths
    its trace took, so a trace that reaches a twin waits for the load: the backward's fused hook (a CPU
    twin) is in the plan. (A first `fit` of small arrays does not wait: tests/test_tf_core.py.)"""
    from accel import cpu_kernels

    if not cpu_kernels.wait_warmed(300):
        pytest.skip("numba is not available")
    waited = []

    def wait_warmed(timeout=None):
        waited.append(True)
        monkeypatch.setattr(cpu_kernels, "_warmed", True)
        return True

    from accel.ops import fusion

    monkeypatch.setattr(fusion, "_twins", None)
    monkeypatch.setattr(cpu_kernels, "_warmed", False)  # as if the background load had not finished
    monkeypatch.setattr(cpu_kernels, "wait_warmed", wait_warmed)
    monkeypatch.setattr(cpu_kernels, "_start_warm_up", lambda: None)
    x = tf.Variable(np.linspace(-3, 3, 1 << 16, dtype=np.float32))

    def grad():
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(tf.nn.gelu(x) * x)  # the cotangent reaching gelu: a contiguous array
        return tape.gradient(y, x)

    f = tf.function(grad)
    with tf.config.fused("auto"):
        got = f()
        want = grad()
    assert waited
    plan = next(p for cf in f._cache.values() for p in cf.plans)
    from accel.ops.nn import _gelu

    assert any(n[0] == "acall" and n[1] == _gelu.fused for n in plan.nodes), plan.source
    np.testing.assert_array_equal(got.numpy(), want.numpy())
