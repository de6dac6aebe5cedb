"""Property-based gradients: random expression graphs over broadcasting shapes, checked against float64
central finite differences (tests/gradcheck.py), against a NumPy interpretation of the same program, and
float32 against float64.

A program is a list of steps; each step applies one op to earlier values (inputs first). Shapes are
tracked while drawing, so every drawn program is valid. Ops with kinks (relu, abs, max) only see leaf
inputs, which are drawn away from 0 and from each other.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import accel as tf
from tests.gradcheck import check_grads


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _lse(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    r = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return r if keepdims else np.squeeze(r, axis=axis)


# name -> (accel fn, numpy fn); smooth everywhere
UNARY = {
    "tanh": (tf.tanh, np.tanh),
    "sigmoid": (tf.sigmoid, _sig),
    "exp_clipped": (lambda x: tf.exp(tf.tanh(x) * 2.0), lambda x: np.exp(np.tanh(x) * 2.0)),
    "softplus": (tf.nn.softplus, _softplus),
    "square": (tf.square, np.square),
    "sin": (tf.sin, np.sin),
    "cos": (tf.cos, np.cos),
    "neg_scale": (lambda x: -0.5 * x, lambda x: -0.5 * x),
    "log_pos": (lambda x: tf.math.log(1.0 + tf.square(x)), lambda x: np.log(1.0 + x * x)),
    "sqrt_pos": (lambda x: tf.sqrt(1.0 + tf.square(x)), lambda x: np.sqrt(1.0 + x * x)),
    "erf": (tf.math.erf, None),  # NumPy has no erf: reference via math.erf below
    "gelu": (lambda x: tf.nn.gelu(x, approximate=True),
             lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))),
}
# only on leaf inputs (|x| >= 0.2, so finite differences never cross the kink)
LEAF_UNARY = {
    "relu": (tf.nn.relu, lambda x: np.maximum(x, 0)),
    "abs": (tf.abs, np.abs),
    "leaky_relu": (lambda x: tf.nn.leaky_relu(x, 0.1), lambda x: np.where(x > 0, x, 0.1 * x)),
    "elu": (tf.nn.elu, lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0)))),
}
BINARY = {
    "add": (tf.add, np.add),
    "subtract": (tf.subtract, np.subtract),
    "multiply": (tf.multiply, np.multiply),
    "safe_divide": (lambda x, y: x / (1.0 + tf.square(y)), lambda x, y: x / (1.0 + y * y)),
    "squared_difference": (tf.math.squared_difference, lambda x, y: (x - y) ** 2),
    "pow_pos": (lambda x, y: tf.pow(1.0 + tf.square(x), tf.tanh(y)), lambda x, y: (1.0 + x * x) ** np.tanh(y)),
}
LEAF_BINARY = {
    "maximum": (tf.maximum, np.maximum),
    "minimum": (tf.minimum, np.minimum),
}
REDUCE = {
    "reduce_sum": (tf.reduce_sum, lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims)),
    "reduce_mean": (tf.reduce_mean, lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims)),
    "reduce_logsumexp": (tf.reduce_logsumexp, _lse),
    "reduce_prod": (tf.reduce_prod, lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims)),
}
LEAF_REDUCE = {
    "reduce_max": (tf.reduce_max, lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims)),
    "reduce_min": (tf.reduce_min, lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims)),
}


def _erf_np(x):
    import math

    return np.vectorize(math.erf, otypes=[np.float64])(x)


UNARY["erf"] = (tf.math.erf, _erf_np)


# --- drawing programs ---------------------------------------------------------------------------

@st.composite
def input_shapes(draw):
    """1-3 mutually broadcastable shapes: a base shape, each input dropping leading axes and setting
    some axes to 1."""
    rank = draw(st.sampled_from([2, 3, 1, 2, 3, 0]))
    base = draw(st.lists(st.integers(2, 3), min_size=rank, max_size=rank))
    n = draw(st.sampled_from([2, 3, 1]))
    shapes = []
    for _ in range(n):
        drop = draw(st.sampled_from([0, 0, 1, rank]) if rank else st.just(0))
        shp = [1 if draw(st.booleans()) and draw(st.booleans()) else d for d in base[drop:]]
        shapes.append(tuple(shp))
    return shapes


@st.composite
def programs(draw):
    shapes = draw(input_shapes())
    nodes = [(s, True) for s in shapes]  # (shape, is_leaf)
    steps = []
    for _ in range(draw(st.integers(3, 8))):
        kind = draw(st.sampled_from(["unary", "unary", "binary", "binary", "reduce", "shape", "matmul"]))
        i = draw(st.integers(0, len(nodes) - 1))
        shp, leaf = nodes[i]
        if kind == "binary":
            # half the time the second operand is an input, so kinked binary ops (max/min) get leaves
            j = draw(st.integers(0, len(shapes) - 1)) if draw(st.booleans()) else draw(st.integers(0, len(nodes) - 1))
            try:
                out = tuple(np.broadcast_shapes(shp, nodes[j][0]))
            except ValueError:
                kind = "unary"
            else:
                table = dict(BINARY, **(LEAF_BINARY if leaf and nodes[j][1] and i != j else {}))
                steps.append(("binary", draw(st.sampled_from(sorted(table))), (i, j), None))
                nodes.append((out, False))
                continue
        if kind == "reduce" and len(shp) > 0:
            table = dict(REDUCE, **(LEAF_REDUCE if leaf else {}))
            name = draw(st.sampled_from(sorted(table)))
            axes = draw(st.one_of(st.none(), st.lists(st.integers(-len(shp), len(shp) - 1), min_size=1,
                                                         max_size=len(shp), unique_by=lambda a, n=len(shp): a % n)))
            keepdims = draw(st.booleans())
            norm = range(len(shp)) if axes is None else [a % len(shp) for a in axes]
            out = tuple(1 if k in norm else d for k, d in enumerate(shp)) if keepdims else \
                tuple(d for k, d in enumerate(shp) if k not in norm)
            steps.append(("reduce", name, (i,), (axes, keepdims)))
            nodes.append((out, False))
            continue
        if kind == "shape" and len(shp) > 0:
            if draw(st.booleans()):
                perm = tuple(draw(st.permutations(range(len(shp)))))
                steps.append(("transpose", "transpose", (i,), perm))
                nodes.append((tuple(shp[p] for p in perm), leaf))
            else:
                target = draw(st.sampled_from([(-1,), tuple(reversed(shp)), (1,) + tuple(shp)]))
                steps.append(("reshape", "reshape", (i,), target))
                nodes.append(((int(np.prod(shp)),) if target == (-1,) else target, leaf))
            continue
        if kind == "matmul" and len(shp) >= 2:
            perm = tuple(range(len(shp) - 2)) + (len(shp) - 1, len(shp) - 2)
            steps.append(("matmul", "matmul", (i,), perm))
            nodes.append((tuple(shp[:-1]) + (shp[-2],), False))
            continue
        table = dict(UNARY, **(LEAF_UNARY if leaf else {}))
        steps.append(("unary", draw(st.sampled_from(sorted(table))), (i,), None))
        nodes.append((shp, False))
    return shapes, steps


def _leaf_values(draw, shapes):
    """Values in [-2, 2] with |x| >= 0.2 and all entries distinct by >= 0.01 (max/min/abs/relu well away
    from their kinks under a 1e-6 finite-difference step)."""
    total = sum(int(np.prod(s)) for s in shapes)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    grid = np.concatenate([np.arange(-2.0, -0.2, 0.013), np.arange(0.2, 2.0, 0.013)])
    vals = rng.choice(grid, size=total, replace=False) + rng.uniform(0, 0.002, size=total)
    out, k = [], 0
    for s in shapes:
        n = int(np.prod(s))
        out.append(vals[k:k + n].reshape(s).astype(np.float64))
        k += n
    return out


def run_accel(steps, xs):
    vals = list(xs)
    for kind, name, args, p in steps:
        a = [vals[i] for i in args]
        if kind == "unary":
            fn = {**UNARY, **LEAF_UNARY}[name][0]
            vals.append(fn(a[0]))
        elif kind == "binary":
            vals.append({**BINARY, **LEAF_BINARY}[name][0](a[0], a[1]))
        elif kind == "reduce":
            vals.append({**REDUCE, **LEAF_REDUCE}[name][0](a[0], axis=p[0], keepdims=p[1]))
        elif kind == "transpose":
            vals.append(tf.transpose(a[0], perm=list(p)))
        elif kind == "reshape":
            vals.append(tf.reshape(a[0], p))
        elif kind == "matmul":
            vals.append(tf.matmul(a[0], tf.transpose(a[0], perm=list(p))))
    return vals[-1]


def run_numpy(steps, xs):
    vals = list(xs)
    for kind, name, args, p in steps:
        a = [vals[i] for i in args]
        if kind == "unary":
            vals.append({**UNARY, **LEAF_UNARY}[name][1](a[0]))
        elif kind == "binary":
            vals.append({**BINARY, **LEAF_BINARY}[name][1](a[0], a[1]))
        elif kind == "reduce":
            axis = None if p[0] is None else tuple(x % a[0].ndim for x in p[0])
            vals.append(np.asarray({**REDUCE, **LEAF_REDUCE}[name][1](a[0], axis, p[1])))
        elif kind == "transpose":
            vals.append(np.transpose(a[0], p))
        elif kind == "reshape":
            vals.append(np.reshape(a[0], p))
        elif kind == "matmul":
            vals.append(np.matmul(a[0], np.transpose(a[0], p)))
    return vals[-1]


@st.composite
def cases(draw):
    shapes, steps = draw(programs())
    return shapes, steps, _leaf_values(draw, shapes)


SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow],
                print_blob=True)


@settings(max_examples=100, **SETTINGS)
@given(cases())
def test_random_graph_gradients_match_finite_differences(case):
    shapes, steps, xs = case
    f = lambda *ts: run_accel(steps, ts)  # noqa: E731
    out = f(*[tf.constant(x) for x in xs])
    # the forward agrees with NumPy on the same program
    np.testing.assert_allclose(out.numpy(), run_numpy(steps, xs), rtol=1e-12, atol=1e-12)
    assert out.dtype == tf.float64
    check_grads(f, xs, rtol=1e-5, atol=1e-6)


@settings(max_examples=60, **SETTINGS)
@given(cases())
def test_float32_forward_agrees_with_float64(case):
    shapes, steps, xs = case
    o64 = run_accel(steps, [tf.constant(x) for x in xs]).numpy()
    o32 = run_accel(steps, [tf.constant(x.astype(np.float32)) for x in xs]).numpy()
    assert o32.dtype == np.float32 and o32.shape == o64.shape
    scale = max(1.0, float(np.max(np.abs(o64), initial=0.0)))
    np.testing.assert_allclose(o32, o64, rtol=2e-4, atol=2e-4 * scale)


@settings(max_examples=40, **SETTINGS)
@given(cases())
def test_float32_gradients_agree_with_float64(case):
    shapes, steps, xs = case

    def grads(dt):
        ts = [tf.constant(x.astype(dt)) for x in xs]
        with tf.GradientTape() as tape:
            tape.watch(ts)
            out = tf.reduce_sum(run_accel(steps, ts))
        return [g.numpy() for g in tape.gradient(out, ts, unconnected_gradients="zero")]

    for g32, g64 in zip(grads(np.float32), grads(np.float64)):
        assert g32.dtype == np.float32 and g32.shape == g64.shape
        scale = max(1.0, float(np.max(np.abs(g64), initial=0.0)))
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-3 * scale)


@settings(max_examples=30, **SETTINGS)
@given(cases())
def test_persistent_tape_repeated_gradient_is_identical(case):
    """Calling gradient() twice on a persistent tape gives bitwise-identical results (no state consumed)."""
    shapes, steps, xs = case
    ts = [tf.constant(x) for x in xs]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(ts)
        out = run_accel(steps, ts)
    g1 = tape.gradient(out, ts, unconnected_gradients="zero")
    g2 = tape.gradient(out, ts, unconnected_gradients="zero")
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_program_generator_covers_every_op_and_shape_kind():
    """The strategy reaches every op, broadcasting with size-1 axes, and rank 0-3 (guards against a table
    entry or a shape pattern that never gets drawn)."""
    seen, kinds = set(), set()

    @settings(max_examples=400, database=None, **{k: v for k, v in SETTINGS.items() if k != "print_blob"})
    @given(programs())
    def draw(p):
        shapes, steps = p
        seen.update(s[1] for s in steps)
        kinds.update(len(s) for s in shapes)
        if len(shapes) > 1 and len({s for s in shapes}) > 1:
            kinds.add("broadcast")
        if any(1 in s for s in shapes):
            kinds.add("size-1")

    draw()
    every = set(UNARY) | set(LEAF_UNARY) | set(BINARY) | set(LEAF_BINARY) | set(REDUCE) | set(LEAF_REDUCE)
    every |= {"transpose", "reshape", "matmul"}
    assert every - seen == set(), "never drawn: %s" % sorted(every - seen)
    assert {0, 1, 2, 3, "broadcast", "size-1"} <= kinds, kinds


@pytest.mark.parametrize("name", sorted({**UNARY, **LEAF_UNARY}))
def test_each_unary_op_alone(name):
    fn, ref = {**UNARY, **LEAF_UNARY}[name]
    x = np.array([[-1.7, -0.4, 0.3], [0.9, 1.3, 1.9]])
    np.testing.assert_allclose(fn(tf.constant(x)).numpy(), ref(x), rtol=1e-12, atol=1e-14)
    check_grads(fn, [x])
