"""Records Keras 3 training runs into tests/data/keras_training.npz: per-output losses of multi-output models
(history keys and values) and mixed-precision training (float16 compute, dynamic loss scaling).

    .venv-bench/bin/python tools/record_keras_training.py     # tensorflow-cpu==2.21.* (Keras 3 as tf.keras)

Every case starts from weights drawn here and stored with it (`<case>/w<i>`), trains on stored data without
shuffling, and stores the history (`<case>/history`, JSON), evaluate's dict (`<case>/evaluate`, JSON) and, for
mixed precision, the final weights and the loss scale after each step.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import keras  # noqa: E402

OUT = {}
RNG = np.random.default_rng(1)


def put(key, value):
    OUT[key] = np.asarray(value)


def put_json(key, value):
    OUT[key] = np.array(json.dumps(value))


# --- multi-output losses ------------------------------------------------------------------------------------
def two_output_model():
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


def record_multi_output():
    x = RNG.standard_normal((10, 3)).astype("float32")
    y1 = RNG.standard_normal((10, 2)).astype("float32")
    y2 = RNG.standard_normal((10, 1)).astype("float32")
    put("multi/x", x)
    put("multi/y1", y1)
    put("multi/y2", y2)
    model = two_output_model()
    weights = [RNG.standard_normal(w.shape).astype("float32") * 0.5 for w in model.get_weights()]
    for i, w in enumerate(weights):
        put("multi/w%d" % i, w)
    for name, kwargs in MULTI.items():
        model = two_output_model()
        model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.SGD(0.1), **kwargs)
        # batch 4 over 10 samples: the last batch of 2 weighs less in the epoch means
        history = model.fit(x, [y1, y2], batch_size=4, epochs=2, shuffle=False, verbose=0)
        put_json("multi/%s/history" % name, history.history)
        put_json("multi/%s/evaluate" % name, model.evaluate(x, [y1, y2], batch_size=4, verbose=0, return_dict=True))


# --- a compiled model saved with its optimizer state --------------------------------------------------------
def record_trained_file():
    """tests/data/keras3_trained.keras: an MLP after 2 Adam steps (the optimizer state in the file), and the
    weights and losses after 2 more steps on the same batches, by Keras from the loaded file."""
    x = RNG.standard_normal((8, 3)).astype("float32")
    y = RNG.integers(0, 3, 8)
    put("trained/x", x)
    put("trained/y", y)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(3)],
                             name="trained")
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "keras3_trained.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    history = loaded.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    put_json("trained/history", history.history)
    for i, w in enumerate(loaded.get_weights()):
        put("trained/after%d" % i, w)
    put("trained/iterations", int(loaded.optimizer.iterations.numpy()))


# --- mixed precision ------------------------------------------------------------------------------------------
def mixed_mlp():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.LayerNormalization(), keras.layers.Dense(3),
                             keras.layers.Activation("softmax", dtype="float32")])


def overflow_mlp():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])


class _Scales(keras.callbacks.Callback):
    """The loss scale, iterations and a weight after each batch."""

    def __init__(self):
        super().__init__()
        self.scales, self.iterations, self.kernels = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        opt = self.model.optimizer
        self.scales.append(float(opt.dynamic_scale.numpy()))
        self.iterations.append(int(opt.iterations.numpy()))
        self.kernels.append(self.model.layers[-1].get_weights()[0].copy())


def record_mixed():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        # a classifier trained 2 epochs with Adam: float32 variables, float16 compute, dynamic scaling
        x = RNG.standard_normal((16, 4)).astype("float32")
        y = RNG.integers(0, 3, 16)
        put("mixed/x", x)
        put("mixed/y", y)
        model = mixed_mlp()
        weights = [RNG.standard_normal(w.shape).astype("float32") * 0.5 for w in model.get_weights()]
        weights[2], weights[3] = np.ones(8, "float32"), np.zeros(8, "float32")  # LayerNormalization gamma, beta
        for i, w in enumerate(weights):
            put("mixed/w%d" % i, w)
        model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        put("mixed/optimizer_class", type(model.optimizer).__name__)
        put("mixed/predict0", model.predict(x, verbose=0))
        put("mixed/hidden0", model.layers[0](x).numpy())  # a float16 layer output
        history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        put_json("mixed/history", history.history)
        for i, w in enumerate(model.get_weights()):
            put("mixed/after%d" % i, w)
        put("mixed/scale", float(model.optimizer.dynamic_scale.numpy()))
        put("mixed/step_counter", int(model.optimizer.step_counter.numpy()))
        put("mixed/iterations", int(model.optimizer.iterations.numpy()))

        # float16 overflow: large targets make the scaled gradients inf until the scale has halved enough;
        # growth every 3 finite steps then overflows again
        x = RNG.standard_normal((48, 3)).astype("float32")
        y = (RNG.standard_normal((48, 1)) * 200).astype("float32")
        put("overflow/x", x)
        put("overflow/y", y)
        model = overflow_mlp()
        weights = [RNG.standard_normal(w.shape).astype("float32") for w in model.get_weights()]
        for i, w in enumerate(weights):
            put("overflow/w%d" % i, w)
        model.set_weights(weights)
        opt = keras.mixed_precision.LossScaleOptimizer(keras.optimizers.SGD(1e-4), initial_scale=2.0**15,
                                                       dynamic_growth_steps=3)
        model.compile(optimizer=opt, loss="mse")
        scales = _Scales()
        model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=[scales])
        put("overflow/scales", scales.scales)
        put("overflow/iterations", scales.iterations)
        put("overflow/kernels", np.stack(scales.kernels))
    finally:
        keras.mixed_precision.set_global_policy("float32")


if __name__ == "__main__":
    record_mixed()
    record_multi_output()
    record_trained_file()
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "keras_training.npz")
    np.savez(path, **OUT)
    print("wrote %d arrays to %s" % (len(OUT), os.path.normpath(path)))
