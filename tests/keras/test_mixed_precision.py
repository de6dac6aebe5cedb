"""Mixed precision: policies, layers under mixed_float16, dynamic loss scaling, against Keras 3 recorded runs
(tools/record_keras_training.py -> tests/data/keras_training.npz)."""

import json
import pathlib

import numpy as np
import pytest

import accel as tf
from accel import keras
from accel.keras import mixed_precision

DATA = np.load(pathlib.Path(__file__).parent.parent / "data" / "keras_training.npz", allow_pickle=False)


@pytest.fixture
def mixed_float16():
    mixed_precision.set_global_policy("mixed_float16")
    yield
    mixed_precision.set_global_policy(None)


@pytest.mark.parametrize("name, compute, variable", [
    ("mixed_float16", "float16", "float32"), ("mixed_bfloat16", "bfloat16", "float32"),
    ("float32", "float32", "float32"), ("float16", "float16", "float16"), ("float64", "float64", "float64"),
])
def test_policy_dtypes(name, compute, variable):
    p = mixed_precision.Policy(name)
    assert (p.name, p.compute_dtype, p.variable_dtype) == (name, compute, variable)
    assert repr(p) == '<DTypePolicy "%s">' % name
    assert mixed_precision.DTypePolicy.from_config(p.get_config()) == p


@pytest.mark.parametrize("bad", ["mixed_int8", "int32", "mixed_float8", 3])
def test_bad_policy_names_are_refused(bad):
    with pytest.raises(ValueError, match="Cannot convert .* to a mixed precision DTypePolicy"):
        mixed_precision.Policy(bad)


def test_global_policy_sets_new_layers_and_resets(mixed_float16):
    assert mixed_precision.global_policy().name == "mixed_float16"
    dense = keras.layers.Dense(2)
    assert (dense.dtype, dense.compute_dtype, dense.variable_dtype) == ("float32", "float16", "float32")
    assert keras.layers.Dense(2, dtype="float32").compute_dtype == "float32"
    y = dense(np.ones((1, 3), np.float32))
    assert y.dtype == tf.float16 and dense.kernel.dtype == tf.float32
    assert dense.get_config()["dtype"]["config"]["name"] == "mixed_float16"
    mixed_precision.set_global_policy(None)
    assert keras.layers.Dense(2).dtype_policy.name == "float32"


def test_gradients_reach_float32_variables_through_the_float16_compute(mixed_float16):
    dense = keras.layers.Dense(3, activation="tanh")
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    with tf.GradientTape() as tape:
        y = dense(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
    gk, gb = tape.gradient(loss, [dense.kernel, dense.bias])
    assert gk.dtype == tf.float32 and gb.dtype == tf.float32
    # the same gradient in float32 arithmetic, within float16's precision
    k, b = dense.kernel.numpy(), dense.bias.numpy()
    h = np.tanh(x @ k + b)
    gh = 2 * h * (1 - h * h)
    np.testing.assert_allclose(gk.numpy(), x.T @ gh, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(gb.numpy(), gh.sum(0), rtol=2e-2, atol=2e-2)
    assert isinstance(dense.kernel, tf.Variable)  # restored after the call


def _mixed_model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.LayerNormalization(), keras.layers.Dense(3),
                             keras.layers.Activation("softmax", dtype="float32")])


def test_mixed_float16_training_matches_keras(mixed_float16):
    x, y = DATA["mixed/x"], DATA["mixed/y"]
    model = _mixed_model()
    model.set_weights([DATA["mixed/w%d" % i] for i in range(len(model.weights))])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    assert type(model.optimizer).__name__ == str(DATA["mixed/optimizer_class"]) == "LossScaleOptimizer"
    hidden = model.layers[0](x)
    assert hidden.dtype == tf.float16
    # float16 rounding: a few units in the last place of float16 (2**-10 relative)
    np.testing.assert_allclose(hidden.numpy().astype(np.float32), DATA["mixed/hidden0"], rtol=4e-3, atol=4e-3)
    np.testing.assert_allclose(model.predict(x, verbose=0), DATA["mixed/predict0"], rtol=1e-2, atol=2e-3)
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    expected = json.loads(str(DATA["mixed/history"]))
    assert sorted(history) == sorted(expected)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=5e-3)
    np.testing.assert_allclose(history["accuracy"], expected["accuracy"])
    for i, w in enumerate(model.get_weights()):
        assert w.dtype == np.float32
        np.testing.assert_allclose(w, DATA["mixed/after%d" % i], rtol=2e-2, atol=5e-3)
    opt = model.optimizer
    assert float(opt.dynamic_scale.numpy()) == float(DATA["mixed/scale"])
    assert int(opt.step_counter.numpy()) == int(DATA["mixed/step_counter"])
    assert int(opt.iterations.numpy()) == int(DATA["mixed/iterations"])


class _Scales(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.scales, self.iterations, self.kernels = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        opt = self.model.optimizer
        self.scales.append(float(opt.dynamic_scale.numpy()))
        self.iterations.append(int(opt.iterations.numpy()))
        self.kernels.append(self.model.layers[-1].get_weights()[0].copy())


@pytest.mark.parametrize("run_eagerly", [True, False], ids=["eager", "compiled"])
def test_loss_scale_halves_on_overflow_skips_the_step_and_grows_as_keras(mixed_float16, run_eagerly):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.set_weights([DATA["overflow/w%d" % i] for i in range(4)])
    opt = mixed_precision.LossScaleOptimizer(keras.optimizers.SGD(1e-4), initial_scale=2.0**15,
                                             dynamic_growth_steps=3)
    model.compile(optimizer=opt, loss="mse", run_eagerly=run_eagerly)
    record = _Scales()
    model.fit(DATA["overflow/x"], DATA["overflow/y"], batch_size=2, epochs=1, shuffle=False, verbose=0,
              callbacks=[record])
    np.testing.assert_array_equal(record.scales, DATA["overflow/scales"])
    np.testing.assert_array_equal(record.iterations, DATA["overflow/iterations"])
    np.testing.assert_allclose(np.stack(record.kernels), DATA["overflow/kernels"], rtol=1e-2, atol=1e-3)
    # a skipped step changes no weight: the kernel is the initial one until the first finite step
    first = int(np.argmax(DATA["overflow/iterations"] > 0))
    for k in record.kernels[:first]:
        np.testing.assert_array_equal(k, DATA["overflow/w2"])


def test_loss_scale_optimizer_unit_steps():
    v = tf.Variable(np.ones(3, np.float32))
    opt = mixed_precision.LossScaleOptimizer(keras.optimizers.SGD(0.5), initial_scale=8.0, dynamic_growth_steps=2)
    assert float(opt.scale_loss(tf.constant(1.5)).numpy()) == 12.0  # before building: initial_scale
    opt.apply_gradients([(tf.constant([8.0, 16.0, 0.0]), v)])  # unscaled by 8: [1, 2, 0]
    np.testing.assert_array_equal(v.numpy(), [0.5, 0.0, 1.0])
    assert (float(opt.dynamic_scale.numpy()), int(opt.step_counter.numpy())) == (8.0, 1)
    opt.apply_gradients([(tf.constant([0.0, 0.0, 0.0]), v)])
    assert (float(opt.dynamic_scale.numpy()), int(opt.step_counter.numpy())) == (16.0, 0)  # grew after 2
    opt.apply_gradients([(tf.constant([np.inf, 1.0, 1.0]), v)])
    np.testing.assert_array_equal(v.numpy(), [0.5, 0.0, 1.0])  # skipped
    assert (float(opt.dynamic_scale.numpy()), int(opt.step_counter.numpy())) == (8.0, 0)
    opt.apply_gradients([(tf.constant([np.nan, 1.0, 1.0]), v)])
    assert float(opt.dynamic_scale.numpy()) == 4.0 and int(opt.iterations.numpy()) == 2
    names = [x.name.split("/")[-1].split(":")[0] for x in opt.variables]
    assert names[2:4] == ["step_counter", "dynamic_scale"] and len(names) == 6  # Keras' order


def test_loss_scale_optimizer_config_and_keras2_names():
    opt = mixed_precision.LossScaleOptimizer(keras.optimizers.Adam(0.1), initial_scale=4.0, dynamic_growth_steps=7)
    again = mixed_precision.LossScaleOptimizer.from_config(opt.get_config())
    assert (again.initial_scale, again.dynamic_growth_steps) == (4.0, 7)
    assert type(again.inner_optimizer).__name__ == "Adam"
    with pytest.raises(AttributeError, match="scale_loss"):
        opt.get_scaled_loss(1.0)
    with pytest.raises(ValueError, match="does not support `clipnorm`"):
        mixed_precision.LossScaleOptimizer(keras.optimizers.SGD(), clipnorm=1.0)
    with pytest.raises(ValueError, match="dynamic=False"):
        mixed_precision.LossScaleOptimizer(keras.optimizers.SGD(), dynamic=False)
    with pytest.raises(ValueError, match="initial_scale"):
        mixed_precision.LossScaleOptimizer(keras.optimizers.SGD(), initial_scale=-1)


def test_auto_scale_loss_false_keeps_the_optimizer(mixed_float16):
    model = _mixed_model()
    model.compile(optimizer="sgd", loss="mse", auto_scale_loss=False)
    assert type(model.optimizer).__name__ == "SGD"


def test_mixed_model_saves_and_loads_with_its_policy_and_scale(tmp_path, mixed_float16):
    model = _mixed_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(DATA["mixed/x"], DATA["mixed/y"], epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    mixed_precision.set_global_policy(None)
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.layers[0].dtype_policy.name == "mixed_float16"
    assert loaded.layers[-1].dtype_policy.name == "float32"
    assert type(loaded.optimizer).__name__ == "LossScaleOptimizer"
    assert [v.numpy().tolist() for v in loaded.optimizer.variables] == \
        [v.numpy().tolist() for v in model.optimizer.variables]
    np.testing.assert_array_equal(loaded.predict(DATA["mixed/x"], verbose=0), model.predict(DATA["mixed/x"], verbose=0))


@pytest.mark.parametrize("layer, x", [
    (lambda: keras.layers.BatchNormalization(), np.random.default_rng(1).standard_normal((6, 3))),
    (lambda: keras.layers.LayerNormalization(), np.random.default_rng(2).standard_normal((6, 3)) * 100),
    (lambda: keras.layers.Embedding(5, 3), np.array([[0, 4], [2, 1]])),
    (lambda: keras.layers.Conv2D(2, 3, padding="same"), np.random.default_rng(3).standard_normal((1, 5, 5, 2))),
    (lambda: keras.layers.LSTM(3, return_sequences=True), np.random.default_rng(4).standard_normal((2, 4, 3))),
    (lambda: keras.layers.GRU(3), np.random.default_rng(5).standard_normal((2, 4, 3))),
])
def test_layers_under_mixed_float16_match_float32_and_output_float16(layer, x):
    ref = layer()
    y32 = ref(x, training=True)
    mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = layer()
        mixed(x)
    finally:
        mixed_precision.set_global_policy(None)
    mixed.set_weights(ref.get_weights())
    with tf.GradientTape() as tape:
        y16 = mixed(x, training=True)
        loss = tf.reduce_sum(tf.cast(y16, tf.float32))
    grads = tape.gradient(loss, mixed.trainable_weights)
    assert y16.dtype == tf.float16
    assert all(v.dtype == tf.float32 for v in mixed.weights)
    assert all(g is not None and (tf.convert_to_tensor(g).dtype == tf.float32) for g in grads)
    np.testing.assert_allclose(y16.numpy().astype(np.float32), y32.numpy(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "sigmoid", "silu", "elu", "softplus"])
def test_float16_activations_take_the_generic_path_with_fused_kernels_forced(activation):
    """The fused CPU twins take only float32/float64: float16 (mixed_float16's compute) must run the generic
    rules whatever the switch, with the same result, and a float32-accurate gradient within float16 rounding."""
    x = np.random.default_rng(0).standard_normal((64, 96)).astype(np.float16)
    results = []
    for mode in ("always", "never"):
        with tf.config.fused(mode):
            t = tf.constant(x)
            with tf.GradientTape() as tape:
                tape.watch(t)
                y = getattr(keras.activations, activation)(t)
                loss = tf.reduce_sum(y * y)
            g = tape.gradient(loss, t)
        assert y.dtype == tf.float16 and g.dtype == tf.float16
        results.append((y.numpy(), g.numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    t64 = tf.constant(x.astype(np.float64))
    with tf.GradientTape() as tape:
        tape.watch(t64)
        y64 = getattr(keras.activations, activation)(t64)
        loss = tf.reduce_sum(y64 * y64)
    np.testing.assert_allclose(results[0][0], y64.numpy(), rtol=4e-3, atol=4e-3)
    np.testing.assert_allclose(results[0][1], tape.gradient(loss, t64).numpy(), rtol=2e-2, atol=2e-2)


def test_bfloat16_dtype_casts_and_mixed_bfloat16_layers_say_they_are_unsupported():
    pytest.importorskip("ml_dtypes")
    from accel import dtypes

    x = tf.constant(np.array([1.5, -2.0, 3.0078125], np.float32))
    b = tf.cast(x, dtypes.bfloat16)
    assert b.dtype == dtypes.bfloat16 == tf.as_dtype("bfloat16") and b.dtype.is_floating and b.dtype.size == 2
    np.testing.assert_array_equal(tf.cast(b, tf.float32).numpy(), [1.5, -2.0, 3.0])  # 8 bits of mantissa
    with pytest.raises(NotImplementedError, match="bfloat16 yet.*mixed_float16"):
        keras.layers.Dense(2, dtype="mixed_bfloat16")
