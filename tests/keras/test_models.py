"""Sequential and subclassed Model: building, tracking, training flags, summary."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import accel
from accel import keras
from accel.keras import Input, Model, Sequential, layers
from accel.keras.training import Trainer

RNG = np.random.default_rng(1)


def test_api_surface_sequential_example_forward_and_backward():
    model = Sequential(
        [layers.Dense(64, activation="relu", input_shape=(784,)), layers.Dense(10, activation="softmax")]
    )
    assert model.built  # the input shape is known: built at once, as Keras
    assert [tuple(w.shape) for w in model.weights] == [(784, 64), (64,), (64, 10), (10,)]
    x = RNG.random((32, 784)).astype(np.float32)
    y = RNG.integers(0, 10, 32)
    with accel.GradientTape() as tape:
        probs = model(x, training=True)
        loss = -accel.reduce_mean(
            accel.math.log(accel.gather(accel.reshape(probs, [-1]), np.arange(32) * 10 + y))
        )
    grads = tape.gradient(loss, model.trainable_variables)
    assert probs.shape == (32, 10) and probs.dtype == accel.float32
    np.testing.assert_allclose(probs.numpy().sum(-1), 1, rtol=1e-5)
    assert [tuple(g.shape) for g in grads] == [(784, 64), (64,), (64, 10), (10,)]
    # the output-layer bias gradient is mean(p - onehot), like any softmax + NLL
    onehot = np.eye(10)[y]
    np.testing.assert_allclose(grads[3].numpy(), (probs.numpy() - onehot).mean(0), rtol=1e-4, atol=1e-6)
    # the same numbers as a NumPy forward pass
    k1, b1, k2, b2 = model.get_weights()
    h = np.maximum(x @ k1 + b1, 0) @ k2 + b2
    ref = np.exp(h - h.max(-1, keepdims=True))
    np.testing.assert_allclose(probs.numpy(), ref / ref.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_model_is_a_trainer_and_a_layer():
    assert issubclass(Model, Trainer) and issubclass(Model, layers.Layer)
    assert issubclass(Sequential, Model)
    assert keras.layers is layers and keras.Input is Input
    import accel.keras.optimizers as optimizers  # the module alias works as well as the attribute

    assert optimizers is accel.optimizers is keras.optimizers


def test_sequential_with_input_and_add_and_pop():
    model = Sequential(name="stack")
    model.add(Input(shape=(5,)))
    assert not model.built and model.weights == []
    model.add(layers.Dense(4))
    assert model.built and len(model.weights) == 2
    model.add(layers.Dense(3))
    assert len(model.weights) == 4 and model.layers[-1].kernel.shape == (4, 3)
    assert model.name == "stack" and model(np.ones((2, 5), np.float32)).shape == (2, 3)
    popped = model.pop()
    assert isinstance(popped, layers.Dense) and len(model.layers) == 1
    assert model(np.ones((2, 5), np.float32)).shape == (2, 4)
    with pytest.raises(ValueError, match="Input can only come first"):
        model.add(Input(shape=(5,)))
    with pytest.raises(TypeError):
        model.add("dense")


def test_sequential_builds_lazily_on_first_call():
    model = Sequential([layers.Dense(4), layers.Dense(2)])
    assert not model.built and model.weights == []
    with pytest.raises(ValueError, match="not been built"):
        model.summary()
    with accel.GradientTape() as tape:  # weights created inside the tape still get gradients
        out = accel.reduce_sum(model(np.ones((3, 7), np.float32)))
    grads = tape.gradient(out, model.trainable_variables)
    assert model.built and [tuple(g.shape) for g in grads] == [(7, 4), (4,), (4, 2), (2,)]


def test_model_build_with_an_input_shape():
    model = Sequential([layers.Dense(4), layers.Dense(2)])
    model.build((None, 6))
    assert model.built and model.count_params() == 6 * 4 + 4 + 4 * 2 + 2


def test_sequential_weight_paths_are_stable_per_model():
    a = Sequential([layers.Dense(2, input_shape=(3,)), layers.Dropout(0.5), layers.Dense(1)])
    b = Sequential([layers.Dense(2, input_shape=(3,)), layers.Dropout(0.5), layers.Dense(1)])
    assert a.layers[0].name != b.layers[0].name  # process-wide unique names...
    paths = [p for p, _ in a._weight_items()]
    assert paths == [p for p, _ in b._weight_items()]  # ...but the same structure paths
    assert paths == ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]


class MLP(Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(8, activation="relu")
        self.norm = layers.BatchNormalization()
        self.drop = layers.Dropout(0.5, seed=0)
        self.out = layers.Dense(3)

    def call(self, inputs, training=None):
        return self.out(self.drop(self.norm(self.hidden(inputs))))


def test_subclassed_model_tracks_layers_and_propagates_training():
    model = MLP()
    assert model.name.startswith("mlp") and not model.built
    x = RNG.standard_normal((16, 4)).astype(np.float32)
    y_eval = model(x).numpy()
    assert model.built and model.layers == [model.hidden, model.norm, model.drop, model.out]
    np.testing.assert_array_equal(model(x, training=False).numpy(), y_eval)
    moving = model.norm.moving_mean.numpy().copy()
    y_train = model(x, training=True).numpy()
    assert not np.allclose(y_train, y_eval)
    assert not np.array_equal(model.norm.moving_mean.numpy(), moving)  # BN saw training=True
    assert len(model.trainable_weights) == 6 and len(model.non_trainable_weights) == 2
    assert model.get_layer("%s" % model.out.name) is model.out and model.get_layer(index=1) is model.norm
    with pytest.raises(ValueError, match="no layer named"):
        model.get_layer("nope")


def test_nested_models_and_freezing_a_submodel():
    inner = Sequential([layers.Dense(4, input_shape=(3,))])

    class Outer(Model):
        def __init__(self):
            super().__init__()
            self.encoder = inner
            self.head = layers.Dense(1)

        def call(self, inputs):
            return self.head(self.encoder(inputs))

    outer = Outer()
    outer(np.ones((2, 3), np.float32))
    assert [p for p, _ in outer._weight_items()] == [
        "encoder/dense/kernel",
        "encoder/dense/bias",
        "head/kernel",
        "head/bias",
    ]
    inner.trainable = False
    assert outer.trainable_weights == [outer.head.kernel, outer.head.bias]
    assert len(outer.non_trainable_weights) == 2


def test_summary_table():
    model = Sequential(
        [
            layers.Dense(64, activation="relu", input_shape=(784,)),
            layers.BatchNormalization(),
            layers.Dense(10, activation="softmax"),
        ],
        name="clf",
    )
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert lines[0] == 'Model: "clf"'
    dense, bn, dense_1 = model.layers
    assert any(line.split() == ["%s" % dense.name, "(Dense)", "(None,", "64)", "50,240"] for line in lines)
    assert any(
        line.split() == ["%s" % bn.name, "(BatchNormalization)", "(None,", "64)", "256"] for line in lines
    )
    assert any(line.split()[-1] == "650" and line.startswith(dense_1.name) for line in lines)
    assert "Total params: 51,146 (199.79 KB)" in text
    assert "Trainable params: 51,018 (199.29 KB)" in text
    assert "Non-trainable params: 128 (512.00 B)" in text


def test_keras_works_without_the_optional_modules():
    # a fresh interpreter in which the training mixin, optimizers, losses, metrics and callbacks do not exist
    child = textwrap.dedent("""
        import sys
        import numpy as np

        BLOCKED = {"accel.optimizers", "accel.keras.training", "accel.keras.losses", "accel.keras.metrics",
                   "accel.keras.callbacks"}

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name in BLOCKED:
                    raise ModuleNotFoundError("blocked", name=name)

        sys.meta_path.insert(0, Block())
        import accel.keras as keras
        from accel.keras import models

        assert models.Trainer.__module__ == "accel.keras.models"
        assert not hasattr(keras, "optimizers") and not hasattr(keras, "losses")
        model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
        print(tuple(model(np.ones((1, 3))).shape))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(1, 2)"
