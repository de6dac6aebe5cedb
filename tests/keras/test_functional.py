"""The functional API: symbolic Inputs, graphs with shared layers, nested models, merges and ops, configs,
summary, and training with several inputs and outputs."""

import numpy as np
import pytest

import accel
from accel import keras
from accel.keras import layers
from accel.keras.functional import KerasTensor

rng = np.random.default_rng(0)


def test_input_is_symbolic_and_still_starts_a_sequential():
    x = keras.Input(shape=(5,), dtype="int32", name="ids")
    assert isinstance(x, KerasTensor) and x.shape == (None, 5) and x.dtype == "int32" and x.name == "ids"
    model = keras.Sequential([keras.Input(shape=(5,)), layers.Dense(2)])
    assert model.built and model(np.ones((3, 5), np.float32)).shape == (3, 2)


SHAPES = [
    # (layer, input shape, output shape)
    (layers.Dense(3), (None, 4), (None, 3)),
    (layers.Conv2D(2, 3), (None, 8, 8, 1), (None, 6, 6, 2)),
    (layers.MaxPooling2D(), (None, None, None, 3), (None, None, None, 3)),
    (layers.Flatten(), (None, 2, 3), (None, 6)),
    (layers.Reshape((3, 2)), (None, 6), (None, 3, 2)),
    (layers.Embedding(10, 4), (None, 7), (None, 7, 4)),
]


@pytest.mark.parametrize("layer, in_shape, out_shape", SHAPES, ids=[type(s[0]).__name__ for s in SHAPES])
def test_symbolic_output_shapes(layer, in_shape, out_shape):
    x = keras.Input(batch_shape=in_shape, dtype="int32" if isinstance(layer, layers.Embedding) else None)
    y = layer(x)
    assert y.shape == out_shape and y._keras_history[0] is layer


def two_input_model():
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    shared = layers.Dense(2, name="shared")
    x = layers.Concatenate(name="cat")([shared(a * b + 1.0), shared(b)])
    return keras.Model({"a": a, "b": b}, [x, layers.Dense(1, name="o2")(x)], name="two"), shared


def test_graph_runs_shared_layers_and_ops():
    model, shared = two_input_model()
    xa, xb = rng.standard_normal((4, 3)).astype("float32"), rng.standard_normal((4, 3)).astype("float32")
    cat, o2 = model({"a": xa, "b": xb})
    k, bias = shared.kernel.numpy(), shared.bias.numpy()
    want = np.concatenate([(xa * xb + 1.0) @ k + bias, xb @ k + bias], axis=-1)
    np.testing.assert_allclose(cat.numpy(), want, rtol=1e-6, atol=1e-6)
    assert [layer.name for layer in model.layers] == ["a", "b", "shared", "cat", "o2"]  # ops are not layers
    assert model.get_layer("o2").units == 1 and len(shared._inbound_nodes) == 2
    assert [t.name for t in model.inputs] == ["a", "b"] and len(model.outputs) == 2


def test_merge_layers_on_symbolic_tensors():
    a, b = keras.Input((4,)), keras.Input((4,))
    merges = [layers.Add(), layers.Subtract(), layers.Multiply(), layers.Average(), layers.Maximum(),
              layers.Minimum()]
    model = keras.Model([a, b], [m([a, b]) for m in merges])
    xa, xb = rng.standard_normal((2, 4)).astype("float32"), rng.standard_normal((2, 4)).astype("float32")
    wants = [xa + xb, xa - xb, xa * xb, (xa + xb) / 2, np.maximum(xa, xb), np.minimum(xa, xb)]
    for got, want in zip(model([xa, xb]), wants, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


def test_nested_model_as_a_layer():
    inner = keras.Sequential([keras.Input((3,)), layers.Dense(2)], name="inner")
    x = keras.Input((3,))
    model = keras.Model(x, inner(layers.Dense(3)(x)) + inner(x))
    assert model.get_layer("inner") is inner
    data = rng.standard_normal((2, 3)).astype("float32")
    hidden = model.layers[1](data)
    np.testing.assert_allclose(model(data).numpy(), (inner(hidden) + inner(data)).numpy(), rtol=1e-6)


ERRORS = [
    # (build, error, message)
    (lambda: keras.Model(keras.Input((3,)), None), TypeError, "outputs must be KerasTensors"),
    (lambda: accel.reduce_sum(keras.Input((3,))), ValueError, "wrap `tf_fn` in a layer"),
    (lambda: keras.Model(keras.Input((3,)), layers.Dense(1)(keras.Input((3,)))), ValueError, "Graph disconnected"),
    (lambda: keras.Model(layers.Dense(2)(keras.Input((3,))), keras.Input((3,))), ValueError, "accel.keras.Input"),
]


@pytest.mark.parametrize("build, error, message", ERRORS, ids=["no_outputs", "accel_op", "disconnected", "input"])
def test_clear_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_config_round_trip_and_summary():
    model, _ = two_input_model()
    config = model.get_config()
    assert config["input_layers"] == {"a": ["a", 0, 0], "b": ["b", 0, 0]}
    assert config["output_layers"] == [["cat", 0, 0], ["o2", 0, 0]]
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    feed = {"a": np.ones((2, 3), np.float32), "b": np.full((2, 3), 2.0, np.float32)}
    for got, want in zip(clone(feed), model(feed), strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    seq = keras.Sequential([keras.Input((4,)), layers.Dense(3, activation="relu"), layers.Dropout(0.1)])
    seq2 = keras.Sequential.from_config(seq.get_config())
    assert [type(layer).__name__ for layer in seq2.layers] == ["Dense", "Dropout"] and seq2.built
    dense = layers.Dense.from_config(layers.Dense(4, activation="tanh", use_bias=False).get_config())
    assert dense.units == 4 and not dense.use_bias and dense.activation is keras.activations.tanh
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and "shared[0][0], shared[1][0]" in text and "Total params: 13" in text


def test_fit_with_several_inputs_and_outputs():
    a, b = keras.Input((4,), name="a"), keras.Input((2,), name="b")
    h = layers.Dense(8, activation="relu")(layers.Concatenate()([a, b]))
    model = keras.Model([a, b], {"cls": layers.Dense(3, name="cls")(h), "reg": layers.Dense(1, name="reg")(h)})
    xa, xb = rng.standard_normal((64, 4)).astype("float32"), rng.standard_normal((64, 2)).astype("float32")
    ycls, yreg = rng.integers(0, 3, 64), xa[:, :1] * 2.0
    model.compile("adam", loss={"cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "reg": "mse"},
                  loss_weights={"cls": 1.0, "reg": 0.5}, metrics={"cls": ["accuracy"]})
    first = model.evaluate({"a": xa, "b": xb}, {"cls": ycls, "reg": yreg}, verbose=0, return_dict=True)
    y_pred = model.predict([xa, xb], verbose=0)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(ycls, y_pred["cls"])
    want = float(ce) + 0.5 * float(np.mean((y_pred["reg"] - yreg) ** 2))
    assert first["loss"] == pytest.approx(want, rel=1e-5) and "cls_accuracy" in first
    history = model.fit([xa, xb], {"cls": ycls, "reg": yreg}, epochs=15, batch_size=16, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    with pytest.raises(ValueError, match="lacks outputs"):
        model.evaluate([xa, xb], {"cls": ycls}, verbose=0)


@pytest.mark.parametrize("call", [
    lambda tf, x: tf.math.exp(x),
    lambda tf, x: tf.reduce_sum(x, axis=-1),
    lambda tf, x: tf.nn.relu(x),
    lambda tf, x: tf.convert_to_tensor(x),
    lambda tf, x: tf.convert_to_tensor(x, dtype="float32"),
    lambda tf, x: tf.constant(x),
])
def test_keras_tensor_in_an_accel_op_says_to_wrap_it_in_a_layer(call):
    import accel as tf

    x = tf.keras.Input((3,))
    with pytest.raises(ValueError, match="A KerasTensor cannot be used as input to an accel") as info:
        call(tf, x)
    assert "class MyLayer(Layer)" in str(info.value) and "Lambda" in str(info.value)
