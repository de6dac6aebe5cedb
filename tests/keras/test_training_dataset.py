"""fit / evaluate / predict on accel.data datasets give what they give on the same arrays."""

import numpy as np
import pytest

import accel as tf

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 3)).astype(np.float32)
Y = X @ np.array([[1.0], [2.0], [-1.0]], np.float32)
W = RNG.random(64).astype(np.float32)


def _model():
    tf.random.set_seed(1)
    m = tf.keras.Sequential([tf.keras.layers.Dense(4, activation="relu"), tf.keras.layers.Dense(1)])
    m.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    m.build((None, 3))  # the weights come from the seed now, not from wherever the stream is at fit
    return m


@pytest.mark.parametrize("weighted", [False, True])
def test_fit_on_a_dataset_equals_fit_on_arrays(weighted):
    a, b = _model(), _model()
    sw = W if weighted else None
    ha = a.fit(X, Y, sample_weight=sw, batch_size=16, epochs=3, shuffle=False, verbose=0, validation_data=(X, Y))
    parts = (X, Y, W) if weighted else (X, Y)
    ds = tf.data.Dataset.from_tensor_slices(parts).batch(16)
    hb = b.fit(ds, epochs=3, verbose=0, validation_data=tf.data.Dataset.from_tensor_slices((X, Y)).batch(32))
    for k in ha.history:
        np.testing.assert_allclose(ha.history[k], hb.history[k], rtol=1e-5, err_msg=k)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6)
    ds_eval = tf.data.Dataset.from_tensor_slices((X, Y)).batch(10)
    np.testing.assert_allclose(a.evaluate(X, Y, verbose=0), b.evaluate(ds_eval, verbose=0), rtol=1e-6)
    np.testing.assert_allclose(a.predict(X, verbose=0), b.predict(tf.data.Dataset.from_tensor_slices(X).batch(7),
                                                                  verbose=0), rtol=1e-6)
    # predict takes (x, y) batches too and ignores y
    assert b.predict(ds_eval, verbose=0).shape == (64, 1)


def test_steps_per_epoch_runs_one_iterator_across_epochs():
    m = _model()
    seen = []
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(8).repeat()
    cb = tf.keras.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: seen.append(batch))
    hist = m.fit(ds, epochs=3, steps_per_epoch=2, verbose=0, callbacks=[cb])
    assert len(hist.history["loss"]) == 3 and seen == [0, 1] * 3


def test_running_out_of_data_warns_and_starts_over_when_the_length_is_known():
    # Keras 3.15.1 (checked live): a 5-batch dataset, epochs=4, steps_per_epoch=2 gives 4 epochs (the third
    # ends after one step, the fourth starts a fresh pass)
    m = _model()
    seen = []
    cb = tf.keras.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: seen.append(batch))
    ds = tf.data.Dataset.from_tensor_slices((X[:40], Y[:40])).batch(8)
    with pytest.warns(UserWarning, match="ran out of data"):
        hist = m.fit(ds, epochs=4, steps_per_epoch=2, verbose=0, callbacks=[cb])
    assert len(hist.history["loss"]) == 4 and seen == [0, 1, 0, 1, 0, 0, 1]


def test_running_out_of_data_of_unknown_length_stops():
    m = _model()
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(32).filter(lambda x, y: True)  # 2 batches, length unknown
    with pytest.warns(UserWarning, match="ran out of data"):
        hist = m.fit(ds, epochs=5, steps_per_epoch=1, verbose=0)
    assert len(hist.history["loss"]) == 2


def test_batch_size_is_ignored_with_a_dataset_as_in_keras():
    a, b = _model(), _model()
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(16)
    ha = a.fit(ds, epochs=1, verbose=0)
    hb = b.fit(ds, batch_size=4, epochs=1, verbose=0)
    assert ha.history == hb.history


@pytest.mark.parametrize("call, match", [
    (lambda m, ds: m.fit(ds, Y, verbose=0), "not supported when x is a dataset"),
    (lambda m, ds: m.fit(ds, validation_split=0.2, verbose=0), "validation_split"),
    (lambda m, ds: m.fit(ds.repeat(), epochs=1, verbose=0), "infinite"),
    (lambda m, ds: m.evaluate(ds.filter(lambda x, y: True), verbose=0), "unknown length"),
])
def test_dataset_misuse_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(_model(), tf.data.Dataset.from_tensor_slices((X, Y)).batch(16))
