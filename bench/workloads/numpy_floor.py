"""The floor: the same workloads written by hand in NumPy, as fast as NumPy allows.

Every buffer is allocated once and each ufunc writes with out=. Parameters, gradients,
Adam moments and the scratch buffer are flat vectors (the per-layer arrays are views of
them), so one optimizer step is 12 ufunc calls over all parameters at once.
"""

import math

import numpy as np

from . import ADD, BETA1, BETA2, EPS, LR, MUL

NAME = "numpy"
DEVICES = ("cpu",)
MEMORY_TRACEABLE = True


def versions():
    return {"numpy": np.__version__}


def configure(threads):
    import threadpoolctl  # a benchmark dependency; the smoke test runs without it

    threadpoolctl.threadpool_limits(threads, user_api="blas")


def synchronize(device):
    pass


def adam_(p, g, m, v, tmp, t, lr=LR, beta1=BETA1, beta2=BETA2, eps=EPS):
    """Keras 3 Adam, step t (1-based), in place on p, m and v; tmp is scratch of p's shape."""
    alpha = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
    np.subtract(g, m, out=tmp)
    tmp *= 1.0 - beta1
    m += tmp
    np.multiply(g, g, out=tmp)
    tmp -= v
    tmp *= 1.0 - beta2
    v += tmp
    np.sqrt(v, out=tmp)
    tmp += eps
    np.divide(m, tmp, out=tmp)
    tmp *= alpha
    p -= tmp


def _views(flat, shapes):
    views, start = [], 0
    for shape in shapes:
        n = math.prod(shape)
        views.append(flat[start:start + n].reshape(shape))
        start += n
    return views


class MLPStep:
    """Dense layers with ReLU between them, mean sparse softmax cross-entropy, Adam."""

    def __init__(self, params, x, y, device="cpu"):
        dtype = params[0].dtype
        shapes = [p.shape for p in params]
        n = sum(p.size for p in params)
        self._p, self._g, self._m, self._v, self._tmp = (np.zeros(n, dtype) for _ in range(5))
        self.weights = _views(self._p, shapes)
        self.grads = _views(self._g, shapes)
        for view, p in zip(self.weights, params, strict=True):
            view[...] = p
        self.x = np.ascontiguousarray(x)
        self.y = np.asarray(y)
        batch = x.shape[0]
        widths = [p.shape[0] for p in params[1::2]]
        self._acts = [np.empty((batch, w), dtype) for w in widths]  # ReLU outputs, then the logits
        self._dacts = [np.empty((batch, w), dtype) for w in widths[:-1]]
        self._masks = [np.empty((batch, w), bool) for w in widths[:-1]]
        self._rowmax = np.empty((batch, 1), dtype)
        self._rowsum = np.empty((batch, 1), dtype)
        self._rows = np.arange(batch)
        self.t = 0

    def forward_backward(self):
        """Fills self.grads and returns the loss."""
        w, g, acts = self.weights, self.grads, self._acts
        n_layers = len(acts)
        h = self.x
        for i, out in enumerate(acts):
            np.matmul(h, w[2 * i], out=out)
            out += w[2 * i + 1]
            if i < n_layers - 1:
                np.maximum(out, 0, out=out)
            h = out

        # Softmax cross-entropy and its gradient, in place on the logits.
        z = acts[-1]
        batch = z.shape[0]
        np.max(z, axis=1, keepdims=True, out=self._rowmax)
        z -= self._rowmax
        picked = z[self._rows, self.y]
        np.exp(z, out=z)
        np.sum(z, axis=1, keepdims=True, out=self._rowsum)
        loss = (np.log(self._rowsum).sum() - picked.sum()) / batch
        self._rowsum *= batch
        z /= self._rowsum
        z[self._rows, self.y] -= 1.0 / batch

        d = z
        for i in range(n_layers - 1, -1, -1):
            h_in = self.x if i == 0 else acts[i - 1]
            np.matmul(h_in.T, d, out=g[2 * i])
            np.sum(d, axis=0, out=g[2 * i + 1])
            if i > 0:
                dh, mask = self._dacts[i - 1], self._masks[i - 1]
                np.matmul(d, w[2 * i].T, out=dh)
                np.greater(h_in, 0, out=mask)
                dh *= mask
                d = dh
        return float(loss)

    def apply_adam(self):
        self.t += 1
        adam_(self._p, self._g, self._m, self._v, self._tmp, self.t)

    def __call__(self):
        loss = self.forward_backward()
        self.apply_adam()
        return loss

    def params(self):
        return [p.copy() for p in self.weights]


_TANH = 2


class Chain:
    """The tape chain with a hand-written backward pass; forward() records into preallocated rows."""

    def __init__(self, x0, n_ops):
        self.x0 = x0
        self.kinds = [i % 3 for i in range(n_ops)]
        self._buf = np.empty((n_ops + 1, x0.size), x0.dtype)
        self._rows = list(self._buf)
        self._grad = np.empty_like(x0)
        self._tmp = np.empty_like(x0)
        self._mul, self._add = x0.dtype.type(MUL), x0.dtype.type(ADD)

    def forward(self):
        rows = self._rows
        np.copyto(rows[0], self.x0)
        for i, k in enumerate(self.kinds):
            if k == 0:
                np.multiply(rows[i], self._mul, out=rows[i + 1])
            elif k == 1:
                np.add(rows[i], self._add, out=rows[i + 1])
            else:
                np.tanh(rows[i], out=rows[i + 1])

    def backward(self):
        """d sum(output) / dx; d(x + c)/dx is 1, so the add steps cost nothing."""
        g, tmp, rows = self._grad, self._tmp, self._rows
        g.fill(1.0)
        for i in range(len(self.kinds) - 1, -1, -1):
            k = self.kinds[i]
            if k == 0:
                g *= self._mul
            elif k == _TANH:
                out = rows[i + 1]
                np.multiply(out, out, out=tmp)
                np.subtract(1.0, tmp, out=tmp)
                g *= tmp
        return g

    def __call__(self):
        self.forward()
        return self.backward()


def _record(x0, device):
    def record(n_ops):
        c = Chain(x0, n_ops)
        c.forward()
        return c.backward

    return record


MLP = {"hand-written": MLPStep}
TAPE = {"hand-written": lambda x0, n_ops, device: Chain(x0, n_ops)}
RECORD = {"hand-written": _record}
