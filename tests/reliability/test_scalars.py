"""0-d values, closed as a class: every op of the op table on 0-d inputs, and every Variable method on a
scalar Variable (inside and outside a tape), gives tensors that hold arrays, and each result feeds every
binary op. NumPy returns scalars (np.float32) from ufuncs on 0-d arrays; CuPy returns 0-d arrays, so both
backends must agree on this."""

import numpy as np
import pytest

import accel as tf
from accel import backend
from accel.errors import InvalidArgumentError
from tests.test_ops import CASES

BINARY = {
    "add": tf.add, "subtract": tf.subtract, "multiply": tf.multiply, "truediv": tf.truediv,
    "floordiv": tf.math.floordiv, "floormod": tf.math.floormod, "pow": tf.pow, "maximum": tf.maximum,
    "minimum": tf.minimum, "squared_difference": tf.math.squared_difference, "equal": tf.equal,
    "not_equal": tf.not_equal, "less": tf.less, "less_equal": tf.less_equal, "greater": tf.greater,
    "greater_equal": tf.greater_equal, "op+": lambda a, b: a + b, "op-": lambda a, b: a - b,
    "op*": lambda a, b: a * b, "op/": lambda a, b: a / b, "op**": lambda a, b: a ** b,
    "op//": lambda a, b: a // b, "op%": lambda a, b: a % b, "op<": lambda a, b: a < b,
}


def holds_array(t):
    data = t._data
    return type(data) is np.ndarray or backend.is_cupy_array(data)


def check_feeds_every_binary_op(t):
    """t (a result) combined with a 0-d tensor and a 0-d Variable of its dtype by every binary op."""
    assert holds_array(t), "%s holds %s, not an array" % (t, type(t._data).__name__)
    if t.dtype == tf.bool:
        for fn in (tf.logical_and, tf.logical_or, tf.logical_xor):
            assert holds_array(fn(t, tf.constant(True)))
        return
    other = tf.cast(tf.constant(2), t.dtype)
    var = tf.Variable(other)
    for name, fn in BINARY.items():
        if name in ("pow", "op**") and t.dtype.is_integer:
            continue  # TF: integers to negative powers are an error; covered by the int Variable table
        for y in (other, var):
            for args in ((t, y), (y, t)):
                out = fn(*args)
                assert holds_array(out), "%s(%s, %s) holds %s" % (name, args[0], args[1], type(out._data).__name__)


def scalar_inputs(case, rng):
    arrays = []
    for i, spec in enumerate(case.shapes):
        if i in case.ints:
            arrays.append(np.asarray(rng.integers(0, case.ints[i]), np.int32))
            continue
        tagged = isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], str)
        dom = spec[1] if tagged else "any"
        x = float(rng.standard_normal())
        x = {"pos": abs(x) + 0.5, "unit": np.tanh(x) * 0.9, "away0": x + (0.3 if x >= 0 else -0.3),
             "distinct": x}.get(dom, x)
        arrays.append(np.asarray(x, np.float32))
    return arrays


SCALAR_ERRORS = (InvalidArgumentError, ValueError, TypeError, IndexError)


@pytest.mark.parametrize("case", CASES, ids=[c.id or c.name for c in CASES])
def test_every_op_on_0d_inputs_gives_arrays_that_feed_every_binary_op(case, device):
    args = [tf.constant(a) for a in scalar_inputs(case, np.random.default_rng(0))]
    try:
        out = case.fn(*args)
    except SCALAR_ERRORS as e:
        # ops that need a rank (matmul, softmax over an axis, ...) must say so, not fail on a NumPy scalar
        assert "unsupported array type" not in str(e), str(e)
        pytest.skip("%s takes no 0-d inputs: %s" % (case.name, e))
    outs = out if isinstance(out, (list, tuple)) else [out]
    for o in outs:
        check_feeds_every_binary_op(o)
    floats = [t for t in args if t.dtype.is_floating]
    with tf.GradientTape() as tape:
        tape.watch(floats)
        y = case.fn(*args)
        total = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32)) for o in (y if isinstance(y, (list, tuple)) else [y])])
    for g in tape.gradient(total, floats):
        if g is not None:
            check_feeds_every_binary_op(tf.convert_to_tensor(g))


def test_the_0d_table_exercises_most_ops():
    rng = np.random.default_rng(0)
    ran = 0
    for case in CASES:
        try:
            case.fn(*[tf.constant(a) for a in scalar_inputs(case, rng)])
            ran += 1
        except SCALAR_ERRORS:
            pass
    assert ran >= 50, "only %d of %d op-table rows take 0-d inputs" % (ran, len(CASES))


# --- every Variable method on a scalar Variable ------------------------------------------------

VARIABLE_METHODS = {
    "assign": lambda v, d: v.assign(d),
    "assign_add": lambda v, d: v.assign_add(d),
    "assign_sub": lambda v, d: v.assign_sub(d),
    "assign_add_tensor": lambda v, d: v.assign_add(tf.cast(tf.constant(d), v.dtype)),
    "assign_no_read": lambda v, d: (v.assign(d, read_value=False), v)[1],
    "read_value": lambda v, d: v.read_value(),
    "value": lambda v, d: v.value(),
    "identity": lambda v, d: tf.identity(v),
    "convert": lambda v, d: tf.convert_to_tensor(v),
    "cast": lambda v, d: tf.cast(v, tf.int32),
    "negative": lambda v, d: -v,
    "abs": lambda v, d: abs(v),
    "square": lambda v, d: v * v,
    "reduce_sum": lambda v, d: tf.reduce_sum(v),
    "getitem": lambda v, d: v[()],
}


@pytest.mark.parametrize("in_tape", [False, True], ids=["eager", "in_tape"])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.int32, tf.int64])
@pytest.mark.parametrize("method", list(VARIABLE_METHODS))
def test_every_variable_method_on_a_scalar_variable(method, dtype, in_tape, device):
    v = tf.Variable(tf.cast(tf.constant(3), dtype))
    delta = 1 if dtype.is_integer else 1.0
    if in_tape:
        with tf.GradientTape() as tape:
            out = VARIABLE_METHODS[method](v, delta)
            y = v * 2  # the variable still works inside the tape after the call
    else:
        out = VARIABLE_METHODS[method](v, delta)
        y = v * 2
    assert holds_array(v), "%s left the Variable holding %s" % (method, type(v._data).__name__)
    assert holds_array(y)
    check_feeds_every_binary_op(out)
    check_feeds_every_binary_op(v)
    if in_tape and dtype.is_floating:
        assert float(tape.gradient(y, v)) == 2.0


def test_scalar_step_counter_and_metric_inside_a_tape():
    """The reports in the issue: a counter, a float Variable then `v ** 2`, a cast, a Keras metric."""
    step = tf.Variable(0)
    v = tf.Variable(0.0)
    loss_metric = tf.keras.metrics.Mean()
    for _ in range(3):
        with tf.GradientTape() as tape:
            v.assign_add(1.0)
            step.assign_add(1)
            loss = v ** 2
            loss_metric(loss)
        assert float(tape.gradient(loss, v)) == 2 * float(v)
    assert int(step) == 3 and int(tf.cast(v, tf.int32) + 1) == 4
    assert float(loss_metric.result()) == pytest.approx((1 + 4 + 9) / 3)
