"""Smoke test of the benchmark workloads: the NumPy floor is right, and accel agrees with it."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repository root

from bench.workloads import chain, init_params, load, make_batch, numpy_floor, tape_input  # noqa: E402

TAPE_API = ("Variable", "GradientTape", "device", "tanh", "reduce_sum")
MLP_API = ("Variable", "GradientTape", "constant", "device", "matmul", "reduce_mean", "nn.relu",
           "nn.sparse_softmax_cross_entropy_with_logits", "keras.optimizers.Adam")


def _small_problem():
    params = init_params(layers=(6, 5, 4, 3), seed=3, dtype=np.float64)
    rng = np.random.default_rng(4)
    for b in params[1::2]:
        b[...] = rng.uniform(-0.5, 0.5, b.shape)
    x, y = make_batch(4, n_in=6, n_classes=3, dtype=np.float64)
    return params, x, y


def _reference_loss(params, x, y):
    h = x
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i < len(params) - 2:
            h = np.maximum(h, 0.0)
    z = h - h.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


def test_floor_mlp_gradients_match_finite_differences():
    params, x, y = _small_problem()
    step = numpy_floor.MLPStep(params, x, y)
    loss = step.forward_backward()
    assert loss == pytest.approx(_reference_loss(params, x, y), rel=1e-12)
    eps = 1e-6
    for p, grad in zip(params, step.grads, strict=True):
        numeric = np.empty_like(p)
        for idx in np.ndindex(p.shape):
            saved = p[idx]
            p[idx] = saved + eps
            up = _reference_loss(params, x, y)
            p[idx] = saved - eps
            down = _reference_loss(params, x, y)
            p[idx] = saved
            numeric[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_floor_adam_follows_keras_formula():
    params, x, y = _small_problem()
    step = numpy_floor.MLPStep(params, x, y)
    step.forward_backward()
    grads = [g.copy() for g in step.grads]
    step.apply_adam()
    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-7
    alpha = lr * np.sqrt(1 - b2) / (1 - b1)
    for p, g, new in zip(params, grads, step.params(), strict=True):
        m, v = (1 - b1) * g, (1 - b2) * g * g
        np.testing.assert_allclose(new, p - alpha * m / (np.sqrt(v) + eps), rtol=1e-12, atol=1e-15)


def test_floor_tape_gradient_matches_finite_differences():
    x0 = tape_input().astype(np.float64)
    grad = numpy_floor.Chain(x0, 200)().copy()
    eps = 1e-6
    numeric = np.array([(chain(x0 + eps * e, 200, np.tanh).sum() - chain(x0 - eps * e, 200, np.tanh).sum())
                        / (2 * eps) for e in np.eye(x0.size)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def _accel_workloads(api):
    """bench.workloads.accel_impl, or a skip while accel lacks part of the TensorFlow API it uses."""
    tf = pytest.importorskip("accel")
    missing = []
    for name in api:
        obj = tf
        for part in name.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(name)
    if missing:
        pytest.skip("accel does not have %s yet" % ", ".join(missing))
    return load("accel_impl")


def test_accel_mlp_matches_floor_at_batch_8():
    accel_impl = _accel_workloads(MLP_API)
    params = init_params()
    x, y = make_batch(8)
    floor = numpy_floor.MLPStep(params, x, y)
    engine = accel_impl.MLP["eager"](params, x, y, "cpu")
    # Adam divides out the gradient's magnitude, so float32 rounding in nearly cancelling
    # gradient sums moves a parameter by up to lr * (relative error): TensorFlow itself
    # differs from the floor by 3e-6 after two steps here.
    for _ in range(2):
        assert engine() == pytest.approx(floor(), rel=1e-4)
    for got, want in zip(engine.params(), floor.params(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


def test_accel_tape_matches_floor():
    accel_impl = _accel_workloads(TAPE_API)
    x0 = tape_input()
    got = accel_impl.TAPE["eager"](x0, 200, "cpu")()
    np.testing.assert_allclose(got, numpy_floor.Chain(x0, 200)(), rtol=1e-5, atol=1e-6)


def test_device_ops_report_runs_and_fused_beats_generic(capsys):
    pytest.importorskip("numba")
    from bench import device_ops

    device_ops.main(["--batch", "4"])
    out = capsys.readouterr().out
    counts = {m: int(line.split("|")[2]) for line in out.splitlines() for m in ("never", "always")
              if line.startswith("| accel, fused %s |" % m)}
    _, minimum, _ = device_ops.hand_fused_minimum(batch=4)
    assert minimum <= counts["always"] < counts["never"]
