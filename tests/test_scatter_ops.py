"""scatter_nd, tensor_scatter_nd_*, segment sums, cumprod, add_n, meshgrid, slice, strided_slice against
TF 2.21 (values recorded by tools/record_tf_scatter.py into tests/data/tf_scatter.npz), plus float64
gradient checks, second-order gradients through the rules, and bad inputs."""

import json
import os

import numpy as np
import pytest

import accel
from accel.errors import InvalidArgumentError
from tests.gradcheck import check_grads

DATA = np.load(os.path.join(os.path.dirname(__file__), "data", "tf_scatter.npz"))
TABLE = json.loads(str(DATA["table"]))
ERRORS = {"InvalidArgumentError": InvalidArgumentError, "ValueError": ValueError, "TypeError": TypeError}


def resolve(dotted):
    f = accel
    for part in dotted.split("."):
        f = getattr(f, part)
    return f


def build(spec):
    """The recorded call's arguments, with each stored array as an accel constant (on the current device)."""
    if isinstance(spec, dict) and "array" in spec:
        return accel.constant(DATA[spec["array"]])
    if isinstance(spec, list):
        return [build(s) for s in spec]
    return spec


def leaves(args):
    out = []
    for a in args:
        if isinstance(a, list):
            out += leaves(a)
        elif isinstance(a, accel.Tensor):
            out.append(a)
    return out


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_matches_tf(case, device):
    name = case["name"]
    args = build(case["args"])
    watched = [t for t in leaves(args) if t.dtype.is_floating]
    with accel.GradientTape(persistent=True) as tape:
        tape.watch(watched)
        res = resolve(case["fn"])(*args, **case["kwargs"])
    assert isinstance(res, list) == case["list_out"]
    outs = res if case["list_out"] else [res]
    assert len(outs) == case["n_out"]
    for j, o in enumerate(outs):
        want = DATA["%s/out%d" % (name, j)]
        got = o.numpy()
        assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    if not case["grads"]:
        return
    rs = [accel.constant(DATA["%s/r%d" % (name, j)]) for j in range(len(outs))]
    grads = tape.gradient(outs, watched, output_gradients=rs)
    assert [g is not None for g in grads] == case["grads"]
    for j, g in enumerate(grads):
        if g is not None:
            want = DATA["%s/grad%d" % (name, j)]
            got = accel.convert_to_tensor(g).numpy()
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg="gradient %d" % j)


# add_n sums with `+`, so a dtype mismatch is reported by "add:" (accel/ops/sorting.py checks only shapes)
KNOWN_GAPS = {}  # bad-input rows where accel is known to differ from TF (none now)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(reason=KNOWN_GAPS[c["name"]], strict=True))
                                  if c["name"] in KNOWN_GAPS else c for c in TABLE["bad"]],
                         ids=[c["name"] for c in TABLE["bad"]])
def test_bad_input_raises_like_tf(case, device):
    fn = case["fn"].split(".")[-1]
    with pytest.raises(ERRORS[case["tf_error"]]) as info:
        resolve(case["fn"])(*build(case["args"]), **case["kwargs"])
    msg = str(info.value)
    assert msg.startswith(fn + ":"), msg
    for part in case["names"]:
        assert part in msg, (part, msg)


def test_failed_or_done_scatter_leaves_the_input_alone(device):
    t = accel.constant([1.0, 2.0, 3.0, 4.0])
    v = accel.Variable([1.0, 2.0, 3.0, 4.0])
    for fn in (accel.tensor_scatter_nd_update, accel.tensor_scatter_nd_add, accel.tensor_scatter_nd_max):
        with pytest.raises(InvalidArgumentError):
            fn(t, [[0], [4]], [9.0, 9.0])
        fn(t, [[0], [3]], [9.0, 9.0])
        fn(v, [[1]], [9.0])
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0, 3.0, 4.0])


def test_update_with_repeats_keeps_the_last_on_large_inputs(device):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 50, (2000, 1)).astype(np.int32)
    upd = rng.standard_normal(2000).astype(np.float32)
    out = accel.tensor_scatter_nd_update(accel.zeros([50]), idx, upd).numpy()
    want = np.zeros(50, np.float32)
    for i, u in zip(idx[:, 0], upd):
        want[i] = u
    np.testing.assert_array_equal(out, want)


R = np.random.default_rng(7)


def rnd(*shape):
    return R.standard_normal(shape)


def distinct(*shape):
    """Values far apart, so no tie in min/max is within the finite-difference step."""
    return R.permutation(int(np.prod(shape))).reshape(shape) * 0.5 - 3.0


IDX_DUP = np.array([[2], [0], [2]], np.int32)
IDX_K2 = np.array([[0, 1], [2, 3], [0, 1]], np.int64)

GRAD_CASES = [
    ("scatter_nd", lambda u: accel.scatter_nd(IDX_DUP, u, [4, 2]), [rnd(3, 2)]),
    ("scatter_nd_k2", lambda u: accel.scatter_nd(IDX_K2, u, [3, 4]), [rnd(3)]),
    ("tensor_scatter_nd_update", lambda t, u: accel.tensor_scatter_nd_update(t, IDX_K2[:2], u), [rnd(3, 4), rnd(2)]),
    ("tensor_scatter_nd_add", lambda t, u: accel.tensor_scatter_nd_add(t, IDX_DUP, u), [rnd(4, 2), rnd(3, 2)]),
    ("tensor_scatter_nd_sub", lambda t, u: accel.tensor_scatter_nd_sub(t, IDX_K2, u), [rnd(3, 4), rnd(3)]),
    ("tensor_scatter_nd_min", lambda t, u: accel.tensor_scatter_nd_min(t, IDX_DUP, u),
     [distinct(4, 2), distinct(3, 2) + 0.25]),
    ("tensor_scatter_nd_max", lambda t, u: accel.tensor_scatter_nd_max(t, IDX_K2, u),
     [distinct(3, 4), distinct(3) + 0.25]),
    ("segment_sum", lambda d: accel.math.segment_sum(d, [0, 0, 1, 3]), [rnd(4, 2)]),
    ("unsorted_segment_sum", lambda d: accel.math.unsorted_segment_sum(d, [[2, -1], [0, 2]], 3), [rnd(2, 2, 3)]),
    ("cumprod", lambda x: accel.math.cumprod(x, axis=1), [rnd(2, 4)]),
    ("cumprod_exclusive_reverse", lambda x: accel.math.cumprod(x, 0, exclusive=True, reverse=True), [rnd(4, 2)]),
    ("meshgrid_xy", lambda a, b, c: accel.stack(accel.meshgrid(a, b, c)), [rnd(2), rnd(3), rnd(2)]),
    ("meshgrid_ij", lambda a, b: accel.stack(accel.meshgrid(a, b, indexing="ij")), [rnd(3), rnd(2)]),
    ("slice", lambda x: accel.slice(x, [1, 0], [-1, 2]), [rnd(3, 3)]),
    ("strided_slice", lambda x: accel.strided_slice(x, [2, 0], [0, 3], [-1, 2], shrink_axis_mask=0), [rnd(3, 3)]),
    ("strided_slice_shrink", lambda x: accel.strided_slice(x, [0, 1], [0, 3], [1, 1], begin_mask=1,
                                                           shrink_axis_mask=1, new_axis_mask=0), [rnd(3, 3)]),
    ("add_n", lambda a, b, c: accel.math.add_n([a, b, a * c]), [rnd(2, 2), rnd(2, 2), rnd(2, 2)]),
]


@pytest.mark.parametrize("f,arrays", [c[1:] for c in GRAD_CASES], ids=[c[0] for c in GRAD_CASES])
def test_gradients_match_finite_differences(f, arrays):
    check_grads(f, arrays)


def _grad_of(f, wrt):
    """f's first gradient with respect to input `wrt`, computed under the caller's tape (second order)."""
    def g(*ts):
        with accel.GradientTape() as tape:
            tape.watch(ts[wrt])
            y = accel.reduce_sum(accel.square(f(*ts)))
        return tape.gradient(y, ts[wrt])

    return g


SECOND_ORDER = [
    ("scatter_nd", lambda u: accel.scatter_nd(IDX_DUP, u * u, [4, 2]), [rnd(3, 2)], 0),
    ("tensor_scatter_nd_update", lambda t, u: accel.tensor_scatter_nd_update(t * u[0], IDX_K2[:2], u * u),
     [rnd(3, 4), rnd(2)], 1),
    ("tensor_scatter_nd_sub", lambda t, u: accel.tensor_scatter_nd_sub(t * t, IDX_K2, u), [rnd(3, 4), rnd(3)], 0),
    ("tensor_scatter_nd_max", lambda t, u: accel.tensor_scatter_nd_max(t, IDX_K2, u * u),
     [distinct(3, 4), distinct(3) * 0.3 + 0.1], 1),
    ("unsorted_segment_sum", lambda d: accel.math.unsorted_segment_sum(d * d, [1, -1, 1], 2), [rnd(3, 2)], 0),
    ("segment_sum", lambda d: accel.math.segment_sum(d * d, [0, 1, 1]), [rnd(3)], 0),
    ("cumprod", lambda x: accel.math.cumprod(x, axis=0, exclusive=True), [rnd(4)], 0),
]


@pytest.mark.parametrize("f,arrays,wrt", [c[1:] for c in SECOND_ORDER], ids=[c[0] for c in SECOND_ORDER])
def test_second_order_gradients(f, arrays, wrt):
    check_grads(_grad_of(f, wrt), arrays, rtol=1e-4, atol=1e-5)


def test_float32_gradients_stay_float32(device):
    t = accel.constant(np.ones((3, 2), np.float32))
    u = accel.constant(np.ones((2, 2), np.float32))
    fns = [lambda: accel.tensor_scatter_nd_max(t, [[0], [0]], u), lambda: accel.scatter_nd([[1], [1]], u, [3, 2]),
           lambda: accel.math.unsorted_segment_sum(u, [1, -1], 2), lambda: accel.math.cumprod(t, 1, exclusive=True)]
    for fn in fns:
        with accel.GradientTape() as tape:
            tape.watch([t, u])
            y = fn()
        assert y.dtype == accel.float32
        for g in tape.gradient(y, [t, u]):
            assert g is None or accel.convert_to_tensor(g).dtype == accel.float32
