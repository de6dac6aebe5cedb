"""Programs run on both TensorFlow 2.21 and accel: tools/record_tf_core.py records TF's results into
tests/data/tf_core.json, and tests/test_tf_core.py checks accel against them. Each case takes the
framework module and returns plain Python data (lists, floats, strings, None)."""

import os
import tempfile

import numpy as np


def _val(t):
    if t is None:
        return None
    if isinstance(t, (list, tuple)):
        return [_val(x) for x in t]
    a = np.asarray(t.numpy())
    return {"dtype": a.dtype.name, "value": a.tolist()}


# --- a target that is also a source --------------------------------------------------------------

def target_is_unwatched_variable(tf):
    v = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        pass
    return _val(tape.gradient(v, v))


def target_is_read_variable(tf):
    v = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        v * 1.0
    return _val(tape.gradient(v, v))


def target_is_unwatched_constant(tf):
    x = tf.constant(2.0)
    with tf.GradientTape() as tape:
        pass
    return _val(tape.gradient(x, x))


def target_list_with_source_and_result(tf):
    x = tf.constant(2.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = x * 3
    return _val(tape.gradient([x, y], x))


def variable_target_and_result(tf):
    v = tf.Variable([1.0, 2.0])
    with tf.GradientTape() as tape:
        y = v * 3
    return _val(tape.gradient([v, y], [v]))


def target_is_variable_not_watching_accessed(tf):
    v = tf.Variable(2.0)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        v * 2
    return _val(tape.gradient(v, v))


def target_is_source_with_output_gradients(tf):
    x = tf.constant([1.0, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
    return _val(tape.gradient(x, x, output_gradients=tf.constant([3.0, 4.0])))


def target_is_source_unconnected_zero(tf):
    v = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        pass
    return _val(tape.gradient(v, v, unconnected_gradients="zero"))


def read_value_gradient(tf):
    v = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        r = v.read_value()
    return _val(tape.gradient(r, v))


def target_is_one_of_two_sources(tf):
    x = tf.constant(2.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
    return _val(tape.gradient(x, [x, tf.constant(1.0)]))


def target_is_int_variable(tf):
    v = tf.Variable(3, dtype=tf.int32)
    with tf.GradientTape() as tape:
        pass
    return _val(tape.gradient(v, v))


def jacobian_of_unwatched_self(tf):
    x = tf.constant(2.0)
    with tf.GradientTape() as tape:
        pass
    return _val(tape.jacobian(x, x))


def jacobian_of_watched_self(tf):
    x = tf.constant([1.0, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
    return _val(tape.jacobian(x, x))


# --- custom_gradient ---------------------------------------------------------------------------

def custom_gradient_variable_argument(tf):
    @tf.custom_gradient
    def f(x):
        def grad(dy):
            return dy * 3
        return x * 2, grad

    v = tf.Variable(1.5)
    with tf.GradientTape() as tape:
        y = f(v)
    return [_val(y), _val(tape.gradient(y, v))]


def custom_gradient_reads_another_variable(tf):
    w = tf.Variable(2.0)

    @tf.custom_gradient
    def f(x):
        def grad(dy, variables=None):
            return dy * w, [dy * x * 10]
        return x * w, grad

    x = tf.constant(3.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = f(x)
    return _val(tape.gradient(y, [x, w]))


def custom_gradient_variable_argument_and_another(tf):
    w = tf.Variable(2.0)

    @tf.custom_gradient
    def f(x):
        def grad(dy, variables=None):
            return dy * 7, [dy * 100 for _ in variables]
        return x * w, grad

    v = tf.Variable(1.0)
    with tf.GradientTape() as tape:
        y = f(v)
    return _val(tape.gradient(y, [v, w]))


# --- scalars -----------------------------------------------------------------------------------

def scalar_variable_assign_add_in_tape_then_pow(tf):
    v = tf.Variable(0.0)
    with tf.GradientTape() as tape:
        v.assign_add(1.0)
        y = v ** 2
    return [_val(y), _val(tape.gradient(y, v))]


def int_counter_in_tape(tf):
    step = tf.Variable(0)
    with tf.GradientTape():
        step.assign_add(1)
    return _val(step + 1)


def cast_scalar_then_add(tf):
    return _val(tf.cast(tf.constant(1.5), tf.int32) + 1)


def keras_metric_in_tape(tf):
    m = tf.keras.metrics.Mean()
    with tf.GradientTape():
        m(tf.constant(2.0))
        m(tf.constant(4.0))
    return _val(m.result())


# --- print -------------------------------------------------------------------------------------

def _printed(tf, *args, **kw):
    """What tf.print writes (through 'file://', the stream TF accepts besides sys.stdout/stderr)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "out.txt")
        tf.print(*args, output_stream="file://" + path, **kw)
        with open(path) as f:
            return f.read()


def print_formats(tf):
    return [
        _printed(tf, tf.constant([1.0, 2.5, 3.0])),
        _printed(tf, "loss:", tf.constant(0.123456789), "step", 3),
        _printed(tf, tf.range(10)),
        _printed(tf, tf.reshape(tf.range(24.0), [4, 6])),
        _printed(tf, tf.constant([[1, 2], [3, 4]]), summarize=-1),
        _printed(tf, tf.constant([True, False]), tf.constant(1e-8), tf.constant(123456789.0),
                 tf.constant(np.float64(1 / 3))),
        _printed(tf, {"a": tf.constant(1)}, [1, tf.constant(2.0)], sep="|", end="!\n"),
        _printed(tf, tf.zeros([0]), tf.constant([1e10, 1e-3]), tf.constant(float("nan")), tf.constant(-float("inf"))),
        _printed(tf, tf.Variable([1.5, 2.0])),
        _printed(tf, tf.reshape(tf.range(8), [2, 2, 2]), tf.reshape(tf.range(64), [8, 8])),
        _printed(tf, tf.constant(0.1, tf.float16), tf.constant(2.5, tf.float64), tf.range(100), summarize=2),
    ]


# --- TensorSpec and devices ------------------------------------------------------------------------

def tensor_spec(tf):
    s = tf.TensorSpec([None, 3], tf.float32)
    return [str(s.shape), s.dtype.name, s.name, s.is_compatible_with(tf.zeros([2, 3])),
            s.is_compatible_with(tf.zeros([2, 4])), s.is_compatible_with(tf.zeros([2, 3], tf.int32)),
            s.is_compatible_with(tf.TensorSpec([5, 3])), s.is_compatible_with(tf.TensorSpec([5, None])),
            str(tf.TensorSpec.from_tensor(tf.zeros([2])).shape), tf.TensorSpec([]) == tf.TensorSpec(()),
            tf.TensorSpec([1]) == tf.TensorSpec([1], tf.int32), s.shape.is_fully_defined(), s.shape.as_list(),
            tf.TensorSpec(None).shape.rank, str(tf.TensorSpec(None).shape), tf.TensorSpec([2, 3], name="x").name]


def logical_cpu_devices(tf):
    return [[d.name, d.device_type] for d in tf.config.list_logical_devices("CPU")]


def soft_device_placement_default(tf):
    return tf.config.get_soft_device_placement()


CASES = {name: fn for name, fn in list(globals().items())
         if callable(fn) and not name.startswith("_") and getattr(fn, "__module__", None) == __name__}
