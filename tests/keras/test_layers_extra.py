"""Activation, merge, preprocessing and Lambda layers against Keras 3's recorded outputs and input
gradients (tests/data/keras_layers.npz, from tools/record_keras_layers.py), plus their bad input."""

import os

import numpy as np
import pytest

import accel as tf
from tests.keras.keras_layer_cases import adapt_data, cases, run_case

REC = np.load(os.path.join(os.path.dirname(__file__), "..", "data", "keras_layers.npz"))
CASES = cases(tf.keras)


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_keras(name, device):
    y, grads = run_case(tf, *CASES[name])
    np.testing.assert_allclose(y, REC[name + "/out"], rtol=1e-5, atol=1e-6)
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, REC["%s/grad%d" % (name, i)], rtol=1e-5, atol=1e-6,
                                   err_msg="gradient of input %d" % i)


def test_normalization_adapt_matches_keras():
    norm = tf.keras.layers.Normalization()
    norm.adapt(adapt_data())
    np.testing.assert_allclose(norm.mean.numpy(), REC["adapt/mean"], rtol=1e-5)
    np.testing.assert_allclose(norm.variance.numpy(), REC["adapt/variance"], rtol=1e-5)
    np.testing.assert_allclose(norm(adapt_data()[:4]).numpy(), REC["adapt/out"], rtol=1e-5, atol=1e-6)
    assert norm.trainable_weights == [] and len(norm.non_trainable_weights) == 2


def test_prelu_learns_its_slope():
    layer = tf.keras.layers.PReLU()
    x = tf.constant([[-1.0, 2.0]])
    layer(x)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x))
    (g,) = tape.gradient(y, layer.trainable_weights)
    np.testing.assert_allclose(g.numpy(), [-1.0, 0.0])  # d/dalpha of -alpha*relu(-x), one alpha per feature


def test_merge_layers_in_a_subclassed_model_train():
    class TwoTower(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.a, self.b = tf.keras.layers.Dense(4), tf.keras.layers.Dense(4)
            self.cat = tf.keras.layers.Concatenate()
            self.out = tf.keras.layers.Dense(1)

        def call(self, x):
            return self.out(self.cat([self.a(x), tf.keras.layers.LeakyReLU()(self.b(x))]))

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    m = TwoTower()
    m.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss="mse")
    hist = m.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.2 * hist.history["loss"][0]


BAD = [
    ("relu negative max_value", lambda: tf.keras.layers.ReLU(max_value=-1.0), ValueError, "max_value"),
    ("leaky negative slope", lambda: tf.keras.layers.LeakyReLU(negative_slope=-0.1), ValueError, "negative_slope"),
    ("subtract three", lambda: tf.keras.layers.Subtract()([tf.zeros([2]), tf.zeros([2]), tf.zeros([2])]),
     ValueError, "exactly 2"),
    ("add not a list", lambda: tf.keras.layers.Add()(tf.zeros([2])), ValueError, "list"),
    ("concat ranks", lambda: tf.keras.layers.Concatenate()([tf.zeros([2, 2]), tf.zeros([2])]), ValueError, "rank"),
    ("normalization half stats", lambda: tf.keras.layers.Normalization(mean=[0.0]), ValueError, "variance"),
    ("normalization empty adapt", lambda: tf.keras.layers.Normalization().adapt(np.zeros((0, 3))), ValueError,
     "empty"),
    ("lambda not callable", lambda: tf.keras.layers.Lambda(3), TypeError, "callable"),
    ("prelu bad shared axis", lambda: tf.keras.layers.PReLU(shared_axes=[3])(tf.zeros([2, 3])), ValueError,
     "shared axis"),
]


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_input(case):
    _, fn, exc, match = case
    with pytest.raises(exc, match=match):
        fn()
