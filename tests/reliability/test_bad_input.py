"""Bad input, clear errors: a table of wrong calls across the public API.

Each row names the exception class the call must raise and a regex the message must match (the argument,
shape or dtype involved). Rows that touch state (variables, optimizers, layers) also check that nothing
changed: the value, the optimizer's iterations and slots, the layer's weights.

Rows marked xfail are accel bugs found by this table (see the reason); flip them when fixed.
"""

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import accel as tf
from accel.errors import InvalidArgumentError

IAE = InvalidArgumentError


def f32(*shape):
    return tf.constant(np.ones(shape, np.float32))


def f64(*shape):
    return tf.constant(np.ones(shape, np.float64))


def i32(values):
    return tf.constant(np.asarray(values, np.int32))


@dataclass
class Bad:
    id: str
    exc: type
    match: str  # regex the message must contain (re.search)
    setup: object  # () -> (action, snapshot or None); snapshot() -> comparable state
    bug: str = ""  # non-empty: a known accel bug (strict xfail)


def call(fn):
    """A stateless row: the action is fn itself."""
    return lambda: (fn, None)


# --- stateful helpers --------------------------------------------------------------------------

def _arrays(*xs):
    return [np.array(x.numpy(), copy=True) for x in xs]


def var_row(init, op):
    """A Variable, then `op(v)`; the value must be untouched afterwards."""
    def setup():
        v = tf.Variable(init)
        return (lambda: op(v)), (lambda: _arrays(v))
    return setup


def opt_state(o, variables):
    state = [int(o.iterations.numpy())] + _arrays(*variables)
    state += [(k, np.array(a, copy=True)) for k, a in sorted(o.get_state().items())] if o.built else ["unbuilt"]
    return state


def optimizer_row(make_opt, grads_for, n_vars=2, prestep=True, call_apply=None):
    """Two float32 variables, an optimizer (optionally stepped once so slots exist), then a bad apply.

    grads_for(vars) -> the list of (grad, var) pairs (or call_apply(o, vars) does the call)."""
    def setup():
        vs = [tf.Variable(np.arange(3, dtype=np.float32) + i, name="w%d" % i) for i in range(n_vars)]
        o = make_opt()
        if prestep:
            o.apply_gradients([(tf.ones_like(v), v) for v in vs])
        if call_apply is not None:
            action = lambda: call_apply(o, vs)  # noqa: E731
        else:
            action = lambda: o.apply_gradients(grads_for(vs))  # noqa: E731
        return action, (lambda: opt_state(o, vs))
    return setup


def _opt():
    return tf.optimizers.Adam(0.1)


def model_row(op):
    """A built 4 -> 3 -> 2 Sequential; op(model) must fail and leave every weight as it was."""
    def setup():
        m = tf.keras.Sequential([tf.keras.layers.Dense(3), tf.keras.layers.Dense(2)])
        m(f32(1, 4))
        return (lambda: op(m)), (lambda: [np.array(w, copy=True) for w in m.get_weights()])
    return setup


def tape_row(op):
    """x watched, y = 2x recorded; op(tape, x, y) must fail."""
    def setup():
        x = f32(3)
        with tf.GradientTape() as t:
            t.watch(x)
            y = x * 2.0
        return (lambda: op(t, x, y)), None
    return setup


def _sw(m, idx, value):
    w = m.get_weights()
    w[idx] = value
    m.set_weights(w)


def _fit(m, x, y):
    m.compile(optimizer="sgd", loss="mse")
    m.fit(x, y, epochs=1, verbose=0)


def _set_state(o, vs, key, value):
    s = o.get_state()
    if value is None:
        del s[key]
    else:
        s[key] = value
    o.set_state(s)


D = "dense"
BAD = [
    # --- broadcasting / shapes ----------------------------------------------------------------
    Bad("add_bcast", IAE, r"add.*\(3, 4\).*\(3, 5\)", call(lambda: f32(3, 4) + f32(3, 5))),
    Bad("multiply_bcast", IAE, r"multiply.*\(2, ?3\).*\(4,\)", call(lambda: tf.multiply(f32(2, 3), f32(4)))),
    Bad("where_bcast", IAE, r"where.*\(2,\).*\(3,\)",
        call(lambda: tf.where(tf.constant([True, False]), f32(3), f32(3)))),
    Bad("broadcast_to", IAE, r"broadcast_to.*\(3,\).*\(2, ?4\)", call(lambda: tf.broadcast_to(f32(3), (2, 4)))),
    Bad("matmul_inner", IAE, r"matmul.*\(2, 3\).*\(4, 5\)", call(lambda: tf.matmul(f32(2, 3), f32(4, 5)))),
    Bad("matmul_rank1", IAE, r"matmul.*rank.*\(3,\)", call(lambda: tf.matmul(f32(3), f32(3)))),
    Bad("einsum_sizes", IAE, r"einsum.*'j'.*3.*4", call(lambda: tf.einsum("ij,jk->ik", f32(2, 3), f32(4, 5)))),
    Bad("tensordot_sizes", IAE, r"tensordot.*3.*4", call(lambda: tf.tensordot(f32(2, 3), f32(4, 5), axes=1))),
    Bad("concat_shape", IAE, r"concat.*\(2, 4\).*\(2, 3\)", call(lambda: tf.concat([f32(2, 3), f32(2, 4)], 0))),
    Bad("concat_empty", ValueError, r"concat.*empty", call(lambda: tf.concat([], axis=0))),
    Bad("reshape_count", IAE, r"reshape.*6 elements.*\[4, 2\]", call(lambda: tf.reshape(f32(2, 3), (4, 2)))),
    Bad("reshape_two_unknown", IAE, r"reshape.*\[-1, -1\]", call(lambda: tf.reshape(f32(2, 3), (-1, -1)))),
    Bad("reshape_indivisible", IAE, r"reshape.*\[-1, 4\]", call(lambda: tf.reshape(f32(2, 3), (-1, 4)))),
    Bad("stack_shape", IAE, r"stack.*\(2,\).*\(3,\)", call(lambda: tf.stack([f32(2), f32(3)]))),
    Bad("tile_len", IAE, r"tile.*multiples.*length 1.*rank 2", call(lambda: tf.tile(f32(2, 3), [2]))),
    Bad("pad_len", IAE, r"pad.*paddings.*rank 2", call(lambda: tf.pad(f32(2, 3), [[1, 1]]))),
    Bad("boolean_mask_shape", IAE, r"boolean_mask.*\(2,\).*\(3,\)",
        call(lambda: tf.boolean_mask(f32(3), tf.constant([True, False])))),
    Bad("bias_add_size", IAE, r"bias_add.*4.*\(2, 3\)", call(lambda: tf.nn.bias_add(f32(2, 3), f32(4)))),
    Bad("constant_shape", IAE, r"constant.*2 values.*\[3\]", call(lambda: tf.constant([1.0, 2.0], shape=(3,)))),
    Bad("zeros_negative", IAE, r"zeros.*\[-1, 2\].*negative", call(lambda: tf.zeros((-1, 2)))),
    Bad("random_normal_negative", ValueError, r"normal.*(-3|shape)", call(lambda: tf.random.normal((2, -3)))),
    Bad("eye_negative", ValueError, r"eye.*-1", call(lambda: tf.eye(-1))),
    Bad("linspace_negative", ValueError, r"-2", call(lambda: tf.linspace(0.0, 1.0, -2))),
    Bad("top_k_too_big", IAE, r"top_k.*k.*5", call(lambda: tf.math.top_k(f32(3), k=5))),
    Bad("unstack_num", ValueError, r"unstack.*num.*2.*3", call(lambda: tf.unstack(f32(3, 2), num=2))),
    Bad("range_zero_delta", IAE, r"range.*delta", call(lambda: tf.range(0, 5, 0))),
    # --- losses ---------------------------------------------------------------------------------
    Bad("softmax_xent_shape", IAE, r"softmax_cross_entropy.*\(2, 3\).*\(2, 4\)",
        call(lambda: tf.nn.softmax_cross_entropy_with_logits(labels=f32(2, 3), logits=f32(2, 4)))),
    Bad("sparse_xent_label_range", IAE, r"sparse_softmax.*label 5.*\[0, 3\)",
        call(lambda: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=i32([0, 5]), logits=f32(2, 3)))),
    Bad("sparse_xent_label_shape", IAE, r"sparse_softmax.*\(3,\).*\(2,\)",
        call(lambda: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=i32([0, 1, 2]), logits=f32(2, 3)))),
    Bad("sparse_xent_float_labels", IAE, r"sparse_softmax.*labels.*int.*float32",
        call(lambda: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=f32(2), logits=f32(2, 3)))),
    Bad("sigmoid_xent_shape", IAE, r"sigmoid_cross_entropy.*\(2, 3\).*\(2, 4\)",
        call(lambda: tf.nn.sigmoid_cross_entropy_with_logits(labels=f32(2, 3), logits=f32(2, 4)))),
    Bad("keras_mse_shape", ValueError, r"\(2, ?3\).*\(2, ?4\)",
        call(lambda: tf.keras.losses.MeanSquaredError()(f32(2, 3), f32(2, 4)))),
    Bad("keras_cce_shape", ValueError, r"same shape.*\(2, 3\).*\(2, 4\)",
        call(lambda: tf.keras.losses.CategoricalCrossentropy()(f32(2, 3), f32(2, 4)))),
    Bad("keras_scce_shape", ValueError, r"target.shape=\(3,\).*output.shape=\(2, 4\)",
        call(lambda: tf.keras.losses.SparseCategoricalCrossentropy()(i32([0, 1, 2]), f32(2, 4)))),
    # --- dtypes ---------------------------------------------------------------------------------
    Bad("add_f32_f64", IAE, r"add.*float32.*float64", call(lambda: f32(2) + f64(2))),
    Bad("matmul_f32_f64", IAE, r"matmul.*float32.*float64", call(lambda: tf.matmul(f32(2, 2), f64(2, 2)))),
    Bad("subtract_int_float", IAE, r"subtract.*int32.*float32", call(lambda: i32([1, 2]) - f32(2))),
    Bad("concat_dtype", IAE, r"concat.*float32.*float64", call(lambda: tf.concat([f32(2, 3), f64(2, 3)], 0))),
    Bad("clip_dtype", IAE, r"clip_by_value.*float32.*float64",
        call(lambda: tf.clip_by_value(f32(2), tf.constant(0.0, tf.float64), 1.0))),
    Bad("sqrt_int", IAE, r"sqrt.*floating.*int32", call(lambda: tf.sqrt(i32([1, 2])))),
    Bad("exp_int", IAE, r"exp.*floating.*int32", call(lambda: tf.exp(i32([1, 2])))),
    Bad("softmax_int", IAE, r"softmax.*floating.*int32", call(lambda: tf.nn.softmax(i32([1, 2])))),
    Bad("where_float_cond", IAE, r"where.*condition.*bool.*float32", call(lambda: tf.where(f32(2), f32(2), f32(2)))),
    Bad("int_tensor_plus_float", TypeError, r"add.*0\.5.*int32", call(lambda: i32([1, 2]) + 0.5)),
    Bad("int_tensor_plus_float_list", TypeError, r"int32.*float", call(lambda: i32([1, 2]) + [0.5, 1.5])),
    Bad("cast_unknown_dtype", TypeError, r"dtype.*'strang'", call(lambda: tf.cast(f32(2), "strang"))),
    Bad("constant_float_to_int", TypeError, r"1\.5.*int32", call(lambda: tf.constant([1.5], dtype=tf.int32))),
    Bad("layer_int_dtype", ValueError, r"dtype.*float.*int32", call(lambda: tf.keras.layers.Dense(2, dtype="int32"))),
    # --- axes and indices -----------------------------------------------------------------------
    Bad("gather_index_high", IAE, r"gather.*5.*\[0, 3\)", call(lambda: tf.gather(f32(3), [5]))),
    Bad("gather_index_negative", IAE, r"gather.*-4.*\[0, 3\)", call(lambda: tf.gather(f32(3), [-4]))),
    Bad("gather_axis", IAE, r"gather.*axis 2.*rank 2", call(lambda: tf.gather(f32(3, 2), [0], axis=2))),
    Bad("gather_float_indices", IAE, r"gather.*indices.*int.*float32",
        call(lambda: tf.gather(f32(3), tf.constant([0.5])))),
    Bad("gather_nd_index", IAE, r"gather_nd.*2.*\[0, 2\)", call(lambda: tf.gather_nd(f32(2, 2), i32([[2, 0]])))),
    Bad("getitem_high", IAE, r"index 3.*axis 0.*size 3", call(lambda: f32(3, 2)[3])),
    Bad("getitem_negative", IAE, r"index -4.*axis 0.*size 3", call(lambda: f32(3, 2)[-4])),
    Bad("getitem_too_many", IndexError, r"too many indices \(3\).*rank 2", call(lambda: f32(3, 2)[0, 0, 0])),
    Bad("getitem_float", TypeError, r"index.*1\.5", call(lambda: f32(3)[1.5])),
    Bad("embedding_index", IAE, r"7.*\[0, 5\)", call(lambda: tf.keras.layers.Embedding(5, 2)(i32([[7]])))),
    Bad("one_hot_float_indices", IAE, r"one_hot.*integer.*float32", call(lambda: tf.one_hot(tf.constant([0.5]), 3))),
    Bad("one_hot_negative_depth", IAE, r"one_hot.*depth.*-1", call(lambda: tf.one_hot([0, 1], -1))),
    Bad("one_hot_axis", IAE, r"one_hot.*axis 3", call(lambda: tf.one_hot([0, 1], 3, axis=3))),
    Bad("reduce_sum_axis", IAE, r"reduce_sum.*axis 2.*rank 2", call(lambda: tf.reduce_sum(f32(2, 3), axis=2))),
    Bad("reduce_mean_axis_negative", IAE, r"reduce_mean.*axis -3.*rank 2",
        call(lambda: tf.reduce_mean(f32(2, 3), axis=-3))),
    Bad("reduce_axis_float", TypeError, r"reduce_sum.*axis.*0\.5", call(lambda: tf.reduce_sum(f32(2, 3), axis=0.5))),
    Bad("reduce_axis_duplicate", IAE, r"reduce_sum.*axis.*(duplicate|twice|repeat)",
        call(lambda: tf.reduce_sum(f32(2, 3), axis=[0, 0]))),
    Bad("reduce_max_empty", IAE, r"reduce_max.*empty.*\(0,\)", call(lambda: tf.reduce_max(tf.zeros((0,))))),
    Bad("argmax_axis", IAE, r"argmax.*axis 2.*rank 2", call(lambda: tf.argmax(f32(2, 3), axis=2))),
    Bad("cumsum_axis", IAE, r"cumsum.*axis 1.*rank 1", call(lambda: tf.cumsum(f32(3), axis=1))),
    Bad("softmax_axis", IAE, r"softmax.*axis 1.*rank 1", call(lambda: tf.nn.softmax(f32(3), axis=1))),
    Bad("log_softmax_axis", IAE, r"log_softmax.*axis 2.*rank 1", call(lambda: tf.nn.log_softmax(f32(3), axis=2))),
    Bad("moments_axis", IAE, r"axis 1.*rank 1", call(lambda: tf.nn.moments(f32(3), axes=[1]))),
    Bad("split_uneven", IAE, r"split.*size 5.*2 equal", call(lambda: tf.split(f32(5), 2))),
    Bad("split_sizes", IAE, r"split.*\[2, 2\].*size 5", call(lambda: tf.split(f32(5), [2, 2]))),
    Bad("split_axis", IAE, r"split.*axis 1.*rank 1", call(lambda: tf.split(f32(4), 2, axis=1))),
    Bad("squeeze_non_unit", IAE, r"squeeze.*axis 0.*\(2, 3\)", call(lambda: tf.squeeze(f32(2, 3), axis=0))),
    Bad("squeeze_axis", IAE, r"squeeze.*axis 2.*rank 2", call(lambda: tf.squeeze(f32(1, 3), axis=2))),
    Bad("expand_dims_axis", IAE, r"expand_dims.*axis 4.*rank 2", call(lambda: tf.expand_dims(f32(2, 3), axis=4))),
    Bad("expand_dims_negative", IAE, r"expand_dims.*axis -4.*rank 2",
        call(lambda: tf.expand_dims(f32(2, 3), axis=-4))),
    Bad("concat_axis", IAE, r"concat.*axis 2.*rank 2", call(lambda: tf.concat([f32(2, 3), f32(2, 3)], axis=2))),
    Bad("stack_axis", IAE, r"stack.*axis 3", call(lambda: tf.stack([f32(2), f32(2)], axis=3))),
    Bad("transpose_repeat", IAE, r"transpose.*\[0, 0\].*\(2, 3\)", call(lambda: tf.transpose(f32(2, 3), [0, 0]))),
    Bad("transpose_len", IAE, r"transpose.*\[0, 1, 2\]", call(lambda: tf.transpose(f32(2, 3), [0, 1, 2]))),
    Bad("batchnorm_axis", ValueError, r"axis 3.*rank 2", call(lambda: tf.keras.layers.BatchNormalization(axis=3)(f32(2, 3)))),
    # --- non-numeric and ragged Python input ------------------------------------------------------
    Bad("constant_str", TypeError, r"convert.*str.*'abc'", call(lambda: tf.constant("abc"))),
    Bad("constant_none", TypeError, r"convert.*None", call(lambda: tf.constant(None))),
    Bad("constant_object", TypeError, r"convert.*object", call(lambda: tf.constant([object()]))),
    Bad("constant_ragged", ValueError, r"ragged|inhomogeneous", call(lambda: tf.constant([[1, 2], [3]]))),
    Bad("variable_ragged", ValueError, r"ragged|inhomogeneous", call(lambda: tf.Variable([[1.0], [2.0, 3.0]]))),
    Bad("fill_str", TypeError, r"convert.*'x'", call(lambda: tf.fill((2,), "x"))),
    Bad("add_str", (TypeError, ValueError), r"add.*'a'", call(lambda: f32(2) + "a")),
    Bad("add_ragged_list", ValueError, r"add.*(ragged|inhomogeneous)", call(lambda: f32(2) + [[1.0], [2.0, 3.0]])),
    Bad("model_str_input", TypeError, r"str|'abc'",
        call(lambda: tf.keras.Sequential([tf.keras.layers.Dense(2)])("abc"))),
    # --- optimizer hyperparameters ------------------------------------------------------------
    Bad("lr_string", ValueError, r"learning_rate.*'0\.1'", call(lambda: tf.optimizers.SGD("0.1"))),
    Bad("lr_nan", ValueError, r"learning_rate.*nan", call(lambda: tf.optimizers.Adam(float("nan")))),
    Bad("lr_inf", ValueError, r"learning_rate.*inf", call(lambda: tf.optimizers.SGD(float("inf")))),
    # a negative learning rate is accepted, as in Keras (gradient ascent): not a bad input
    Bad("momentum_negative", ValueError, r"momentum", call(lambda: tf.optimizers.SGD(0.1, momentum=-1.0))),
    Bad("clip_two_kinds", ValueError, r"clipnorm.*clipvalue", call(lambda: tf.optimizers.SGD(clipnorm=1.0, clipvalue=1.0))),
    Bad("optimizer_unknown_kwarg", ValueError, r"foo", call(lambda: tf.optimizers.SGD(foo=1))),
    Bad("dropout_rate", ValueError, r"rate.*1\.5", call(lambda: tf.keras.layers.Dropout(1.5))),
    Bad("dropout_op_rate", ValueError, r"dropout.*rate.*1\.5", call(lambda: tf.nn.dropout(f32(3), rate=1.5))),
    Bad("dense_units", ValueError, r"units.*0", call(lambda: tf.keras.layers.Dense(0))),
    # --- gradient(): structures -------------------------------------------------------------------
    Bad("gradient_numpy_source", TypeError, r"sources.*ndarray", tape_row(lambda t, x, y: t.gradient(y, np.ones(3)))),
    Bad("gradient_float_source", TypeError, r"sources.*float", tape_row(lambda t, x, y: t.gradient(y, 1.0))),
    Bad("gradient_nested_bad_source", TypeError, r"sources.*float",
        tape_row(lambda t, x, y: t.gradient(y, {"a": x, "b": [1.0]}))),
    Bad("gradient_og_count", ValueError, r"output_gradients.*1 entries.*2 targets",
        tape_row(lambda t, x, y: t.gradient([y, y], x, output_gradients=f32(3)))),
    Bad("gradient_og_shape", ValueError, r"output_gradients.*\(4,\).*\(3,\)",
        tape_row(lambda t, x, y: t.gradient(y, x, output_gradients=f32(4)))),
    Bad("gradient_og_shape_broadcastable", ValueError, r"output_gradients.*\(1,\).*\(3,\)",
        tape_row(lambda t, x, y: t.gradient(y, x, output_gradients=f32(1)))),
    Bad("gradient_og_dtype", (TypeError, ValueError), r"output_gradients.*float64.*float32",
        tape_row(lambda t, x, y: t.gradient(y, x, output_gradients=f64(3)))),
    Bad("gradient_unconnected_mode", ValueError, r"unconnected_gradients.*'bogus'",
        tape_row(lambda t, x, y: t.gradient(y, x, unconnected_gradients="bogus"))),
    Bad("gradient_twice", RuntimeError, r"non-persistent.*persistent=True",
        tape_row(lambda t, x, y: (t.gradient(y, x), t.gradient(y, x)))),
    Bad("jacobian_numpy_source", TypeError, r"sources.*ndarray", tape_row(lambda t, x, y: t.jacobian(y, np.ones(3)))),
    Bad("gradient_str_target", TypeError, r"'loss'", tape_row(lambda t, x, y: t.gradient("loss", x))),
    Bad("watch_numpy", TypeError, r"watch.*ndarray", call(lambda: tf.GradientTape().watch(np.ones(2)))),
    # --- Variable.assign*: the value must be untouched -----------------------------------------------
    Bad("assign_shape", ValueError, r"assign.*shape \(3,\).*shape \(2,\)",
        var_row([1.0, 2.0], lambda v: v.assign([1.0, 2.0, 3.0]))),
    Bad("assign_dtype", IAE, r"assign.*float32.*float64", var_row([1.0, 2.0], lambda v: v.assign(f64(2)))),
    Bad("assign_float_to_int", IAE, r"assign.*int32.*float", var_row([1, 2], lambda v: v.assign([1.5, 2.0]))),
    Bad("assign_none", TypeError, r"assign.*None", var_row([1.0, 2.0], lambda v: v.assign(None))),
    Bad("assign_ragged", ValueError, r"assign.*inhomogeneous", var_row([1.0, 2.0], lambda v: v.assign([[1.0], [1.0, 2.0]]))),
    Bad("assign_str", (TypeError, ValueError), r"assign.*'a'", var_row([1.0, 2.0], lambda v: v.assign(["a", "b"]))),
    Bad("assign_add_shape", ValueError, r"assign_add.*\(3,\).*\(2,\)", var_row([1.0, 2.0], lambda v: v.assign_add(f32(3)))),
    Bad("assign_add_broadcast", ValueError, r"assign_add.*\(1,\).*\(2,\)",
        var_row([1.0, 2.0], lambda v: v.assign_add(f32(1)))),
    Bad("assign_sub_shape", ValueError, r"assign_sub.*\(2,\).*\(1, 2\)", var_row([[1.0, 2.0]], lambda v: v.assign_sub(f32(2)))),
    Bad("assign_sub_dtype", IAE, r"assign_sub.*float32.*float64", var_row([1.0, 2.0], lambda v: v.assign_sub(f64(2)))),
    # --- optimizers: nothing changes (variables, slots, iterations) ----------------------------------
    Bad("apply_grad_shape", ValueError, r"gradient for variable w1.*\(4,\).*\(3,\)",
        optimizer_row(_opt, lambda vs: [(tf.ones((3,)), vs[0]), (tf.ones((4,)), vs[1])])),
    Bad("apply_grad_shape_unbuilt", ValueError, r"gradient for variable w0.*\(2, 3\).*\(3,\)",
        optimizer_row(_opt, lambda vs: [(tf.ones((2, 3)), vs[0]), (tf.ones((3,)), vs[1])], prestep=False)),
    Bad("apply_variable_twice", ValueError, r"w0.*more than once",
        optimizer_row(_opt, lambda vs: [(tf.ones((3,)), vs[0]), (tf.ones((3,)), vs[0])])),
    Bad("apply_non_variable", TypeError, r"Variable.*Tensor",
        optimizer_row(_opt, lambda vs: [(tf.ones((3,)), vs[0]), (tf.ones((3,)), tf.ones((3,)))])),
    Bad("apply_all_none", ValueError, r"No gradients.*w0.*w1",
        optimizer_row(_opt, lambda vs: [(None, vs[0]), (None, vs[1])])),
    Bad("apply_str_grad", TypeError, r"gradient for variable w1.*dtype",
        optimizer_row(_opt, lambda vs: [(tf.ones((3,)), vs[0]), ("abc", vs[1])])),
    Bad("apply_bool_grad", TypeError, r"gradient for variable w0.*bool",
        optimizer_row(_opt, lambda vs: [(tf.constant([True, False, True]), vs[0])])),
    Bad("apply_not_pairs", ValueError, r"item 0.*\(gradient, variable\) pair",
        optimizer_row(_opt, lambda vs: [tf.ones((3,)), vs[0]])),
    Bad("apply_int_variable", TypeError, r"int32.*floating",
        optimizer_row(_opt, lambda vs: [(tf.ones((3,)), vs[0]), (i32([1, 1]), tf.Variable([1, 2]))])),
    Bad("apply_len_mismatch", ValueError, r"1 gradients for 2 variables",
        optimizer_row(_opt, None, call_apply=lambda o, vs: o.apply([tf.ones((3,))], vs))),
    Bad("set_state_shape", ValueError, r"set_state.*0/momentum.*\(4,\).*\(3,\)",
        optimizer_row(_opt, None, call_apply=lambda o, vs: _set_state(o, vs, "0/momentum", np.zeros(4, np.float32)))),
    Bad("set_state_dtype", ValueError, r"set_state.*1/velocity.*float64.*float32",
        optimizer_row(_opt, None, call_apply=lambda o, vs: _set_state(o, vs, "1/velocity", np.zeros(3, np.float64)))),
    Bad("set_state_missing", ValueError, r"set_state.*missing.*0/momentum",
        optimizer_row(_opt, None, call_apply=lambda o, vs: _set_state(o, vs, "0/momentum", None))),
    # --- layers and models: weights unchanged -------------------------------------------------------
    Bad("set_weights_count", ValueError, r"set_weights.*4 weights.*3 values",
        model_row(lambda m: m.set_weights(m.get_weights()[:-1]))),
    Bad("set_weights_shape", ValueError, r"set_weights.*weight 2.*expected shape \(3, 2\), got \(3, 3\)",
        model_row(lambda m: _sw(m, 2, np.zeros((3, 3), np.float32)))),
    Bad("set_weights_dtype", ValueError, r"set_weights.*weight 1.*complex128.*float32",
        model_row(lambda m: _sw(m, 1, np.zeros(3, np.complex128)))),
    Bad("dense_input_width", ValueError, r"axis -1.*value 4.*\(2, 5\)", model_row(lambda m: m(f32(2, 5)))),
    Bad("dense_rank1", ValueError, r"rank >= 2.*\(3,\)", call(lambda: tf.keras.layers.Dense(2)(f32(3)))),
    Bad("conv_rank", ValueError, r"4-D.*\(4, 4, 1\)", call(lambda: tf.keras.layers.Conv2D(2, 3)(f32(4, 4, 1)))),
    Bad("fit_cardinality", ValueError, r"cardinality.*\[3, 4\]",
        model_row(lambda m: _fit(m, np.ones((4, 4), np.float32), np.ones((3, 2), np.float32)))),
    Bad("fit_input_width", ValueError, r"axis -1.*value 4.*\(\d+, 5\)",
        model_row(lambda m: _fit(m, np.ones((4, 5), np.float32), np.ones((4, 2), np.float32)))),
    Bad("fit_before_compile", RuntimeError, r"compile\(\).*fit\(\)",
        model_row(lambda m: m.fit(np.ones((4, 4), np.float32), np.ones((4, 2), np.float32), verbose=0))),
    Bad("compile_unknown_optimizer", ValueError, r"optimizer.*'adamz'",
        model_row(lambda m: m.compile(optimizer="adamz", loss="mse"))),
    Bad("compile_unknown_loss", ValueError, r"loss.*'msez'", model_row(lambda m: m.compile(optimizer="sgd", loss="msez"))),
]

_ids = [b.id for b in BAD]
assert len(set(_ids)) == len(_ids), "duplicate row ids"


def _param(b):
    marks = [pytest.mark.xfail(strict=True, reason=b.bug)] if b.bug else []
    return pytest.param(b, id=b.id, marks=marks)


def _same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and \
            np.array_equal(a, b, equal_nan=True)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("bad", [_param(b) for b in BAD])
def test_bad_input(bad):
    action, snapshot = bad.setup()
    before = snapshot() if snapshot else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(bad.exc) as info:
            action()
    msg = str(info.value)
    assert re.search(bad.match, msg, re.S), "message %r does not match %r" % (msg, bad.match)
    if snapshot:
        assert _same(before, snapshot()), "state changed by a failed call"


def test_table_size():
    assert len(BAD) >= 60


# --- edges that are NOT errors (the table above must not forbid legitimate calls) ------------------

def test_zero_learning_rate_is_a_valid_no_op_step():
    v = tf.Variable([1.0, 2.0, 3.0])
    for o in (tf.optimizers.SGD(0.0), tf.optimizers.Adam(0.0)):
        o.apply_gradients([(tf.constant([1.0, -2.0, 3.0]), v)])
        np.testing.assert_array_equal(v.numpy(), [1.0, 2.0, 3.0])
        assert int(o.iterations.numpy()) == 1


def test_failed_apply_then_good_apply_matches_fresh_optimizer():
    """A rejected call must not leave half-built state that changes later steps."""
    def run(with_failure):
        v = tf.Variable(np.arange(3, dtype=np.float32))
        w = tf.Variable(np.ones((2,), np.float32))
        o = tf.optimizers.Adam(0.1)
        if with_failure:
            with pytest.raises(ValueError):
                o.apply_gradients([(tf.ones((3,)), v), (tf.ones((3,)), w)])
        for _ in range(3):
            o.apply_gradients([(tf.constant([0.5, -1.0, 2.0]), v), (tf.constant([1.0, 1.0]), w)])
        return v.numpy(), w.numpy(), int(o.iterations.numpy())

    a, b = run(False), run(True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2] == 3
