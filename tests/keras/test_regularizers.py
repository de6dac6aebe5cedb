"""keras.regularizers and the losses they add, against Keras 3 values recorded from TF 2.21 (tf.keras)."""

import numpy as np
import pytest

import accel as tf

R = tf.keras.regularizers
X = np.arange(12, dtype="float32").reshape(3, 4) / 7 - 0.5

# recorded from Keras 3.15.1: float(r(X)) and r.get_config()
PENALTIES = [
    (lambda: R.L1(0.1), 0.5714285969734192),
    (lambda: R.L2(0.2), 0.7795918583869934),
    (lambda: R.L1L2(0.1, 0.3), 1.740816354751587),
    (lambda: R.OrthogonalRegularizer(0.5), 0.3733352720737457),
    (lambda: R.OrthogonalRegularizer(0.5, "columns"), 0.45916032791137695),
    (lambda: R.get("l2"), 0.01 * float((X.astype(np.float64) ** 2).sum())),
    (lambda: R.get({"class_name": "L1", "config": {"l1": 0.1}}), 0.5714285969734192),
]


@pytest.mark.parametrize("make, value", PENALTIES)
def test_penalty_matches_keras(make, value):
    r = make()
    assert float(r(tf.constant(X))) == pytest.approx(value, rel=1e-6)
    assert type(R.get(R.serialize(r))) is type(r) and R.get(R.serialize(r)).get_config() == r.get_config()


@pytest.mark.parametrize("bad, match", [(lambda: R.L2(-1.0), ">= 0"), (lambda: R.get("l3"), "l3"),
                                         (lambda: R.OrthogonalRegularizer(mode="diag"), "mode"),
                                         (lambda: R.OrthogonalRegularizer()(tf.zeros([3])), "rank-2")])
def test_bad_regularizers(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def _model():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3)).astype("float32")
    y = rng.standard_normal((8, 2)).astype("float32")
    k = rng.standard_normal((3, 2)).astype("float32")
    b = rng.standard_normal((2,)).astype("float32")
    d = tf.keras.layers.Dense(2, kernel_regularizer=R.L2(0.1), bias_regularizer="l1", activity_regularizer=R.L1(0.01))
    m = tf.keras.Sequential([tf.keras.Input((3,)), d])
    d.set_weights([k, b])
    m.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    return m, d, x, y


def test_layer_losses_and_fit_match_keras():
    m, d, x, y = _model()
    # recorded from Keras 3.15.1 with the same weights and data
    np.testing.assert_allclose([float(v) for v in m.losses], [0.6467522978782654, 0.03418279066681862], rtol=1e-6)
    m(x)
    np.testing.assert_allclose([float(v) for v in m.losses],
                               [0.039131782948970795, 0.6467522978782654, 0.03418279066681862], rtol=1e-6)
    assert m.evaluate(x, y, verbose=0) == pytest.approx(6.666242599487305, rel=1e-6)
    m.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    np.testing.assert_allclose(d.get_weights()[0], [[-1.0643606185913086, 1.2927367687225342],
                                                    [1.304172396659851, 0.6933581233024597],
                                                    [0.3393399715423584, -0.3231857120990753]], rtol=1e-5)
    np.testing.assert_allclose(d.get_weights()[1], [1.2961311340332031, 1.8030915260314941], rtol=1e-5)


def test_add_loss_in_a_custom_layer_is_trained_on():
    class Penalized(tf.keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(1,), initializer="ones", name="w")

        def call(self, x):
            self.add_loss(tf.reduce_sum(self.w ** 2))
            return x * self.w

    layer = Penalized()
    m = tf.keras.Sequential([layer])
    m.compile(optimizer=tf.keras.optimizers.SGD(0.1), loss="mse")
    x = np.zeros((4, 1), np.float32)
    m.fit(x, x, epochs=1, batch_size=4, verbose=0)  # only the penalty pulls w: 1 - 0.1 * 2 * 1
    np.testing.assert_allclose(layer.w.numpy(), [0.8], rtol=1e-6)
    assert len(layer.losses) == 1  # each call replaces the previous call's losses
    m(x)
    assert len(layer.losses) == 1


def test_hard_sigmoid_and_hard_silu_match_keras():
    x = tf.constant([-4.0, -1.0, 0.0, 0.5, 2.0, 4.0])
    # recorded from Keras 3.15.1 (TF 2.21's tf.keras.activations)
    np.testing.assert_allclose(tf.keras.activations.get("hard_sigmoid")(x).numpy(),
                               [0.0, 0.3333333432674408, 0.5, 0.5833333134651184, 0.8333333134651184, 1.0], rtol=1e-6)
    np.testing.assert_allclose(tf.keras.activations.get("hard_silu")(x).numpy(),
                               [0.0, -0.3333333432674408, 0.0, 0.2916666567325592, 1.6666666269302368, 4.0], rtol=1e-6)


def test_orthogonal_initializer_is_registered():
    q = tf.keras.initializers.get("orthogonal")((4, 3)).numpy()
    np.testing.assert_allclose(q.T @ q, np.eye(3), atol=1e-6)
