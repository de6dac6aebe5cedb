"""JAX: jax.jit of the whole training step (parameters donated), and the same step eagerly."""

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from . import BETA1, BETA2, EPS, LR, chain

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


def _loss(weights, x, y):
    h = x
    n_layers = len(weights) // 2
    for i in range(n_layers):
        h = h @ weights[2 * i] + weights[2 * i + 1]
        if i < n_layers - 1:
            h = jax.nn.relu(h)
    logp = jax.nn.log_softmax(h)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _train_step(weights, m, v, t, x, y):
    loss, grads = jax.value_and_grad(_loss)(weights, x, y)
    t = t + 1
    alpha = LR * jnp.sqrt(1 - BETA2**t) / (1 - BETA1**t)
    m = [mi + (g - mi) * (1 - BETA1) for mi, g in zip(m, grads, strict=True)]
    v = [vi + (g * g - vi) * (1 - BETA2) for vi, g in zip(v, grads, strict=True)]
    weights = [p - alpha * mi / (jnp.sqrt(vi) + EPS) for p, mi, vi in zip(weights, m, v, strict=True)]
    return weights, m, v, t, loss


class MLPStep:
    def __init__(self, params, x, y, device, jit):
        dev = _device(device)
        zeros = [np.zeros_like(p) for p in params]
        self.state = jax.device_put((list(params), zeros, [z.copy() for z in zeros], np.float32(0)), dev)
        self.x = jax.device_put(x, dev)
        self.y = jax.device_put(y.astype(np.int32), dev)
        self._step = jax.jit(_train_step, donate_argnums=(0, 1, 2)) if jit else _train_step

    def __call__(self):
        *self.state, loss = self._step(*self.state, self.x, self.y)
        return float(loss)

    def params(self):
        return [np.asarray(p) for p in self.state[0]]


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
TAPE = {
    "jit": lambda x0, n_ops, device: _tape(x0, n_ops, device, jit=True),
    "eager grad": lambda x0, n_ops, device: _tape(x0, n_ops, device, jit=False),
}
RECORD = {"eager vjp": _record}
