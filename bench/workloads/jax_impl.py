"""JAX: jax.jit of the whole training step (parameters donated), and the same step eagerly."""

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
import jaxlib
import numpy as np

from . import BETA1, BETA2, ENC_HEADS, EPS, LN_EPS, LR, chain

NAME = "jax"
DEVICES = ("cpu", "gpu") if any(d.platform == "gpu" for d in jax.devices()) else ("cpu",)
MEMORY_TRACEABLE = False


def versions():
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}


def configure(threads):
    pass  # XLA sizes its pool from the CPU affinity, which bench.compare restricts to `threads` cores


def synchronize(device):
    pass  # every timed function blocks on its result


def _device(device):
    return jax.devices("gpu" if device == "gpu" else "cpu")[0]


def _xent(logits, y):
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _mlp_loss(weights, x, y):
    h = x
    n_layers = len(weights) // 2
    for i in range(n_layers):
        h = h @ weights[2 * i] + weights[2 * i + 1]
        if i < n_layers - 1:
            h = jax.nn.relu(h)
    return _xent(h, y)


def _cnn_loss(weights, x, y):
    k1, b1, k2, b2, w, b = weights
    dims = ("NHWC", "HWIO", "NHWC")
    h = jax.nn.relu(lax.conv_general_dilated(x, k1, (1, 1), "VALID", dimension_numbers=dims) + b1)
    h = jax.nn.relu(lax.conv_general_dilated(h, k2, (1, 1), "VALID", dimension_numbers=dims) + b2)
    h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return _xent(h.reshape(h.shape[0], -1) @ w + b, y)


def _layer_norm(x, gamma, beta):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * lax.rsqrt(var + LN_EPS) * gamma + beta


def _encoder_loss(weights, x, y):
    g1, be1, w_qkv, b_qkv, w_o, b_o, g2, be2, w1, b1, w2, b2, w_head, b_head = weights
    batch, seq, d = x.shape
    dh = d // ENC_HEADS
    x = x.reshape(batch * seq, d)
    qkv = _layer_norm(x, g1, be1) @ w_qkv + b_qkv
    q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(batch, seq, ENC_HEADS, dh).transpose(0, 2, 1, 3)
               for i in range(3))
    p = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) * (1.0 / math.sqrt(dh)), axis=-1)
    ctx = (p @ v).transpose(0, 2, 1, 3).reshape(batch * seq, d)
    h = x + ctx @ w_o + b_o
    h = h + jax.nn.gelu(_layer_norm(h, g2, be2) @ w1 + b1, approximate=False) @ w2 + b2
    return _xent(h.reshape(batch, seq, d).mean(axis=1) @ w_head + b_head, y)


def _train_step(loss_fn, weights, m, v, t, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(weights, x, y)
    t = t + 1
    alpha = LR * jnp.sqrt(1 - BETA2**t) / (1 - BETA1**t)
    m = [mi + (g - mi) * (1 - BETA1) for mi, g in zip(m, grads, strict=True)]
    v = [vi + (g * g - vi) * (1 - BETA2) for vi, g in zip(v, grads, strict=True)]
    weights = [p - alpha * mi / (jnp.sqrt(vi) + EPS) for p, mi, vi in zip(weights, m, v, strict=True)]
    return weights, m, v, t, loss


class TrainStep:
    def __init__(self, loss_fn, params, x, y, device, jit):
        dev = _device(device)
        zeros = [np.zeros_like(p) for p in params]
        self.state = jax.device_put((list(params), zeros, [z.copy() for z in zeros], np.float32(0)), dev)
        self.x = jax.device_put(x, dev)
        self.y = jax.device_put(y.astype(np.int32), dev)
        step = functools.partial(_train_step, loss_fn)
        self._step = jax.jit(step, donate_argnums=(0, 1, 2)) if jit else step

    def __call__(self):
        *self.state, loss = self._step(*self.state, self.x, self.y)
        return float(loss)

    def params(self):
        return [np.asarray(p) for p in self.state[0]]


def MLPStep(params, x, y, device, jit):
    return TrainStep(_mlp_loss, params, x, y, device, jit)


def _chain_loss(n_ops):
    return lambda x: jnp.sum(chain(x, n_ops, jnp.tanh))


def _tape(x0, n_ops, device, jit):
    x = jax.device_put(x0, _device(device))
    grad = jax.grad(_chain_loss(n_ops))
    if jit:
        grad = jax.jit(grad)
    return lambda: np.asarray(grad(x))


def _record(x0, device):
    x = jax.device_put(x0, _device(device))

    def record(n_ops):
        loss, vjp = jax.vjp(_chain_loss(n_ops), x)
        seed = jnp.ones_like(loss)
        return lambda: vjp(seed)[0].block_until_ready()

    return record


MLP = {
    "jit": lambda params, x, y, device: MLPStep(params, x, y, device, jit=True),
    "eager": lambda params, x, y, device: MLPStep(params, x, y, device, jit=False),
}
CNN = {
    "jit": lambda params, x, y, device: TrainStep(_cnn_loss, params, x, y, device, jit=True),
}
ENCODER = {
    "jit": lambda params, x, y, device: TrainStep(_encoder_loss, params, x, y, device, jit=True),
}
TAPE = {
    "jit": lambda x0, n_ops, device: _tape(x0, n_ops, device, jit=True),
    "eager grad": lambda x0, n_ops, device: _tape(x0, n_ops, device, jit=False),
}
RECORD = {"eager vjp": _record}
