"""NumPy references for the kernel tests, written independently of accel.

ACTIVATIONS: name -> (saved value, forward, f'(.) in float64 from the saved value).
keras_* : optimizer steps in Keras 3's operation order and precision (every
op rounded to the variable dtype; Python-float hyperparameters combined in
double first, as Python does before ops.cast), returning new arrays.
"""

import math

import numpy as np

SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717

# name: (saved value, forward f(x, alpha) in float64, f' in terms of the saved value)
ACTIVATIONS = {
    "relu": ("out", lambda x, a: np.maximum(x, 0), lambda s, a: (s > 0) * 1.0),
    "relu6": ("x", lambda x, a: np.clip(x, 0, 6), lambda s, a: ((s > 0) & (s < 6)) * 1.0),
    "leaky_relu": ("x", lambda x, a: np.where(x > 0, x, a * x), lambda s, a: np.where(s > 0, 1.0, a)),
    "elu": (
        "out",
        lambda x, a: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
        lambda s, a: np.where(s > 0, 1.0, s + 1),
    ),
    "selu": (
        "out",
        lambda x, a: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))),
        lambda s, a: np.where(s < 0, s + SELU_SCALE * SELU_ALPHA, SELU_SCALE),
    ),
    "gelu": ("x", None, lambda s, a: _phi_cdf(s) + s * np.exp(-0.5 * s * s) / math.sqrt(2 * math.pi)),
    "gelu_tanh": ("x", None, lambda s, a: _gelu_tanh_grad(s)),
    "silu": ("x", None, lambda s, a: _sigmoid(s) * (1 + s * (1 - _sigmoid(s)))),
    "sigmoid": ("out", lambda x, a: _sigmoid(x), lambda s, a: s * (1 - s)),
    "tanh": ("out", lambda x, a: np.tanh(x), lambda s, a: 1 - s * s),
    "softplus": ("x", None, lambda s, a: _sigmoid(s)),
}
CANCELS = {"gelu", "gelu_tanh"}  # f' formula cancels for x << 0


def _sigmoid(x):
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _phi_cdf(x):
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * (1 + erf(np.asarray(x, np.float64) / math.sqrt(2)))


def _gelu_tanh_grad(x):
    c, k = math.sqrt(2 / math.pi), 0.044715
    t = np.tanh(c * (x + k * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * k * x * x)


# ---- optimizers (Keras 3 update_step, keras/src/optimizers/*.py) ----


def _c(x, dt):
    return np.asarray(x, dtype=dt)


def keras_decay(p, lr, wd):
    dt = p.dtype
    return p - p * _c(wd, dt) * _c(lr, dt) if wd else p


def keras_adam_alpha(lr, b1, b2, t, dt):
    t = _c(t, dt)
    return _c(lr, dt) * np.sqrt(1 - np.power(_c(b2, dt), t)) / (1 - np.power(_c(b1, dt), t))


def keras_adam(p, g, m, v, vhat, lr, b1, b2, eps, t, wd=0.0):
    dt = p.dtype
    alpha = keras_adam_alpha(lr, b1, b2, t, dt)
    p = keras_decay(p, lr, wd)
    m = m + (g - m) * _c(1 - b1, dt)
    v = v + (g * g - v) * _c(1 - b2, dt)
    if vhat is not None:
        vhat = np.maximum(vhat, v)
        v_used = vhat
    else:
        v_used = v
    p = p - (m * alpha) / (np.sqrt(v_used) + _c(eps, dt))
    return p, m, v, vhat


def keras_sgd(p, g, m, lr, momentum, nesterov, wd=0.0):
    dt = p.dtype
    p = keras_decay(p, lr, wd)
    if m is None:
        return p - g * _c(lr, dt), None
    m = m * _c(momentum, dt) - g * _c(lr, dt)
    p = p + (m * _c(momentum, dt) - g * _c(lr, dt)) if nesterov else p + m
    return p, m


def keras_rmsprop(p, g, v, mom, mg, lr, rho, momentum, eps, wd=0.0):
    dt = p.dtype
    p = keras_decay(p, lr, wd)
    v = _c(rho, dt) * v + _c(1 - rho, dt) * (g * g)
    if mg is not None:
        mg = _c(rho, dt) * mg + _c(1 - rho, dt) * g
        denom = v - mg * mg + _c(eps, dt)
    else:
        denom = v + _c(eps, dt)
    incr = (_c(lr, dt) * g) / np.sqrt(denom)
    if mom is not None:
        mom = _c(momentum, dt) * mom + incr
        return p - mom, v, mom, mg
    return p - incr, v, mom, mg


def keras_adagrad(p, g, acc, lr, eps, wd=0.0):
    dt = p.dtype
    p = keras_decay(p, lr, wd)
    acc = acc + g * g
    return p - (_c(lr, dt) * g) / np.sqrt(acc + _c(eps, dt)), acc


def keras_lion(p, g, m, lr, b1, b2, wd=0.0):
    dt = p.dtype
    p = keras_decay(p, lr, wd)
    b1, b2 = _c(b1, dt), _c(b2, dt)
    p = p - _c(lr, dt) * np.sign(m * b1 + g * (_c(1.0, dt) - b1))
    m = m * b2 + g * (_c(1.0, dt) - b2)
    return p, m


def softmax_xent_ref(logits, labels, g, sparse):
    x = logits.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    if sparse:
        onehot = np.zeros_like(p)
        onehot[np.arange(len(labels)), labels] = 1
    else:
        onehot = labels.astype(np.float64)
    return g.astype(np.float64)[:, None] * (p - onehot)


def layer_norm_ref(g, x, mean, rstd, gamma):
    g, x = g.astype(np.float64), x.astype(np.float64)
    mean, rstd = mean.astype(np.float64)[:, None], rstd.astype(np.float64)[:, None]
    gam = np.ones(x.shape[1]) if gamma is None else gamma.astype(np.float64)
    xh = (x - mean) * rstd
    gh = g * gam
    dx = rstd * (gh - gh.mean(axis=1, keepdims=True) - xh * (gh * xh).mean(axis=1, keepdims=True))
    return dx, (g * xh).sum(axis=0), g.sum(axis=0)


def sparse_xent_loss_ref(logits, labels):
    x = logits.astype(np.float64)
    m = x.max(axis=1)
    lse = np.log(np.exp(x - m[:, None]).sum(axis=1)) + m
    return lse - x[np.arange(len(labels)), labels]


def assert_gemm_close(got, a, b):
    """got ~ a @ b within the worst-case rounding bound of a length-k dot product: |err| <= 2*k*eps*(|a| @ |b|)
    elementwise (eps of got's dtype), with the reference product in float64."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    got = np.asarray(got, np.float64)
    want, scale = a64 @ b64, np.abs(a64) @ np.abs(b64)
    assert got.shape == want.shape, (got.shape, want.shape)
    bound = 2 * max(a64.shape[1], 1) * np.finfo(np.asarray(a).dtype).eps * scale + np.finfo(np.float64).tiny
    err = np.abs(got - want)
    bad = ~(err <= bound)  # NaN counts as bad
    assert not bad.any(), "%d of %d elements off, first at %s: got %r, want %r (bound %.3g)" % (
        bad.sum(), bad.size, tuple(np.argwhere(bad)[0]), got[bad][0], want[bad][0], bound[bad][0])
