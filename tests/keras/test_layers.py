"""Keras layers: values against NumPy references, gradients against float64 central finite differences."""

import numpy as np
import pytest

import accel
from accel.keras import activations, initializers, layers

RNG = np.random.default_rng(0)


def gradcheck(loss_fn, variables, eps=1e-6, rtol=1e-6, atol=1e-8):
    """Compares the tape's gradient of the scalar `loss_fn()` with central differences, element by element."""
    with accel.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(loss, variables)
    for v, g in zip(variables, grads, strict=True):
        assert g is not None, "no gradient for %s" % v.name
        base = np.array(v.numpy(), dtype=np.float64)
        numeric = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            diffs = []
            for step in (eps, -eps):
                p = base.copy()
                p[idx] += step
                v.assign(p)
                diffs.append(float(loss_fn()))
            numeric[idx] = (diffs[0] - diffs[1]) / (2 * eps)
        v.assign(base)
        np.testing.assert_allclose(np.asarray(g.numpy()), numeric, rtol=rtol, atol=atol, err_msg=v.name)


def weighted_sum(layer, x, **kwargs):
    """A scalar that depends on every output element with a distinct weight."""
    out_shape = layer(x, **kwargs).shape
    r = accel.constant(RNG.standard_normal(tuple(out_shape)))
    return lambda: accel.reduce_sum(layer(x, **kwargs) * r)


def var64(shape, scale=1.0):
    return accel.Variable(RNG.standard_normal(shape) * scale, name="x")


# --- Layer base --------------------------------------------------------------------------------


def test_names_are_unique_per_class_like_keras():
    a, b = layers.Dense(1), layers.Dense(1)
    base = a.name
    assert base.startswith("dense")
    n = 0 if base == "dense" else int(base.rsplit("_", 1)[1])
    assert b.name == "dense_%d" % (n + 1)
    assert layers.BatchNormalization().name.startswith("batch_normalization")
    assert layers.MaxPooling2D().name.startswith("max_pooling2d")
    assert layers.Dense(1, name="head").name == "head"


def test_dense_builds_on_first_call():
    d = layers.Dense(3)
    assert not d.built and d.weights == [] and d.kernel is None
    with pytest.raises(ValueError, match="not built"):
        d.count_params()
    y = d(np.ones((2, 5), np.float32))
    assert d.built and y.shape == (2, 3)
    assert [tuple(w.shape) for w in d.weights] == [(5, 3), (3,)]
    assert d.weights[0] is d.kernel and d.weights[1] is d.bias
    assert d.trainable_weights == d.weights == d.trainable_variables == d.variables
    assert d.non_trainable_weights == []
    assert d.count_params() == 18
    assert d.kernel.name == "%s/kernel:0" % d.name


def test_dense_values_match_numpy():
    d = layers.Dense(4, activation="relu", bias_initializer="random_normal")
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    y = d(x).numpy()
    k, b = d.get_weights()
    np.testing.assert_allclose(y, np.maximum(x @ k + b, 0), rtol=1e-5, atol=1e-6)
    # rank-3 input: applied to the last axis
    x3 = RNG.standard_normal((2, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(d(x3).numpy(), np.maximum(x3 @ k + b, 0), rtol=1e-5, atol=1e-6)


def test_dense_activation_callable_no_bias_and_input_checks():
    d = layers.Dense(2, activation=lambda t: t * 2.0, use_bias=False)
    x = np.ones((1, 3), np.float32)
    y = d(x).numpy()
    assert len(d.weights) == 1 and d.bias is None
    np.testing.assert_allclose(y, 2 * x @ d.kernel.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="expected axis -1 of the input shape to have value 3"):
        d(np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="rank >= 2"):
        layers.Dense(2)(np.ones(3, np.float32))


def test_unsupported_and_unknown_arguments_are_rejected():
    with pytest.raises(TypeError, match="Unrecognized keyword arguments"):
        layers.Dense(2, kernel_size=3)
    with pytest.raises(NotImplementedError, match="kernel_constraint"):
        layers.Dense(2, kernel_constraint="non_neg")
    with pytest.raises(ValueError, match="regularizer identifier"):
        layers.Dense(2, kernel_regularizer="l3")
    layers.Dense(2, kernel_regularizer=None, bias_constraint=None)  # None is Keras's default: accepted


def test_float_inputs_are_cast_to_the_layer_dtype():
    d = layers.Dense(2)
    assert d.dtype == "float32"
    assert d(np.ones((1, 3))).dtype == accel.float32  # float64 NumPy data, float32 layer
    d64 = layers.Dense(2, dtype="float64")
    assert d64(np.ones((1, 3), np.float32)).dtype == accel.float64 and d64.kernel.dtype == accel.float64
    assert layers.Dense(2)([[1.0, 2.0]]).shape == (1, 2)  # a nested Python list is one input


def test_dense_gradients_match_finite_differences():
    d = layers.Dense(3, activation="tanh", dtype="float64", bias_initializer="random_normal")
    x = var64((4, 5))
    loss = weighted_sum(d, x)
    gradcheck(loss, [x, d.kernel, d.bias])


def test_get_and_set_weights_validate_and_are_all_or_nothing():
    d = layers.Dense(2)
    d(np.ones((1, 3), np.float32))
    before = d.get_weights()
    before[0][0, 0] = 123.0  # get_weights returns copies
    assert d.kernel.numpy()[0, 0] != 123.0
    new = [np.full((3, 2), 0.5), np.array([1.0, -1.0])]  # float64 values for float32 weights: allowed
    d.set_weights(new)
    np.testing.assert_array_equal(d.get_weights()[0], np.full((3, 2), 0.5, np.float32))
    assert d.get_weights()[0].dtype == np.float32
    current = d.get_weights()
    with pytest.raises(ValueError, match="has 2 weights, but 1 values"):
        d.set_weights([np.zeros((3, 2))])
    with pytest.raises(ValueError, match=r"weight 1 .*expected shape \(2,\), got \(3,\)"):
        d.set_weights([np.zeros((3, 2)), np.zeros(3)])  # the first is fine, and still must not be written
    with pytest.raises(ValueError, match="cannot use a complex128 value"):
        d.set_weights([np.zeros((3, 2)), np.zeros(2, complex)])
    for a, b in zip(d.get_weights(), current, strict=True):
        np.testing.assert_array_equal(a, b)


class _Block(layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scale = accel.Variable(2.0, name="scale")
        self.stages = [layers.Dense(4), layers.Dense(4)]
        self.heads = {"a": layers.Dense(1)}
        self.counter = accel.Variable(0.0, trainable=False, name="counter")

    def call(self, inputs):
        x = inputs * self.scale
        for stage in self.stages:
            x = stage(x)
        return self.heads["a"](x)


def test_tracks_attributes_lists_dicts_and_variables_in_keras_order():
    b = _Block()
    b.stages.append(layers.Dense(4))  # appended after assignment: still tracked
    b(np.ones((2, 3), np.float32))
    paths = [p for p, _ in b._weight_items()]
    assert paths == [
        "scale",
        "counter",
        "stages/0/kernel",
        "stages/0/bias",
        "stages/1/kernel",
        "stages/1/bias",
        "stages/2/kernel",
        "stages/2/bias",
        "heads/a/kernel",
        "heads/a/bias",
    ]
    assert b.weights[0] is b.scale and b.non_trainable_weights == [b.counter]
    assert len(b.trainable_weights) == 9
    assert b.count_params() == 2 + 16 + 20 + 20 + 5


def test_shared_layer_weights_are_listed_once():
    shared = layers.Dense(2)

    class Twice(layers.Layer):
        def __init__(self):
            super().__init__()
            self.a = shared
            self.b = shared

        def call(self, inputs):
            return self.b(self.a(inputs))

    t = Twice()
    t(np.ones((1, 2), np.float32))
    assert len(t.weights) == 2


def test_freezing_stops_training_and_restores():
    b = _Block()
    x = np.ones((2, 3), np.float32)
    b(x)
    order = [id(v) for v in b.weights]
    b.trainable = False
    assert b.trainable_weights == [] and len(b.non_trainable_weights) == 8
    assert not b.stages[0].trainable and not b.stages[0].kernel.trainable
    assert [id(v) for v in b.weights] == order
    with accel.GradientTape() as tape:
        y = accel.reduce_sum(b(x))
    assert list(tape.watched_variables()) == [] and tape.gradient(y, b.stages[0].kernel) is None
    b.trainable = True
    assert len(b.trainable_weights) == 7 and b.non_trainable_weights == [b.counter]
    assert [id(v) for v in b.weights] == order
    # a layer frozen before it is built creates frozen weights, which unfreeze with it
    d = layers.Dense(2, trainable=False)
    d(x)
    assert d.trainable_weights == [] and not d.kernel.trainable
    d.trainable = True
    assert d.trainable_weights == [d.kernel, d.bias]


def test_add_weight_keras3_and_keras2_positional_forms():
    layer = layers.Layer()
    w3 = layer.add_weight((2, 3), "ones")
    w2 = layer.add_weight("w2", (4,), "float64", "zeros", False)
    assert tuple(w3.shape) == (2, 3) and np.all(w3.numpy() == 1) and w3.dtype == accel.float32
    assert tuple(w2.shape) == (4,) and w2.dtype == accel.float64 and not w2.trainable
    assert [p for p, _ in layer._weight_items()] == ["variable_0", "w2"]
    with pytest.raises(NotImplementedError):
        layer(np.ones(2))


def test_training_flag_reaches_nested_layers_through_the_call_context():
    class Net(layers.Layer):
        def __init__(self):
            super().__init__()
            self.drop = layers.Dropout(0.5, seed=1)

        def call(self, inputs):
            return self.drop(inputs)  # no training argument: inherited from the outer call

    net = Net()
    x = np.ones((50, 40), np.float32)
    assert np.all(net(x).numpy() == 1)
    assert np.all(net(x, training=False).numpy() == 1)
    y = net(x, training=True).numpy()
    assert set(np.unique(y)) == {0.0, 2.0}
    assert np.all(net.drop(x).numpy() == 1)  # the context ends with the outer call


# --- core layers -----------------------------------------------------------------------------------


def test_dropout_scales_kept_units_and_its_gradient_is_the_mask():
    d = layers.Dropout(0.25, seed=3)
    x = accel.Variable(RNG.standard_normal((40, 50)).astype(np.float32))
    with accel.GradientTape() as tape:
        y = d(x, training=True)
        s = accel.reduce_sum(y)
    kept = y.numpy() != 0
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_allclose(y.numpy()[kept], x.numpy()[kept] / 0.75, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(s, x).numpy(), kept / 0.75, rtol=1e-6)
    # seeded: reproducible sequence, a new mask per call
    a, b = layers.Dropout(0.5, seed=7), layers.Dropout(0.5, seed=7)
    m1, m2 = (
        a(np.ones((64,), np.float32), training=True).numpy(),
        a(np.ones((64,), np.float32), training=True),
    )
    assert np.array_equal(m1, b(np.ones((64,), np.float32), training=True).numpy())
    assert not np.array_equal(m1, m2.numpy())
    # noise_shape with None: one mask per row, shared along the feature axis
    rows = layers.Dropout(0.5, noise_shape=(None, 1), seed=0)(
        np.ones((30, 6), np.float32), training=True
    ).numpy()
    assert np.all(rows == rows[:, :1])
    with pytest.raises(ValueError):
        layers.Dropout(1.0)


def test_activation_flatten_reshape():
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(layers.Activation("sigmoid")(x).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-6)
    assert layers.Flatten()(x).shape == (2, 12)
    assert layers.Flatten()(np.ones(5, np.float32)).shape == (5, 1)
    np.testing.assert_array_equal(layers.Reshape((4, -1))(x).numpy(), x.reshape(2, 4, 3))
    with pytest.raises(ValueError):
        layers.Reshape((-1, -1))


def test_embedding_gathers_rows_and_accumulates_repeated_ids():
    e = layers.Embedding(10, 3, dtype="float64")
    ids = np.array([[1, 2, 1], [9, 0, 1]])
    out = e(ids)
    table = e.embeddings.numpy()
    np.testing.assert_array_equal(out.numpy(), table[ids])
    assert e.embeddings.shape == (10, 3) and np.all(np.abs(table) <= 0.05)  # Keras's 'uniform' default
    np.testing.assert_array_equal(e(ids.astype(np.float32)).numpy(), table[ids])  # float ids are cast
    r = RNG.standard_normal((2, 3, 3))
    with accel.GradientTape() as tape:
        s = accel.reduce_sum(e(ids) * r)
    expected = np.zeros((10, 3))
    np.add.at(expected, ids, r)
    np.testing.assert_allclose(np.asarray(accel.convert_to_tensor(tape.gradient(s, e.embeddings))), expected)
    mask = layers.Embedding(10, 3, mask_zero=True).compute_mask(ids)  # masking: tests/keras/test_recurrent.py
    np.testing.assert_array_equal(np.asarray(mask), np.asarray(ids) != 0)


# --- normalization -----------------------------------------------------------------------------------


def _np_normalize(x, mean, var, gamma, beta, eps):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_layer_normalization_matches_numpy_and_finite_differences():
    ln = layers.LayerNormalization(
        dtype="float64", gamma_initializer="random_normal", beta_initializer="random_normal"
    )
    x = var64((3, 5), scale=2.0)
    y = ln(x).numpy()
    xs = x.numpy()
    m, v = xs.mean(-1, keepdims=True), xs.var(-1, keepdims=True)
    np.testing.assert_allclose(
        y, _np_normalize(xs, m, v, ln.gamma.numpy(), ln.beta.numpy(), 1e-3), rtol=1e-10
    )
    gradcheck(weighted_sum(ln, x), [x, ln.gamma, ln.beta])


def test_layer_normalization_over_several_axes():
    ln = layers.LayerNormalization(
        axis=[1, 2], center=False, epsilon=1e-5, dtype="float64", gamma_initializer="random_normal"
    )
    x = var64((2, 3, 4))
    y = ln(x).numpy()
    assert ln.gamma.shape == (3, 4) and ln.beta is None and len(ln.weights) == 1
    xs = x.numpy()
    m, v = xs.mean((1, 2), keepdims=True), xs.var((1, 2), keepdims=True)
    np.testing.assert_allclose(y, _np_normalize(xs, m, v, ln.gamma.numpy(), 0, 1e-5), rtol=1e-10)
    gradcheck(weighted_sum(ln, x), [x, ln.gamma])


def test_batch_normalization_training_and_inference_match_keras_formulas():
    bn = layers.BatchNormalization(
        momentum=0.9, dtype="float64", gamma_initializer="random_normal", beta_initializer="random_normal"
    )
    x = RNG.standard_normal((8, 3)) * 3 + 1
    y = bn(x, training=True).numpy()
    m, v = x.mean(0), x.var(0)  # the biased variance
    g, b = bn.gamma.numpy(), bn.beta.numpy()
    np.testing.assert_allclose(y, _np_normalize(x, m, v, g, b, 1e-3), rtol=1e-10)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * m, rtol=1e-12)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * v, rtol=1e-12)
    # inference (training None or False) uses the moving statistics and leaves them alone
    mm, mv = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    for training in (None, False):
        np.testing.assert_allclose(
            bn(x, training=training).numpy(), _np_normalize(x, mm, mv, g, b, 1e-3), rtol=1e-10
        )
    np.testing.assert_array_equal(bn.moving_mean.numpy(), mm)
    assert [w.name.split("/")[1] for w in bn.weights] == [
        "gamma:0",
        "beta:0",
        "moving_mean:0",
        "moving_variance:0",
    ]
    assert bn.non_trainable_weights == [bn.moving_mean, bn.moving_variance]
    # frozen: inference mode even when training=True (Keras 3)
    bn.trainable = False
    np.testing.assert_allclose(bn(x, training=True).numpy(), _np_normalize(x, mm, mv, g, b, 1e-3), rtol=1e-10)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), mm)


def test_batch_normalization_defaults_and_channel_axis():
    bn = layers.BatchNormalization(axis=1)
    assert (bn.momentum, bn.epsilon) == (0.99, 1e-3)
    x = RNG.standard_normal((4, 3, 2, 2)).astype(np.float32)
    y = bn(x, training=True).numpy()
    m, v = x.mean((0, 2, 3), keepdims=True), x.var((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (x - m) / np.sqrt(v + 1e-3), rtol=1e-4, atol=1e-5)
    assert bn.gamma.shape == (3,)


def test_batch_normalization_gradients_in_training_mode():
    bn = layers.BatchNormalization(
        dtype="float64", gamma_initializer="random_normal", beta_initializer="random_normal"
    )
    x = var64((6, 3))
    gradcheck(weighted_sum(bn, x, training=True), [x, bn.gamma, bn.beta])
    gradcheck(weighted_sum(bn, x, training=False), [x, bn.gamma, bn.beta])


# --- convolution and pooling -------------------------------------------------------------------


def _np_conv2d(x, k, b, stride, padding):
    n, h, w, c = x.shape
    kh, kw, _, f = k.shape
    sh, sw = stride
    if padding == "same":
        oh, ow = -(-h // sh), -(-w // sw)
        ph, pw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - w, 0)
        x = np.pad(x, [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)])
    else:
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros((n, oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
            out[:, i, j, :] = np.tensordot(patch, k, axes=([1, 2, 3], [0, 1, 2]))
    return out + b


@pytest.mark.parametrize(
    "kernel, strides, padding, hw",
    [
        ((3, 3), (1, 1), "valid", (5, 6)),
        ((3, 3), (1, 1), "same", (5, 6)),
        ((2, 3), (2, 2), "same", (5, 7)),
        ((3, 2), (2, 1), "valid", (7, 5)),
        ((1, 1), (1, 1), "valid", (3, 3)),
    ],
)
def test_conv2d_matches_numpy(kernel, strides, padding, hw):
    conv = layers.Conv2D(
        4, kernel, strides=strides, padding=padding, dtype="float64", bias_initializer="random_normal"
    )
    x = RNG.standard_normal((2,) + hw + (3,))
    y = conv(x).numpy()
    assert conv.kernel.shape == kernel + (3, 4)
    np.testing.assert_allclose(
        y, _np_conv2d(x, conv.kernel.numpy(), conv.bias.numpy(), strides, padding), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("strides, padding", [((1, 1), "valid"), ((2, 2), "same")])
def test_conv2d_gradients_match_finite_differences(strides, padding):
    conv = layers.Conv2D(
        2,
        3,
        strides=strides,
        padding=padding,
        activation="relu",
        dtype="float64",
        bias_initializer="random_normal",
    )
    x = var64((2, 5, 5, 2))
    gradcheck(weighted_sum(conv, x), [x, conv.kernel, conv.bias])


def test_conv2d_argument_checks():
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(2, 3, padding="causal")
    with pytest.raises(ValueError, match="data_format"):
        layers.Conv2D(2, 3, data_format="channels_middle")
    with pytest.raises(ValueError, match="does not fit"):
        layers.Conv2D(2, 5)(np.ones((1, 3, 3, 1), np.float32))
    with pytest.raises(ValueError, match="4-D"):
        layers.Conv2D(2, 3)(np.ones((3, 3, 1), np.float32))


def _np_maxpool(x, pool, stride, padding):
    n, h, w, c = x.shape
    (ph_, pw_), (sh, sw) = pool, stride
    if padding == "same":
        oh, ow = -(-h // sh), -(-w // sw)
        ph, pw = max((oh - 1) * sh + ph_ - h, 0), max((ow - 1) * sw + pw_ - w, 0)
        x = np.pad(
            x, [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)], constant_values=-np.inf
        )
    else:
        oh, ow = (h - ph_) // sh + 1, (w - pw_) // sw + 1
    return np.stack(
        [
            np.stack(
                [x[:, i * sh : i * sh + ph_, j * sw : j * sw + pw_, :].max(axis=(1, 2)) for j in range(ow)], 1
            )
            for i in range(oh)
        ],
        1,
    )


@pytest.mark.parametrize(
    "pool, strides, padding",
    [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"), ((2, 3), (1, 2), "valid"), ((2, 2), None, "same")],
)
def test_max_pooling_matches_numpy_and_finite_differences(pool, strides, padding):
    mp = layers.MaxPooling2D(pool, strides=strides, padding=padding, dtype="float64")
    x = accel.Variable(RNG.permutation(2 * 5 * 5 * 2).reshape(2, 5, 5, 2) * 0.1)  # distinct values: no ties
    np.testing.assert_array_equal(mp(x).numpy(), _np_maxpool(x.numpy(), pool, strides or pool, padding))
    gradcheck(weighted_sum(mp, x), [x], eps=1e-4)


def test_max_pooling_tie_gradient_goes_to_the_first_maximum():
    x = accel.Variable(np.ones((1, 4, 4, 1)))
    with accel.GradientTape() as tape:
        s = accel.reduce_sum(layers.MaxPooling2D(dtype="float64")(x))
    g = tape.gradient(s, x).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(g, [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])


def test_small_cnn_trains_end_to_end():
    from accel.keras import Sequential

    model = Sequential(
        [
            layers.Conv2D(4, 3, activation="relu", padding="same", input_shape=(8, 8, 1)),
            layers.MaxPooling2D(),
            layers.BatchNormalization(),
            layers.Flatten(),
            layers.Dropout(0.1, seed=0),
            layers.Dense(2),
        ]
    )
    x = RNG.standard_normal((16, 8, 8, 1)).astype(np.float32)
    labels = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    losses = []
    for _ in range(30):
        with accel.GradientTape() as tape:
            logits = model(x, training=True)
            loss = accel.reduce_mean(
                accel.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
        grads = tape.gradient(loss, model.trainable_variables)
        for v, g in zip(model.trainable_variables, grads, strict=True):
            v.assign_sub(0.1 * g)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


# --- activations and initializers ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, ref",
    [
        ("relu", lambda x: np.maximum(x, 0)),
        ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
        ("tanh", np.tanh),
        ("softmax", lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
        ("softplus", lambda x: np.log1p(np.exp(x))),
        ("elu", lambda x: np.where(x > 0, x, np.expm1(x))),
        ("selu", lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x))),
        ("silu", lambda x: x / (1 + np.exp(-x))),
        ("swish", lambda x: x / (1 + np.exp(-x))),
        ("leaky_relu", lambda x: np.where(x > 0, x, 0.2 * x)),
        ("linear", lambda x: x),
        ("gelu", lambda x: 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))),
    ],
)
def test_activations_match_numpy(name, ref):
    x = RNG.standard_normal((3, 4))
    np.testing.assert_allclose(
        activations.get(name)(accel.constant(x)).numpy(), ref(x), rtol=1e-7, atol=1e-12
    )


def test_activation_get_and_generalised_relu():
    assert activations.get(None) is activations.linear
    assert activations.get(np.tanh) is np.tanh
    with pytest.raises(ValueError, match="Unknown activation"):
        activations.get("relu7")
    x = np.array([-3.0, -1.0, 0.5, 2.0, 8.0])
    got = activations.relu(accel.constant(x), negative_slope=0.1, max_value=6.0, threshold=1.0).numpy()
    np.testing.assert_allclose(got, [-0.4, -0.2, -0.05, 2.0, 6.0])
    np.testing.assert_allclose(
        activations.elu(accel.constant(x), alpha=2.0).numpy(), np.where(x > 0, x, 2 * np.expm1(x)), rtol=1e-12
    )


def test_initializers():
    shape = (30, 40)
    for name in ("glorot_uniform", "GlorotUniform", "he_uniform", "lecun_uniform"):
        init = initializers.get(name)
        fan_in, fan_out = 30, 40
        scale = {
            "glorot_uniform": 2 / (fan_in + fan_out),
            "GlorotUniform": 2 / (fan_in + fan_out),
            "he_uniform": 2 / fan_in,
            "lecun_uniform": 1 / fan_in,
        }[name]
        w = init(shape).numpy()
        assert w.dtype == np.float32 and w.shape == shape
        assert np.abs(w).max() <= np.sqrt(3 * scale) and np.abs(w).max() > 0.9 * np.sqrt(3 * scale)
    w = initializers.HeNormal(seed=1)((200, 300), dtype="float64").numpy()
    assert w.dtype == np.float64 and abs(w.std() - np.sqrt(2 / 200)) < 0.05 * np.sqrt(2 / 200)
    assert np.abs(w).max() <= 2 * np.sqrt(2 / 200) / 0.87962566103423978 + 1e-12
    g = initializers.GlorotNormal()((100, 100)).numpy()
    assert abs(g.std() - np.sqrt(1 / 100)) < 0.05 * 0.1
    # conv kernels: the receptive field scales both fans
    assert initializers.compute_fans((3, 3, 4, 8)) == (36, 72)
    # seeded initializers repeat; unseeded ones do not
    assert np.array_equal(
        initializers.GlorotUniform(seed=5)((3, 3)).numpy(), initializers.GlorotUniform(seed=5)((3, 3)).numpy()
    )
    unseeded = initializers.RandomNormal()
    assert not np.array_equal(unseeded((3, 3)).numpy(), unseeded((3, 3)).numpy())
    np.testing.assert_array_equal(initializers.Zeros()((2,)).numpy(), [0, 0])
    np.testing.assert_array_equal(initializers.get("ones")((2,), "int32").numpy(), [1, 1])
    np.testing.assert_array_equal(initializers.Constant(0.5)((2, 1)).numpy(), [[0.5], [0.5]])
    u = initializers.RandomUniform(-1, 3, seed=0)((1000,)).numpy()
    assert u.min() >= -1 and u.max() < 3 and u.mean() > 0.8
    t = initializers.TruncatedNormal(mean=1.0, stddev=0.5, seed=0)((1000,)).numpy()
    assert np.all(np.abs(t - 1.0) <= 1.0)
    assert isinstance(initializers.get(initializers.HeUniform), initializers.HeUniform)
    with pytest.raises(ValueError, match="Unknown initializer"):
        initializers.get("glorot")


def test_dense_uses_the_given_initializers():
    d = layers.Dense(3, kernel_initializer=initializers.Constant(0.25), bias_initializer="ones")
    d(np.ones((1, 2), np.float32))
    np.testing.assert_array_equal(d.kernel.numpy(), np.full((2, 3), 0.25))
    np.testing.assert_array_equal(d.bias.numpy(), np.ones(3))
