"""Writes tests/data/keras3_*: small models saved by Keras 3 (.keras and .weights.h5) and their predictions.

Run with the TensorFlow 2.21 / Keras 3.15 environment: .venv-bench/bin/python tools/make_keras_files.py
tests/keras/test_keras_files.py loads each file into accel and compares the predictions.
"""

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
from keras import layers  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data")
rng = np.random.default_rng(0)


def randomize(model):
    """Random weights (positive ones where a variance is stored) so predictions test every weight."""
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) if "variance" in v.path
                               else rng.normal(0, 0.5, w.shape).astype(w.dtype) for w, v in zip(ws, layer.weights)])


def mlp():
    model = keras.Sequential([
        keras.Input((8,), name="features"),
        layers.Normalization(mean=[0.5] * 8, variance=[2.0] * 8),
        layers.Dense(16, activation="relu"),
        layers.Dropout(0.3),
        layers.LayerNormalization(),
        layers.Activation("tanh"),
        layers.Dense(4, activation="softmax"),
    ], name="mlp")
    return model, {"x": rng.normal(size=(5, 8)).astype("float32")}


def cnn():
    model = keras.Sequential([
        keras.Input((64,)),
        layers.Reshape((8, 8, 1)),
        layers.Rescaling(0.5, offset=0.1),
        layers.Conv2D(3, 3, activation="relu", padding="same"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(),
        layers.Conv2D(2, (2, 2)),
        layers.Flatten(),
        layers.Dense(3),
    ], name="cnn")
    return model, {"x": rng.normal(size=(4, 64)).astype("float32")}


def functional():
    ids = keras.Input((5,), dtype="int32", name="ids")
    feats = keras.Input((6,), name="feats")
    e = layers.Flatten()(layers.Embedding(10, 2)(ids))  # (None, 10)
    norm = layers.Normalization()
    norm.adapt(rng.normal(2.0, 3.0, size=(50, 6)).astype("float32"))
    f = norm(feats)
    shared = layers.Dense(10, activation="relu", name="shared")
    a, b = shared(e), shared(layers.Dense(10)(f))  # one layer called on two tensors
    merged = [layers.Add()([a, b]), layers.Subtract()([a, b]), layers.Multiply()([a, b]),
              layers.Average()([a, b]), layers.Maximum()([a, b]), layers.Minimum()([a, b])]
    x = layers.Concatenate()(merged)
    x = (x + 1.0) * 0.5  # ops on KerasTensors
    out1 = layers.Dense(3, activation="softmax", name="probs")(x)
    out2 = layers.Dense(1, name="score")(layers.Concatenate()([x, f]))
    model = keras.Model({"ids": ids, "feats": feats}, [out1, out2], name="two_in_two_out")
    inputs = {"ids": rng.integers(0, 10, size=(4, 5)).astype("int32"),
              "feats": rng.normal(2.0, 3.0, size=(4, 6)).astype("float32")}
    return model, inputs


def nested():
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(5, activation="relu"), layers.Dense(3)], name="inner")
    x = keras.Input((4,), name="x")
    y = layers.Dense(4)(x)
    out = layers.Concatenate()([inner(x), inner(y)])
    model = keras.Model(x, out, name="nested")
    return model, {"x": rng.normal(size=(3, 4)).astype("float32")}


def lambda_model():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2), layers.Lambda(lambda t: t * 2.0 + 1.0)],
                             name="with_lambda")
    return model, {"x": rng.normal(size=(2, 3)).astype("float32")}


def main():
    expected = {}
    for name, make in [("mlp", mlp), ("cnn", cnn), ("functional", functional), ("nested", nested),
                       ("lambda", lambda_model)]:
        model, inputs = make()
        randomize(model)
        if name == "nested":
            randomize(model.get_layer("inner"))
        path = os.path.join(OUT, "keras3_%s.keras" % name)
        model.save(path)
        model.save_weights(os.path.join(OUT, "keras3_%s.weights.h5" % name))
        # predictions of the model as loaded back: set_weights does not refresh an adapted Normalization's
        # statistics in memory (loading does), so the in-memory model can disagree with its own file
        loaded = keras.models.load_model(path, safe_mode=name != "lambda")
        feed = inputs["x"] if list(inputs) == ["x"] else inputs
        preds = loaded.predict(feed, verbose=0)
        preds = preds if isinstance(preds, list) else [preds]
        for k, v in inputs.items():
            expected["%s/in/%s" % (name, k)] = v
        for i, p in enumerate(preds):
            expected["%s/out/%d" % (name, i)] = np.asarray(p)
    np.savez(os.path.join(OUT, "keras3_expected.npz"), keras_version=keras.__version__, **expected)
    print("wrote", sorted(f for f in os.listdir(OUT) if f.startswith("keras3_")))


if __name__ == "__main__":
    main()
