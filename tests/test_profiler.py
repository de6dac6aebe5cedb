"""accel.profiler counts device operations and bytes per op (NumPy backend)."""

import numpy as np
import pytest

import accel as tf
from accel import backend


def test_counts_one_op_per_elementwise_call_and_no_op_for_views():
    x = tf.constant(np.ones((4, 8), np.float32))
    y = tf.constant(np.ones((4, 8), np.float32))
    with tf.profiler.profile() as prof:
        z = x * y
        tf.reshape(z, (8, 4))
        tf.transpose(z)
    assert prof.table == {"multiply": [1, 3 * 4 * 8 * 4]}
    assert prof.total_ops == 1 and prof.total_bytes == 384
    assert "| multiply | 1 |" in str(prof)


def test_backward_is_attributed_to_the_op_and_grads_come_back_plain():
    w = tf.Variable(np.ones(16, np.float32))
    with tf.profiler.profile() as prof:
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(tf.tanh(w))
        g = tape.gradient(y, w)
    assert prof.table["tanh"][0] == 1
    assert prof.table["tanh (backward)"][0] >= 1
    assert type(g._data) is np.ndarray
    np.testing.assert_allclose(g.numpy(), 1 - np.tanh(1.0) ** 2, rtol=1e-6)


def test_nothing_is_counted_outside_and_blocks_do_not_nest():
    x = tf.constant([1.0])
    with tf.profiler.profile() as prof:
        pass
    _ = x * 2
    assert prof.total_ops == 0
    with tf.profiler.profile():
        with pytest.raises(RuntimeError, match="nest"):
            with tf.profiler.profile():
                pass


def test_fused_kernel_counts_as_one_op():
    pytest.importorskip("numba")
    x = tf.constant(np.linspace(-1, 1, 64, dtype=np.float32))
    counts = {}
    for mode in ("never", "always"):
        with backend.fused(mode):
            with tf.profiler.profile() as prof:
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = tf.nn.gelu(x, approximate=True)
                tape.gradient(y, x)
        counts[mode] = prof.table["gelu (backward)"][0]
    assert counts["always"] == 1 < counts["never"]


def test_mlp_training_step_device_ops_fused_vs_generic():
    """The issue's budget: a 3-layer MLP step with Adam in at most 30 device ops with the fused kernels."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(0)
    sizes = [20, 16, 16, 10]
    x = tf.constant(rng.standard_normal((8, 20)).astype(np.float32))
    y = tf.constant(rng.integers(0, 10, 8))
    totals = {}
    for mode in ("never", "always"):
        params = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            w = rng.standard_normal((a, b)).astype(np.float32) * 0.1
            params += [tf.Variable(w), tf.Variable(np.zeros(b, np.float32))]
        opt = tf.optimizers.Adam()
        with backend.fused(mode):
            with tf.profiler.profile() as prof:
                with tf.GradientTape() as tape:
                    h = x
                    for i in range(3):
                        h = tf.matmul(h, params[2 * i]) + params[2 * i + 1]
                        h = tf.nn.relu(h) if i < 2 else h
                    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
                grads = tape.gradient(loss, params)
                opt.apply_gradients(zip(grads, params))
        totals[mode] = prof.total_ops
        if mode == "always":
            assert prof.table["optimizer:Adam"][0] == 1
            assert prof.table["sparse_softmax_cross_entropy_with_logits (backward)"][0] == 1
            assert prof.table["relu (backward)"][0] == 2
            assert prof.table["sparse_softmax_cross_entropy_with_logits"][0] == 1
    assert totals["always"] <= 30 < totals["never"]
