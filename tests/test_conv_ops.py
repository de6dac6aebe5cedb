"""Convolution and pooling (accel/ops/conv.py, accel/keras/layers/conv.py) against TF 2.21 and Keras 3.

Recorded values: tools/record_tf_conv.py -> tests/data/tf_conv.npz (forward, and gradients of sum(out * r)).
Finite differences (float64) cover the stride/padding/dilation/format combinations, second order included.
"""

import json
import pathlib
from dataclasses import dataclass

import numpy as np
import pytest

import accel as tf
from accel.keras import layers
from tests.gradcheck import check_grads

DATA = np.load(pathlib.Path(__file__).parent / "data" / "tf_conv.npz", allow_pickle=False)
OP_CASES = sorted(k.split("/")[1] for k in DATA.files if k.startswith("op/") and k.endswith("/spec"))
LAYER_CASES = sorted(k.split("/")[1] for k in DATA.files if k.startswith("layer/") and k.endswith("/spec"))
RNG = np.random.default_rng(7)


def _run_op(name, ts):
    spec = json.loads(str(DATA["op/%s/spec" % name]))
    return getattr(tf.nn, spec["fn"])(*ts, **spec["args"])


@pytest.mark.parametrize("name", OP_CASES)
def test_op_matches_tf(name, device):
    key = "op/" + name
    spec = json.loads(str(DATA[key + "/spec"]))
    ts = [tf.constant(DATA["%s/in%d" % (key, i)]) for i in range(spec["n"])]
    with tf.GradientTape() as tape:
        tape.watch(ts)
        y = _run_op(name, ts)
        proj = tf.reduce_sum(y * tf.constant(DATA[key + "/r"]))
    grads = tape.gradient(proj, ts)
    assert y.dtype == tf.float32
    np.testing.assert_allclose(y.numpy(), DATA[key + "/out"], rtol=1e-5, atol=1e-5)
    for i, g in enumerate(grads):
        assert g.dtype == tf.float32
        np.testing.assert_allclose(g.numpy(), DATA["%s/grad%d" % (key, i)], rtol=1e-5, atol=1e-5,
                                   err_msg="gradient of input %d" % i)


@pytest.mark.parametrize("name", LAYER_CASES)
def test_layer_matches_keras(name, device):
    key = "layer/" + name
    spec = json.loads(str(DATA[key + "/spec"]))
    kwargs = {k: tuple(tuple(p) if isinstance(p, list) else p for p in v) if isinstance(v, list) else v
              for k, v in spec["kwargs"].items()}
    layer = getattr(layers, spec["cls"])(**kwargs)
    x = tf.constant(DATA[key + "/x"])
    layer(x)
    weights = [DATA["%s/w%d" % (key, i)] for i in range(spec["n_weights"])]
    assert [w.name.split("/")[-1].split(":")[0] for w in layer.weights] == spec["weight_names"]
    assert [tuple(w.shape) for w in layer.weights] == [w.shape for w in weights]
    layer.set_weights(weights)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        proj = tf.reduce_sum(y * tf.constant(DATA[key + "/r"]))
    grads = tape.gradient(proj, [x] + list(layer.trainable_weights))
    assert y.dtype == tf.float32
    np.testing.assert_allclose(y.numpy(), DATA[key + "/out"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[0].numpy(), DATA[key + "/gx"], rtol=1e-5, atol=1e-5)
    for i, g in enumerate(grads[1:]):
        np.testing.assert_allclose(g.numpy(), DATA["%s/gw%d" % (key, i)], rtol=1e-4, atol=1e-4,
                                   err_msg="gradient of weight %d" % i)


# --- finite differences (float64) -------------------------------------------------------------


@dataclass
class Case:
    name: str
    fn: object
    shapes: list
    distinct: bool = False  # values without ties (max pooling is not differentiable at a tie)

    def arrays(self):
        if self.distinct:
            n = int(np.prod(self.shapes[0]))
            return [RNG.permutation(n).reshape(self.shapes[0]) * 0.1]
        return [RNG.standard_normal(s) for s in self.shapes]


def _conv(**kw):
    return lambda x, w: tf.nn.conv2d(x, w, **kw)


GRAD_CASES = [
    Case("same_s1", _conv(strides=1, padding="SAME"), [(1, 4, 4, 2), (3, 3, 2, 2)]),
    Case("valid_s2", _conv(strides=2, padding="VALID"), [(2, 5, 6, 1), (2, 3, 1, 2)]),
    Case("same_s2_even", _conv(strides=2, padding="SAME"), [(1, 4, 4, 1), (3, 3, 1, 1)]),
    Case("same_s21", _conv(strides=[2, 1], padding="SAME"), [(1, 5, 3, 2), (2, 2, 2, 1)]),
    Case("valid_rows_left_over", _conv(strides=3, padding="VALID"), [(1, 6, 5, 1), (2, 2, 1, 2)]),
    Case("dilated_same", _conv(strides=1, padding="SAME", dilations=2), [(1, 5, 5, 1), (2, 3, 1, 2)]),
    Case("dilated_valid_21", _conv(strides=1, padding="VALID", dilations=[2, 1]), [(1, 5, 4, 2), (2, 2, 2, 1)]),
    Case("dilated_strided", _conv(strides=2, padding="SAME", dilations=2), [(1, 5, 5, 1), (2, 2, 1, 1)]),
    Case("explicit", _conv(strides=1, padding=[[0, 0], [2, 0], [1, 1], [0, 0]]), [(1, 3, 3, 1), (2, 2, 1, 2)]),
    Case("nchw", _conv(strides=[1, 1, 2, 1], padding="SAME", data_format="NCHW"), [(1, 2, 4, 3), (2, 2, 2, 2)]),
    Case("grouped", _conv(strides=1, padding="VALID"), [(1, 3, 3, 4), (2, 2, 2, 4)]),
    Case("size1_spatial", _conv(strides=1, padding="SAME"), [(2, 1, 1, 2), (3, 3, 2, 2)]),
    Case("kernel_over_input", _conv(strides=2, padding="SAME"), [(1, 1, 2, 1), (3, 3, 1, 2)]),
    Case("conv1d_same_s2", lambda x, w: tf.nn.conv1d(x, w, 2, "SAME"), [(2, 5, 2), (3, 2, 2)]),
    Case("conv1d_ncw_dilated", lambda x, w: tf.nn.conv1d(x, w, 1, "VALID", "NCW", dilations=2),
         [(1, 2, 6), (2, 2, 1)]),
    Case("transpose_same_s2", lambda x, w: tf.nn.conv2d_transpose(x, w, [1, 5, 6, 2], 2, "SAME"),
         [(1, 3, 3, 1), (3, 3, 2, 1)]),
    Case("transpose_valid_dilated", lambda x, w: tf.nn.conv2d_transpose(x, w, [1, 5, 4, 1], 1, "VALID", dilations=2),
         [(1, 3, 2, 2), (2, 2, 1, 2)]),
    Case("depthwise_s2", lambda x, w: tf.nn.depthwise_conv2d(x, w, [1, 2, 2, 1], "SAME"),
         [(1, 4, 4, 2), (3, 3, 2, 2)]),
    Case("depthwise_nchw_dilated", lambda x, w: tf.nn.depthwise_conv2d(x, w, 1, "VALID", "NCHW", dilations=2),
         [(1, 2, 4, 4), (2, 2, 2, 1)]),
    Case("max_pool_valid", lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"), [(1, 4, 5, 2)], distinct=True),
    Case("max_pool_same_overlap", lambda x: tf.nn.max_pool2d(x, 3, [2, 1], "SAME"), [(1, 4, 4, 1)], distinct=True),
    Case("max_pool_explicit", lambda x: tf.nn.max_pool2d(x, 2, 2, [[0, 0], [1, 0], [0, 1], [0, 0]]),
         [(1, 3, 3, 1)], distinct=True),
    Case("max_pool_nchw", lambda x: tf.nn.max_pool2d(x, 2, 1, "SAME", "NCHW"), [(1, 2, 3, 3)], distinct=True),
    Case("max_pool1d", lambda x: tf.nn.max_pool1d(x, 3, 2, "SAME"), [(1, 6, 2)], distinct=True),
    Case("avg_pool_same", lambda x: tf.nn.avg_pool2d(x, 3, 2, "SAME"), [(1, 4, 5, 1)]),
    Case("avg_pool_valid_nchw", lambda x: tf.nn.avg_pool2d(x, [2, 1], 1, "VALID", "NCHW"), [(1, 2, 3, 3)]),
    Case("avg_pool1d_ncw", lambda x: tf.nn.avg_pool1d(x, 2, 1, "SAME", "NCW"), [(1, 2, 4)]),
    Case("conv3d_same_s2", lambda x, w: tf.nn.conv3d(x, w, 2, "SAME"), [(1, 3, 4, 3, 2), (2, 2, 2, 2, 2)]),
    Case("conv3d_valid_dilated", lambda x, w: tf.nn.conv3d(x, w, 1, "VALID", dilations=[1, 2, 1]),
         [(1, 4, 3, 4, 1), (2, 2, 2, 1, 2)]),
    Case("conv3d_explicit_ncdhw", lambda x, w: tf.nn.conv3d(x, w, [1, 1, 2, 1, 1],
                                                            [[0, 0], [0, 0], [1, 0], [0, 1], [1, 1]], "NCDHW"),
         [(1, 2, 2, 3, 2), (2, 2, 2, 2, 1)]),
    Case("conv3d_grouped", lambda x, w: tf.nn.conv3d(x, w, 1, "VALID"), [(1, 2, 3, 3, 4), (1, 2, 2, 2, 4)]),
    Case("conv3d_size1_spatial", lambda x, w: tf.nn.conv3d(x, w, 1, "SAME"), [(2, 1, 1, 1, 2), (3, 3, 3, 2, 1)]),
    Case("conv3d_transpose_s2", lambda x, w: tf.nn.conv3d_transpose(x, w, [1, 3, 4, 3, 2], 2, "SAME"),
         [(1, 2, 2, 2, 1), (2, 2, 2, 2, 1)]),
    Case("conv3d_transpose_ncdhw_dilated",
         lambda x, w: tf.nn.conv3d_transpose(x, w, [1, 2, 4, 4, 4], 1, "VALID", "NCDHW", dilations=2),
         [(1, 1, 2, 2, 2), (2, 2, 2, 2, 1)]),
    Case("convolution_batch_dims", lambda x, w: tf.nn.convolution(x, w, padding="SAME"),
         [(2, 2, 3, 3, 1), (2, 2, 1, 2)]),
    Case("convolution_1d_dilated", lambda x, w: tf.nn.convolution(x, w, padding="SAME", dilations=2),
         [(1, 5, 2), (2, 2, 1)]),
    Case("max_pool3d_same", lambda x: tf.nn.max_pool3d(x, 2, [1, 2, 1], "SAME"), [(1, 3, 4, 3, 2)], distinct=True),
    Case("max_pool3d_explicit", lambda x: tf.nn.max_pool3d(x, 2, 2, [[0, 0], [1, 0], [0, 1], [1, 1], [0, 0]]),
         [(1, 2, 3, 2, 1)], distinct=True),
    Case("max_pool3d_ncdhw", lambda x: tf.nn.max_pool3d(x, [2, 1, 2], 1, "VALID", "NCDHW"), [(1, 2, 3, 2, 3)],
         distinct=True),
    Case("avg_pool3d_same", lambda x: tf.nn.avg_pool3d(x, 3, 2, "SAME"), [(1, 3, 4, 5, 1)]),
    Case("avg_pool3d_ncdhw_valid", lambda x: tf.nn.avg_pool3d(x, 2, [1, 1, 2], "VALID", "NCDHW"),
         [(1, 2, 3, 2, 4)]),
    Case("pool_max_dilated", lambda x: tf.nn.pool(x, [2, 2], "MAX", dilations=[2, 1]), [(1, 5, 4, 1)],
         distinct=True),
    Case("pool_avg_3d_dilated", lambda x: tf.nn.pool(x, [2, 1, 2], "AVG", dilations=[1, 1, 2]), [(1, 3, 3, 5, 1)]),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.name)
def test_gradients_match_finite_differences(case):
    check_grads(case.fn, case.arrays())


def _grad_of(fn, n_watch):
    """x -> the gradient of sum(sin(fn(x))) with respect to input k: second order under an outer tape."""
    def g(*xs):
        with tf.GradientTape() as tape:
            tape.watch(list(xs))
            y = tf.reduce_sum(tf.sin(fn(*xs)))
        return tape.gradient(y, xs[n_watch])
    return g


SECOND_ORDER = [c for c in GRAD_CASES if c.name in (
    "same_s2_even", "dilated_valid_21", "nchw", "grouped", "transpose_same_s2", "depthwise_s2", "max_pool_same_overlap",
    "avg_pool_same", "conv3d_same_s2", "conv3d_grouped", "conv3d_transpose_s2", "max_pool3d_same", "avg_pool3d_same",
    "pool_max_dilated")]


@pytest.mark.parametrize("case", SECOND_ORDER, ids=lambda c: c.name)
def test_second_order_gradients_match_finite_differences(case):
    arrays = case.arrays()
    for k in range(len(arrays)):
        check_grads(_grad_of(case.fn, k), arrays, rtol=1e-4, atol=1e-5)


def test_max_pool_gradient_goes_to_the_first_maximum_of_each_window():
    x = tf.constant(np.array([[0, 2, 2], [2, 2, 0], [1, 2, 2]], np.float32).reshape(1, 3, 3, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.nn.max_pool2d(x, 2, 1, "VALID")
    g = tape.gradient(y, x).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(g, [[0, 2, 0], [1, 1, 0], [0, 0, 0]])  # TF 2.21's result


def _first_max_routing(x, g, k, s, padding):
    """max_pool's gradient by loops: each window's output gradient to np.argmax of the window (the first
    maximum in row-major order; a window holding NaN: its first NaN), padding never winning."""
    n, h, w, c = x.shape
    oh, ow = g.shape[1:3]
    ph = max((oh - 1) * s + k - h, 0) // 2 if padding == "SAME" else 0
    pw = max((ow - 1) * s + k - w, 0) // 2 if padding == "SAME" else 0
    gx = np.zeros_like(x)
    for b, i, j, ch in np.ndindex(n, oh, ow, c):
        cells = [(r, q) for r in range(i * s - ph, i * s - ph + k) for q in range(j * s - pw, j * s - pw + k)
                 if 0 <= r < h and 0 <= q < w]
        r, q = cells[int(np.argmax([x[b, r, q, ch] for r, q in cells]))]
        gx[b, r, q, ch] += g[b, i, j, ch]
    return gx


@pytest.mark.parametrize("k,s,padding,nan", [(2, 2, "VALID", False), (2, 1, "VALID", False),
                                             (3, 2, "SAME", False), (3, 1, "SAME", True), (2, 2, "VALID", True)])
def test_max_pool_gradient_with_many_ties_and_nans_matches_argmax_routing(k, s, padding, nan):
    x = RNG.integers(0, 3, (2, 7, 6, 3)).astype(np.float32)  # values 0..2: most windows tie
    if nan:
        x[RNG.random(x.shape) < 0.1] = np.nan
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.nn.max_pool2d(xt, k, s, padding)
    g = RNG.standard_normal(y.shape).astype(np.float32)
    got = tape.gradient(y, xt, output_gradients=tf.constant(g)).numpy()
    np.testing.assert_allclose(got, _first_max_routing(x, g, k, s, padding), rtol=1e-6, atol=1e-6)
    with tf.GradientTape() as tape:  # 1-D: the same windows along one axis
        tape.watch(xt)
        y1 = tf.nn.max_pool1d(xt[:, 0], k, s, padding)
    g1 = RNG.standard_normal(y1.shape).astype(np.float32)
    got1 = tape.gradient(y1, xt, output_gradients=tf.constant(g1)).numpy()[:, 0]
    want = np.zeros_like(x[:, 0])
    pad = max((y1.shape[1] - 1) * s + k - x.shape[2], 0) // 2 if padding == "SAME" else 0
    for b, i, ch in np.ndindex(x.shape[0], y1.shape[1], x.shape[3]):
        cells = [q for q in range(i * s - pad, i * s - pad + k) if 0 <= q < x.shape[2]]
        want[b, cells[int(np.argmax(x[b, 0, cells, ch]))], ch] += g1[b, i, ch]
    np.testing.assert_allclose(got1, want, rtol=1e-6, atol=1e-6)


def test_same_padding_never_wins_a_max_window():
    x = tf.constant(-np.ones((1, 2, 2, 1), np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.nn.max_pool2d(x, 3, 1, "SAME")
    np.testing.assert_array_equal(y.numpy(), -np.ones((1, 2, 2, 1)))
    np.testing.assert_array_equal(tape.gradient(y, x).numpy()[0, :, :, 0], [[4, 0], [0, 0]])


def test_max_pool3d_gradient_goes_to_every_maximum_of_each_window():
    x = tf.constant(np.array([0, 2, 2, 1, 2, 0, 0, 2], np.float32).reshape(1, 2, 2, 2, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.nn.max_pool3d(x, 2, 2, "VALID")
    np.testing.assert_array_equal(tape.gradient(y, x).numpy().ravel(), [0, 1, 1, 0, 1, 0, 0, 1])  # TF 2.21's


def test_float64_stays_float64():
    x, w = tf.constant(RNG.standard_normal((1, 3, 3, 2))), tf.constant(RNG.standard_normal((2, 2, 2, 1)))
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = tf.nn.conv2d(x, w, 1, "SAME")
    assert y.dtype == tf.float64 and all(g.dtype == tf.float64 for g in tape.gradient(y, [x, w]))


# --- errors --------------------------------------------------------------------------------

X4 = np.zeros((1, 5, 5, 4), np.float32)
W4 = np.zeros((3, 3, 4, 2), np.float32)
X5 = np.zeros((1, 3, 3, 3, 4), np.float32)
W5 = np.zeros((2, 2, 2, 4, 2), np.float32)
W5T = np.zeros((2, 2, 2, 2, 4), np.float32)
ERRORS = [
    ("input rank", lambda: tf.nn.conv2d(X4[0], W4, 1, "SAME"), tf.errors.InvalidArgumentError, "input must be 4-dim"),
    ("filter rank", lambda: tf.nn.conv2d(X4, W4[0], 1, "SAME"), tf.errors.InvalidArgumentError,
     "filter must be 4-dim"),
    ("channels", lambda: tf.nn.conv2d(X4, np.zeros((3, 3, 3, 2), np.float32), 1, "SAME"),
     tf.errors.InvalidArgumentError, "evenly divisible by filter depth: 4 vs 3"),
    ("groups out", lambda: tf.nn.conv2d(X4, np.zeros((3, 3, 2, 3), np.float32), 1, "SAME"),
     tf.errors.InvalidArgumentError, "divisible by the number of groups"),
    ("zero stride", lambda: tf.nn.conv2d(X4, W4, 0, "SAME"), tf.errors.InvalidArgumentError,
     "strides must be positive"),
    ("batch stride", lambda: tf.nn.conv2d(X4, W4, [2, 1, 1, 1], "SAME"), tf.errors.InvalidArgumentError,
     "batch and channel"),
    ("padding name", lambda: tf.nn.conv2d(X4, W4, 1, "FULL"), tf.errors.InvalidArgumentError, "'SAME', 'VALID'"),
    ("lowercase padding", lambda: tf.nn.conv2d(X4, W4, 1, "same"), tf.errors.InvalidArgumentError, "got 'same'"),
    ("negative explicit", lambda: tf.nn.conv2d(X4, W4, 1, [[0, 0], [-1, 0], [0, 0], [0, 0]]),
     tf.errors.InvalidArgumentError, "nonnegative"),
    ("explicit shape", lambda: tf.nn.conv2d(X4, W4, 1, [[1, 1], [1, 1]]), tf.errors.InvalidArgumentError,
     "4 pairs"),
    ("window too big", lambda: tf.nn.conv2d(X4, np.zeros((7, 3, 4, 2), np.float32), 1, "VALID"),
     tf.errors.InvalidArgumentError, "does not fit"),
    ("dtype mix", lambda: tf.nn.conv2d(X4.astype(np.float64), W4, 1, "SAME"), tf.errors.InvalidArgumentError,
     "same dtype"),
    ("data format", lambda: tf.nn.conv2d(X4, W4, 1, "SAME", data_format="NWC"), tf.errors.InvalidArgumentError,
     "data_format"),
    ("depthwise dilated strided", lambda: tf.nn.depthwise_conv2d(X4, W4, [1, 2, 2, 1], "SAME", dilations=2),
     tf.errors.InvalidArgumentError, "dilations > 1 require all strides to be 1"),
    ("depthwise channels", lambda: tf.nn.depthwise_conv2d(X4, np.zeros((3, 3, 2, 2), np.float32), 1, "SAME"),
     tf.errors.InvalidArgumentError, "must equal the filter's in_channels"),
    ("transpose size", lambda: tf.nn.conv2d_transpose(X4, np.zeros((3, 3, 2, 4), np.float32), [1, 12, 12, 2], 2),
     tf.errors.InvalidArgumentError, r"spatial size \(5, 5\) does not match the size \(6, 6\)"),
    ("transpose channels", lambda: tf.nn.conv2d_transpose(X4, W4, [1, 10, 10, 3], 2),
     tf.errors.InvalidArgumentError, "in_channels"),
    ("conv1d rank", lambda: tf.nn.conv1d(X4, W4, 1, "SAME"), tf.errors.InvalidArgumentError, "3-dim"),
    ("pool stride", lambda: tf.nn.max_pool2d(X4, 2, 0, "SAME"), tf.errors.InvalidArgumentError,
     "strides must be positive"),
    ("pool rank", lambda: tf.nn.max_pool2d(X4[0], 2, 2, "SAME"), tf.errors.InvalidArgumentError, "4-dim"),
    ("avg explicit", lambda: tf.nn.avg_pool2d(X4, 2, 2, [[0, 0], [1, 1], [1, 1], [0, 0]]),
     tf.errors.InvalidArgumentError, "'SAME' or 'VALID'"),
    ("generic 4 spatial", lambda: tf.nn.max_pool(np.zeros((1, 2, 2, 2, 2, 1), np.float32), 2, 2, "SAME"),
     tf.errors.InvalidArgumentError, "3-, 4- or 5-dimensional"),
    ("conv3d input rank", lambda: tf.nn.conv3d(X5[0], W5, 1, "SAME"), tf.errors.InvalidArgumentError,
     r"input must be 5-dimensional \(NDHWC\)"),
    ("conv3d filter rank", lambda: tf.nn.conv3d(X5, W5[0], 1, "SAME"), tf.errors.InvalidArgumentError,
     r"filter must be 5-dimensional \(\[depth, height, width, in_channels, out_channels\]\)"),
    ("conv3d channels", lambda: tf.nn.conv3d(X5, np.zeros((2, 2, 2, 3, 2), np.float32), 1, "SAME"),
     tf.errors.InvalidArgumentError, "evenly divisible by filter depth: 4 vs 3"),
    ("conv3d negative stride", lambda: tf.nn.conv3d(X5, W5, [1, -1, 1], "SAME"), tf.errors.InvalidArgumentError,
     "strides must be positive"),
    ("conv3d zero dilation", lambda: tf.nn.conv3d(X5, W5, 1, "SAME", dilations=0), tf.errors.InvalidArgumentError,
     "dilations must be positive"),
    ("conv3d stride count", lambda: tf.nn.conv3d(X5, W5, [1, 1], "SAME"), tf.errors.InvalidArgumentError,
     "strides must be an int or a list of 1, 3 or 5 ints"),
    ("conv3d padding", lambda: tf.nn.conv3d(X5, W5, 1, "same"), tf.errors.InvalidArgumentError, "padding must be"),
    ("conv3d explicit count", lambda: tf.nn.conv3d(X5, W5, 1, [[0, 0], [1, 1], [0, 0], [0, 0]]),
     tf.errors.InvalidArgumentError, "5 pairs"),
    ("conv3d data_format", lambda: tf.nn.conv3d(X5, W5, 1, "SAME", data_format="NHWC"),
     tf.errors.InvalidArgumentError, "data_format must be 'NDHWC' or 'NCDHW', got 'NHWC'"),
    ("conv3d window", lambda: tf.nn.conv3d(X5, np.zeros((5, 2, 2, 4, 2), np.float32), 1, "VALID"),
     tf.errors.InvalidArgumentError, "does not fit"),
    ("conv3d_transpose output rank", lambda: tf.nn.conv3d_transpose(X5, W5T, [1, 6, 6, 4], 2),
     tf.errors.InvalidArgumentError, "output_shape must have 5 elements"),
    ("conv3d_transpose size", lambda: tf.nn.conv3d_transpose(X5, W5T, [1, 9, 6, 6, 2], 2),
     tf.errors.InvalidArgumentError, r"spatial size \(3, 3, 3\) does not match the size \(5, 3, 3\)"),
    ("conv3d_transpose channels", lambda: tf.nn.conv3d_transpose(X5, W5T, [1, 6, 6, 6, 3], 2),
     tf.errors.InvalidArgumentError, "output_shape's channels"),
    ("pool3d rank", lambda: tf.nn.max_pool3d(X4, 2, 2, "SAME"), tf.errors.InvalidArgumentError, "5-dim"),
    ("pool3d ksize", lambda: tf.nn.avg_pool3d(X5, [2, 0, 2], 1, "SAME"), tf.errors.InvalidArgumentError,
     "ksize must be positive"),
    ("pool3d data_format", lambda: tf.nn.max_pool3d(X5, 2, 2, "SAME", "NCHW"), tf.errors.InvalidArgumentError,
     "data_format"),
    ("avg3d explicit", lambda: tf.nn.avg_pool3d(X5, 2, 2, [[0, 0], [1, 1], [1, 1], [0, 0], [0, 0]]),
     tf.errors.InvalidArgumentError, "'SAME' or 'VALID'"),
    ("convolution filter rank", lambda: tf.nn.convolution(X5, X5[..., None]), tf.errors.InvalidArgumentError,
     "filters must be 3-, 4- or 5-dimensional"),
    ("convolution input rank", lambda: tf.nn.convolution(X4, W5), tf.errors.InvalidArgumentError,
     "input must have at least 5 dimensions"),
    ("convolution dilated strided", lambda: tf.nn.convolution(X5, W5, strides=2, dilations=2),
     tf.errors.InvalidArgumentError, "strides > 1 are not supported together with dilations > 1"),
    ("convolution data_format", lambda: tf.nn.convolution(X5, W5, data_format="NHWC"),
     tf.errors.InvalidArgumentError, "data_format must be 'NDHWC'"),
    ("convolution channels", lambda: tf.nn.convolution(X4, np.zeros((2, 2, 3, 2), np.float32)),
     tf.errors.InvalidArgumentError, "4 vs 3"),
    ("pool type", lambda: tf.nn.pool(X4, [2, 2], "max"), tf.errors.InvalidArgumentError,
     "pooling_type must be 'MAX' or 'AVG', got 'max'"),
    ("pool window", lambda: tf.nn.pool(X4, 2, "MAX"), tf.errors.InvalidArgumentError,
     "window_shape must be a list of 1, 2 or 3 ints, got 2"),
    ("pool window rank", lambda: tf.nn.pool(X4, [2], "MAX"), tf.errors.InvalidArgumentError, "3-dim"),
    ("pool dilated same", lambda: tf.nn.pool(X4, [2, 2], "AVG", padding="SAME", dilations=2),
     tf.errors.InvalidArgumentError, "dilations > 1 need padding 'VALID'"),
    ("pool dilated strided", lambda: tf.nn.pool(X4, [2, 2], "MAX", strides=2, dilations=2),
     tf.errors.InvalidArgumentError, "strides > 1 are not supported together with dilations > 1"),
    ("layer dilated strided", lambda: layers.Conv2D(2, 3, strides=2, dilation_rate=2), ValueError,
     "strides > 1` not supported in conjunction with `dilation_rate > 1"),
    ("layer groups", lambda: layers.Conv2D(3, 3, groups=2), ValueError, "divisible by the number of groups"),
    ("layer causal 2d", lambda: layers.Conv2D(2, 3, padding="causal"), ValueError, "padding"),
    ("layer input channels", lambda: layers.Conv2D(2, 3, groups=2)(np.zeros((1, 4, 4, 3), np.float32)), ValueError,
     "input channels"),
    ("layer rank", lambda: layers.Conv1D(2, 3)(np.zeros((1, 4, 4, 3), np.float32)), ValueError, "3-D"),
    ("layer data_format", lambda: layers.MaxPooling2D(data_format="NHWC"), ValueError, "data_format"),
    ("crop everything", lambda: layers.Cropping2D(2)(np.zeros((1, 4, 4, 1), np.float32)), ValueError,
     "leaves nothing"),
]


@pytest.mark.parametrize("fn, error, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_arguments_raise_clear_errors(fn, error, match):
    with pytest.raises(error, match=match):
        fn()


def test_layer_rejects_new_channel_count_after_build():
    conv = layers.Conv2D(2, 3)
    conv(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="expected 3 channels"):
        conv(np.zeros((1, 4, 4, 2), np.float32))


def test_conv_ops_call_only_cupy_functions(monkeypatch):
    """The GPU path without a GPU: the table's forward and backward run through a recording NumPy whose
    calls must all exist in CuPy with those keywords (as tests/test_cupy_namespace.py does for test_ops)."""
    pytest.importorskip("cupy")
    from accel.ops import core
    from tests.gradcheck import analytic_vjp
    from tests.test_cupy_namespace import Recording, _kw_ok, _resolve

    log = {}
    monkeypatch.setattr(core, "_NUMPY", Recording(np, "", log))
    monkeypatch.setattr(core, "_ARRAY_NS", {})
    for case in GRAD_CASES:
        arrays = case.arrays()
        out = case.fn(*[tf.constant(a) for a in arrays])
        analytic_vjp(case.fn, arrays, np.ones(out.shape))
    assert "lib.stride_tricks.as_strided" in log and "matmul" in log, sorted(log)
    problems = [name for name, kws in log.items() if _resolve(name) is None or kws and not _kw_ok(_resolve(name), kws)]
    assert not problems, problems


def test_bench_conv_variants_agree():
    """bench/bench_conv.py times the same step in each variant: accel's, the previous Conv2D and the NumPy floor."""
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from bench import bench_conv

    want = bench_conv.numpy_floor()()
    for make in (bench_conv.accel_layer, bench_conv.accel_slices):
        for got, ref in zip(make()(), want):
            np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("shape,ksize,strides,pads", [
    ((7, 9, 9, 3), (3, 3), (1, 1), ((1, 1), (1, 1))),
    ((6, 20, 4), (5,), (2,), ((2, 2),)),
    ((5, 4, 5, 4, 2), (2, 2, 2), (1, 2, 1), ((0, 0), (1, 0), (0, 1))),
    ((0, 5, 5, 2), (3, 3), (1, 1), ((0, 0), (0, 0))),  # an empty batch
], ids=["2d", "1d-strided", "3d", "empty"])
def test_host_convolutions_in_batch_chunks_equal_one_chunk(monkeypatch, shape, ksize, strides, pads):
    """Host convolutions run their GEMMs over chunks of the batch (conv._chunks): forward and input gradient
    bitwise equal to one chunk, the filter gradient (summed over chunks) to rounding; float64 gradients
    against finite differences with a chunk per image."""
    from accel.ops import conv

    x = RNG.standard_normal(shape).astype(np.float32)
    w = RNG.standard_normal(ksize + (shape[-1], 4)).astype(np.float32)
    geo = dict(strides=strides, dilations=(1,) * len(ksize), pads=pads)
    y = conv._conv_fwd(np, x, w, **geo)
    g = RNG.standard_normal(y.shape).astype(np.float32)
    results = {}
    for rows in (1, 10 ** 9):  # a chunk per image; one chunk
        monkeypatch.setattr(conv, "_CHUNK_ROWS", rows)
        assert len(conv._chunks(np, shape[0], int(np.prod(y.shape[1:-1])))) == (max(shape[0], 1) if rows == 1 else 1)
        results[rows] = (conv._conv_fwd(np, x, w, **geo), conv._input_grad_fwd(np, g, w, x.shape, **geo),
                         conv._filter_grad_fwd(np, x, g, w.shape, **geo))
    (y1, ig1, fg1), (y2, ig2, fg2) = results[1], results[10 ** 9]
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(ig1, ig2)
    np.testing.assert_allclose(fg1, fg2, rtol=1e-5, atol=1e-5)
    if shape[0]:
        monkeypatch.setattr(conv, "_CHUNK_ROWS", 1)
        x64, w64 = x[:2].astype(np.float64), w.astype(np.float64)
        padding = [[0, 0]] + [list(p) for p in pads] + [[0, 0]]
        check_grads(lambda a, b: tf.reduce_sum(tf.nn.convolution(a, b, strides=list(strides), padding=padding) ** 2),
                    [x64, w64], rtol=1e-4, atol=1e-5)
