"""keras.utils (to_categorical, set_random_seed, get_file through file:// URLs) and the callbacks
TerminateOnNaN, ReduceLROnPlateau and CSVLogger."""

import csv
import hashlib
import io
import os
import tarfile

import numpy as np
import pytest

import accel as tf

U = tf.keras.utils


@pytest.mark.parametrize("labels, n, expected_shape", [
    ([0, 2, 1], None, (3, 3)), ([[1], [0]], 3, (2, 3)), (np.array([[0, 1], [2, 0]]), None, (2, 2, 3)),
    (np.array([], np.int64), 4, (0, 4)), (np.float32([1.0, 0.0]), None, (2, 2)),
])
def test_to_categorical(labels, n, expected_shape):
    out = U.to_categorical(labels, n)
    assert out.shape == expected_shape and out.dtype == np.float32
    flat = np.asarray(labels).reshape(-1).astype(int)
    np.testing.assert_array_equal(out.reshape(-1, expected_shape[-1]).argmax(-1)[: flat.size], flat)
    assert out.sum() == flat.size


@pytest.mark.parametrize("labels, n, match", [([1.5], None, "integers"), ([-1], None, ">= 0"), ([3], 2, "out of range"),
                                              (["a"], None, "integers")])
def test_to_categorical_bad_input(labels, n, match):
    with pytest.raises(ValueError, match=match):
        U.to_categorical(labels, n)


def test_set_random_seed_makes_runs_repeat():
    U.set_random_seed(3)
    a = (np.random.rand(), tf.random.normal([2]).numpy())
    U.set_random_seed(3)
    b = (np.random.rand(), tf.random.normal([2]).numpy())
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="int"):
        U.set_random_seed(1.5)


def _serve(tmp_path, name, data):
    src = tmp_path / "server" / name
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(data)
    return src.as_uri()


def test_get_file_downloads_once_and_checks_the_hash(tmp_path):
    data = b"0123456789" * 100
    url = _serve(tmp_path, "data.bin", data)
    sha = hashlib.sha256(data).hexdigest()
    path = U.get_file("data.bin", url, file_hash=sha, cache_dir=str(tmp_path / "cache"))
    assert open(path, "rb").read() == data
    os.remove(tmp_path / "server" / "data.bin")  # cached with the right hash: no second download
    assert U.get_file("data.bin", url, file_hash=sha, cache_dir=str(tmp_path / "cache")) == path
    with pytest.raises(ValueError, match="hash"):
        U.get_file("other.bin", _serve(tmp_path, "other.bin", b"xx"), file_hash=sha, cache_dir=str(tmp_path / "c"))
    assert not (tmp_path / "c" / "datasets" / "other.bin").exists()
    assert [f for f in os.listdir(tmp_path / "c" / "datasets") if f.startswith(".download")] == []


def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def test_get_file_extracts_and_refuses_path_traversal(tmp_path):
    url = _serve(tmp_path, "a.tar.gz", _tar([("a/x.txt", b"hi")]))
    out = U.get_file("a.tar.gz", url, extract=True, cache_dir=str(tmp_path / "cache"))
    assert open(os.path.join(out, "a", "x.txt")).read() == "hi"
    bad = _serve(tmp_path, "bad.tar.gz", _tar([("../evil.txt", b"x")]))
    with pytest.raises(ValueError, match="unsafe member"):
        U.get_file("bad.tar.gz", bad, extract=True, cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / "evil.txt").exists()
    with pytest.raises(ValueError, match="plain file name"):
        U.get_file("../x", url, cache_dir=str(tmp_path / "cache"))


def _model(lr=0.01):
    m = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    m.compile(optimizer=tf.keras.optimizers.SGD(lr), loss="mse")
    return m


def test_terminate_on_nan_stops_in_the_epoch_it_happens(capsys):
    x = np.ones((64, 2), np.float32)
    y = np.full((64, 1), np.inf, np.float32)
    seen = []
    counter = tf.keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append(batch))
    hist = _model().fit(x, y, epochs=5, batch_size=8, verbose=0,
                        callbacks=[tf.keras.callbacks.TerminateOnNaN(), counter])
    assert len(hist.history["loss"]) == 1
    assert seen == [0]  # stopped after the first batch, not at the end of the epoch
    assert "Invalid loss, terminating training" in capsys.readouterr().out


def test_reduce_lr_on_plateau_follows_keras_rules():
    cb = tf.keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, cooldown=1, min_lr=0.002)

    class M:  # the callback only touches model.optimizer
        optimizer = tf.keras.optimizers.SGD(0.01)

    cb.set_model(M())
    cb.on_train_begin()
    lrs = []
    for epoch, loss in enumerate([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]):
        logs = {"loss": loss}
        cb.on_epoch_end(epoch, logs)
        lrs.append(round(float(np.asarray(M.optimizer.learning_rate)), 6))
    # recorded from Keras 3.15.1's ReduceLROnPlateau (TF 2.21) on the same losses
    assert lrs == [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025, 0.0025, 0.0025, 0.002, 0.002]
    with pytest.raises(ValueError, match="factor"):
        tf.keras.callbacks.ReduceLROnPlateau(factor=1.0)


def test_csv_logger_writes_a_row_per_epoch(tmp_path):
    path = tmp_path / "logs" / "train.csv"
    x = np.random.default_rng(0).standard_normal((32, 2)).astype(np.float32)
    m = _model()
    m.fit(x, x[:, :1], epochs=3, batch_size=8, verbose=0, callbacks=[tf.keras.callbacks.CSVLogger(str(path))])
    rows = list(csv.DictReader(open(path)))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and list(rows[0]) == ["epoch", "loss"]
    m.fit(x, x[:, :1], epochs=1, batch_size=8, verbose=0,
          callbacks=[tf.keras.callbacks.CSVLogger(str(path), append=True)])
    assert len(list(csv.DictReader(open(path)))) == 4


def test_model_to_dot_draws_every_layer_and_connection(tmp_path):
    from accel import keras

    a, b = keras.Input((3,), name="a"), keras.Input((5,), name="b")
    cat = keras.layers.Concatenate(name="cat")([a, b])
    out = keras.layers.Dense(1, name='out"x', activation="relu")(cat)
    model = keras.Model([a, b], out)
    text = keras.utils.model_to_dot(model, show_shapes=True, show_layer_activations=True, rankdir="LR")
    assert 'n2 [label="cat (Concatenate)\\noutput: (None, 8)"];' in text
    assert 'n3 [label="out\\"x (Dense)\\nactivation: relu\\noutput: (None, 1)"];' in text
    assert [line.strip() for line in text.splitlines() if "->" in line] == ["n0 -> n2;", "n1 -> n2;", "n2 -> n3;"]
    assert "rankdir=LR" in text
    keras.utils.plot_model(model, to_file=tmp_path / "sub" / "m.dot", show_shapes=True)
    assert (tmp_path / "sub" / "m.dot").read_text() == keras.utils.model_to_dot(model, show_shapes=True)
    seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d1"), keras.layers.Dense(3, name="d2")])
    text = keras.utils.model_to_dot(seq, show_shapes=True)
    assert '"d2 (Dense)\\noutput: (None, 3)"' in text and "n0 -> n1;" in text


def test_plot_model_without_graphviz_says_what_to_install(tmp_path, monkeypatch):
    import shutil

    from accel import keras

    monkeypatch.setattr(shutil, "which", lambda name: None)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ImportError, match="Graphviz's `dot` program.*model.dot"):
        keras.utils.plot_model(model, to_file=tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()
    with pytest.raises(ValueError, match="rankdir"):
        keras.utils.plot_model(model, to_file=tmp_path / "m.dot", rankdir="XY")
    with pytest.raises(ValueError, match="extension"):
        keras.utils.plot_model(model, to_file=tmp_path / "m")
