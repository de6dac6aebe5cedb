"""Differential testing: accel's forward values and gradients (vector-Jacobian products with a random
cotangent, float64) against PyTorch and JAX, op by op. Skips cleanly when neither is installed.

    .venv-bench/bin/python -m pytest tests/reliability/test_differential.py
"""

from dataclasses import dataclass, field

import numpy as np
import pytest

import accel as tf


@dataclass
class D:
    name: str
    accel: object  # f(*accel tensors)
    torch: object  # f(torch_module, *torch tensors) or None
    jax: object  # f(jnp, jax, *jax arrays) or None
    specs: list  # shape or (shape, domain) per input
    ints: dict = field(default_factory=dict)  # input index -> exclusive high for int64 index inputs
    rtol: float = 1e-9
    atol: float = 1e-10


def _arrays(case, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, spec in enumerate(case.specs):
        if i in case.ints:
            out.append(rng.integers(0, case.ints[i], size=spec).astype(np.int64))
            continue
        shape, dom = (spec, "any") if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], str)) \
            else spec
        x = rng.standard_normal(shape)
        if dom == "pos":
            x = np.abs(x) + 0.5
        elif dom == "unit":
            x = np.tanh(x) * 0.9
        elif dom == "away0":
            x = np.where(np.abs(x) < 0.1, x + np.sign(x + 1e-9) * 0.2, x) * 2
        elif dom == "prob":
            x = np.abs(x) + 0.1
            x = x / x.sum(-1, keepdims=True)
        elif dom == "01":
            x = 1 / (1 + np.exp(-x))
        elif dom == "distinct":
            x = rng.permutation(np.arange(int(np.prod(shape)))).reshape(shape) * 0.37 - 1.1
        out.append(x.astype(np.float64))
    return out


B = [(3, 4), (4,)]
C = [(2, 1, 3), (4, 1)]
CASES = [
    # elementwise unary
    D("tanh", tf.tanh, lambda t, x: t.tanh(x), lambda jnp, jax, x: jnp.tanh(x), [(3, 4)]),
    D("sigmoid", tf.sigmoid, lambda t, x: t.sigmoid(x), lambda jnp, jax, x: jax.nn.sigmoid(x), [(3, 4)]),
    D("exp", tf.exp, lambda t, x: t.exp(x), lambda jnp, jax, x: jnp.exp(x), [(3, 4)]),
    D("expm1", tf.math.expm1, lambda t, x: t.expm1(x), lambda jnp, jax, x: jnp.expm1(x), [(5,)]),
    D("log", tf.math.log, lambda t, x: t.log(x), lambda jnp, jax, x: jnp.log(x), [((3, 4), "pos")]),
    D("log1p", tf.math.log1p, lambda t, x: t.log1p(x), lambda jnp, jax, x: jnp.log1p(x), [((5,), "pos")]),
    D("sqrt", tf.sqrt, lambda t, x: t.sqrt(x), lambda jnp, jax, x: jnp.sqrt(x), [((3, 4), "pos")]),
    D("rsqrt", tf.math.rsqrt, lambda t, x: t.rsqrt(x), lambda jnp, jax, x: 1 / jnp.sqrt(x), [((5,), "pos")]),
    D("reciprocal", tf.math.reciprocal, lambda t, x: t.reciprocal(x), lambda jnp, jax, x: 1 / x, [((5,), "pos")]),
    D("square", tf.square, lambda t, x: t.square(x), lambda jnp, jax, x: jnp.square(x), [(3, 4)]),
    D("abs", tf.abs, lambda t, x: t.abs(x), lambda jnp, jax, x: jnp.abs(x), [((6,), "away0")]),
    D("sin", tf.sin, lambda t, x: t.sin(x), lambda jnp, jax, x: jnp.sin(x), [(5,)]),
    D("cos", tf.cos, lambda t, x: t.cos(x), lambda jnp, jax, x: jnp.cos(x), [(5,)]),
    D("tan", tf.math.tan, lambda t, x: t.tan(x), lambda jnp, jax, x: jnp.tan(x), [((5,), "unit")]),
    D("asin", tf.math.asin, lambda t, x: t.asin(x), lambda jnp, jax, x: jnp.arcsin(x), [((5,), "unit")]),
    D("acos", tf.math.acos, lambda t, x: t.acos(x), lambda jnp, jax, x: jnp.arccos(x), [((5,), "unit")]),
    D("atan", tf.math.atan, lambda t, x: t.atan(x), lambda jnp, jax, x: jnp.arctan(x), [(5,)]),
    D("sinh", tf.math.sinh, lambda t, x: t.sinh(x), lambda jnp, jax, x: jnp.sinh(x), [(5,)]),
    D("cosh", tf.math.cosh, lambda t, x: t.cosh(x), lambda jnp, jax, x: jnp.cosh(x), [(5,)]),
    D("erf", tf.math.erf, lambda t, x: t.erf(x), lambda jnp, jax, x: jax.scipy.special.erf(x), [(6,)],
      rtol=1e-7, atol=1e-9),
    D("softplus", tf.nn.softplus, lambda t, x: t.nn.functional.softplus(x), lambda jnp, jax, x: jax.nn.softplus(x),
      [(3, 4)]),
    D("relu", tf.nn.relu, lambda t, x: t.relu(x), lambda jnp, jax, x: jax.nn.relu(x), [((3, 4), "away0")]),
    D("relu6", tf.nn.relu6, lambda t, x: t.nn.functional.relu6(x), lambda jnp, jax, x: jax.nn.relu6(x),
      [((8,), "away0")]),
    D("elu", tf.nn.elu, lambda t, x: t.nn.functional.elu(x), lambda jnp, jax, x: jax.nn.elu(x), [((3, 4), "away0")]),
    D("selu", tf.nn.selu, lambda t, x: t.nn.functional.selu(x), lambda jnp, jax, x: jax.nn.selu(x),
      [((3, 4), "away0")], rtol=1e-7),
    D("leaky_relu", lambda x: tf.nn.leaky_relu(x, 0.2), lambda t, x: t.nn.functional.leaky_relu(x, 0.2),
      lambda jnp, jax, x: jax.nn.leaky_relu(x, 0.2), [((3, 4), "away0")]),
    D("silu", tf.nn.silu, lambda t, x: t.nn.functional.silu(x), lambda jnp, jax, x: jax.nn.silu(x), [(3, 4)]),
    D("gelu_exact", lambda x: tf.nn.gelu(x, approximate=False), lambda t, x: t.nn.functional.gelu(x),
      lambda jnp, jax, x: jax.nn.gelu(x, approximate=False), [(3, 4)], rtol=1e-7, atol=1e-9),
    D("gelu_tanh", lambda x: tf.nn.gelu(x, approximate=True),
      lambda t, x: t.nn.functional.gelu(x, approximate="tanh"),
      lambda jnp, jax, x: jax.nn.gelu(x, approximate=True), [(3, 4)]),
    # binary with broadcasting
    D("add", tf.add, lambda t, x, y: x + y, lambda jnp, jax, x, y: x + y, B),
    D("subtract", tf.subtract, lambda t, x, y: x - y, lambda jnp, jax, x, y: x - y, C),
    D("multiply", tf.multiply, lambda t, x, y: x * y, lambda jnp, jax, x, y: x * y, C),
    D("divide", tf.divide, lambda t, x, y: x / y, lambda jnp, jax, x, y: x / y, [(3, 4), ((4,), "pos")]),
    D("pow", tf.pow, lambda t, x, y: t.pow(x, y), lambda jnp, jax, x, y: jnp.power(x, y), [((3, 2), "pos"), (2,)]),
    D("maximum", tf.maximum, lambda t, x, y: t.maximum(x, y), lambda jnp, jax, x, y: jnp.maximum(x, y),
      [((3, 4), "distinct"), ((3, 4), "away0")]),
    D("minimum", tf.minimum, lambda t, x, y: t.minimum(x, y), lambda jnp, jax, x, y: jnp.minimum(x, y),
      [((3, 4), "distinct"), ((3, 4), "away0")]),
    D("squared_difference", tf.math.squared_difference, lambda t, x, y: (x - y) ** 2,
      lambda jnp, jax, x, y: (x - y) ** 2, B),
    D("floormod", tf.math.floormod, lambda t, x, y: t.remainder(x, y), lambda jnp, jax, x, y: jnp.mod(x, y),
      [((5,), "pos"), ((5,), "pos")]),
    # reductions
    D("reduce_sum_axis", lambda x: tf.reduce_sum(x, axis=1), lambda t, x: x.sum(1),
      lambda jnp, jax, x: x.sum(1), [(3, 4, 2)]),
    D("reduce_mean_keep", lambda x: tf.reduce_mean(x, axis=[0, 2], keepdims=True),
      lambda t, x: x.mean((0, 2), keepdim=True), lambda jnp, jax, x: x.mean((0, 2), keepdims=True), [(3, 4, 2)]),
    D("reduce_max", lambda x: tf.reduce_max(x, axis=-1), lambda t, x: x.amax(-1),
      lambda jnp, jax, x: x.max(-1), [((3, 5), "distinct")]),
    D("reduce_min", lambda x: tf.reduce_min(x, axis=0), lambda t, x: x.amin(0),
      lambda jnp, jax, x: x.min(0), [((3, 5), "distinct")]),
    D("reduce_prod", lambda x: tf.reduce_prod(x, axis=1), lambda t, x: x.prod(1),
      lambda jnp, jax, x: x.prod(1), [(3, 4)]),
    D("reduce_logsumexp", lambda x: tf.reduce_logsumexp(x, axis=1), lambda t, x: t.logsumexp(x, 1),
      lambda jnp, jax, x: jax.scipy.special.logsumexp(x, axis=1), [(3, 4)]),
    D("reduce_variance", lambda x: tf.math.reduce_variance(x, axis=0), lambda t, x: x.var(0, unbiased=False),
      lambda jnp, jax, x: x.var(0), [(5, 3)]),
    D("reduce_std", lambda x: tf.math.reduce_std(x, axis=1), lambda t, x: x.std(1, unbiased=False),
      lambda jnp, jax, x: x.std(1), [(3, 5)]),
    D("cumsum", lambda x: tf.cumsum(x, axis=1), lambda t, x: t.cumsum(x, 1), lambda jnp, jax, x: jnp.cumsum(x, 1),
      [(3, 4)]),
    D("norm", lambda x: tf.norm(x), lambda t, x: t.linalg.norm(x), lambda jnp, jax, x: jnp.linalg.norm(x), [(3, 4)]),
    # nn
    D("softmax", tf.nn.softmax, lambda t, x: t.softmax(x, -1), lambda jnp, jax, x: jax.nn.softmax(x, -1), [(3, 5)]),
    D("log_softmax", tf.nn.log_softmax, lambda t, x: t.log_softmax(x, -1),
      lambda jnp, jax, x: jax.nn.log_softmax(x, -1), [(3, 5)]),
    D("softmax_xent", lambda lab, x: tf.nn.softmax_cross_entropy_with_logits(labels=lab, logits=x),
      lambda t, lab, x: -(lab * t.log_softmax(x, -1)).sum(-1),
      lambda jnp, jax, lab, x: -(lab * jax.nn.log_softmax(x, -1)).sum(-1), [((3, 5), "prob"), (3, 5)]),
    D("sparse_xent", lambda x, lab: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=lab, logits=x),
      lambda t, x, lab: t.nn.functional.cross_entropy(x, lab, reduction="none"),
      lambda jnp, jax, x, lab: -jnp.take_along_axis(jax.nn.log_softmax(x, -1), lab[:, None], -1)[:, 0],
      [(4, 5), (4,)], ints={1: 5}),
    D("sigmoid_xent", lambda z, x: tf.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x),
      lambda t, z, x: t.nn.functional.binary_cross_entropy_with_logits(x, z, reduction="none"),
      lambda jnp, jax, z, x: jnp.maximum(x, 0) - x * z + jnp.log1p(jnp.exp(-jnp.abs(x))),
      [((3, 4), "01"), (3, 4)]),
    D("l2_normalize", lambda x: tf.math.l2_normalize(x, axis=-1), lambda t, x: t.nn.functional.normalize(x, dim=-1),
      lambda jnp, jax, x: x / jnp.linalg.norm(x, axis=-1, keepdims=True), [(3, 4)]),
    D("bias_add", tf.nn.bias_add, lambda t, x, b: x + b, lambda jnp, jax, x, b: x + b, [(2, 3, 4), (4,)]),
    # linear algebra
    D("matmul", tf.matmul, lambda t, a, b: a @ b, lambda jnp, jax, a, b: a @ b, [(3, 4), (4, 2)]),
    D("matmul_batched_bcast", tf.matmul, lambda t, a, b: a @ b, lambda jnp, jax, a, b: a @ b, [(2, 3, 4), (4, 5)]),
    D("matmul_transpose_b", lambda a, b: tf.matmul(a, b, transpose_b=True), lambda t, a, b: a @ b.T,
      lambda jnp, jax, a, b: a @ b.T, [(3, 4), (5, 4)]),
    D("einsum", lambda a, b: tf.einsum("bij,bjk->bik", a, b), lambda t, a, b: t.einsum("bij,bjk->bik", a, b),
      lambda jnp, jax, a, b: jnp.einsum("bij,bjk->bik", a, b), [(2, 3, 4), (2, 4, 2)]),
    D("tensordot", lambda a, b: tf.tensordot(a, b, axes=[[1, 2], [0, 1]]),
      lambda t, a, b: t.tensordot(a, b, dims=([1, 2], [0, 1])),
      lambda jnp, jax, a, b: jnp.tensordot(a, b, axes=([1, 2], [0, 1])), [(2, 3, 4), (3, 4, 5)]),
    # shapes and indexing
    D("transpose", lambda x: tf.transpose(x, [2, 0, 1]), lambda t, x: x.permute(2, 0, 1),
      lambda jnp, jax, x: jnp.transpose(x, (2, 0, 1)), [(2, 3, 4)]),
    D("reshape", lambda x: tf.reshape(x, (4, -1)), lambda t, x: x.reshape(4, -1),
      lambda jnp, jax, x: x.reshape(4, -1), [(2, 3, 4)]),
    D("concat", lambda a, b: tf.concat([a, b, a], axis=1), lambda t, a, b: t.cat([a, b, a], 1),
      lambda jnp, jax, a, b: jnp.concatenate([a, b, a], 1), [(2, 3), (2, 1)]),
    D("stack", lambda a, b: tf.stack([a, b], axis=1), lambda t, a, b: t.stack([a, b], 1),
      lambda jnp, jax, a, b: jnp.stack([a, b], 1), [(2, 3), (2, 3)]),
    D("gather_repeats", lambda x, i: tf.gather(x, i, axis=0), lambda t, x, i: x[i],
      lambda jnp, jax, x, i: x[i], [(4, 3), (6,)], ints={1: 4}),
    D("gather_axis1", lambda x, i: tf.gather(x, i, axis=1), lambda t, x, i: x[:, i],
      lambda jnp, jax, x, i: x[:, i], [(2, 5), (3, 2)], ints={1: 5}),
    D("getitem_slices", lambda x: x[1:, ::2, None, -1], lambda t, x: x[1:, ::2, None, -1],
      lambda jnp, jax, x: x[1:, ::2, None, -1], [(3, 5, 4)]),
    D("tile", lambda x: tf.tile(x, [2, 3]), lambda t, x: x.repeat(2, 3), lambda jnp, jax, x: jnp.tile(x, (2, 3)),
      [(2, 3)]),
    D("pad", lambda x: tf.pad(x, [[1, 0], [2, 1]]), lambda t, x: t.nn.functional.pad(x, (2, 1, 1, 0)),
      lambda jnp, jax, x: jnp.pad(x, ((1, 0), (2, 1))), [(2, 3)]),
    D("reverse", lambda x: tf.reverse(x, [1]), lambda t, x: t.flip(x, [1]), lambda jnp, jax, x: jnp.flip(x, 1),
      [(2, 3)]),
    D("broadcast_to", lambda x: tf.broadcast_to(x, (4, 2, 3)), lambda t, x: x.expand(4, 2, 3),
      lambda jnp, jax, x: jnp.broadcast_to(x, (4, 2, 3)), [(2, 1)]),
    D("where", lambda x, y: tf.where(x > 0, x * y, y - x), lambda t, x, y: t.where(x > 0, x * y, y - x),
      lambda jnp, jax, x, y: jnp.where(x > 0, x * y, y - x), [((3, 4), "away0"), (3, 4)]),
    D("clip_by_value", lambda x: tf.clip_by_value(x, -0.5, 0.7), lambda t, x: t.clamp(x, -0.5, 0.7),
      lambda jnp, jax, x: jnp.clip(x, -0.5, 0.7), [((4, 4), "distinct")]),
    D("composite_mlp", lambda x, w, b: tf.reduce_mean(tf.tanh(tf.matmul(x, w) + b) ** 2, axis=0),
      lambda t, x, w, b: (t.tanh(x @ w + b) ** 2).mean(0),
      lambda jnp, jax, x, w, b: (jnp.tanh(x @ w + b) ** 2).mean(0), [(5, 3), (3, 4), (4,)]),
]


@pytest.fixture(params=["torch", "jax"])
def framework(request):
    if request.param == "torch":
        torch = pytest.importorskip("torch")
        return "torch", torch
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp  # noqa: PLC0415
    import jax.scipy.special  # noqa: F401, PLC0415

    return "jax", (jax, jnp)


def _accel_vjp(case, arrays, r):
    ts = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        for t in ts:
            if t.dtype.is_floating:
                tape.watch(t)
        out = case.accel(*ts)
    gs = tape.gradient(out, ts, output_gradients=tf.constant(r), unconnected_gradients="zero")
    # gather's gradient may come back as IndexedSlices (as in TF): densify it
    return out.numpy(), [tf.convert_to_tensor(g).numpy() if a.dtype.kind == "f" else None for a, g in zip(arrays, gs)]


def _torch_vjp(torch, case, arrays, r):
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) if a.dtype.kind == "f" else torch.tensor(a)
          for a in arrays]
    out = case.torch(torch, *ts)
    out.backward(torch.tensor(r))
    return out.detach().numpy(), [t.grad.numpy() if a.dtype.kind == "f" else None for a, t in zip(arrays, ts)]


def _jax_vjp(jax, jnp, case, arrays, r):
    fl = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]

    def f(*floats):
        args = list(arrays)
        for i, v in zip(fl, floats):
            args[i] = v
        args = [jnp.asarray(a) for a in args]
        return case.jax(jnp, jax, *args)

    out, vjp = jax.vjp(f, *[jnp.asarray(arrays[i]) for i in fl])
    gs = vjp(jnp.asarray(r))
    grads = [None] * len(arrays)
    for i, g in zip(fl, gs):
        grads[i] = np.asarray(g)
    return np.asarray(out), grads


def _case(c):
    return c.values[0] if isinstance(c, type(pytest.param(None))) else c


@pytest.mark.parametrize("case", CASES, ids=[_case(c).name for c in CASES])
def test_forward_and_vjp_match(framework, case):
    name, mod = framework
    arrays = _arrays(case)
    out_a = case.accel(*[tf.constant(a) for a in arrays]).numpy()
    r = np.random.default_rng(1).standard_normal(out_a.shape)
    val_a, g_a = _accel_vjp(case, arrays, r)
    if name == "torch":
        if case.torch is None:
            pytest.skip("no torch formulation")
        val_o, g_o = _torch_vjp(mod, case, arrays, r)
    else:
        if case.jax is None:
            pytest.skip("no jax formulation")
        val_o, g_o = _jax_vjp(mod[0], mod[1], case, arrays, r)
    assert val_a.shape == val_o.shape, (val_a.shape, val_o.shape)
    assert val_a.dtype == np.float64
    np.testing.assert_allclose(val_a, val_o, rtol=case.rtol, atol=case.atol, err_msg="%s forward" % name)
    for i, (ga, go) in enumerate(zip(g_a, g_o)):
        if go is None:
            continue
        assert ga.shape == go.shape, (i, ga.shape, go.shape)
        np.testing.assert_allclose(ga, go, rtol=max(case.rtol, 1e-8), atol=max(case.atol, 1e-9),
                                   err_msg="%s gradient of input %d" % (name, i))


@pytest.mark.parametrize("case", [c for c in CASES if _case(c).name in ("tanh", "sigmoid", "exp", "log", "sin",
                                                                    "softplus", "multiply", "divide")],
                         ids=lambda c: c.name)
def test_second_order_matches(framework, case):
    """Hessian-vector products: d/dx <grad f(x), v> for f = sum(op(x) * r)."""
    name, mod = framework
    arrays = _arrays(case)
    shapes = [a.shape for a in arrays]
    rng = np.random.default_rng(2)
    out_shape = case.accel(*[tf.constant(a) for a in arrays]).shape
    r = rng.standard_normal(tuple(out_shape))
    vs = [rng.standard_normal(s) for s in shapes]

    ts = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as outer:
        outer.watch(ts)
        with tf.GradientTape() as inner:
            inner.watch(ts)
            y = tf.reduce_sum(case.accel(*ts) * tf.constant(r))
        gs = inner.gradient(y, ts)
        gv = tf.add_n([tf.reduce_sum(g * tf.constant(v)) for g, v in zip(gs, vs)]) if hasattr(tf, "add_n") else \
            sum(tf.reduce_sum(g * tf.constant(v)) for g, v in zip(gs, vs))
    hv_a = [tf.convert_to_tensor(h).numpy() for h in outer.gradient(gv, ts, unconnected_gradients="zero")]

    if name == "torch":
        torch = mod
        tts = [torch.tensor(a, requires_grad=True) for a in arrays]
        y = (case.torch(torch, *tts) * torch.tensor(r)).sum()
        gs = torch.autograd.grad(y, tts, create_graph=True)
        gv = sum((g * torch.tensor(v)).sum() for g, v in zip(gs, vs))
        hv_o = [h.numpy() for h in torch.autograd.grad(gv, tts, allow_unused=True)]
    else:
        jax, jnp = mod

        def f(*xs):
            return jnp.sum(case.jax(jnp, jax, *xs) * r)

        g = jax.grad(f, argnums=tuple(range(len(arrays))))
        _, hv = jax.jvp(g, tuple(jnp.asarray(a) for a in arrays), tuple(jnp.asarray(v) for v in vs))
        hv_o = [np.asarray(h) for h in hv]
    for a, o in zip(hv_a, hv_o):
        np.testing.assert_allclose(a, o, rtol=1e-8, atol=1e-9)
