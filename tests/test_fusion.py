"""The fused backward path (CPU twins here, CUDA kernels on a GPU) equals the generic rules,
runs when allowed, and steps aside when an outer tape records the backward pass."""

import numpy as np
import pytest

import accel as tf
from accel import backend, cpu_kernels

pytestmark = pytest.mark.skipif(not cpu_kernels.available(), reason="numba is not installed")

ACTIVATIONS = [
    ("relu", tf.nn.relu), ("relu6", tf.nn.relu6), ("leaky_relu", lambda x: tf.nn.leaky_relu(x, 0.1)),
    ("elu", tf.nn.elu), ("selu", tf.nn.selu), ("gelu", tf.nn.gelu),
    ("gelu_tanh", lambda x: tf.nn.gelu(x, approximate=True)), ("silu", tf.nn.silu),
    ("sigmoid", tf.sigmoid), ("tanh", tf.tanh), ("softplus", tf.nn.softplus),
]


def _grad(fn, x, og):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = fn(xt)
    return tape.gradient(y, xt, output_gradients=tf.constant(og)).numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel, fn", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_fused_equals_generic_and_runs(kernel, fn, dtype, monkeypatch):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(1001) * 3).astype(dtype)
    og = rng.standard_normal(1001).astype(dtype)
    calls = []
    real = cpu_kernels.activation_bwd
    monkeypatch.setattr(cpu_kernels, "activation_bwd", lambda name, *a, **k: calls.append(name) or real(name, *a, **k))
    with backend.fused("never"):
        generic = _grad(fn, x, og)
    assert calls == []
    with backend.fused("always"):
        fused = _grad(fn, x, og)
    assert calls == [kernel]
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fused, generic, rtol=tol * 10, atol=tol)


def test_auto_mode_uses_the_twin_only_for_large_arrays(monkeypatch):
    from accel.ops import fusion

    calls = []
    real = cpu_kernels.activation_bwd
    monkeypatch.setattr(cpu_kernels, "activation_bwd", lambda name, *a, **k: calls.append(name) or real(name, *a, **k))
    with backend.fused("auto"):
        _grad(tf.tanh, np.ones(16, np.float32), np.ones(16, np.float32))
        assert calls == []
        n = fusion.CPU_MIN_SIZE
        _grad(tf.tanh, np.ones(n, np.float32), np.ones(n, np.float32))
        assert calls == ["tanh"]


def test_fused_path_steps_aside_for_higher_order(monkeypatch):
    calls = []
    real = cpu_kernels.activation_bwd
    monkeypatch.setattr(cpu_kernels, "activation_bwd", lambda name, *a, **k: calls.append(name) or real(name, *a, **k))
    x = tf.constant(np.linspace(-2, 2, 64))
    with backend.fused("always"):
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = tf.reduce_sum(tf.tanh(x))
            g = inner.gradient(y, x)
        h = outer.gradient(g, x).numpy()
    t = np.tanh(np.linspace(-2, 2, 64))
    np.testing.assert_allclose(h, -2 * t * (1 - t * t), rtol=1e-10)
    # the inner backward is recorded, so it used the differentiable rule; only the outer one was fused
    assert calls == ["tanh"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_xent_fused_equals_generic_through_a_mean(dtype, monkeypatch):
    """The mean's cotangent reaches the hook as a stride-0 broadcast: the twin takes it without a copy."""
    rng = np.random.default_rng(3)
    logits = tf.constant((rng.standard_normal((33, 7)) * 3).astype(dtype))
    labels = tf.constant(rng.integers(0, 7, 33))
    calls = []
    real = cpu_kernels.softmax_xent_bwd
    monkeypatch.setattr(cpu_kernels, "softmax_xent_bwd", lambda *a, **k: calls.append(1) or real(*a, **k))
    grads, losses = {}, {}
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for mode in ("never", "always"):
        with backend.fused(mode):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
            grads[mode] = tape.gradient(loss, logits).numpy()
            losses[mode] = loss.numpy()
    assert calls == [1]
    np.testing.assert_allclose(losses["always"], losses["never"], rtol=tol, atol=tol)
    np.testing.assert_allclose(grads["always"], grads["never"], rtol=tol, atol=tol)


def test_profiling_does_not_change_the_path_taken(monkeypatch):
    """accel.profiler's counting views are ndarray subclasses: the hooks must still take the fused path."""
    calls = []
    real = cpu_kernels.activation_bwd
    monkeypatch.setattr(cpu_kernels, "activation_bwd", lambda name, *a, **k: calls.append(name) or real(name, *a, **k))
    x = tf.constant(np.linspace(-2, 2, 64, dtype=np.float32))
    with backend.fused("always"):
        with tf.profiler.profile():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.nn.relu(tf.tanh(x) * 2.0)  # relu's cotangent arrives as a counted view
            tape.gradient(y, x)
    assert calls == ["relu", "tanh"]


# ---- dropout, sigmoid cross-entropy, scatter: fused on the device fixture's backend ----


def _dev_twin_calls(monkeypatch, name):
    calls = []
    real = getattr(cpu_kernels, name)
    monkeypatch.setattr(cpu_kernels, name, lambda *a, **k: calls.append(name) or real(*a, **k))
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_gradient_is_the_kept_mask_times_scale_fused_and_generic(device, dtype, monkeypatch):
    calls = _dev_twin_calls(monkeypatch, "dropout_bwd")
    x0 = np.random.default_rng(0).uniform(1, 2, (64, 33)).astype(dtype)  # nonzero: kept <=> y != 0
    og = np.random.default_rng(1).standard_normal((64, 33)).astype(dtype)
    got = {}
    for mode in ("never", "always"):
        with backend.fused(mode), tf.device(device):
            x = tf.constant(x0)
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.nn.dropout(x, rate=0.25, seed=7)
            got[mode] = (y.numpy(), tape.gradient(y, x, output_gradients=tf.constant(og)).numpy())
    y, gx = got["never"]
    keep = y != 0
    assert 0.6 < keep.mean() < 0.9
    np.testing.assert_allclose(y[keep], x0[keep] / dtype(0.75), rtol=1e-6)
    np.testing.assert_allclose(gx, np.where(keep, og / dtype(0.75), 0), rtol=1e-6)
    np.testing.assert_array_equal(got["always"][0], y)
    np.testing.assert_allclose(got["always"][1], gx, rtol=1e-6)
    assert calls == (["dropout_bwd"] if device == "cpu" else [])


def test_dropout_noise_shape_and_higher_order_take_the_generic_rule(monkeypatch):
    calls = _dev_twin_calls(monkeypatch, "dropout_bwd")
    x = tf.constant(np.linspace(1, 2, 24).reshape(4, 6))
    with backend.fused("always"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.dropout(x, rate=0.5, noise_shape=(1, 6), seed=3)  # one mask column for every row
        gx = tape.gradient(y, x).numpy()
        assert calls == []
        np.testing.assert_array_equal(gx, np.where(y.numpy() != 0, 2.0, 0.0))
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = tf.reduce_sum(tf.nn.dropout(x * x, rate=0.5, seed=3))
            g = inner.gradient(y, x)
        h = outer.gradient(g, x).numpy()
    kept = g.numpy() != 0
    np.testing.assert_allclose(h, np.where(kept, 4.0, 0.0))  # d/dx of 2 * 2x where kept


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_xent_fused_equals_generic_and_labels_get_the_rule(device, dtype, monkeypatch):
    calls = _dev_twin_calls(monkeypatch, "sigmoid_xent_bwd")
    rng = np.random.default_rng(2)
    x0 = (rng.standard_normal((50, 40)) * 6).astype(dtype)
    z0 = rng.uniform(0, 1, (50, 40)).astype(dtype)
    got = {}
    for mode in ("never", "always"):
        with backend.fused(mode), tf.device(device):
            x, z = tf.constant(x0), tf.constant(z0)
            with tf.GradientTape(persistent=True) as tape:
                tape.watch([x, z])
                loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x))
            got[mode] = [tape.gradient(loss, v).numpy() for v in (x, z)]
    tol = 1e-6 if dtype == np.float32 else 1e-14
    for a, b in zip(got["always"], got["never"], strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol / 100)
    np.testing.assert_allclose(got["never"][1], -x0 / x0.size, rtol=tol)
    assert calls == (["sigmoid_xent_bwd"] * 2 if device == "cpu" else [])  # one per tape.gradient call


def test_op_determinism_switch():
    assert not tf.config.op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        assert tf.config.op_determinism_enabled()
    finally:
        tf.config.experimental.disable_op_determinism()
    assert not tf.config.op_determinism_enabled()


@pytest.mark.parametrize("deterministic", [False, True])
def test_embedding_gradient_scatter_equals_numpy(device, deterministic):
    """Repeated rows add up; on a GPU this runs the scatter kernel (sorted when deterministic)."""
    rng = np.random.default_rng(4)
    table0 = rng.standard_normal((10, 8)).astype(np.float32)
    ids = np.array([1, 3, 1, 9, 1, 0, 3])
    og = rng.standard_normal((7, 8)).astype(np.float32)
    want = np.zeros_like(table0)
    np.add.at(want, ids, og)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    try:
        with backend.fused("always"), tf.device(device):
            table = tf.Variable(table0)
            with tf.GradientTape() as tape:
                y = tf.gather(table, tf.constant(ids))
            g = tape.gradient(y, table, output_gradients=tf.constant(og))
            dense = tf.convert_to_tensor(g).numpy()
    finally:
        tf.config.experimental.disable_op_determinism()
    np.testing.assert_allclose(dense, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 48), (3, 5, 33), (1, 1)])
def test_layer_norm_fused_equals_generic(device, dtype, shape, monkeypatch):
    calls = _dev_twin_calls(monkeypatch, "layer_norm_bwd")
    rng = np.random.default_rng(5)
    x0 = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    og = rng.standard_normal(shape).astype(dtype)
    gamma0, beta0 = rng.standard_normal(shape[-1:]).astype(dtype), rng.standard_normal(shape[-1:]).astype(dtype)
    got = {}
    for mode in ("never", "always"):
        with backend.fused(mode), tf.device(device):
            x, gamma, beta = tf.constant(x0), tf.Variable(gamma0), tf.Variable(beta0)
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = _layer_norm(x, gamma, beta)
            got[mode] = tape.gradient(y, [x, gamma, beta], output_gradients=tf.constant(og))
            got[mode] = [g.numpy() for g in got[mode]]
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(got["always"], got["never"], strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert calls == (["layer_norm_bwd"] if device == "cpu" else [])


def _layer_norm(x, gamma, beta):
    from accel.ops.nn import layer_norm

    return layer_norm(x, gamma, beta, 1e-3)


def test_layer_normalization_layer_uses_the_op_and_matches_keras_formula(monkeypatch):
    calls = _dev_twin_calls(monkeypatch, "layer_norm_bwd")
    rng = np.random.default_rng(6)
    x = tf.constant(rng.standard_normal((4, 6)).astype(np.float32) * 2 + 3)
    ln = tf.keras.layers.LayerNormalization(epsilon=1e-3)
    ln.build(x.shape)
    ln.gamma.assign(rng.standard_normal(6).astype(np.float32))
    ln.beta.assign(rng.standard_normal(6).astype(np.float32))
    with backend.fused("always"):
        with tf.GradientTape() as tape:
            y = ln(x)
        tape.gradient(y, ln.trainable_variables)
    assert calls == ["layer_norm_bwd"]
    xn = x.numpy().astype(np.float64)
    inv = ln.gamma.numpy() / np.sqrt(xn.var(-1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(y.numpy(), xn * inv + (ln.beta.numpy() - xn.mean(-1, keepdims=True) * inv), rtol=1e-5,
                               atol=1e-5)
    no_center = tf.keras.layers.LayerNormalization(center=False)  # the composite path
    np.testing.assert_allclose(no_center(x).numpy(), (xn - xn.mean(-1, keepdims=True)) / np.sqrt(
        xn.var(-1, keepdims=True) + 1e-3), rtol=1e-5, atol=1e-5)


def test_cotangent_sums_go_in_place_without_touching_shared_arrays(monkeypatch):
    """The third and later contributions to a cotangent are summed in place into the array the tape
    allocated for the second; arrays a rule passed through (add's g, the caller's output_gradients)
    are never written."""
    from accel.ops import fusion

    done = []
    real = fusion.accumulate
    monkeypatch.setattr(fusion, "accumulate", lambda acc, g, m: done.append(real(acc, g, m)) or done[-1])
    x0 = np.linspace(-1, 1, 12).reshape(3, 4)
    og = np.ones((3, 4))
    og_before = og.copy()
    for mode in ("never", "always"):
        done.clear()
        with backend.fused(mode):
            x = tf.constant(x0)
            with tf.GradientTape() as tape:
                tape.watch(x)
                s = x + x  # add's rule hands the same g to both inputs
                y = s + x * 3.0 + tf.sin(x) + x * x
            gx = tape.gradient(y, x, output_gradients=tf.constant(og)).numpy()
        np.testing.assert_allclose(gx, 2 + 3 + np.cos(x0) + 2 * x0, rtol=1e-12)
        assert any(done)  # some sums went in place
        np.testing.assert_array_equal(og, og_before)


def test_auto_mode_fuses_multi_pass_rules_at_any_size(monkeypatch):
    """Ops whose generic rule takes many passes (Op.fused_small) use the CPU twin even for small arrays
    in mode "auto"; single-pass activations do not."""
    xent = _dev_twin_calls(monkeypatch, "softmax_xent_bwd")
    act = _dev_twin_calls(monkeypatch, "activation_bwd")
    logits = tf.constant(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32))
    with backend.fused("auto"):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.constant([0, 2, 1, 1]), logits=tf.nn.relu(logits)))
        tape.gradient(loss, logits)
    assert xent == ["softmax_xent_bwd"] and act == []


def test_layer_norm_rejects_mismatched_gamma_beta_and_handles_empty():
    from accel.errors import InvalidArgumentError

    x = tf.constant(np.ones((2, 3), np.float32))
    with pytest.raises(InvalidArgumentError, match=r"gamma must be float32 of shape \(3,\).*got float32 \(4,\)"):
        _layer_norm(x, tf.constant(np.ones(4, np.float32)), tf.constant(np.zeros(3, np.float32)))
    with pytest.raises(InvalidArgumentError, match=r"beta must be float32.*got float64 \(3,\)"):
        _layer_norm(x, tf.constant(np.ones(3, np.float32)), tf.constant(np.zeros(3)))
    for shape in [(0, 3), (2, 0)]:
        e = tf.constant(np.ones(shape, np.float32))
        gamma, beta = tf.constant(np.ones(shape[-1], np.float32)), tf.constant(np.zeros(shape[-1], np.float32))
        with backend.fused("always"):
            with tf.GradientTape() as tape:
                tape.watch([e, gamma, beta])
                y = _layer_norm(e, gamma, beta)
            grads = tape.gradient(y, [e, gamma, beta])
        assert y.shape == shape and [tuple(g.shape) for g in grads] == [shape, shape[-1:], shape[-1:]]
