"""The CNN and encoder benchmark workloads on accel: the loss equals a float64 NumPy reference of the
function bench.workloads describes, and accel.function trains to the same values as eager."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repository root

from bench.workloads import (ENC_HEADS, LN_EPS, init_cnn, init_encoder, init_params, load,  # noqa: E402
                             make_batch, make_images, make_sequences)

pytest.importorskip("accel")
accel_impl = load("accel_impl")


def _xent(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


def _conv_valid(x, k):
    h, w = x.shape[1] - 2, x.shape[2] - 2
    return sum(x[:, i:i + h, j:j + w, :] @ k[i, j] for i in range(3) for j in range(3))


def _cnn_loss(params, x, y):
    k1, b1, k2, b2, w, b = params
    h = np.maximum(_conv_valid(x, k1) + b1, 0)
    h = np.maximum(_conv_valid(h, k2) + b2, 0)
    n, hh, ww, f = h.shape
    h = h.reshape(n, hh // 2, 2, ww // 2, 2, f).max(axis=(2, 4))
    return _xent(h.reshape(n, -1) @ w + b, y)


def _layer_norm(x, g, b):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * g + b


def _encoder_loss(params, x, y):
    g1, be1, w_qkv, b_qkv, w_o, b_o, g2, be2, w1, b1, w2, b2, w_head, b_head = params
    batch, seq, d = x.shape
    dh = d // ENC_HEADS
    qkv = _layer_norm(x, g1, be1) @ w_qkv + b_qkv
    q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(batch, seq, ENC_HEADS, dh).transpose(0, 2, 1, 3)
               for i in range(3))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    h = x + (p @ v).transpose(0, 2, 1, 3).reshape(batch, seq, d) @ w_o + b_o
    a = _layer_norm(h, g2, be2) @ w1 + b1
    h = h + (0.5 * a * (1 + np.vectorize(math.erf)(a / math.sqrt(2)))) @ w2 + b2
    return _xent(h.mean(axis=1) @ w_head + b_head, y)


def _small(workload):
    if workload == "CNN":
        image = (8, 8, 1)
        params = init_cnn(filters=(4, 6), image=image, seed=3)
        x, y = make_images(batch=3, image=image)
        return params, x, y, _cnn_loss
    params = init_encoder(d_model=8, seed=3)
    rng = np.random.default_rng(5)
    for p in params:  # non-trivial gammas and biases
        p += rng.uniform(-0.3, 0.3, p.shape).astype(p.dtype)
    x, y = make_sequences(batch=2, seq=5, d_model=8)
    return params, x, y, _encoder_loss


@pytest.mark.parametrize("workload", ["CNN", "ENCODER"])
@pytest.mark.parametrize("variant", ["eager", "accel.function"])
def test_first_loss_matches_numpy_float64(workload, variant):
    params, x, y, reference = _small(workload)
    step = getattr(accel_impl, workload)[variant](params, x, y, "cpu")
    want = reference([p.astype(np.float64) for p in params], x.astype(np.float64), y)
    assert step() == pytest.approx(want, rel=2e-6)


@pytest.mark.parametrize("workload", ["CNN", "ENCODER"])
def test_captured_step_trains_like_eager(workload):
    params, x, y, _ = _small(workload)
    table = getattr(accel_impl, workload)
    eager, captured = table["eager"](params, x, y, "cpu"), table["accel.function"](params, x, y, "cpu")
    for _ in range(3):
        assert captured() == pytest.approx(eager(), rel=1e-5)
    for got, want in zip(captured.params(), eager.params(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert captured._step.experimental_get_tracing_count() == 1


def test_plan_counts_of_the_mlp_step():
    x, y = make_batch(4)
    step = accel_impl.MLP["accel.function"](init_params(), x, y, "cpu")
    with pytest.raises(ValueError, match="not been called yet"):
        accel_impl.plan_counts(step)
    step()
    c = accel_impl.plan_counts(step)
    assert c["steps"] == c["ops"] + c["fused_kernels"] + c["rule_calls"] + c["host_steps"]
    assert 0 < c["steps"] <= c["recorded_ops"] + c["rule_calls"] + c["host_steps"]
