"""HIPS autograd: gradients by autograd, then the floor's in-place NumPy Adam."""

from importlib.metadata import version

import autograd
import autograd.numpy as anp
import numpy as np
from autograd import make_vjp, value_and_grad

from . import chain
from .numpy_floor import adam_

NAME = "autograd"
DEVICES = ("cpu",)
MEMORY_TRACEABLE = True


def versions():
    return {"autograd": version("autograd")}


def configure(threads):
    import threadpoolctl  # a benchmark dependency; the smoke test runs without it

    threadpoolctl.threadpool_limits(threads, user_api="blas")


def synchronize(device):
    pass


def _loss(weights, x, y):
    h = x
    n_layers = len(weights) // 2
    for i in range(n_layers):
        h = anp.dot(h, weights[2 * i]) + weights[2 * i + 1]
        if i < n_layers - 1:
            h = anp.maximum(h, 0.0)
    z = h - anp.max(h, axis=1, keepdims=True)
    lse = anp.log(anp.sum(anp.exp(z), axis=1))
    return anp.mean(lse - z[anp.arange(z.shape[0]), y])


class MLPStep:
    def __init__(self, params, x, y, device):
        self.weights = [p.copy() for p in params]
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.tmp = [np.empty_like(p) for p in params]
        self.x, self.y = x, y
        self.t = 0
        self._value_and_grad = value_and_grad(_loss)

    def __call__(self):
        loss, grads = self._value_and_grad(self.weights, self.x, self.y)
        self.t += 1
        for p, g, m, v, tmp in zip(self.weights, grads, self.m, self.v, self.tmp, strict=True):
            adam_(p, g, m, v, tmp, self.t)
        return float(loss)

    def params(self):
        return [p.copy() for p in self.weights]


class Chain:
    def __init__(self, x0, n_ops, device):
        self._grad = autograd.grad(lambda x: anp.sum(chain(x, n_ops, anp.tanh)))
        self.x = x0

    def __call__(self):
        return self._grad(self.x)


def _record(x0, device):
    def record(n_ops):
        vjp, loss = make_vjp(lambda x: anp.sum(chain(x, n_ops, anp.tanh)))(x0)
        return lambda: vjp(np.ones_like(loss))

    return record


MLP = {"grad + NumPy Adam": MLPStep}
TAPE = {"grad": Chain}
RECORD = {"vjp": _record}
