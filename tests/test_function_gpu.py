"""accel.function on a GPU: fused groups launched through CuPy, the arena, and CUDA-graph capture and replay
of a training step, each against eager on the same device. Skipped without a CUDA device (never run on
this project's machines so far: see accel/cuda_plan.py)."""

import numpy as np
import pytest

import accel as tf
from accel import backend, settings
from accel.function import graph_launch_calls

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not backend.has_gpu(), reason="no CUDA device")]

rng = np.random.default_rng(0)


def _on_gpu(*arrays):
    with tf.device("gpu:0"):
        return [tf.constant(a) for a in arrays]


def _plan(f):
    return next(p for cf in f._cache.values() for p in cf.plans)


def _chain(x, b):
    return tf.reduce_sum(tf.tanh(x * 2.0 + b) * tf.sigmoid(x) - 0.5)


def test_fused_groups_run_on_the_gpu_like_eager():
    f = tf.function(_chain, jit_compile=True)
    for _ in range(3):
        x, b = _on_gpu(rng.standard_normal((64, 33)).astype(np.float32), rng.standard_normal(33).astype(np.float32))
        got = f(x, b)
        assert backend.is_cupy_array(got._data)
        np.testing.assert_allclose(got.numpy(), _chain(x, b).numpy(), rtol=1e-4)
    assert _plan(f).kernels


@pytest.mark.parametrize("graphs", [False, True, "whole_step"])
def test_captured_training_step_matches_eager_on_the_gpu(graphs):
    """whole_step: the GEMMs run on accel's own kernel (another summation order than cuBLAS's), so the
    tolerance is wider; the step is one graph where the optimizer's update reads its step on the device."""
    tol = dict(rtol=1e-4, atol=1e-5) if graphs == "whole_step" else dict(rtol=1e-5, atol=1e-6)
    old = settings.cuda_graphs_mode()
    settings.set_cuda_graphs(graphs)
    try:
        with tf.device("gpu:0"):
            init = [rng.standard_normal((20, 16)).astype(np.float32) * 0.1, np.zeros(16, np.float32),
                    rng.standard_normal((16, 4)).astype(np.float32) * 0.1, np.zeros(4, np.float32)]
            eager_vars = [tf.Variable(a) for a in init]
            cap_vars = [tf.Variable(a) for a in init]
            opt_e, opt_c = tf.keras.optimizers.Adam(1e-2), tf.keras.optimizers.Adam(1e-2)

            def step(vs, opt, x, y):
                with tf.GradientTape() as t:
                    h = tf.nn.relu(tf.matmul(x, vs[0]) + vs[1])
                    logits = tf.matmul(h, vs[2]) + vs[3]
                    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
                opt.apply_gradients(zip(t.gradient(loss, vs), vs))
                return loss

            captured = tf.function(lambda x, y: step(cap_vars, opt_c, x, y))
            for _ in range(6):
                x = tf.constant(rng.standard_normal((32, 20)).astype(np.float32))
                y = tf.constant(rng.integers(0, 4, 32).astype(np.int32))
                le = step(eager_vars, opt_e, x, y)
                lc = captured(x, y)
                np.testing.assert_allclose(lc.numpy(), le.numpy(), **tol)
                for a, b in zip(cap_vars, eager_vars):
                    np.testing.assert_allclose(a.numpy(), b.numpy(), **tol)
        plan = _plan(captured)
        if graphs:
            runners = [seg[3] for seg in plan.graphs.values()]
            assert runners and all(r.failed is None for r in runners), [r.failed for r in runners]
            assert all(r.launches >= 3 for r in runners), [r.launches for r in runners]
        if graphs == "whole_step":
            calls = graph_launch_calls(plan, whole_step=True)
            assert calls["graphs"] == len(plan.graphs) == 1 and calls["uncaptured"] == 0, (calls, plan.source)
    finally:
        settings.set_cuda_graphs(old)
