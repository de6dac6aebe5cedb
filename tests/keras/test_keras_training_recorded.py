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
