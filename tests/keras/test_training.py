"""compile / fit / evaluate / predict and the callbacks, on small synthetic problems."""

import os

import numpy as np
import pytest

import accel
from accel import keras
from accel.keras import callbacks, losses, metrics

N, D, K = 96, 5, 3


def blobs(n=N, seed=0):
    """Three well separated Gaussian classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, size=n)
    centers = rng.normal(scale=3.0, size=(K, D))
    x = (centers[y] + rng.normal(size=(n, D))).astype(np.float32)
    return x, y


def classifier(optimizer=None, metrics_=("accuracy",)):
    model = keras.Sequential([keras.Input(shape=(D,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(K)])
    model.compile(optimizer=optimizer or accel.optimizers.Adam(learning_rate=0.01),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True), metrics=list(metrics_))
    return model


def frozen_classifier(**kw):
    """Trains with a learning rate of 0, so every epoch sees the same weights."""
    return classifier(optimizer=accel.optimizers.SGD(learning_rate=0.0), **kw)


def full_batch_loss(model, x, y, sample_weight=None):
    per = losses.sparse_categorical_crossentropy(y, model(x), from_logits=True).numpy()
    w = np.ones(len(y)) if sample_weight is None else sample_weight
    return float(np.sum(per * w) / len(y))


class Recorder(callbacks.Callback):
    """Records hook calls and the weights at the end of each epoch."""

    def __init__(self):
        super().__init__()
        self.calls = []
        self.weights = []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append("epoch_begin")

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append("batch_end")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append("epoch_end")
        self.weights.append(self.model.get_weights())

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


def test_fit_reduces_the_loss_and_returns_history():
    x, y = blobs()
    model = classifier()
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    h = history.history
    assert set(h) == {"loss", "accuracy"}
    assert len(h["loss"]) == 8 and history.epoch == list(range(8))
    assert all(isinstance(v, float) for v in h["loss"])
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert h["accuracy"][-1] > 0.9
    assert model.history is history


def test_regression_with_string_identifiers():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 4)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32) + 0.1
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    h = model.fit(x, y, epochs=20, batch_size=16, verbose=0).history
    assert set(h) == {"loss", "mae"}
    assert h["loss"][-1] < 0.01 * h["loss"][0]
    assert isinstance(model.optimizer, accel.optimizers.SGD)


def test_string_accuracy_resolves_from_label_shape():
    x, y = blobs()
    model = classifier(metrics_=["accuracy"])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    (acc,) = model.metrics[1].metrics
    assert isinstance(acc, metrics.SparseCategoricalAccuracy) and acc.name == "accuracy"
    assert model.metrics_names == ["loss", "compile_metrics"]  # as Keras 3 names them
    assert isinstance(model.optimizer, accel.optimizers.Adam)

    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, np.eye(K)[y], epochs=1, verbose=0)
    assert isinstance(model.metrics[1].metrics[0], metrics.CategoricalAccuracy)


def test_epoch_loss_is_the_sample_weighted_mean_of_batch_losses():
    x, y = blobs(n=50)  # batches of 16, 16, 16 and 2
    model = frozen_classifier()
    sw = np.linspace(0.0, 2.0, len(y))
    h = model.fit(x, y, epochs=2, batch_size=16, verbose=0, sample_weight=sw).history
    np.testing.assert_allclose(h["loss"], full_batch_loss(model, x, y, sw), rtol=1e-5)
    acc = np.mean(np.argmax(model.predict(x, verbose=0), -1) == y)
    np.testing.assert_allclose(h["accuracy"], np.sum((np.argmax(model(x).numpy(), -1) == y) * sw) / sw.sum(),
                               rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), [full_batch_loss(model, x, y), acc],
                               rtol=1e-5)


def test_validation_data_adds_val_keys_matching_evaluate():
    x, y = blobs()
    xv, yv = blobs(n=40, seed=5)
    model = classifier()
    h = model.fit(x, y, epochs=3, batch_size=32, validation_data=(xv, yv), verbose=0).history
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(h["val_loss"]) == 3
    # the weights have not changed since the last validation pass
    val_loss, val_acc = model.evaluate(xv, yv, verbose=0)
    assert h["val_loss"][-1] == pytest.approx(val_loss, rel=1e-6)
    assert h["val_accuracy"][-1] == pytest.approx(val_acc, rel=1e-6)


def test_validation_split_holds_out_the_last_samples():
    x, y = blobs(n=100)
    model = frozen_classifier()
    h = model.fit(x, y, epochs=1, validation_split=0.25, verbose=0).history
    assert h["val_loss"][0] == pytest.approx(full_batch_loss(model, x[75:], y[75:]), rel=1e-5)
    assert h["loss"][0] == pytest.approx(full_batch_loss(model, x[:75], y[:75]), rel=1e-5)


def test_tensors_and_arrays_train_identically():
    x, y = blobs()
    accel.random.set_seed(3)
    h_np = classifier().fit(x, y, epochs=2, verbose=0).history
    accel.random.set_seed(3)
    h_t = classifier().fit(accel.constant(x), accel.constant(y), epochs=2, verbose=0).history
    assert h_np == h_t


def test_shuffling_repeats_under_set_seed_and_can_be_turned_off():
    x, y = blobs()
    runs = []
    for shuffle in (True, True, False):
        accel.random.set_seed(7)
        history = classifier().fit(x, y, epochs=3, batch_size=8, shuffle=shuffle, verbose=0)
        runs.append(history.history["loss"])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_callback_hooks_params_and_initial_epoch():
    x, y = blobs(n=40)
    rec = Recorder()
    history = classifier().fit(x, y, epochs=3, initial_epoch=1, batch_size=16, callbacks=[rec], verbose=0)
    assert rec.params == {"verbose": 0, "epochs": 3, "steps": 3}
    epoch_calls = ["epoch_begin"] + ["batch_end"] * 3 + ["epoch_end"]
    assert rec.calls == ["train_begin"] + epoch_calls * 2 + ["train_end"]
    assert history.epoch == [1, 2]


def test_stop_training_set_by_a_callback_ends_fit():
    class StopAfterSecond(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    x, y = blobs()
    h = classifier().fit(x, y, epochs=10, callbacks=[StopAfterSecond()], verbose=0).history
    assert len(h["loss"]) == 2


def test_early_stopping_stops_after_patience():
    x, y = blobs()
    model = frozen_classifier()  # the loss never improves after the first epoch
    es = callbacks.EarlyStopping(monitor="loss", patience=2)
    h = model.fit(x, y, epochs=20, callbacks=[es], verbose=0).history
    assert len(h["loss"]) == 3
    assert es.stopped_epoch == 2


def test_early_stopping_restores_the_best_weights():
    x, y = blobs()
    xv, yv = x, (y + 1) % K  # validation labels contradict training: val_loss rises as training goes on
    model = classifier()
    rec = Recorder()
    es = callbacks.EarlyStopping(monitor="val_accuracy", patience=2, restore_best_weights=True)
    h = model.fit(x, y, epochs=30, validation_data=(xv, yv), callbacks=[rec, es], verbose=0).history
    assert len(h["loss"]) < 30
    best = int(np.argmax(h["val_accuracy"]))  # mode "auto" knows that accuracy should go up
    assert es.best_epoch == best
    assert best != len(h["loss"]) - 1
    for restored, recorded in zip(model.get_weights(), rec.weights[best], strict=True):
        np.testing.assert_array_equal(restored, recorded)


def test_early_stopping_min_delta():
    x, y = blobs()
    es = callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=1)
    h = classifier().fit(x, y, epochs=10, callbacks=[es], verbose=0).history
    assert len(h["loss"]) == 2  # no epoch improves the loss by 10


def test_model_checkpoint_writes_each_epoch(tmp_path):
    x, y = blobs()
    model = classifier()
    rec = Recorder()
    path = os.path.join(tmp_path, "ckpt", "w-{epoch:02d}-{loss:.3f}.weights.npz")
    h = model.fit(x, y, epochs=3, callbacks=[rec, callbacks.ModelCheckpoint(path, monitor="loss")],
                  verbose=0).history
    expected = sorted("w-%02d-%.3f.weights.npz" % (e + 1, loss) for e, loss in enumerate(h["loss"]))
    assert sorted(os.listdir(os.path.join(tmp_path, "ckpt"))) == expected

    fresh = classifier()
    fresh.load_weights(os.path.join(tmp_path, "ckpt", expected[0]))
    for loaded, recorded in zip(fresh.get_weights(), rec.weights[0], strict=True):
        np.testing.assert_array_equal(loaded, recorded)


def test_model_checkpoint_save_best_only(tmp_path):
    x, y = blobs()
    model = classifier()
    path = os.path.join(tmp_path, "best-{epoch}.weights.npz")
    cb = callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    h = model.fit(x, y, epochs=6, validation_data=(x, (y + 1) % K), callbacks=[cb], verbose=0).history
    best_so_far = np.minimum.accumulate(h["val_loss"])
    improved = [e + 1 for e in range(6) if e == 0 or best_so_far[e] < best_so_far[e - 1]]
    assert sorted(os.listdir(tmp_path)) == sorted("best-%d.weights.npz" % e for e in improved)
    assert len(improved) < 6


def test_model_checkpoint_refuses_full_model_saving():
    with pytest.raises(ValueError, match="weights only"):
        callbacks.ModelCheckpoint("m.keras", save_weights_only=False)


@pytest.mark.parametrize("two_args", [True, False])
def test_learning_rate_scheduler_sets_the_optimizer_rate(two_args):
    x, y = blobs(n=32)
    model = classifier()
    seen = []

    class Spy(callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(model.optimizer.learning_rate))

    if two_args:
        sched = callbacks.LearningRateScheduler(lambda epoch, lr: 0.5 * lr if epoch else lr)
        expected = [0.01, 0.005, 0.0025]
    else:
        sched = callbacks.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
        expected = [0.1, 0.05, 0.1 / 3]
    h = model.fit(x, y, epochs=3, batch_size=32, callbacks=[sched, Spy()], verbose=0).history
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
    np.testing.assert_allclose(h["learning_rate"], expected, rtol=1e-6)
    assert float(model.optimizer.learning_rate) == pytest.approx(expected[-1], rel=1e-6)


def test_evaluate_return_forms():
    x, y = blobs()
    model = classifier()
    model.fit(x, y, epochs=1, verbose=0)
    loss, acc = model.evaluate(x, y, verbose=0)
    assert isinstance(loss, float) and 0.0 <= acc <= 1.0
    assert model.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss, "accuracy": acc}
    model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    assert model.evaluate(x, y, batch_size=7, verbose=0) == pytest.approx(loss, rel=1e-5)


def test_predict_returns_numpy_in_order():
    x, y = blobs(n=50)
    model = classifier()
    out = model.predict(x, batch_size=16, verbose=0)
    assert isinstance(out, np.ndarray) and out.shape == (50, K)
    np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model.predict_on_batch(x[:5]), out[:5])


def test_train_and_test_on_batch():
    x, y = blobs(n=20)
    model = classifier()
    before = model.get_weights()
    loss, acc = model.test_on_batch(x, y)
    assert [loss, acc] == pytest.approx(model.evaluate(x, y, batch_size=20, verbose=0), rel=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert model.train_on_batch(x, y, return_dict=True)["loss"] == pytest.approx(loss, rel=1e-6)
    assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert model.test_on_batch(x, y)[0] < loss


def test_verbose_zero_prints_nothing(capsys):
    x, y = blobs()
    model = classifier()
    model.fit(x, y, epochs=2, validation_split=0.2, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("verbose", [1, 2, "auto"])
def test_verbose_off_a_terminal_prints_one_line_per_epoch(capsys, verbose):
    x, y = blobs()
    classifier().fit(x, y, epochs=3, validation_split=0.2, verbose=verbose)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("Epoch 1/3") and "loss: " in lines[0] and "val_accuracy: " in lines[0]


def test_fit_before_compile_is_an_error():
    model = keras.Sequential([keras.Input(shape=(D,)), keras.layers.Dense(K)])
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(*blobs(), verbose=0)


def test_mismatched_sample_counts_are_an_error():
    x, y = blobs()
    with pytest.raises(ValueError, match="different numbers of samples"):
        classifier().fit(x, y[:-1], verbose=0)


def test_several_inputs_and_outputs():
    class TwoHeads(keras.Model):
        def __init__(self):
            super().__init__()
            self.a = keras.layers.Dense(K)
            self.b = keras.layers.Dense(K)

        def call(self, inputs, training=None):
            left, right = inputs
            return self.a(left) + self.b(right)

    x, y = blobs()
    model = TwoHeads()
    model.compile(optimizer=accel.optimizers.Adam(0.05),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    h = model.fit([x, x[:, ::-1].copy()], y, epochs=5, batch_size=16, verbose=0).history
    assert h["loss"][-1] < h["loss"][0]
    assert model.predict([x, x[:, ::-1].copy()], verbose=0).shape == (N, K)


def test_fit_evaluate_predict_on_each_device(device):
    x, y = blobs()
    model = classifier()
    h = model.fit(x, y, epochs=3, validation_split=0.2, verbose=0).history
    assert h["loss"][-1] < h["loss"][0]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert np.isfinite(loss) and acc > 0.5
    assert model.predict(x, verbose=0).shape == (N, K)


def test_custom_train_step_as_in_the_keras_guide():
    """The `train_step(self, data)` override from Keras's "Customizing what happens in fit()"."""

    class CustomModel(keras.Sequential):
        def train_step(self, data):
            x, y = data
            with accel.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self.compute_loss(y=y, y_pred=y_pred)
            gradients = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply(gradients, self.trainable_variables)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

    x, y = blobs()
    model = CustomModel([keras.Input(shape=(D,)), keras.layers.Dense(K)])
    model.compile(optimizer=accel.optimizers.Adam(0.05),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    h = model.fit(x, y, epochs=5, verbose=0).history
    assert set(h) == {"loss", "accuracy"}
    assert h["loss"][-1] < h["loss"][0] and h["accuracy"][-1] > 0.8
