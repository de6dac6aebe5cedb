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
