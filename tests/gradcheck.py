"""Gradient checks against float64 central finite differences (random output projection)."""

import numpy as np

import accel


def numeric_vjp(f, arrays, r, eps=1e-6):
    """d/dx_i sum(f(x) * r) by central differences, for each float input."""
    grads = []
    for a in arrays:
        if a.dtype.kind != "f":
            grads.append(None)
            continue
        g = np.zeros_like(a, dtype=np.float64)
        flat = a.reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + eps
            up = _proj(f, arrays, r)
            flat[k] = old - eps
            dn = _proj(f, arrays, r)
            flat[k] = old
            g.reshape(-1)[k] = (up - dn) / (2 * eps)
        grads.append(g)
    return grads


def _proj(f, arrays, r):
    out = f(*[accel.constant(a) for a in arrays])
    return float(np.sum(np.asarray(out.numpy(), dtype=np.float64) * r))


def analytic_vjp(f, arrays, r):
    ts = [accel.constant(a) for a in arrays]
    with accel.GradientTape() as tape:
        for t in ts:
            if t.dtype.is_floating:
                tape.watch(t)
        out = f(*ts)
    gs = tape.gradient(out, ts, output_gradients=accel.constant(r.astype(out.numpy().dtype)),
                       unconnected_gradients="zero")
    return [None if a.dtype.kind != "f" else accel.convert_to_tensor(g).numpy() for a, g in zip(arrays, gs)]


def check_grads(f, arrays, rtol=1e-5, atol=1e-6, seed=0):
    arrays = [np.array(a, copy=True) for a in arrays]
    out = f(*[accel.constant(a) for a in arrays]).numpy()
    r = np.random.default_rng(seed).standard_normal(np.shape(out))
    num = numeric_vjp(f, arrays, r)
    ana = analytic_vjp(f, arrays, r)
    for i, (n, a) in enumerate(zip(num, ana)):
        if n is None:
            continue
        assert a.shape == n.shape, "input %d: gradient shape %s, expected %s" % (i, a.shape, n.shape)
        np.testing.assert_allclose(a, n, rtol=rtol, atol=atol, err_msg="gradient of input %d" % i)
