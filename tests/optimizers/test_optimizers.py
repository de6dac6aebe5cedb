"""accel.optimizers against Keras 3's update formulas, written out again here in float64 NumPy.

Keras keeps a float learning rate in a float32 variable and casts it to each variable's dtype, so
the references use float64(float32(lr)); hyperparameters that Keras passes through ops.cast (tf.cast
makes a Python float a float32 tensor first) are float32-rounded the same way: f32(...) below.
Every optimizer runs on both paths: the generic in-place one (fused mode "never") and the fused
kernels (mode "always": numba loops on the CPU when installed, even for these small arrays).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import accel
from accel import backend, cpu_kernels
from accel import optimizers as O
from accel.optimizers import schedules as S
from accel.ops.fusion import CPU_MIN_SIZE as CPU_FUSED_MIN_SIZE

RTOL = {np.float32: 1e-5, np.float64: 1e-10}
ATOL = {np.float32: 1e-6, np.float64: 1e-12}
SHAPES = {"w": (4, 3), "b": (3,)}
STEPS = 5


def f32(x):
    return float(np.float32(x))


# ---- float64 references of Keras 3's update_step, one step at a time -------------------------
# g: the dense gradient; g2 / gabs: what the formula squares / takes the absolute value of
# (g*g and |g| for dense gradients; per-slice sums for row-sparse gradients with repeated rows).


def ref_sgd(p, g, g2, gabs, s, lr, t, momentum=0.0, nesterov=False):
    if momentum == 0:
        return p - g * lr
    momentum = f32(momentum)
    s["m"] = s.get("m", 0 * p) * momentum - g * lr
    return p + (s["m"] * momentum - g * lr if nesterov else s["m"])


def ref_adam(
    p, g, g2, gabs, s, lr, t, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, weight_decay=None
):
    m = s.setdefault("m", 0 * p)
    v = s.setdefault("v", 0 * p)
    m += (g - m) * (1 - beta_1)
    v += (g2 - v) * (1 - beta_2)
    if amsgrad:
        v = s["vhat"] = np.maximum(s.get("vhat", 0 * p), v)
    alpha = lr * math.sqrt(1 - f32(beta_2) ** t) / (1 - f32(beta_1) ** t)
    return p - m * alpha / (np.sqrt(v) + epsilon)


def ref_rmsprop(p, g, g2, gabs, s, lr, t, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    s["v"] = rho * s.get("v", 0 * p) + (1 - rho) * g2
    if centered:
        s["a"] = rho * s.get("a", 0 * p) + (1 - rho) * g
        denom = s["v"] - s["a"] ** 2 + epsilon
    else:
        denom = s["v"] + epsilon
    incr = lr * g / np.sqrt(denom)
    if momentum > 0:
        s["mo"] = momentum * s.get("mo", 0 * p) + incr
        return p - s["mo"]
    return p - incr


def ref_adagrad(p, g, g2, gabs, s, lr, t, initial_accumulator_value=0.1, epsilon=1e-7):
    s["acc"] = s.get("acc", 0 * p + f32(initial_accumulator_value)) + g2
    return p - lr * g / np.sqrt(s["acc"] + epsilon)


def ref_adadelta(p, g, g2, gabs, s, lr, t, rho=0.95, epsilon=1e-7):
    s["ag"] = rho * s.get("ag", 0 * p) + (1 - rho) * g2
    ad = s.get("ad", 0 * p)
    ratio = np.sqrt(ad + epsilon) / np.sqrt(s["ag"] + epsilon)
    s["ad"] = rho * ad + (1 - rho) * ratio**2 * g2  # delta stays row-sparse: its slices are squared
    return p - lr * ratio * g


def ref_adamax(p, g, g2, gabs, s, lr, t, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    s["m"] = s.get("m", 0 * p) + (g - s.get("m", 0 * p)) * (1 - beta_1)
    s["u"] = np.maximum(beta_2 * s.get("u", 0 * p), gabs)
    return p - lr * s["m"] / ((1 - f32(beta_1) ** t) * (s["u"] + epsilon))


def ref_nadam(p, g, g2, gabs, s, lr, t, beta_1=0.9, beta_2=0.999, epsilon=1e-7, shared=None):
    # shared["u_product"] is advanced once per step by the driver (see run_reference)
    beta_1, beta_2, decay = f32(beta_1), f32(beta_2), f32(0.96)
    u_t = beta_1 * (1 - 0.5 * decay**t)
    u_t_1 = beta_1 * (1 - 0.5 * decay ** (t + 1))
    u_prod = shared["u_product"]
    u_prod_1 = u_prod * u_t_1
    s["m"] = s.get("m", 0 * p) + (g - s.get("m", 0 * p)) * (1 - beta_1)
    s["v"] = s.get("v", 0 * p) + (g2 - s.get("v", 0 * p)) * (1 - beta_2)
    m_hat = u_t_1 * s["m"] / (1 - u_prod_1) + (1 - u_t) * g / (1 - u_prod)
    v_hat = s["v"] / (1 - beta_2**t)
    return p - m_hat * lr / (np.sqrt(v_hat) + epsilon)


def ref_lion(p, g, g2, gabs, s, lr, t, beta_1=0.9, beta_2=0.99):
    m = s.get("m", 0 * p)
    beta_1, beta_2 = f32(beta_1), f32(beta_2)
    p = p - lr * np.sign(m * beta_1 + g * (1 - beta_1))
    s["m"] = m * beta_2 + g * (1 - beta_2)
    return p


def ref_adafactor(
    p, g, g2, gabs, s, lr, t, beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3, clip_threshold=1.0
):
    rho_t = min(lr, 1 / math.sqrt(t))
    alpha_t = max(f32(epsilon_2), math.sqrt(np.mean(p**2))) * rho_t
    G = g2 + epsilon_1
    b = 1 - t**beta_2_decay
    if p.ndim >= 2:
        s["r"] = b * s.get("r", np.zeros(p.shape[:-1])) + (1 - b) * G.mean(axis=-1)
        s["c"] = b * s.get("c", np.zeros(p.shape[:-2] + p.shape[-1:])) + (1 - b) * G.mean(axis=-2)
        v = (s["r"] / s["r"].mean(axis=-1, keepdims=True))[..., None] * s["c"][..., None, :]
    else:
        v = s["v"] = b * s.get("v", 0 * p) + (1 - b) * G
    u = g / np.sqrt(v)
    rms_u = math.sqrt(np.mean(g2 / v))  # == rms(u) unless repeated sparse rows
    return p - alpha_t * u / max(1.0, rms_u / clip_threshold)


REFS = {
    "SGD": ref_sgd,
    "Adam": ref_adam,
    "AdamW": ref_adam,
    "RMSprop": ref_rmsprop,
    "Adagrad": ref_adagrad,
    "Adadelta": ref_adadelta,
    "Adamax": ref_adamax,
    "Nadam": ref_nadam,
    "Lion": ref_lion,
    "Adafactor": ref_adafactor,
}
BASE_KEYS = {
    "weight_decay",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "learning_rate",
}
DEFAULT_LR = {"SGD": 0.01, "AdamW": 0.001}


def run_reference(name, kwargs, params, grad_steps, lr_at):
    """Keras' apply(): clip, weight decay, update_step per variable, EMA; params: name -> float64 array.
    grad_steps: per step, name -> (g, g2, gabs, clip_values) where clip_values are what a norm or a
    clipvalue sees (the slices of a sparse gradient)."""
    hp = {k: v for k, v in kwargs.items() if k not in BASE_KEYS}
    if name == "AdamW":
        kwargs = dict(kwargs, weight_decay=kwargs.get("weight_decay", 0.004))
    params = {k: v.astype(np.float64) for k, v in params.items()}
    states = {k: {} for k in params}
    avg = {k: np.zeros_like(v) for k, v in params.items()}
    shared = {"u_product": 1.0}
    for i, grads in enumerate(grad_steps):
        t = i + 1
        lr = lr_at(i)
        grads = _ref_clip(kwargs, grads)
        if name == "Nadam":
            shared["u_product"] *= kwargs.get("beta_1", 0.9) * (1 - 0.5 * 0.96**t)
            hp["shared"] = shared
        for k, (g, g2, gabs) in grads.items():
            p = params[k]
            if kwargs.get("weight_decay"):
                p = p - p * f32(kwargs["weight_decay"]) * lr
            params[k] = REFS[name](p, g, g2, gabs, states[k], lr, t, **hp)
        if kwargs.get("use_ema"):
            mom = kwargs.get("ema_momentum", 0.99) if i > 0 else 0.0
            for k in params:
                avg[k] = mom * avg[k] + (1 - mom) * params[k]
            freq = kwargs.get("ema_overwrite_frequency")
            if freq and t % freq == 0:
                params = {k: a.copy() for k, a in avg.items()}
    return params, avg


def _ref_clip(kwargs, grads):
    """-> name -> (g, g2, gabs) after clipnorm / global_clipnorm / clipvalue (applied to slices)."""

    def scaled(entry, s, densify=False):
        g, g2, gabs, vals, rebuild = entry
        if vals is None or densify:
            return g * s, (g * s) ** 2, np.abs(g * s)
        return rebuild(vals * s)

    out = {}
    if kwargs.get("clipnorm"):
        c = kwargs["clipnorm"]
        for k, e in grads.items():
            vals = e[0] if e[3] is None else e[3]
            out[k] = scaled(e, c / max(math.sqrt(np.sum(vals**2)), c))
    elif kwargs.get("global_clipnorm"):
        c = kwargs["global_clipnorm"]
        n = math.sqrt(sum(np.sum((e[0] if e[3] is None else e[3]) ** 2) for e in grads.values()))
        # Keras multiplies each gradient by a tensor: an IndexedSlices turns dense (repeated rows add up)
        out = {k: scaled(e, c / max(n, c), densify=True) for k, e in grads.items()}
    elif kwargs.get("clipvalue"):
        c = kwargs["clipvalue"]
        for k, (g, _, _, vals, rebuild) in grads.items():
            if vals is None:
                gc = np.clip(g, -c, c)
                out[k] = (gc, gc * gc, np.abs(gc))
            else:
                out[k] = rebuild(np.clip(vals, -c, c))
    else:
        out = {k: e[:3] for k, e in grads.items()}
    return out


def dense_entry(g):
    g = g.astype(np.float64)
    return (g, g * g, np.abs(g), None, None)


def sparse_entry(values, indices, shape):
    def rebuild(vals):
        g = np.zeros(shape)
        g2 = np.zeros(shape)
        ga = np.zeros(shape)
        np.add.at(g, indices, vals)
        np.add.at(g2, indices, vals * vals)
        np.add.at(ga, indices, np.abs(vals))
        return g, g2, ga

    values = values.astype(np.float64)
    return rebuild(values) + (values, rebuild)


# ---- driving accel -----------------------------------------------------------------------------


def make_params(dtype, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()}


def make_grads(dtype, steps=STEPS, seed=1, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [{k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()} for _ in range(steps)]


def run_accel(name, kwargs, params, grad_steps, mode):
    variables = {k: accel.Variable(v, name=k) for k, v in params.items()}
    opt = getattr(O, name)(**kwargs)
    with backend.fused(mode):
        for grads in grad_steps:
            opt.apply_gradients((grads[k], variables[k]) for k in variables)
    return opt, variables


def assert_close(actual, expected, dtype):
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=ATOL[dtype])


CASES = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}),
    ("AdamW", {}),
    ("AdamW", {"weight_decay": 0.5, "amsgrad": True}),
    ("RMSprop", {}),
    ("RMSprop", {"momentum": 0.5}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"centered": True, "momentum": 0.9, "rho": 0.8}),
    ("Adagrad", {}),
    ("Adagrad", {"initial_accumulator_value": 0.5, "epsilon": 1e-3}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adadelta", {"learning_rate": 1.0, "rho": 0.5}),
    ("Adamax", {}),
    ("Adamax", {"beta_1": 0.5}),
    ("Nadam", {}),
    ("Nadam", {"beta_2": 0.9}),
    ("Lion", {}),
    ("Lion", {"beta_1": 0.5, "beta_2": 0.9}),
    ("Adafactor", {}),
    ("Adafactor", {"learning_rate": 0.5, "clip_threshold": 0.1}),
    # base options on the optimizers with fused kernels and on generic-only ones
    ("SGD", {"momentum": 0.9, "weight_decay": 0.1}),
    ("Adam", {"weight_decay": 0.1}),
    ("RMSprop", {"weight_decay": 0.1, "momentum": 0.5}),
    ("Adagrad", {"weight_decay": 0.1}),
    ("Lion", {"weight_decay": 0.1}),
    ("Nadam", {"weight_decay": 0.1}),
    ("Adam", {"clipnorm": 0.5}),
    ("SGD", {"clipnorm": 0.5}),
    ("Adafactor", {"clipnorm": 0.5}),
    ("Adam", {"clipvalue": 0.3}),
    ("RMSprop", {"clipvalue": 0.3}),
    ("Adam", {"global_clipnorm": 0.5}),
    ("Lion", {"global_clipnorm": 0.5}),
    ("Adamax", {"global_clipnorm": 0.5}),
    ("Adam", {"use_ema": True, "ema_momentum": 0.9}),
    ("SGD", {"use_ema": True, "ema_momentum": 0.5, "ema_overwrite_frequency": 2}),
]


def _id(case):
    name, kw = case
    return name + "".join("-%s=%s" % kv for kv in kw.items())


@pytest.mark.parametrize("mode", ["never", "always"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_matches_keras_formulas(case, dtype, mode):
    name, kwargs = case
    params = make_params(dtype)
    grads = make_grads(dtype)
    opt, variables = run_accel(name, kwargs, params, grads, mode)
    lr = f32(kwargs.get("learning_rate", DEFAULT_LR.get(name, 0.001)))
    ref, avg = run_reference(
        name, kwargs, params, [{k: dense_entry(g) for k, g in s.items()} for s in grads], lambda i: lr
    )
    for k, v in variables.items():
        assert v.dtype.dtype == dtype
        assert_close(v.numpy(), ref[k], dtype)
        if kwargs.get("use_ema"):
            st = opt.get_state()
            assert_close(st["%d/average" % list(variables).index(k)], avg[k], dtype)
    assert int(opt.iterations.numpy()) == STEPS


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(5,), (3, 4, 2), (1, 6)], ids=str)
def test_adafactor_ranks(shape, dtype):
    shapes = {"x": shape}
    params = make_params(dtype, shapes=shapes)
    grads = make_grads(dtype, shapes=shapes)
    _, variables = run_accel("Adafactor", {"learning_rate": 0.1}, params, grads, "always")
    ref, _ = run_reference(
        "Adafactor",
        {},
        params,
        [{k: dense_entry(g) for k, g in s.items()} for s in grads],
        lambda i: f32(0.1),
    )
    assert_close(variables["x"].numpy(), ref["x"], dtype)


@pytest.mark.parametrize("mode", ["never", "always"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_schedule_learning_rate(dtype, mode):
    sched = S.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5, staircase=True)
    params = make_params(dtype)
    grads = make_grads(dtype)
    opt, variables = run_accel("Adam", {"learning_rate": sched}, params, grads, mode)
    ref, _ = run_reference(
        "Adam",
        {},
        params,
        [{k: dense_entry(g) for k, g in s.items()} for s in grads],
        lambda i: f32(0.1 * 0.5 ** (i // 2)),
    )
    for k, v in variables.items():
        assert_close(v.numpy(), ref[k], dtype)
    # the property follows the schedule at the current iteration
    assert float(opt.learning_rate) == pytest.approx(f32(0.1 * 0.5 ** (STEPS // 2)), rel=1e-7)
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.5


def test_callable_learning_rate_is_not_rounded_to_float32():
    v = accel.Variable(np.ones(3), dtype=accel.float64)
    opt = O.SGD(learning_rate=lambda: 0.1)
    opt.apply_gradients([(np.ones(3), v)])
    np.testing.assert_array_equal(v.numpy(), 1 - 0.1 * np.ones(3))


def test_learning_rate_variable_is_settable():
    v = accel.Variable([1.0, 2.0])
    opt = O.SGD(learning_rate=0.1)
    assert isinstance(opt.learning_rate, accel.Variable) and opt.learning_rate.dtype == accel.float32
    opt.learning_rate = 0.5
    opt.apply_gradients([(accel.constant([1.0, 1.0]), v)])
    np.testing.assert_allclose(v.numpy(), [0.5, 1.5])
    assert float(opt.learning_rate) == 0.5
    opt.learning_rate = S.InverseTimeDecay(1.0, 1, 1.0)
    assert float(opt.learning_rate) == pytest.approx(0.5)  # 1 / (1 + 1 * iterations)


# ---- row-sparse gradients ------------------------------------------------------------------------

SPARSE_CASES = [
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("RMSprop", {"centered": True}),
    ("Adagrad", {}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adamax", {}),
    ("Nadam", {}),
    ("Adafactor", {}),
    ("SGD", {"momentum": 0.9}),
    ("Lion", {}),
    ("Adam", {"clipnorm": 1.0}),
    ("Adam", {"clipvalue": 0.5}),
    ("Adagrad", {"global_clipnorm": 1.0}),
]


@pytest.mark.parametrize("mode", ["never", "always"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("duplicates", [True, False], ids=["dup", "nodup"])
@pytest.mark.parametrize("case", SPARSE_CASES, ids=[_id(c) for c in SPARSE_CASES])
def test_sparse_gradients(case, duplicates, dtype, mode):
    """Keras applies the update's squares (|g| for Adamax) to each slice, then adds repeated rows."""
    name, kwargs = case
    shape = (6, 3)
    rng = np.random.default_rng(3)
    params = {"e": rng.normal(size=shape).astype(dtype)}
    idx_steps = (
        [np.array([1, 4, 1, 1]), np.array([0, 0, 5])]
        if duplicates
        else [np.array([1, 4, 2]), np.array([0, 5])]
    )
    steps = [idx_steps[i % 2] for i in range(STEPS)]
    vals = [rng.normal(size=(len(ix), 3)).astype(dtype) for ix in steps]
    variables = {"e": accel.Variable(params["e"], name="e")}
    opt = getattr(O, name)(**kwargs)
    with backend.fused(mode):
        for ix, vv in zip(steps, vals, strict=True):
            opt.apply_gradients([(O.IndexedSlices(vv, ix, shape), variables["e"])])
    lr = f32(kwargs.get("learning_rate", DEFAULT_LR.get(name, 0.001)))
    ref, _ = run_reference(
        name,
        kwargs,
        params,
        [{"e": sparse_entry(vv, ix, shape)} for ix, vv in zip(steps, vals, strict=True)],
        lambda i: lr,
    )
    assert_close(variables["e"].numpy(), ref["e"], dtype)


def test_sparse_adam_without_duplicates_is_dense_adam():
    """Rows left out of a step keep moving on their momentum, exactly as with the dense gradient."""
    shape = (5, 2)
    rng = np.random.default_rng(4)
    p0 = rng.normal(size=shape).astype(np.float32)
    a, b = accel.Variable(p0), accel.Variable(p0)
    oa, ob = O.Adam(0.1), O.Adam(0.1)
    for ix in ([0, 3], [1]):
        vals = rng.normal(size=(len(ix), 2)).astype(np.float32)
        dense = np.zeros(shape, np.float32)
        dense[ix] = vals
        before = np.array(a.numpy())  # Variable.numpy() may share the live buffer
        oa.apply_gradients([(O.IndexedSlices(vals, ix, shape), a)])
        ob.apply_gradients([(dense, b)])
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy()[0], before[0])  # row 0 had no gradient in step 2 yet moved


def test_indexed_slices_attributes():
    s = O.IndexedSlices([[1.0, 2.0]], [3], [5, 2])
    assert s.values.shape == (1, 2) and s.indices.numpy().tolist() == [3]
    assert s.dense_shape.dtype == accel.int64 and s.shape == (5, 2) and s.dtype == accel.float32
    with pytest.raises(TypeError, match="integers"):
        O.IndexedSlices([[1.0]], [0.5])


# ---- None gradients and validation ----------------------------------------------------------------


def test_none_gradient_is_skipped_with_warning():
    w, b = accel.Variable([1.0, 2.0], name="w_none"), accel.Variable([3.0], name="b_none")
    opt = O.SGD(0.5)
    with pytest.warns(UserWarning, match="b_none:0"):
        opt.apply_gradients([(accel.constant([1.0, 1.0]), w), (None, b)])
    np.testing.assert_allclose(w.numpy(), [0.5, 1.5])
    np.testing.assert_array_equal(b.numpy(), [3.0])
    assert int(opt.iterations.numpy()) == 1


def test_all_none_gradients_raise_and_change_nothing():
    w, b = accel.Variable([1.0, 2.0], name="w_all"), accel.Variable([3.0], name="b_all")
    opt = O.Adam(0.1)
    with pytest.raises(ValueError, match=r"^No gradients provided for any variable") as e:
        opt.apply_gradients([(None, w), (None, b)])
    msg = str(e.value)
    for part in ("w_all:0", "b_all:0", "outside the GradientTape", "not used", "NumPy", "trainable=False"):
        assert part in msg
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])
    assert int(opt.iterations.numpy()) == 0 and not opt.built


def test_loss_before_tape_gives_no_gradients_error():
    w = accel.Variable([1.0, 2.0])
    loss = accel.reduce_sum(w * w)
    with accel.GradientTape() as tape:
        pass
    grads = tape.gradient(loss, [w])
    with pytest.raises(ValueError, match="No gradients provided"):
        O.SGD().apply_gradients(zip(grads, [w], strict=True))


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones((2, 2), np.float32), r"w_bad:0 has shape \(2, 2\), expected \(3,\)"),
        (np.ones(3, np.complex64), "dtype complex64"),
        (O.IndexedSlices(np.ones((1, 1), np.float32), [0], [3]), "values"),
        (O.IndexedSlices(np.ones(1, np.float32), [3], [3]), r"in \[0, 3\)"),
        (O.IndexedSlices(np.ones(1, np.float32), [0], [4]), "dense_shape"),
    ],
)
def test_bad_gradient_rejected_before_any_change(bad, match):
    ok = accel.Variable(np.ones((2, 3), np.float32), name="w_ok")
    badv = accel.Variable(np.ones(3, np.float32), name="w_bad")
    opt = O.Adam(0.1)
    with pytest.raises((ValueError, TypeError), match=match):
        opt.apply_gradients([(np.ones((2, 3), np.float32), ok), (bad, badv)])
    np.testing.assert_array_equal(ok.numpy(), np.ones((2, 3)))
    assert int(opt.iterations.numpy()) == 0 and not opt.built


def test_shape_error_names_variable_and_shapes():
    v = accel.Variable(np.ones((2, 3), np.float32), name="kernel_x")
    with pytest.raises(ValueError, match=r"kernel_x:0 has shape \(3, 2\), expected \(2, 3\)"):
        O.SGD().apply_gradients([(np.ones((3, 2), np.float32), v)])


def test_other_validation():
    v = accel.Variable([1.0])
    with pytest.raises(ValueError, match="more than once"):
        O.SGD().apply_gradients([([1.0], v), ([1.0], v)])
    with pytest.raises(TypeError, match="floating-point"):
        O.SGD().apply_gradients([([1], accel.Variable([1]))])
    with pytest.raises(ValueError, match="Only one of"):
        O.SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        O.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="momentum"):
        O.SGD(momentum=1)
    with pytest.raises(ValueError, match="not recognized"):
        O.Adam(foo=1)
    with pytest.raises(ValueError, match="learning_rate"):
        O.Adam(learning_rate="fast")


def test_gradient_dtype_is_cast_to_variable_dtype():
    v = accel.Variable(np.ones(2, np.float32))
    O.SGD(0.5).apply_gradients([(np.ones(2, np.float64), v)])
    assert v.dtype == accel.float32
    np.testing.assert_allclose(v.numpy(), [0.5, 0.5])


def test_caller_gradient_is_not_modified_by_clipping():
    v = accel.Variable(np.ones(3, np.float32))
    g = np.full(3, 10.0, np.float32)
    O.Adam(0.1, clipvalue=1.0).apply_gradients([(g, v)])
    O.Adam(0.1, clipnorm=1.0).apply_gradients([(g, v)])
    np.testing.assert_array_equal(g, np.full(3, 10.0))


# ---- iterations, state, config ---------------------------------------------------------------------


def test_iterations_is_int64_variable():
    opt = O.Adam()
    assert isinstance(opt.iterations, accel.Variable)
    assert opt.iterations.dtype == accel.int64 and not opt.iterations.trainable
    v = accel.Variable([1.0])
    assert opt.apply_gradients([([1.0], v)]) is opt.iterations
    assert int(opt.iterations.numpy()) == 1
    assert opt.variables[0] is opt.iterations and len(opt.variables) == 4  # + lr, momentum, velocity


def test_slots_are_created_lazily_per_variable():
    a, b = accel.Variable([1.0]), accel.Variable([[1.0, 2.0]])
    opt = O.Adam()
    opt.apply_gradients([([1.0], a)])
    assert sorted(opt.get_state()) == ["0/momentum", "0/velocity", "iterations", "learning_rate"]
    opt.apply_gradients([([[1.0, 1.0]], b)])
    assert opt.get_state()["1/velocity"].shape == (1, 2)


@pytest.mark.parametrize("name", ["Adam", "Nadam", "Adafactor", "RMSprop"])
def test_state_round_trip(name):
    kw = {"centered": True, "momentum": 0.5} if name == "RMSprop" else {}
    params = make_params(np.float32)
    grads = make_grads(np.float32, steps=6)
    opt, va = run_accel(name, kw, params, grads[:3], "always")
    state = opt.get_state()
    vb = {k: accel.Variable(v.numpy()) for k, v in va.items()}
    fresh = getattr(O, name)(**kw)
    fresh.build(list(vb.values()))
    fresh.set_state(state)
    assert int(fresh.iterations.numpy()) == 3
    for g in grads[3:]:
        opt.apply_gradients((g[k], va[k]) for k in va)
        fresh.apply_gradients((g[k], vb[k]) for k in vb)
    for k in va:
        np.testing.assert_array_equal(va[k].numpy(), vb[k].numpy())


def test_set_state_validates_before_assigning():
    v = accel.Variable(np.ones((2, 2), np.float32))
    opt = O.Adam()
    opt.apply_gradients([(np.ones((2, 2), np.float32), v)])
    good = opt.get_state()
    bad = dict(good, **{"0/velocity": np.zeros((3, 2), np.float32), "iterations": np.array(7, np.int64)})
    with pytest.raises(ValueError, match=r"0/velocity.*\(3, 2\)"):
        opt.set_state(bad)
    assert int(opt.iterations.numpy()) == 1
    with pytest.raises(ValueError, match="float64"):
        opt.set_state(dict(good, **{"0/momentum": np.zeros((2, 2))}))
    with pytest.raises(ValueError, match="missing.*0/velocity"):
        opt.set_state({k: a for k, a in good.items() if k != "0/velocity"})
    with pytest.raises(ValueError, match="unexpected.*extra"):
        opt.set_state(dict(good, extra=np.zeros(1)))
    for k, a in opt.get_state().items():
        np.testing.assert_array_equal(a, good[k])


def test_config_round_trip():
    opt = O.Adam(learning_rate=0.01, beta_1=0.8, amsgrad=True, clipnorm=2.0, name="my_adam")
    cfg = opt.get_config()
    assert cfg["learning_rate"] == pytest.approx(0.01) and cfg["amsgrad"] is True and cfg["epsilon"] == 1e-7
    again = O.Adam.from_config(cfg)
    assert again.get_config() == cfg
    sched = S.CosineDecay(0.1, 100, alpha=0.1)
    opt = O.SGD(learning_rate=sched, momentum=0.9, nesterov=True)
    clone = O.deserialize(O.serialize(opt))
    assert isinstance(clone, O.SGD) and clone.nesterov
    assert (
        isinstance(clone._learning_rate, S.CosineDecay)
        and clone._learning_rate.get_config() == sched.get_config()
    )
    assert isinstance(O.get("rmsprop"), O.RMSprop) and O.get(opt) is opt


def test_keras_defaults():
    assert O.Adam().epsilon == 1e-7 and O.Adam().beta_2 == 0.999
    assert float(O.SGD().learning_rate) == pytest.approx(0.01)
    assert O.AdamW().weight_decay == 0.004
    assert O.Adagrad().initial_accumulator_value == 0.1
    assert O.Adadelta().rho == 0.95 and O.Lion().beta_2 == 0.99
    assert O.Adam().name.startswith("adam")


def test_exclude_from_weight_decay():
    w, bias = accel.Variable([1.0], name="dense_w"), accel.Variable([1.0], name="dense_bias")
    opt = O.SGD(learning_rate=0.5, weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.apply_gradients([([0.0], w), ([0.0], bias)])
    np.testing.assert_allclose(w.numpy(), [1 - 0.1 * 0.5])
    np.testing.assert_array_equal(bias.numpy(), [1.0])


def test_constraint_after_update_and_ema_before_it():
    v = accel.Variable([1.0, -1.0], constraint=lambda x: accel.maximum(x, 0.0))
    opt = O.SGD(0.1, use_ema=True, ema_momentum=0.5)
    opt.apply_gradients([([1.0, 1.0], v)])
    np.testing.assert_allclose(v.numpy(), [0.9, 0.0])
    # Keras' order: the moving average sees the update before the constraint (first step: a copy)
    np.testing.assert_allclose(opt.get_state()["0/average"], [0.9, -1.1])


def test_finalize_variable_values():
    v = accel.Variable([1.0, -1.0])
    opt = O.SGD(0.1, use_ema=True, ema_momentum=0.5)
    opt.apply_gradients([([1.0, 1.0], v)])
    opt.apply_gradients([([1.0, 1.0], v)])
    np.testing.assert_allclose(v.numpy(), [0.8, -1.2])
    opt.finalize_variable_values([v])
    np.testing.assert_allclose(v.numpy(), [0.5 * 0.9 + 0.5 * 0.8, 0.5 * -1.1 + 0.5 * -1.2])


def test_minimize():
    w = accel.Variable([1.0, 2.0])
    opt = O.SGD(0.1)
    opt.minimize(lambda: accel.reduce_sum(w * w), [w])
    np.testing.assert_allclose(w.numpy(), [0.8, 1.6])
    with accel.GradientTape() as tape:
        loss = accel.reduce_sum(w)
    opt.minimize(loss, [w], tape=tape)
    np.testing.assert_allclose(w.numpy(), [0.7, 1.5])
    with pytest.raises(ValueError, match="tape"):
        opt.minimize(loss, [w])


def test_loss_scale_factor_unscales_gradients():
    v = accel.Variable([1.0])
    opt = O.SGD(0.5, loss_scale_factor=4.0)
    assert float(opt.scale_loss(accel.constant(2.0))) == 8.0
    opt.apply_gradients([([4.0], v)])
    np.testing.assert_allclose(v.numpy(), [0.5])


def test_update_is_in_place_without_tape_and_copies_under_tape():
    v = accel.Variable(np.ones(4, np.float32))
    data = v._data
    opt = O.Adam(0.1)
    opt.apply_gradients([(np.ones(4, np.float32), v)])
    assert v._data is data
    with accel.GradientTape() as tape:
        y = accel.reduce_sum(v * v)
        opt.apply_gradients([(np.ones(4, np.float32), v)])
    assert v._data is not data
    np.testing.assert_allclose(tape.gradient(y, v).numpy(), 2 * data)  # the recorded values, not the new ones


@pytest.mark.skipif(not cpu_kernels.available(), reason="numba is not installed")
@pytest.mark.parametrize(
    "name, kernel, squares",
    [
        ("Adam", "adam_update", True),
        ("SGD", "sgd_update", False),
        ("RMSprop", "rmsprop_update", True),
        ("Adagrad", "adagrad_update", True),
        ("Lion", "lion_update", False),
    ],
)
def test_fused_path_is_taken(name, kernel, squares, monkeypatch):
    calls = []
    real = getattr(cpu_kernels, kernel)
    monkeypatch.setattr(cpu_kernels, kernel, lambda *a, **k: (calls.append(1), real(*a, **k)))
    v = accel.Variable(np.ones((8, 8), np.float32))
    opt = getattr(O, name)()
    with backend.fused("always"):
        opt.apply_gradients([(np.ones((8, 8), np.float32), v)])
    with backend.fused("never"):
        opt.apply_gradients([(np.ones((8, 8), np.float32), v)])
    with backend.fused("auto"):  # small arrays: generic
        opt.apply_gradients([(np.ones((8, 8), np.float32), v)])
    assert len(calls) == 1
    # repeated rows of a row-sparse gradient need the generic path when the update squares the gradient
    with backend.fused("always"):
        opt.apply_gradients([(O.IndexedSlices(np.ones((2, 8), np.float32), [1, 1], (8, 8)), v)])
    assert len(calls) == (1 if squares else 2)
    big = accel.Variable(np.ones(CPU_FUSED_MIN_SIZE, np.float32))
    with backend.fused("auto"):
        getattr(O, name)().apply_gradients([(np.ones(CPU_FUSED_MIN_SIZE, np.float32), big)])
    assert len(calls) == (2 if squares else 3)


@pytest.mark.skipif(not cpu_kernels.available(), reason="numba is not installed")
@pytest.mark.parametrize("kwargs", [{}, {"amsgrad": True}, {"weight_decay": 0.01}], ids=["adam", "amsgrad", "wd"])
def test_adam_multi_tensor_path_equals_per_parameter(kwargs, monkeypatch):
    """Several parameters go through one adam_multi_update call; the result equals one kernel call per
    parameter bit for bit. Parameters that need clipping, are excluded from decay or have another dtype
    are split into their own groups or the per-parameter path."""
    rng = np.random.default_rng(0)
    shapes = [(6, 5), (5,), (5, 3), (3,)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
    calls = []
    real = cpu_kernels.adam_multi_update
    monkeypatch.setattr(
        cpu_kernels, "adam_multi_update", lambda ps, *a, **k: calls.append(len(ps)) or real(ps, *a, **k)
    )

    def run(multi):
        vs = [accel.Variable(a, name="v%d" % i) for i, a in enumerate(init)]
        opt = O.Adam(**kwargs) if "weight_decay" not in kwargs else O.AdamW(**kwargs)
        if not multi:
            monkeypatch.setattr(opt, "_multi", False)
        with backend.fused("always"):
            for gs in grads:
                opt.apply_gradients(zip(gs, vs))
        return [v.numpy() for v in vs]

    per_param = run(False)
    assert calls == []
    multi = run(True)
    assert calls == [4, 4, 4]
    for a, b in zip(multi, per_param, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not cpu_kernels.available(), reason="numba is not installed")
def test_adam_multi_tensor_groups(monkeypatch):
    calls = []
    real = cpu_kernels.adam_multi_update
    monkeypatch.setattr(
        cpu_kernels, "adam_multi_update", lambda ps, *a, **k: calls.append(len(ps)) or real(ps, *a, **k)
    )
    single = []
    real1 = cpu_kernels.adam_update
    monkeypatch.setattr(cpu_kernels, "adam_update", lambda *a, **k: single.append(1) or real1(*a, **k))
    v32 = [accel.Variable(np.ones(4, np.float32), name="a%d" % i) for i in range(3)]
    v64 = [accel.Variable(np.ones(4), name="d%d" % i) for i in range(2)]
    bias = accel.Variable(np.ones(4, np.float32), name="bias")
    opt = O.AdamW(weight_decay=0.1)
    opt.exclude_from_weight_decay(var_names=["bias"])
    allv = v32 + v64 + [bias]
    with backend.fused("always"):
        opt.apply_gradients([(np.ones(4, v.dtype), v) for v in allv])
    assert sorted(calls) == [2, 3] and len(single) == 1  # float32 decayed, float64 decayed; the bias alone
    calls.clear(), single.clear()
    with backend.fused("always"):
        O.Adam(clipvalue=0.5).apply_gradients([(np.ones(4, v.dtype), v) for v in allv])
    assert calls == [] and len(single) == 6  # clipped gradients take the per-parameter path
    calls.clear(), single.clear()
    with backend.fused("auto"):  # small arrays: the group kernel still (one call beats ~12 NumPy passes each)
        O.Adam().apply_gradients([(np.ones(4, v.dtype), v) for v in allv])
    assert sorted(calls) == [2, 4] and single == []
    calls.clear()
    with backend.fused("never"):
        O.Adam().apply_gradients([(np.ones(4, v.dtype), v) for v in allv])
    assert calls == [] and single == []


def test_no_large_allocations_per_step():
    """The generic path reuses its scratch buffers: the optimizer's pool stops growing after step 1."""
    v = accel.Variable(np.ones((256, 256), np.float32))
    opt = O.Nadam(clipnorm=1.0)
    g = np.ones((256, 256), np.float32)
    with backend.fused("never"):
        opt.apply_gradients([(g, v)])
        pool = {k: id(a) for k, a in opt._pool.items()}
        for _ in range(3):
            opt.apply_gradients([(g, v)])
    assert {k: id(a) for k, a in opt._pool.items()} == pool


# ---- optional: TensorFlow 2.21 / Keras 3 as the oracle ----------------------------------------------

TF_CASES = [
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("Adam", {"amsgrad": True}),
    ("AdamW", {"weight_decay": 0.1}),
    ("RMSprop", {"centered": True, "momentum": 0.5}),
    ("Adagrad", {}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adamax", {}),
    ("Nadam", {}),
    ("Lion", {}),
    ("Adafactor", {}),
    ("Adam", {"global_clipnorm": 0.5}),
    ("Adam", {"clipnorm": 1.0}),
    ("Adam", {"clipvalue": 0.5}),
    ("Adagrad", {"loss_scale_factor": 2.0}),
    ("SGD", {"clipvalue": 0.3, "use_ema": True, "ema_overwrite_frequency": 2}),
]


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", TF_CASES, ids=[_id(c) for c in TF_CASES])
def test_against_tensorflow(case, dtype, sparse):
    tf = pytest.importorskip("tensorflow")
    import keras  # noqa: PLC0415

    name, kwargs = case
    if sparse and "loss_scale_factor" in kwargs:
        pytest.skip(
            "Keras raises TypeError dividing an IndexedSlices by loss_scale_factor; accel scales the slices"
        )
    shape = (6, 3)
    rng = np.random.default_rng(7)
    p0 = rng.normal(size=shape).astype(dtype)
    steps = []
    for i in range(STEPS):
        idx = np.array([1, 4, 1] if i % 2 else [0, 0, 5, 2])
        steps.append((idx, rng.normal(size=(len(idx), 3)).astype(dtype)))
    tv = tf.Variable(p0)
    av = accel.Variable(p0)
    topt = getattr(keras.optimizers, name)(**kwargs)
    aopt = getattr(O, name)(**kwargs)
    for idx, vals in steps:
        if sparse:
            tg = tf.IndexedSlices(tf.constant(vals), tf.constant(idx), tf.constant(shape, tf.int64))
            ag = O.IndexedSlices(vals, idx, shape)
        else:
            dense = np.zeros(shape, dtype)
            np.add.at(dense, idx, vals)
            tg, ag = tf.constant(dense), dense
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            topt.apply_gradients([(tg, tv)])
        aopt.apply_gradients([(ag, av)])
    assert_close(av.numpy(), tv.numpy(), dtype)
    assert int(aopt.iterations.numpy()) == int(topt.iterations.numpy())
