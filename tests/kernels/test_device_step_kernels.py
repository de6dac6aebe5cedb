"""Device-step optimizer kernels (kernels/optimizers.cu: adam_dev_scalars, adam_multi_update_dev,
sgd_multi_update, step_increment) run on the CPU through kernels/cpu_shim, against the host-scalar
kernels the plain path launches (alpha from accel.cpu_kernels.adam_alpha) and NumPy references.

Proves: alpha formed on the device from the iteration counter equals the host's for t = 1..5
bitwise and equals the correctly rounded formula over a sweep of t; the multi-tensor updates equal
the per-tensor host-scalar kernels bitwise over 5 steps. Not GPU numerics (FTZ, CUDA libm)."""

import shutil
from fractions import Fraction

import numpy as np
import pytest

from accel.cpu_kernels import adam_alpha
from accel.optimizers.base import f32

import cpu_build
import references as R

pytestmark = pytest.mark.skipif(not shutil.which("g++"), reason="g++ not installed")

CT = {np.float16: "__half", np.float32: "float", np.float64: "double"}
DTYPES = [np.float16, np.float32, np.float64]
SIZES = [1, 31, 1000, 4097]  # a partial warp, grid-stride tails, a tensor longer than the grid
GRID, BLOCK = 3, 64
STEPS = 5


@pytest.fixture(scope="module")
def lib():
    return cpu_build.load()


def name(kernel, ct):
    return "%s<%s>" % (kernel, ct)


def acc(dt):
    return np.float64 if dt == np.float64 else np.float32


def ptrs(arrays):
    return np.array([a.ctypes.data for a in arrays], np.uint64)


def tensors(dt, rng, n_slots):
    out = []
    for n in SIZES:
        p = rng.standard_normal(n).astype(dt)
        slots = [np.abs(rng.standard_normal(n)).astype(dt) * 0.1 for _ in range(n_slots)]
        out.append([p] + slots)
    return out


def grads(dt, rng):
    return [rng.standard_normal(n).astype(dt) for n in SIZES]


def np_adam(state, g, alpha, om_b1, om_b2, eps, lr, wd):
    """Keras 3's Adam step in its order, NumPy in the arrays' dtype: [p, m, v(, vhat)] -> new list."""
    p, m, v = state[:3]
    p = R.keras_decay(p, lr, wd)
    m = m + (g - m) * om_b1
    v = v + (g * g - v) * om_b2
    vu = np.maximum(state[3], v) if len(state) > 3 else v
    return [p - (m * alpha) / (np.sqrt(vu) + eps), m, v] + ([vu] if len(state) > 3 else [])


# (label, lr, beta_1, beta_2, eps, wd, amsgrad)
ADAM_CASES = [
    ("adam", 1e-3, 0.9, 0.999, 1e-7, 0.0, False),
    ("adamw", 1e-2, 0.9, 0.999, 1e-7, 0.004, False),
    ("amsgrad", 3e-3, 0.8, 0.99, 1e-6, 0.0, True),
    ("adamw_amsgrad", 1e-2, 0.95, 0.98, 1e-7, 0.1, True),
]


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("label,lr,b1,b2,eps,wd,amsgrad", ADAM_CASES, ids=[c[0] for c in ADAM_CASES])
def test_adam_device_step_equals_host_scalar_kernels(lib, dt, label, lr, b1, b2, eps, wd, amsgrad):
    """5 steps from the device counter vs 5 steps of adam_update with the host's alpha: bitwise."""
    rng = np.random.default_rng(11)
    A = acc(dt)
    lr = float(np.float32(lr))  # the optimizer's float32 learning-rate Variable
    n_slots = 3 if amsgrad else 2
    dev = tensors(dt, rng, n_slots)
    host = [[a.copy() for a in t] for t in dev]
    ref = [[a.astype(A) for a in t] for t in dev]  # NumPy Keras-order reference in the kernels' math type
    iterations = np.zeros((), np.int64).reshape(1)
    alpha_buf = np.full(1, np.nan, A)
    om = (A(1 - b1), A(1 - b2), A(eps), A(lr), A(wd))
    for t in range(1, STEPS + 1):
        gs = grads(dt, rng)
        lib.launch(name("adam_dev_scalars", CT[A]), 1, 1, iterations, alpha_buf, A(lr), A(f32(b1)), A(f32(b2)))
        lib.launch(
            name("adam_multi_update_dev", CT[dt]), (GRID, len(SIZES)), BLOCK,
            ptrs(x[0] for x in dev), ptrs(x[1] for x in dev), ptrs(x[2] for x in dev),
            ptrs(x[3] for x in dev) if amsgrad else None, ptrs(gs), np.array(SIZES, np.int64), alpha_buf, *om,
        )
        lib.launch(name("step_increment", "long long"), 1, 1, iterations)
        want_alpha = adam_alpha(lr, f32(b1), f32(b2), t, dt)
        assert alpha_buf[0] == want_alpha, (t, alpha_buf[0], want_alpha)
        assert iterations[0] == t
        for (p, m, v, *vh), g in zip(host, gs, strict=True):
            lib.launch(name("adam_update", CT[dt]), GRID, BLOCK, p, m, v, vh[0] if vh else None, g,
                       want_alpha, *om, len(p))
        for x, g in zip(ref, gs, strict=True):
            x[:] = np_adam(x, g.astype(A), want_alpha, *om)
    tol = {np.float16: dict(rtol=1e-2, atol=1e-3), np.float32: dict(rtol=1e-5, atol=1e-6),
           np.float64: dict(rtol=1e-12, atol=1e-14)}[dt]
    for d, h, r, t0 in zip(dev, host, ref, tensors(dt, np.random.default_rng(11), n_slots), strict=True):
        assert not np.array_equal(d[0], t0[0])  # the parameters moved
        for a, b, c in zip(d, h, r, strict=True):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_allclose(a.astype(np.float64), c.astype(np.float64), **tol)


# (label, lr, momentum, nesterov, wd)
SGD_CASES = [
    ("sgd", 0.1, 0.0, False, 0.0),
    ("sgd_wd", 0.1, 0.0, False, 0.01),
    ("momentum", 0.05, 0.9, False, 0.0),
    ("nesterov_wd", 0.05, 0.9, True, 0.004),
]


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("label,lr,momentum,nesterov,wd", SGD_CASES, ids=[c[0] for c in SGD_CASES])
def test_sgd_multi_update_equals_host_kernels(lib, dt, label, lr, momentum, nesterov, wd):
    rng = np.random.default_rng(5)
    A = acc(dt)
    lr = float(np.float32(lr))
    dev = tensors(dt, rng, 1)
    host = [[a.copy() for a in t] for t in dev]
    iterations = np.array([7], np.int64)
    use_m = momentum != 0
    for step in range(1, STEPS + 1):
        gs = grads(dt, rng)
        lib.launch(name("sgd_multi_update", CT[dt]), (GRID, len(SIZES)), BLOCK, ptrs(x[0] for x in dev),
                   ptrs(x[1] for x in dev) if use_m else None, ptrs(gs), np.array(SIZES, np.int64),
                   A(lr), A(f32(momentum)), int(nesterov), A(wd))
        lib.launch(name("step_increment", "long long"), 1, 1, iterations)
        assert iterations[0] == 7 + step
        for (p, m), g in zip(host, gs, strict=True):
            if use_m:
                lib.launch(name("sgd_momentum_update", CT[dt]), GRID, BLOCK, p, m, g, A(lr), A(f32(momentum)),
                           int(nesterov), A(wd), len(p))
            else:
                lib.launch(name("sgd_update", CT[dt]), GRID, BLOCK, p, g, A(lr), A(wd), len(p))
    for d, h, t0 in zip(dev, host, tensors(dt, np.random.default_rng(5), 1), strict=True):
        assert not np.array_equal(d[0], t0[0])  # the parameters moved
        np.testing.assert_array_equal(d[0], h[0])
        np.testing.assert_array_equal(d[1], h[1])  # the momentum buffer (untouched without momentum)


def _round_to(fr, dt):
    """A positive Fraction correctly rounded to dt (float32 or float64)."""
    x = dt(float(fr))
    cands = (np.nextafter(x, dt(0)), x, np.nextafter(x, dt(np.inf)))
    return min(cands, key=lambda c: abs(Fraction(float(c)) - fr))


def _alpha_correctly_rounded(lr, b1, b2, t, dt):
    """adam_alpha's formula and order, with b^t correctly rounded instead of libm's pow."""
    b1, b2, tt = dt(b1), dt(b2), int(dt(t))
    p2 = _round_to(Fraction(float(b2)) ** tt, dt)
    p1 = _round_to(Fraction(float(b1)) ** tt, dt)
    return dt(lr) * np.sqrt(dt(1) - p2) / (dt(1) - p1)


SWEEP_T = list(range(1, 400)) + [1000, 4096, 9999, 20000]


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("b1,b2", [(0.9, 0.999), (0.95, 0.98), (0.8, 0.99)])
def test_adam_dev_scalars_is_the_correctly_rounded_alpha(lib, dt, b1, b2):
    """Over a sweep of t the device alpha is the formula with correctly rounded powers (where the host's
    libm pow is itself correctly rounded the two agree bitwise; the test reports how often)."""
    lr = float(np.float32(1e-3))
    iterations = np.zeros(1, np.int64)
    out = np.zeros(1, dt)
    same_as_host = 0
    for t in SWEEP_T:
        iterations[0] = t - 1
        lib.launch(name("adam_dev_scalars", CT[dt]), 1, 1, iterations, out, dt(lr), dt(f32(b1)), dt(f32(b2)))
        want = _alpha_correctly_rounded(lr, f32(b1), f32(b2), t, dt)
        assert out[0] == want, (t, out[0], want)
        assert iterations[0] == t - 1  # the scalars kernel only reads the counter
        same_as_host += out[0] == adam_alpha(lr, f32(b1), f32(b2), t, dt)
    assert same_as_host >= 0.9 * len(SWEEP_T)
