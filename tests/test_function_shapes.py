"""accel.function under a shape-generic signature (input_signature with None dimensions, reduce_retracing after
generalisation, get_concrete_function(TensorSpec([None, ...]))): a call with a new concrete shape gets a plan
derived from the recorded graph, without running the Python body again (as TF runs it once per generic trace).

Derived plans are checked against eager for new batch sizes, values and gradients (bitwise with fusion off,
within a few ulp with jit_compile=True), training steps with an optimizer, Keras Dense layers. Functions whose
Python saw a generic size (a reshape to x.shape[0], a guard on a shape-dependent value, a constant of the
batch's shape, a broadcast that changes) fall back to tracing again (the body runs; eager's result), and the
per-shape plans stay bounded."""

import functools
import sys

import numpy as np
import pytest

import accel as tf

function_mod = sys.modules["accel.function"]  # the module (accel.function is the decorator)

SIZES = [7, 5, 1, 8, 2, 5]  # the first call traces; the others are new sizes (and one repeat)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _vars(seed=0):
    rng = _rng(seed)
    return [tf.Variable(rng.standard_normal(s).astype(np.float32) * 0.3) for s in [(4, 6), (6,), (6, 2), (2,)]]


def _mlp(params, x):
    w1, b1, w2, b2 = params
    return tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2) + b2


def _with_grads(loss_fn, params):
    """loss_fn(x, y) and its gradients w.r.t. x and the params."""

    def step(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_fn(x, y)
        return [loss] + tape.gradient(loss, [x] + list(params))

    return step


def _case_elementwise():
    return (lambda x, y: tf.tanh(x * 2.0 + 1.0) * tf.sigmoid(x) - y), [(None, 4), (None, 4)]


def _case_reductions():
    def f(x, y):
        return [tf.reduce_sum(x, axis=1), tf.reduce_mean(x), tf.reduce_max(x, axis=0), tf.reduce_mean(y, axis=0,
                                                                                                       keepdims=True)]

    return f, [(None, 4), (None, 4)]


def _case_mlp_grads():
    params = _vars(1)
    return _with_grads(lambda x, y: tf.reduce_mean(tf.square(_mlp(params, x) - y[:, :2])), params), [(None, 4),
                                                                                                      (None, 4)]


def _case_softmax_xent_grads():
    params = _vars(2)

    def loss(x, y):
        labels = tf.nn.softmax(y[:, :2] * 3.0)
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=_mlp(params, x)))

    return _with_grads(loss, params), [(None, 4), (None, 4)]


def _case_concat_slice_broadcast_grads():
    params = _vars(3)

    def loss(x, y):
        both = tf.concat([x, y * 0.5], axis=0)  # the batch axis: concat's sizes follow the new batch
        h = tf.nn.relu(both[:, :3] + params[1][:3])
        return tf.reduce_sum(h * h) / 7.0 + tf.reduce_mean(tf.reduce_logsumexp(x, axis=1))

    return _with_grads(loss, params), [(None, 4), (None, 4)]


def _case_reshape_minus_one_grads():
    params = _vars(4)

    def loss(x, y):
        z = tf.reshape(tf.matmul(x, params[0]), [-1, 3, 2])  # -1: the wrapper resolves it to the batch size
        return tf.reduce_mean(tf.square(z)) + tf.reduce_sum(y)

    return _with_grads(loss, params), [(None, 4), (None, 4)]


DERIVED = {
    "elementwise": _case_elementwise,
    "reductions": _case_reductions,
    "mlp_grads": _case_mlp_grads,
    "softmax_xent_grads": _case_softmax_xent_grads,
    "concat_slice_broadcast_grads": _case_concat_slice_broadcast_grads,
    "reshape_minus_one_grads": _case_reshape_minus_one_grads,
    "seeded_random_of_fixed_shape": lambda: ((lambda x, y: x * tf.random.uniform([4], seed=2) + y),
                                             [(None, 4), (None, 4)]),  # drawn again on every call
    # tf.shape / tf.size are ops: the plan computes them from each call's input (TF's dynamic shapes)
    "accel_shape_and_size": lambda: ((lambda x, y: x + tf.cast(tf.reduce_sum(tf.shape(x)) + tf.size(y),
                                                                tf.float32) + y), [(None, 4), (None, 4)]),
}

# the Python saw a generic size, or a recorded value has it: a new size traces again (the body runs). Sizes
# 4, 3, 6, 4: (function, body runs); a guard that comes out as when traced lets 6 derive from 4's recording
FALLBACK = {
    "reshape_to_shape_0": (lambda x, y: tf.reshape(x, [x.shape[0], 2, 2]) * 2.0 + tf.reduce_sum(y), 3),
    "divide_by_len": (lambda x, y: tf.reduce_sum(x, axis=0) / float(len(x)) + y[0], 3),
    "zeros_of_batch": (lambda x, y: tf.concat([x, tf.zeros([x.shape[0], 1])], axis=1) - y[:, :1], 3),
    "ones_like_constant": (lambda x, y: x * tf.ones_like(y) + 1.0, 3),  # a constant of the traced shape
    "guard_on_size": (lambda x, y: x * 2.0 if tf.reduce_sum(x * 0.0 + 1.0) > 12.0 else x * 3.0 + y, 2),
    "int_guard_on_size": (lambda x, y: tf.tile(y[:1], [int(tf.reduce_sum(x[:, 0] * 0.0 + 1.0)), 1]) + x, 3),
    "loop_over_rows": (lambda x, y: tf.add_n([r * float(i + 1) for i, r in enumerate(x)]) + y[0], 3),
    "unstack_rows": (lambda x, y: tf.stack(tf.unstack(x)[::-1]) + y, 3),  # as many outputs as rows
    "seeded_dropout": (lambda x, y: tf.nn.dropout(x, 0.5, seed=3) + y, 3),  # a mask of the batch's shape
}


def _inputs(n, seed):
    rng = _rng(seed)
    return [tf.constant(rng.standard_normal((n, 4)).astype(np.float32)) for _ in range(2)]


def _flat(out):
    out = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(t.numpy()) for t in out if t is not None]


def _counted(fn):
    runs = []

    @functools.wraps(fn)  # the same parameters (input_signature binds them)
    def body(*a):
        runs.append(1)
        return fn(*a)

    return body, runs


def _specs(shapes):
    return [tf.TensorSpec(s, tf.float32) for s in shapes]


@pytest.mark.parametrize("jit", [False, None])
@pytest.mark.parametrize("name", sorted(DERIVED))
def test_new_batch_sizes_derive_a_plan_equal_to_eager_bitwise(name, jit):
    """Fusion off (eager's backward through the rules too): the derived plans equal eager bit for bit; the body
    ran once for all sizes."""
    fn, shapes = DERIVED[name]()
    body, runs = _counted(fn)
    f = tf.function(body, input_signature=_specs(shapes), jit_compile=jit)
    with tf.config.fused("never"):
        for k, n in enumerate(SIZES):
            args = _inputs(n, k)
            got, want = _flat(f(*args)), _flat(fn(*args))
            assert len(got) == len(want)
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w, err_msg="%s batch %d" % (name, n))
    assert len(runs) == 1, "%s: the Python body ran %d times for %d sizes" % (name, len(runs), len(set(SIZES)))
    assert f.experimental_get_tracing_count() == 1
    (cf,) = f._cache.values()
    assert sum(getattr(p, "derived", False) for p in cf.plans) == len(set(SIZES)) - 1


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_derived_plans_fuse_for_their_shape_within_tolerance(name):
    fn, shapes = DERIVED[name]()
    body, runs = _counted(fn)
    f = tf.function(body, input_signature=_specs(shapes), jit_compile=True)
    for k, n in enumerate(SIZES):
        args = _inputs(n, 10 + k)
        for g, w in zip(_flat(f(*args)), _flat(fn(*args))):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg="%s batch %d" % (name, n))
    assert len(runs) == 1
    (cf,) = f._cache.values()
    traced = next(p for p in cf.plans if not getattr(p, "derived", False))
    for p in cf.plans:  # each derived plan fused the same groups, at its own shape
        assert p.counts()["fused_kernels"] == traced.counts()["fused_kernels"]
        shapes = {tuple(a.shape) for a in p._examples}
        assert all(g.shape in shapes for g in p.kernels)


@pytest.mark.parametrize("name", sorted(FALLBACK))
def test_python_that_saw_a_generic_size_traces_again_with_eager_results(name):
    fn, want_runs = FALLBACK[name]
    body, runs = _counted(fn)
    f = tf.function(body, input_signature=_specs([(None, 4), (None, 4)]))
    with tf.config.fused("never"):
        for k, n in enumerate([4, 3, 6, 4]):
            args = _inputs(n, 20 + k)
            for g, w in zip(_flat(f(*args)), _flat(fn(*args))):
                np.testing.assert_array_equal(g, w, err_msg="%s batch %d" % (name, n))
    assert len(runs) == want_runs, "%s: the body ran %d times, expected %d" % (name, len(runs), want_runs)
    assert f.experimental_get_tracing_count() == 1


def test_a_constant_of_the_traced_batch_shape_is_not_broadcast_silently():
    c = tf.constant(np.arange(3, dtype=np.float32))  # made for batch 3 by the caller

    def fn(x):
        return x[:, 0] + c

    f = tf.function(fn, input_signature=_specs([(None, 4)]))
    x3 = _inputs(3, 0)[0]
    np.testing.assert_array_equal(f(x3).numpy(), fn(x3).numpy())
    x1 = _inputs(1, 1)[0]  # eager broadcasts the one row over c's 3: so must the function
    np.testing.assert_array_equal(f(x1).numpy(), fn(x1).numpy())
    with pytest.raises(Exception) as eager_error:
        fn(_inputs(5, 2)[0])
    with pytest.raises(type(eager_error.value)):
        f(_inputs(5, 2)[0])


def test_a_broadcast_that_changes_with_the_size_traces_again():
    """x: [None] traced at 3 against y: [3]; at size 1 x broadcasts, and its gradient must be summed."""
    y = tf.Variable(np.array([1.0, 2.0, 3.0], np.float32))

    def fn(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum((x + y) ** 2)
        return loss, tape.gradient(loss, [x, y])

    body, runs = _counted(fn)
    f = tf.function(body, input_signature=_specs([(None,)]))
    with tf.config.fused("never"):
        for n in [3, 1, 3, 1]:
            x = tf.constant(np.linspace(-1, 1, n).astype(np.float32))
            got, want = fn(x), f(x)
            for g, w in zip(_flat([got[0]] + got[1]), _flat([want[0]] + want[1])):
                assert g.shape == w.shape
                np.testing.assert_array_equal(g, w)
    assert len(runs) == 2


def _train_step(params, optimizer, runs):
    def train_step(x, y):
        runs.append(1)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(_mlp(params, x) - y))
        optimizer.apply_gradients(zip(tape.gradient(loss, params), params))
        return loss

    return train_step


def test_training_step_with_an_optimizer_over_changing_batch_sizes_equals_eager():
    rng = _rng(7)
    batches = [(rng.standard_normal((n, 4)).astype(np.float32), rng.standard_normal((n, 2)).astype(np.float32))
               for n in [8, 8, 5, 3, 8, 1, 5, 7]]
    for opt in ["SGD", "Adam"]:
        finals = []
        for capture in (False, True):
            params = _vars(9)
            optimizer = getattr(tf.keras.optimizers, opt)(learning_rate=0.05)
            runs = []

            train_step = _train_step(params, optimizer, runs)
            step = tf.function(train_step, input_signature=_specs([(None, 4), (None, 2)]),
                               jit_compile=False) if capture else train_step
            losses = []
            with tf.config.fused("never"):
                for x, y in batches:
                    losses.append(step(tf.constant(x), tf.constant(y)).numpy())
            finals.append((losses, [p.numpy() for p in params]))
            if capture:  # Adam makes its slots in the first call, traced again in the second (see test_function)
                assert len(runs) == (2 if opt == "Adam" else 1), (opt, len(runs))
        (l0, w0), (l1, w1) = finals
        np.testing.assert_array_equal(np.array(l1), np.array(l0), err_msg=opt)
        for a, b in zip(w0, w1):
            np.testing.assert_array_equal(b, a, err_msg=opt)


def _keras_step(model, optimizer, runs):
    def train_step(x, y):
        runs.append(1)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.keras.losses.mean_squared_error(y, model(x, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return train_step


def test_keras_dense_layers_in_a_generic_train_step():
    """Dense layers (their Python checks the input's last axis, which is not generic) in a user train step
    with reduce_retracing: after the generalised trace, new batch sizes derive their plans."""
    finals = []
    for capture in (False, True):
        tf.keras.utils.set_random_seed(3)
        model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="relu"), tf.keras.layers.Dense(2)])
        model.build((None, 4))
        optimizer = tf.keras.optimizers.Adam(learning_rate=0.01)
        optimizer.build(model.trainable_variables)
        runs = []

        train_step = _keras_step(model, optimizer, runs)
        step = tf.function(train_step, reduce_retracing=True, jit_compile=False) if capture else train_step
        losses = []
        with tf.config.fused("never"):
            for k, n in enumerate([6, 4, 3, 7, 4, 1, 9]):
                x, y = _inputs(n, 30 + k)
                losses.append(step(x, y[:, :2]).numpy())
        finals.append((losses, [v.numpy() for v in model.trainable_variables]))
        if capture:
            assert step.experimental_get_tracing_count() == 2  # [6, 4] then [None, 4]
            assert len(runs) == 2, len(runs)
    (l0, w0), (l1, w1) = finals
    np.testing.assert_array_equal(np.array(l1), np.array(l0))
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(b, a)


def test_keras_model_fit_compiled_gives_eager_weights_with_a_partial_last_batch():
    """Model.compile's default (run_eagerly=False) wraps train_step in accel.function: batches of 8 and a last
    batch of 5 (a new shape) train as eager does."""
    rng = _rng(11)
    x = rng.standard_normal((21, 4)).astype(np.float32)
    y = rng.standard_normal((21, 2)).astype(np.float32)
    weights = []
    for eager in (True, False):
        tf.keras.utils.set_random_seed(5)
        model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="tanh"), tf.keras.layers.Dense(2)])
        model.compile(optimizer=tf.keras.optimizers.SGD(0.05), loss="mse", run_eagerly=eager)
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        weights.append([v.numpy() for v in model.trainable_variables])
    for a, b in zip(*weights):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_get_concrete_function_with_a_none_dimension_serves_every_length_from_one_trace():
    def fn(x):
        return tf.reduce_sum(x * x, axis=0) + x[0]

    body, runs = _counted(fn)
    f = tf.function(body)
    cf = f.get_concrete_function(tf.TensorSpec([None, 3], tf.float32))
    for n in [2, 5, 1, 3]:
        x = _inputs(n, n)[0][:, :3]
        np.testing.assert_array_equal(cf(x).numpy(), fn(x).numpy())
        np.testing.assert_array_equal(f(x).numpy(), fn(x).numpy())
    assert f.get_concrete_function(_inputs(7, 0)[0][:, :3]) is cf
    assert len(runs) == 1 and f.experimental_get_tracing_count() == 1


def test_many_batch_sizes_keep_the_per_shape_plans_bounded():
    fn, shapes = _case_mlp_grads()
    body, runs = _counted(fn)
    f = tf.function(body, input_signature=_specs(shapes), jit_compile=True)
    sizes = list(range(1, 41)) + list(range(40, 0, -3))
    for n in sizes:
        args = _inputs(n, n)
        for g, w in zip(_flat(f(*args)), _flat(fn(*args))):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)
    assert len(runs) == 1
    (cf,) = f._cache.values()
    assert len(cf.plans) <= function_mod.MAX_PLANS
    assert len(function_mod._arenas._plans) <= function_mod._ArenaHolders.MAX_ARENAS


def test_derived_plan_replays_guards_and_writes_like_a_traced_one():
    """A guard on data (not on a size) stays a guard of the derived plan: the other path traces when it is taken."""
    v = tf.Variable(0.0)
    runs = []

    def fn(x):
        runs.append(1)
        v.assign_add(tf.reduce_sum(x))
        if tf.reduce_sum(x) > 0:
            return x * 2.0
        return x - 1.0

    f = tf.function(fn, input_signature=_specs([(None,)]))
    total = 0.0
    for vals in [[1.0, 2.0], [3.0, 1.0, 1.0], [-1.0, -2.0, -3.0], [4.0], [-5.0, 1.0]]:
        x = tf.constant(np.array(vals, np.float32))
        want = x.numpy() * 2.0 if sum(vals) > 0 else x.numpy() - 1.0
        np.testing.assert_array_equal(f(x).numpy(), want)
        total += sum(vals)
        assert v.numpy() == pytest.approx(total)
    assert len(runs) == 2  # one per path


def test_reduce_retracing_generalises_then_derives():
    def fn(x):
        return tf.reduce_mean(x, axis=-1) * 3.0

    body, runs = _counted(fn)
    f = tf.function(body, reduce_retracing=True)
    for n in [2, 3, 4, 9, 2]:
        x = _inputs(n, n)[0]
        np.testing.assert_array_equal(f(x).numpy(), fn(x).numpy())
    assert f.experimental_get_tracing_count() == 2 and len(runs) == 2


def test_explain_says_which_plans_were_derived_and_why_a_shape_traced_again():
    fn, shapes = _case_mlp_grads()
    f = tf.function(fn, input_signature=_specs(shapes))
    for n in [3, 5]:
        f(*_inputs(n, n))
    assert "derived for input shapes [(5, 4), (5, 4)]" in f.explain()
    g = tf.function(FALLBACK["reshape_to_shape_0"][0], input_signature=_specs(shapes))
    for n in [3, 5]:
        g(*_inputs(n, n))
    assert "traced again (the Python ran) because: the Python read a generic dimension of an input" in g.explain()


# --- random programs over a generic batch dimension ---------------------------------------------------------

B = "B"  # the generic batch size in a symbolic shape
UNARY = [tf.tanh, tf.nn.relu, tf.square, tf.sigmoid, tf.abs, lambda v: tf.exp(tf.clip_by_value(v, -3.0, 3.0))]
BINARY = [tf.add, tf.subtract, tf.multiply, tf.maximum, lambda a, b: a / (tf.abs(b) + 1.0)]


def _bcast(a, b):
    """The broadcast of two symbolic shapes (B matches only B or 1), or None."""
    out = []
    for x, y in zip(((1,) * len(b) + a)[-max(len(a), len(b)):], ((1,) * len(a) + b)[-max(len(a), len(b)):]):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(out)


def _program(seed, n_steps=9):
    """A random valid program over x: (B, 4), c: (B, 1), W: Variable (4, 4), b: Variable (4,); returns
    (steps, W, b). A step is (kind, argument indices, parameter) applied to earlier values."""
    rng = np.random.default_rng(seed)
    shapes = [(B, 4), (B, 1), (4, 4), (4,)]
    steps = []
    for _ in range(n_steps):
        kind = rng.choice(["unary", "binary", "binary", "reduce", "matmul", "gram", "concat0", "concat1",
                           "reshape", "softmax", "slice"])
        i = int(rng.integers(len(shapes)))
        j = int(rng.integers(len(shapes)))
        s = shapes[i]
        if kind == "unary":
            steps.append(("unary", (i,), int(rng.integers(len(UNARY)))))
            shapes.append(s)
        elif kind == "binary" and _bcast(s, shapes[j]) is not None:
            steps.append(("binary", (i, j), int(rng.integers(len(BINARY)))))
            shapes.append(_bcast(s, shapes[j]))
        elif kind == "reduce" and len(s):
            axis, keep = int(rng.integers(-1, len(s))), bool(rng.integers(2))
            fn = int(rng.integers(3))
            steps.append(("reduce", (i,), (fn, None if axis < 0 else axis, keep)))
            shapes.append(tuple(1 if a == axis or axis < 0 else d for a, d in enumerate(s)) if keep else
                          tuple(d for a, d in enumerate(s) if axis >= 0 and a != axis))
        elif kind == "matmul" and s in ((B, 4), (4, 4)):
            steps.append(("matmul", (i, 2), None))
            shapes.append(s)
        elif kind == "gram" and s in ((B, 4), (B, 1)):  # contracts the batch: (k, B) @ (B, k)
            steps.append(("gram", (i,), None))
            shapes.append((s[1], s[1]))
        elif kind == "concat0" and s in ((B, 4), (B, 1)):  # (2B, k), reduced over the batch at once
            steps.append(("concat0", (i,), None))
            shapes.append((s[1],))
        elif kind == "concat1" and s == (B, 4):
            steps.append(("concat1", (i,), None))
            shapes.append((B, 4))
        elif kind == "reshape" and s == (B, 4):
            steps.append(("reshape", (i,), None))
            shapes.append((B, 4))
        elif kind == "softmax" and len(s) == 2:
            steps.append(("softmax", (i,), None))
            shapes.append(s)
        elif kind == "slice" and s == (B, 4):
            steps.append(("slice", (i,), None))
            shapes.append((B, 2))
    rng2 = np.random.default_rng(seed + 1000)
    return steps, [tf.Variable(rng2.standard_normal((4, 4)).astype(np.float32) * 0.5),
                   tf.Variable(rng2.standard_normal(4).astype(np.float32))]


def _run_program(steps, x, c, w, b):
    vals = [x, c, w, b]
    for kind, idx, p in steps:
        a = [vals[k] for k in idx]
        if kind == "unary":
            v = UNARY[p](a[0])
        elif kind == "binary":
            v = BINARY[p](a[0], a[1])
        elif kind == "reduce":
            v = [tf.reduce_sum, tf.reduce_mean, tf.reduce_max][p[0]](a[0], axis=p[1], keepdims=p[2])
        elif kind == "matmul":
            v = tf.matmul(a[0], a[1])
        elif kind == "gram":
            v = tf.matmul(a[0], a[0], transpose_a=True)
        elif kind == "concat0":
            v = tf.reduce_mean(tf.concat([a[0], tf.tanh(a[0])], axis=0), axis=0)
        elif kind == "concat1":
            v = tf.concat([a[0], a[0] * 2.0], axis=1)[:, 2:6]
        elif kind == "reshape":
            v = tf.reshape(tf.reshape(a[0], [-1, 2]) * 0.5, [-1, 4])
        elif kind == "softmax":
            v = tf.nn.softmax(a[0])
        else:
            v = a[0][:, 1:3]
        vals.append(v)
    return vals[4:] or [x]


def _program_step(steps, w, b):
    def step(x, c):
        with tf.GradientTape() as tape:
            tape.watch([x, c])
            outs = _run_program(steps, x, c, w, b)
            loss = tf.add_n([tf.reduce_sum(tf.tanh(v)) for v in outs])
        return outs + [loss] + tape.gradient(loss, [x, c, w, b])

    return step


@pytest.mark.parametrize("traced", [6, 1])
@pytest.mark.parametrize("seed", range(40))
def test_random_programs_over_a_generic_batch_equal_eager_bitwise(seed, traced):
    """Whatever the program, a derived plan gives eager's values and gradients bit for bit (fusion off) for every
    batch size, the traced one 1 included (where broadcasts differ); most programs derive (the body runs once)."""
    steps, (w, b) = _program(seed)
    step = _program_step(steps, w, b)
    body, runs = _counted(step)
    f = tf.function(body, input_signature=_specs([(None, 4), (None, 1)]))
    with tf.config.fused("never"):
        for k, n in enumerate([traced, 3, 1, 8, 2]):
            rng = _rng(seed * 10 + k)
            x = tf.constant(rng.uniform(-2, 2, (n, 4)).astype(np.float32))
            c = tf.constant(rng.uniform(-2, 2, (n, 1)).astype(np.float32))
            got, want = _flat(f(x, c)), _flat(step(x, c))
            assert len(got) == len(want)
            for g, e in zip(got, want):
                assert g.shape == e.shape, (steps, n)
                np.testing.assert_array_equal(g, e, err_msg="%s batch %d" % (steps, n))
    # traced at 6 every program derives; traced at 1 a broadcast may differ at other sizes (one more trace)
    assert len(runs) == 1 or (traced == 1 and len(runs) == 2), (steps, len(runs))


def test_an_index_tensor_is_an_input_of_the_plan():
    """x[idx] with a traced idx: idx is an input of the getitem_at step (not an array frozen into the key),
    so new values replay and new shapes derive their plan, each equal to eager."""

    def fn(x, idx):
        return x[idx] * 2.0

    body, runs = _counted(fn)
    f = tf.function(body, input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.int32)])
    x = tf.constant(np.arange(6, dtype=np.float32))
    for idx in ([0, 1], [4, 2], [3, 4, 5], [5], [-1, 0, 0]):
        i = tf.constant(np.array(idx, np.int32))
        np.testing.assert_array_equal(f(x, i).numpy(), fn(x, i).numpy())
    assert len(runs) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not tf.config.list_physical_devices("GPU"), reason="no CUDA device")
def test_derived_plans_on_the_gpu_equal_eager():
    """Never run on this project's machines so far (no GPU)."""
    with tf.device("gpu:0"):
        fn, shapes = _case_mlp_grads()  # its Variables on the GPU
    body, runs = _counted(fn)
    f = tf.function(body, input_signature=_specs(shapes), jit_compile=True)
    for k, n in enumerate(SIZES):
        with tf.device("gpu:0"):
            args = [tf.constant(a.numpy()) for a in _inputs(n, k)]
            got, want = _flat(f(*args)), _flat(fn(*args))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    assert len(runs) == 1


# every way Python code can get sizes out of a traced tensor's shape notes which dimensions it read
SHAPE_USES = {
    "index": (lambda s: s[1], {1}),
    "negative index": (lambda s: s[-1], {2}),
    "slice": (lambda s: s[1:], {1, 2}),
    "len (the rank)": (lambda s: len(s), set()),
    "tuple": (lambda s: tuple(s), None),
    "unpack": (lambda s: [a for a, _, _ in [s]], None),
    "star": (lambda s: (lambda *a: a)(*s), None),
    "np.zeros": (lambda s: np.zeros(s), None),
    "reshape to it": (lambda s: np.arange(60).reshape(s), None),
    "concatenated": (lambda s: s + (1,), None),
    "concatenated to": (lambda s: (1,) + s, None),
    "compared": (lambda s: s == (3, 4, 5), None),
    "as_list": (lambda s: s.as_list(), None),
    "num_elements": (lambda s: s.num_elements(), None),
    "str": (lambda s: str(s), None),
    "hash": (lambda s: hash(s), None),
    "max": (lambda s: max(s), None),
    "np.prod": (lambda s: np.prod(s), None),
    "in": (lambda s: 3 in s, None),
}


@pytest.mark.parametrize("use", sorted(SHAPE_USES))
def test_reading_a_traced_shape_notes_the_dimensions_read(use):
    fn, want = SHAPE_USES[use]
    seen = {}

    def body(x):
        fn(x.shape)
        seen["slot"] = function_mod.recorder.state.trace.shape_reads.get(0, set())
        return x * 2.0

    tf.function(body)(tf.constant(np.zeros((3, 4, 5), np.float32)))
    assert seen["slot"] == want, (use, seen["slot"])
