"""tape.explain and friends: each cause of a missing gradient is told apart, with the line."""

import warnings

import numpy as np
import pytest

import accel as tf
from accel import debugging as dbg


def cause(report):
    assert len(report) == 1
    return report[0].cause


def test_connected():
    w = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        y = w * w
    r = tape.explain(y, w)
    assert r[0].connected and "connected" in str(r).lower()


def test_constant_not_watched():
    x = tf.constant(3.0)
    with tf.GradientTape() as tape:
        y = x * x
    r = tape.explain(y, x)
    assert cause(r) == dbg.CONSTANT_NOT_WATCHED
    assert "tape.watch(x)" in r[0].fix


def test_variable_not_trainable():
    v = tf.Variable(1.0, trainable=False)
    with tf.GradientTape() as tape:
        y = v * 2
    r = tape.explain(y, v)
    assert cause(r) == dbg.NOT_TRAINABLE and "test_explain.py" in str(r)


def test_watch_accessed_variables_off():
    v = tf.Variable(1.0)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        y = v * 2
    assert cause(tape.explain(y, v)) == dbg.NOT_WATCHED_ACCESS_OFF


def test_target_computed_before_tape():
    v = tf.Variable(1.0)
    y = v * 2
    with tf.GradientTape() as tape:
        z = v + 0.0
    r = tape.explain(y, v)
    assert cause(r) == dbg.BEFORE_TAPE and "test_explain.py" in str(r)
    del z


def test_target_computed_after_tape_stopped():
    v = tf.Variable(1.0)
    with tf.GradientTape(persistent=True) as tape:
        _ = v * 1.0
    y = v * 2
    assert cause(tape.explain(y, v)) == dbg.AFTER_TAPE


def test_target_computed_inside_stop_recording():
    v = tf.Variable(1.0)
    with tf.GradientTape() as tape:
        with tape.stop_recording():
            y = v * 2
    r = tape.explain(y, v)
    assert cause(r) == dbg.IN_STOP_RECORDING and "stop_recording" in str(r)


@pytest.mark.parametrize("make, opname", [
    (lambda x: tf.cast(tf.argmax(tf.stack([x, 2 * x])), tf.float32), "argmax"),
    (lambda x: tf.cast(tf.cast(x, tf.int32), tf.float32), "cast to int32"),
    (lambda x: tf.round(x) * 2, "round"),
    (lambda x: tf.stop_gradient(x) * 2, "stop_gradient"),
    (lambda x: tf.cast(x > 0, tf.float32), "greater"),
])
def test_non_differentiable_op_is_named(make, opname):
    v = tf.Variable([1.5, -0.5])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(make(v))
    r = tape.explain(y, v)
    assert cause(r) == dbg.NON_DIFFERENTIABLE
    assert opname in r[0].message


def test_value_left_the_tape_through_numpy():
    v = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        with pytest.warns(dbg.TapeWarning, match="leaves the tape"):
            h = (v * 3).numpy()
        y = tf.constant(h) * 2
    r = tape.explain(y, v)
    assert cause(r) == dbg.LEFT_TAPE and "numpy()" in r[0].message


def test_python_name_rebound_to_a_tensor():
    x = tf.Variable(3.0)
    x = x + 1  # replaces the Variable by a plain tensor
    with tf.GradientTape() as tape:
        y = x * x
    r = tape.explain(y, x)
    assert cause(r) == dbg.NAME_REBOUND and "x = x + 1" in str(r)


def test_new_variable_under_the_same_name():
    w = tf.Variable(1.0)
    with tf.GradientTape() as tape:
        y = w * 2
    w = tf.Variable(1.0)  # a new Variable: not the one the tape saw
    r = tape.explain(y, w)
    assert cause(r) == dbg.NEW_VARIABLE


def test_integer_source():
    i = tf.Variable(3)
    with tf.GradientTape() as tape:
        y = tf.cast(i, tf.float32) * 2.0
    assert cause(tape.explain(y, i)) == dbg.INTEGER_SOURCE


def test_target_does_not_depend_on_source():
    a = tf.Variable(1.0)
    b = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        _ = b * 3.0
        y = a * 2.0
    assert cause(tape.explain(y, b)) == dbg.NOT_DEPENDENT


def test_tape_already_used_and_reset():
    a = tf.Variable(1.0)
    with tf.GradientTape() as tape:
        y = a * 2.0
    tape.gradient(y, a)
    assert cause(tape.explain(y, a)) == dbg.TAPE_USED
    with tf.GradientTape() as tape:
        y = a * 2.0
        tape.reset()
        z = a * 3.0
    assert cause(tape.explain(y, a)) == dbg.TAPE_RESET
    del z


def test_unconnected_raise_carries_the_report():
    x = tf.constant(1.0)
    v = tf.Variable(1.0)
    with tf.GradientTape() as tape:
        y = x * v
    with pytest.raises(dbg.MissingGradientError, match="tape.watch") as err:
        tape.gradient(y, [x, v], unconnected_gradients="raise")
    assert [r.cause for r in err.value.report] == [dbg.CONSTANT_NOT_WATCHED, dbg.CONNECTED]


def test_missing_cause_is_remembered_for_optimizers():
    v = tf.Variable(1.0, trainable=False)
    with tf.GradientTape() as tape:
        y = v * 2
    assert tape.gradient(y, v) is None
    assert dbg.missing_gradient_cause(v).cause == dbg.NOT_TRAINABLE


def test_warnings_at_the_moment_of_the_mistake():
    v = tf.Variable(1.0)
    with pytest.warns(dbg.TapeWarning, match="assigning"):
        with tf.GradientTape() as tape:
            y = v * 2
            v.assign(3.0)
    with pytest.warns(dbg.TapeWarning, match="floating"):
        with tf.GradientTape() as tape:
            tape.watch(tf.constant(1))
    with pytest.warns(dbg.TapeWarning, match="own `with` block"):
        with tf.GradientTape() as tape:
            y = v * 2
            tape.gradient(y, v)
    with pytest.warns(dbg.TapeWarning, match="leaves the tape"):
        with tf.GradientTape() as tape:
            float(v * 2)


def test_warnings_are_silenceable_and_normal_training_is_silent():
    v = tf.Variable(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with tf.GradientTape() as tape:
            y = v * 2
        g = tape.gradient(y, v)
        v.assign_sub(0.1 * g)
        float(y)
        warnings.filterwarnings("ignore", category=dbg.TapeWarning)
        with tf.GradientTape() as tape:
            float(v * 2)


def test_check_numerics():
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad value.*NaN"):
        dbg.check_numerics(tf.constant([1.0, np.nan]), "bad value")
    assert float(dbg.check_numerics(tf.constant(1.0), "ok")) == 1.0
    dbg.enable_check_numerics()
    try:
        with pytest.raises(tf.errors.InvalidArgumentError, match="'log'.*test_explain.py"):
            tf.math.log(tf.constant([-1.0, 1.0]))
        x = tf.constant(0.0)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.sqrt(x)
        with pytest.raises(tf.errors.InvalidArgumentError, match="gradient"):
            tape.gradient(y, x)
    finally:
        dbg.disable_check_numerics()
    tf.math.log(tf.constant([-1.0]))  # off again: no error


def test_part_using_the_source_computed_before_the_tape():
    w = tf.Variable(1.0)
    y = w * 2.0  # before the tape
    with tf.GradientTape() as tape:
        loss = y * y
    r = tape.explain(loss, w)
    assert cause(r) == dbg.BEFORE_TAPE and "before the tape started" in r[0].message


def test_optimizer_errors_carry_each_variables_cause():
    w = tf.Variable(1.0, name="w_opt")
    frozen = tf.Variable(0.0, name="frozen", trainable=False)
    with tf.GradientTape() as tape:
        loss = tf.constant(2.0) * 3.0 + frozen
    grads = tape.gradient(loss, [w, frozen])
    opt = tf.keras.optimizers.SGD(0.1)
    with pytest.raises(ValueError, match="No gradients provided for any variable") as err:
        opt.apply_gradients(zip(grads, [w, frozen]))
    msg = str(err.value)
    assert "w_opt:0" in msg and "trainable=False" in msg and "test_explain.py" in msg
    assert float(w) == 1.0 and int(opt.iterations) == 0
