"""accel.function's loss step: reduce_mean over sparse softmax cross-entropy rows as one kernel each way.

A plan puts nn.sparse_xent_mean (one kernel that also takes the mean) in place of the pair of forward ops
where nothing else reads the rows, and nn.sparse_xent_mean_grad (g / N inside the gradient kernel) in
place of the mean's rule feeding the cross-entropy's fused hook. On the host both equal eager bitwise, so
the default mode (jit_compile=None) rewrites too; anything else must stay as recorded.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import accel as tf
from accel import backend, profiler
from accel.ops import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repository root

FWD, BWD = nn.sparse_xent_mean.name, "grad:" + nn.sparse_xent_mean.name
XENT, MEAN = "sparse_softmax_cross_entropy_with_logits", "reduce_mean"


def _rows(y, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)


def _mean_plus_sum(rows):
    return (tf.reduce_mean(rows) + 0.5 * tf.reduce_sum(rows),)


# name -> (loss(y, logits) -> what the function returns besides the gradients, steps the plan must have,
# steps it must not have)
CASES = {
    "mean": (lambda y, z: (tf.reduce_mean(_rows(y, z)),), {FWD, BWD}, {XENT, MEAN, "grad:reduce_mean"}),
    "mean_axis_0_keepdims": (lambda y, z: (tf.reduce_mean(_rows(y, z), axis=0, keepdims=True),), {FWD, BWD},
                             {XENT, MEAN}),
    # the rows leave the function: the forward pair stays, the backward one still fuses
    "rows_also_returned": (lambda y, z: (tf.reduce_mean(_rows(y, z)), _rows(y, z)), {XENT, MEAN, BWD}, {FWD}),
    "sum_not_mean": (lambda y, z: (tf.reduce_sum(_rows(y, z)),), {XENT, "reduce_sum"}, {FWD, BWD}),
    # the rows read twice: their cotangent is a sum, not the mean's broadcast alone
    "mean_plus_sum": (lambda y, z: _mean_plus_sum(_rows(y, z)), {XENT, MEAN, "reduce_sum"}, {FWD, BWD}),
    # two cross-entropy ops (one after common subexpressions): the mean's own backward pair still fuses
    "two_xent_ops": (lambda y, z: (tf.reduce_mean(_rows(y, z)) + 0.5 * tf.reduce_sum(_rows(y, z)),),
                     {XENT, MEAN, "reduce_sum", BWD}, {FWD}),
    "mean_of_scaled_rows": (lambda y, z: (tf.reduce_mean(_rows(y, z) * 2.0),), {XENT, MEAN}, {FWD, BWD}),
}


def _model(batch, dt, seed=0):
    rng = np.random.default_rng(seed + batch)
    x = tf.constant(rng.standard_normal((batch, 12)).astype(dt))
    y = tf.constant(rng.integers(0, 5, batch))
    w = tf.Variable((rng.standard_normal((12, 5)) * 2).astype(dt))
    b = tf.Variable(rng.standard_normal(5).astype(dt))
    return x, y, w, b


def _step(case, w, b):
    loss_fn = CASES[case][0]

    def step(x, y):
        with tf.GradientTape() as tape:
            outs = loss_fn(y, tf.nn.relu(tf.matmul(x, w) + b) * 3.0 - 1.0)
        return outs, tape.gradient(outs[0], [w, b])

    return step


def _plan_steps(f):
    (plan,) = [p for cf in f._cache.values() for p in cf.plans]
    names = set()
    for n in plan.nodes:
        if n[0] == "op":
            names.add(n[1].name)
        elif n[0] == "acall":
            names.add("grad:" + (n[6].name if n[6] is not None else getattr(n[1], "__name__", "step")))
    return names


def _assert_bitwise(got, want):
    (go, gg), (wo, wg) = got, want
    for a, b in zip(list(go) + list(gg), list(wo) + list(wg), strict=True):
        a, b = np.asarray(a.numpy()), np.asarray(b.numpy())
        assert a.shape == b.shape and a.dtype == b.dtype
        assert a.tobytes() == b.tobytes(), (a, b)


@pytest.mark.parametrize("jit", [None, True], ids=["default", "jit"])
@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 7, 32])
@pytest.mark.parametrize("case", CASES)
def test_plan_equals_eager_bitwise_and_rewrites_only_the_pattern(case, batch, dt, jit):
    x, y, w, b = _model(batch, dt)
    step = _step(case, w, b)
    f = tf.function(step, jit_compile=jit)
    for seed in range(3):  # the trace, then replays on new data
        if seed:
            rng = np.random.default_rng(seed)
            x = tf.constant(rng.standard_normal((batch, 12)).astype(dt))
            y = tf.constant(rng.integers(0, 5, batch))
        _assert_bitwise(f(x, y), step(x, y))
    must, must_not = CASES[case][1:]
    steps = _plan_steps(f)
    assert must <= steps and not (must_not & steps), steps


def test_fused_mode_never_keeps_the_recorded_steps():
    x, y, w, b = _model(7, np.float32)
    step = _step("mean", w, b)
    with tf.config.fused("never"):
        f = tf.function(step)
        _assert_bitwise(f(x, y), step(x, y))
    steps = _plan_steps(f)
    assert {XENT, MEAN} <= steps and FWD not in steps


def test_replay_where_the_kernels_do_not_qualify_runs_the_eager_steps():
    """A plan rewritten under fused mode "auto" replayed under "never" takes the composition it replaced,
    as eager does there (the generic rows and np.mean; the mean's rule, then the cross-entropy's rule)."""
    x, y, w, b = _model(32, np.float64)
    step = _step("mean", w, b)
    f = tf.function(step)
    f(x, y)
    assert FWD in _plan_steps(f)
    with tf.config.fused("never"):
        got, want = f(x, y), step(x, y)
        with profiler.profile() as prof:
            f(x, y)
    _assert_bitwise(got, want)
    assert prof.table[FWD][0] > 1 and prof.table[BWD][0] > 1  # honest counts: several NumPy passes each


def test_profile_counts_each_fused_loss_step_as_one_device_op():
    x, y, w, b = _model(32, np.float32)
    f = tf.function(_step("mean", w, b))
    f(x, y)
    with profiler.profile() as prof:
        f(x, y)
    assert prof.table[FWD][0] == 1 and prof.table[BWD][0] == 1
    assert not ({MEAN, "grad:reduce_mean", XENT, "grad:sparse_softmax_xent"} & set(prof.table)), prof.table


@pytest.mark.parametrize("variant", ["accel.function", "accel.function jit"])
def test_captured_mlp_step_is_the_hand_fused_minimum_of_device_ops(variant):
    """bench.device_ops' figure, asserted: the captured MLP training step replays in 19 device ops."""
    pytest.importorskip("numba")
    from bench import device_ops
    from bench.workloads import accel_impl, init_params, make_batch

    x, y = make_batch(32)
    step = accel_impl.MLP[variant](init_params(), x, y, "cpu")
    step()
    step()
    with profiler.profile() as prof:
        step()
    _, minimum, _ = device_ops.hand_fused_minimum(batch=32)
    assert minimum == 19
    assert prof.total_ops == minimum, str(prof)
    assert prof.table[FWD][0] == prof.table[BWD][0] == 1


@pytest.mark.gpu
@pytest.mark.skipif(not backend.has_gpu(), reason="no CUDA GPU")
@pytest.mark.parametrize("batch", [1, 7, 32, 1000])
def test_gpu_rewrites_with_jit_only_and_matches_eager(batch):
    """On a GPU the one-block mean sums in another order than CuPy's mean: only jit_compile=True rewrites,
    and its values stay within rounding of eager."""
    from accel import fused

    with tf.device("gpu:0"):
        x, y, w, b = _model(batch, np.float32)
        step = _step("mean", w, b)
        exact, jit = tf.function(step), tf.function(step, jit_compile=True)
        want = step(x, y)
        _assert_bitwise(exact(x, y), want)
        before = dict(fused.launches)
        got = jit(x, y)
        launched = {k: fused.launches[k] - before.get(k, 0) for k in fused.launches}
    assert FWD not in _plan_steps(exact) and {FWD, BWD} <= _plan_steps(jit)
    assert launched.get("softmax_xent_sparse_mean_fwd") == 1 and launched.get("softmax_xent_sparse_mean_bwd") == 1
    (go, gg), (wo, wg) = got, want
    np.testing.assert_allclose(go[0].numpy(), wo[0].numpy(), rtol=2e-6)
    for a, e in zip(gg, wg, strict=True):
        np.testing.assert_allclose(a.numpy(), e.numpy(), rtol=1e-5, atol=1e-7)


def test_fused_loss_steps_can_sit_inside_a_cuda_graph_segment():
    """accel.cuda_plan's capture check passes both fused loss steps (their fallbacks run the ops, not the
    public functions whose host-side argument handling the bytecode scan reads as a capture breaker)."""
    from accel import cuda_plan

    x, y, w, b = _model(32, np.float32)
    f = tf.function(_step("mean", w, b))
    f(x, y)
    (plan,) = [p for cf in f._cache.values() for p in cf.plans]
    fused = [n for n in plan.nodes if (n[0] == "op" and n[1] is nn.sparse_xent_mean)
             or (n[0] == "acall" and n[1] is nn.sparse_xent_mean_grad)]
    assert len(fused) == 2, plan.source
    assert all(cuda_plan.capturable(n) for n in fused)
