"""Training against Keras 3 recorded runs (tools/record_keras_training.py -> tests/data/keras_training.npz)."""

import json
import pathlib
import warnings

import numpy as np
import pytest

from accel import keras

DATA = np.load(pathlib.Path(__file__).parent.parent / "data" / "keras_training.npz", allow_pickle=False)


def _json(key):
    return json.loads(str(DATA[key]))


def _two_output_model():
    i = keras.Input((3,), name="x")
    h = keras.layers.Dense(4, activation="tanh", name="h")(i)
    o1 = keras.layers.Dense(2, name="out1")(h)
    o2 = keras.layers.Dense(1, name="out2")(h)
    return keras.Model(i, [o1, o2])


MULTI = {
    "dict_weighted": dict(loss={"out1": "mse", "out2": "mae"}, loss_weights={"out1": 1.0, "out2": 0.5},
                          metrics={"out1": ["mae"], "out2": ["mse"]}),
    "list": dict(loss=["mse", "mae"]),
    "one_for_all": dict(loss="mse"),
    "one_output_unlossed": dict(loss=["mse", None]),
}


@pytest.mark.parametrize("name", sorted(MULTI))
def test_multi_output_history_has_keras_per_output_losses(name):
    x, y1, y2 = DATA["multi/x"], DATA["multi/y1"], DATA["multi/y2"]
    model = _two_output_model()
    model.set_weights([DATA["multi/w%d" % i] for i in range(len(model.weights))])
    model.compile(optimizer=keras.optimizers.SGD(0.1), **MULTI[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unlossed output's weights get no gradient, as Keras warns too
        history = model.fit(x, [y1, y2], batch_size=4, epochs=2, shuffle=False, verbose=0).history
    expected = _json("multi/%s/history" % name)
    assert sorted(history) == sorted(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(history[key], values, rtol=2e-5, atol=1e-6, err_msg=key)
    result = model.evaluate(x, [y1, y2], batch_size=4, verbose=0, return_dict=True)
    expected = _json("multi/%s/evaluate" % name)
    assert sorted(result) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(result[key], value, rtol=2e-5, atol=1e-6, err_msg=key)


def test_per_output_loss_trackers_reset_each_epoch_and_list_in_metrics_names():
    model = _two_output_model()
    model.compile(optimizer="sgd", loss=["mse", "mae"])
    x = np.ones((4, 3), np.float32)
    model.fit(x, [np.zeros((4, 2)), np.zeros((4, 1))], epochs=1, verbose=0)
    assert model.metrics_names == ["loss", "out1_loss", "out2_loss"]
    y_pred = model.predict(x, verbose=0)  # before the step: its logs are the loss it stepped on
    logs = model.train_on_batch(x, [np.zeros((4, 2)), np.zeros((4, 1))], return_dict=True)
    assert logs["out2_loss"] == pytest.approx(float(np.mean(np.abs(y_pred[1]))), rel=1e-5)
    assert logs["out1_loss"] == pytest.approx(float(np.mean(y_pred[0] ** 2)), rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["out1_loss"] + logs["out2_loss"], rel=1e-5)


# --- .keras files keep the compile settings and the optimizer state -----------------------------------------
TRAINED = pathlib.Path(__file__).parent.parent / "data" / "keras3_trained.keras"


def test_keras_written_file_loads_compiled_and_continues_training_as_keras():
    model = keras.models.load_model(TRAINED)
    assert model.optimizer is not None and type(model.optimizer).__name__ == "Adam"
    assert int(model.optimizer.iterations.numpy()) == 2  # restored from the file, not a fresh optimizer
    history = model.fit(DATA["trained/x"], DATA["trained/y"], batch_size=4, epochs=1, shuffle=False,
                        verbose=0).history
    expected = _json("trained/history")
    assert sorted(history) == sorted(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(history[key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    assert int(model.optimizer.iterations.numpy()) == int(DATA["trained/iterations"])
    for i, w in enumerate(model.get_weights()):
        np.testing.assert_allclose(w, DATA["trained/after%d" % i], rtol=1e-5, atol=1e-6)


def test_keras_written_file_without_compile_ignores_the_optimizer():
    model = keras.models.load_model(TRAINED, compile=False)
    assert model.optimizer is None or not model._compiled


def _mlp():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)])
    model.set_weights([np.random.default_rng(i).standard_normal(w.shape) * 0.5 for i, w in enumerate(model.weights)])
    return model


OPTIMIZERS = [
    lambda: keras.optimizers.Adam(0.02),
    lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    lambda: keras.optimizers.RMSprop(0.01, centered=True),
    lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
]


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS, ids=["adam", "sgd_nesterov", "rmsprop_centered", "adamw"])
def test_saved_model_continues_training_identically(tmp_path, make_optimizer):
    x = np.random.default_rng(5).standard_normal((12, 3)).astype("float32")
    y = np.random.default_rng(6).standard_normal((12, 2)).astype("float32")
    model = _mlp()
    model.compile(optimizer=make_optimizer(), loss=keras.losses.Huber(delta=0.5), metrics=["mae", "mse"])
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_compile_config() == model.get_compile_config()
    assert [v.numpy().tolist() for v in loaded.optimizer.variables] == \
        [v.numpy().tolist() for v in model.optimizer.variables]
    h1 = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    h2 = loaded.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    assert h1 == h2
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_weights_h5_carries_the_optimizer_state_into_a_built_optimizer(tmp_path):
    x = np.ones((4, 3), np.float32)
    y = np.zeros((4, 2), np.float32)
    src = _mlp()
    src.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    src.fit(x, y, epochs=3, verbose=0)
    src.save_weights(tmp_path / "w.weights.h5")
    dst = _mlp()
    dst.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    with pytest.warns(UserWarning, match="Skipping the optimizer state"):
        dst.load_weights(tmp_path / "w.weights.h5")  # an unbuilt optimizer: Keras skips the state too
    assert int(dst.optimizer.iterations.numpy()) == 0
    dst.optimizer.build(dst.trainable_variables)
    dst.load_weights(tmp_path / "w.weights.h5")
    assert int(dst.optimizer.iterations.numpy()) == 3
    src.fit(x, y, epochs=1, verbose=0)
    dst.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(src.get_weights(), dst.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_multi_output_compile_config_round_trips(tmp_path):
    model = _two_output_model()
    model.compile(optimizer="sgd", **MULTI["dict_weighted"])
    model.fit(DATA["multi/x"], [DATA["multi/y1"], DATA["multi/y2"]], verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_compile_config()["loss_weights"] == {"out1": 1.0, "out2": 0.5}
    a = model.evaluate(DATA["multi/x"], [DATA["multi/y1"], DATA["multi/y2"]], verbose=0, return_dict=True)
    b = loaded.evaluate(DATA["multi/x"], [DATA["multi/y1"], DATA["multi/y2"]], verbose=0, return_dict=True)
    assert a == b


@pytest.mark.parametrize("config, error, match", [
    ({"optimizer": {"class_name": "Nope", "config": {}}, "loss": "mse"}, ValueError, "Unknown optimizer"),
    ({"optimizer": "adam", "loss": {"class_name": "os.system", "config": {}}}, ValueError, "unknown loss class"),
    ({"optimizer": "adam", "loss": "mse", "weighted_metrics": ["mae"]}, NotImplementedError, "weighted_metrics"),
])
def test_bad_compile_config_is_refused(config, error, match):
    with pytest.raises(error, match=match):
        _mlp().compile_from_config(config)


BENCH = pathlib.Path(__file__).parent.parent.parent / ".venv-bench" / "bin" / "python"


@pytest.mark.skipif(not BENCH.exists(), reason="needs .venv-bench (TensorFlow 2.21 / Keras 3)")
def test_accel_written_trained_model_continues_in_keras_as_in_accel(tmp_path):
    import subprocess
    import textwrap

    x = np.random.default_rng(5).standard_normal((8, 3)).astype("float32")
    y = np.random.default_rng(6).standard_normal((8, 2)).astype("float32")
    model = _mlp()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse", metrics=["mae"])
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    np.savez(tmp_path / "io.npz", x=x, y=y, **{"arr_%d" % i: w for i, w in enumerate(model.get_weights())})
    script = textwrap.dedent("""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, keras
        d = sys.argv[1]
        io = np.load(os.path.join(d, "io.npz"))
        m = keras.models.load_model(os.path.join(d, "m.keras"))
        assert int(m.optimizer.iterations.numpy()) == 2, m.optimizer.iterations
        m.fit(io["x"], io["y"], batch_size=4, epochs=1, shuffle=False, verbose=0)
        print(max(float(np.abs(w - io["arr_%d" % i]).max()) for i, w in enumerate(m.get_weights())))
    """)
    run = subprocess.run([str(BENCH), "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert float(run.stdout.strip().splitlines()[-1]) < 1e-5
