"""Keras 3 files: models written by Keras 3.15 load with Keras's predictions; accel's files load back (and in
Keras 3 when .venv-bench exists); corrupt or unsafe files are refused with errors naming the file."""

import json
import os
import shutil
import subprocess
import textwrap
import zipfile

import numpy as np
import pytest

pytest.importorskip("h5py")

from accel import keras  # noqa: E402
from accel.keras import layers, saving, serialization  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
EXPECTED = np.load(os.path.join(DATA, "keras3_expected.npz"))
BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), ".venv-bench", "bin", "python")


def feed(name):
    ins = {k.split("/")[2]: EXPECTED[k] for k in EXPECTED.files if k.startswith(name + "/in/")}
    return ins["x"] if list(ins) == ["x"] else ins


def expected(name):
    return [EXPECTED[k] for k in sorted(k for k in EXPECTED.files if k.startswith(name + "/out/"))]


def as_list(out):
    return [np.asarray(o) for o in (out if isinstance(out, list) else [out])]


MODELS = ["mlp", "cnn", "functional", "nested", "lambda"]


@pytest.mark.parametrize("name", MODELS)
def test_keras3_model_file_predicts_as_keras(name):
    model = keras.models.load_model(os.path.join(DATA, "keras3_%s.keras" % name), safe_mode=name != "lambda")
    for got, want in zip(as_list(model.predict(feed(name), verbose=0)), expected(name), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_keras3_weights_file_loads_into_a_model_from_its_config(name):
    source = keras.models.load_model(os.path.join(DATA, "keras3_%s.keras" % name), safe_mode=name != "lambda")
    before = source.predict(feed(name), verbose=0)
    fresh = source.__class__.from_config(source.get_config()) if name != "lambda" else None
    target = fresh or source
    target.load_weights(os.path.join(DATA, "keras3_%s.weights.h5" % name))
    for got, want in zip(as_list(target.predict(feed(name), verbose=0)), as_list(before), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def small_model():
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    shared = layers.Dense(5, activation="relu")
    x = layers.Concatenate()([shared(layers.Dense(4)(a)), shared(a)])
    x = layers.BatchNormalization()(x) * 2.0 + 1.0
    out1 = layers.Dense(2, activation="softmax", name="p")(layers.Concatenate()([x, b]))
    out2 = layers.Dense(1, name="s")(layers.LayerNormalization()(x))
    model = keras.Model([a, b], [out1, out2], name="small")
    rng = np.random.default_rng(1)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in model.get_weights()])
    x = [rng.standard_normal((3, 4)).astype("float32"), rng.standard_normal((3, 3)).astype("float32")]
    return model, x


def test_round_trip_keras_file_and_weights(tmp_path):
    model, x = small_model()
    path = tmp_path / "new" / "folder" / "m.keras"  # missing folders are created
    model.save(path)
    assert sorted(os.listdir(path.parent)) == ["m.keras"]  # no temp file left
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        assert json.loads(zf.read("config.json"))["class_name"] == "Functional"
    loaded = keras.models.load_model(path)
    for got, want in zip(loaded.predict(x, verbose=0), model.predict(x, verbose=0), strict=True):
        np.testing.assert_array_equal(got, want)
    model.save_weights(tmp_path / "w.weights.h5")
    fresh = keras.Model.from_config(model.get_config())
    fresh.load_weights(tmp_path / "w.weights.h5")
    for got, want in zip(fresh.predict(x, verbose=0), model.predict(x, verbose=0), strict=True):
        np.testing.assert_array_equal(got, want)
    import h5py

    with h5py.File(tmp_path / "w.weights.h5") as h:  # Keras's layout: snake-case class keys, numbered datasets
        assert h["layers/dense_1/vars/0"].shape == (4, 5) and "vars" in h["layers/concatenate"]


def test_npz_checkpoints_still_written_for_other_names(tmp_path):
    model, _ = small_model()
    model.save_weights(tmp_path / "ckpt.npz")
    with zipfile.ZipFile(tmp_path / "ckpt.npz") as zf:
        assert all(n.endswith(".npy") for n in zf.namelist())
    model.load_weights(tmp_path / "ckpt.npz")


@pytest.mark.skipif(not os.path.exists(BENCH), reason="needs .venv-bench (TensorFlow 2.21 / Keras 3)")
def test_accel_files_load_in_keras3(tmp_path):
    model, x = small_model()
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    np.savez(tmp_path / "io.npz", a=x[0], b=x[1], p=model.predict(x, verbose=0)[0], s=model.predict(x, verbose=0)[1])
    script = textwrap.dedent("""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, keras
        d = sys.argv[1]
        io = np.load(os.path.join(d, "io.npz"))
        m = keras.models.load_model(os.path.join(d, "m.keras"))
        p, s = m.predict([io["a"], io["b"]], verbose=0)
        m.load_weights(os.path.join(d, "m.weights.h5"))
        p2, s2 = m.predict([io["a"], io["b"]], verbose=0)
        print(max(float(np.abs(p - io["p"]).max()), float(np.abs(s - io["s"]).max()),
                  float(np.abs(p2 - io["p"]).max())))
    """)
    run = subprocess.run([BENCH, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert float(run.stdout.strip().splitlines()[-1]) < 1e-5


# --- bad files -----------------------------------------------------------------------------------------------
def rewrite(src, dst, change):
    """A copy of the .keras file `src` at `dst` with change(name, data) -> (name, data) applied to each entry."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            name, data = change(info.filename, zin.read(info))
            zout.writestr(name, data)
    return dst


def truncated(src, dst):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[: len(data) // 2])
    return dst


def byte_flipped(src, dst):
    data = bytearray(open(src, "rb").read())
    with zipfile.ZipFile(src) as zf:
        info = zf.getinfo("model.weights.h5")
    data[info.header_offset + 30 + len(info.filename) + 5000] ^= 0xFF  # inside the stored weights entry
    open(dst, "wb").write(bytes(data))
    return dst


def not_a_zip(src, dst):
    open(dst, "wb").write(b"hello, not a zip" * 10)
    return dst


def traversal(src, dst):
    rewrite(src, dst, lambda n, d: (n, d))
    with zipfile.ZipFile(dst, "a") as zf:
        zf.writestr("../evil.txt", b"x")
    return dst


def wrong_weight_shape(src, dst):
    import h5py

    def change(name, data):
        if name != "model.weights.h5":
            return name, data
        tmp = dst.parent / "w.h5"
        tmp.write_bytes(data)
        with h5py.File(tmp, "a") as h:
            del h["layers/dense/vars/0"]
            h["layers/dense/vars/0"] = np.zeros((7, 7), np.float32)
        return name, tmp.read_bytes()

    return rewrite(src, dst, change)


def bad_json(src, dst):
    return rewrite(src, dst, lambda n, d: (n, b"{not json" if n == "config.json" else d))


def unknown_module(src, dst):
    def change(name, data):
        if name == "config.json":
            config = json.loads(data)
            config["config"]["layers"][1]["module"] = "subprocess"
            config["config"]["layers"][1]["class_name"] = "Popen"
            data = json.dumps(config).encode()
        return name, data

    return rewrite(src, dst, change)


BAD = [
    # (make, source model, expected error, message pattern)
    (truncated, "mlp", ValueError, "bad.keras.*(not a valid|truncated)"),
    (byte_flipped, "mlp", ValueError, "bad.keras.*(corrupt|not a valid)"),
    (not_a_zip, "mlp", ValueError, "bad.keras.*not a zip"),
    (traversal, "mlp", ValueError, r"bad.keras.*'\.\./evil.txt'.*'\.\.'"),
    (wrong_weight_shape, "mlp", ValueError, r"(?s)bad.keras.*layers/dense/vars/0: file has shape \(7, 7\)"),
    (bad_json, "mlp", ValueError, "bad.keras.*not JSON"),
    (unknown_module, "mlp", ValueError, "bad.keras.*never imports"),
    (lambda s, d: shutil.copy(s, d) and d, "lambda", ValueError, "bad.keras.*Lambda.*safe_mode=False"),
]


@pytest.mark.parametrize("make, source, error, pattern", BAD, ids=[b[0].__name__ for b in BAD[:-1]] + ["lambda"])
def test_bad_files_are_refused_naming_the_file(tmp_path, make, source, error, pattern):
    bad = make(os.path.join(DATA, "keras3_%s.keras" % source), tmp_path / "bad.keras")
    with pytest.raises(error, match=pattern):
        keras.models.load_model(bad)


def test_failed_load_leaves_the_weights_unchanged(tmp_path):
    model = keras.models.load_model(os.path.join(DATA, "keras3_mlp.keras"))
    before = model.get_weights()
    bad = wrong_weight_shape(os.path.join(DATA, "keras3_mlp.keras"), tmp_path / "bad.keras")
    with pytest.raises(ValueError, match="no weight was changed"):
        model.load_weights(bad)  # the first layers' weights match; none may be assigned
    import h5py

    with h5py.File(tmp_path / "w.h5", "a") as h:
        h["layers/dense_1/vars/0"][...] = 0
        h["layers/dense/vars/2"] = np.zeros(3, np.float32)  # an extra dataset
    with pytest.raises(ValueError, match="holds datasets"):
        saving.load_weights(model, _renamed(tmp_path / "w.h5", tmp_path / "x.weights.h5"))
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def _renamed(src, dst):
    os.replace(src, dst)
    return dst


def test_save_weights_needs_the_keras_suffix_for_h5(tmp_path):
    model, _ = small_model()
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        model.save_weights(tmp_path / "w.h5")
    with pytest.raises(ValueError, match=r"\.keras"):
        keras.models.load_model(tmp_path / "w.weights.h5")


def test_registered_custom_layer_round_trip(tmp_path):
    @saving.register_keras_serializable(package="tests", name="Scale")
    class Scale(layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    assert saving.get_registered_object("tests>Scale") is Scale
    x = keras.Input((3,))
    model = keras.Model(x, Scale(3.0)(layers.Dense(2)(x)))
    model.save(tmp_path / "c.keras")
    data = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "c.keras")(data).numpy(), model(data).numpy())
    del serialization._REGISTRY["tests>Scale"]  # unregistered: refused, never imported
    with pytest.raises(ValueError, match="register"):
        keras.models.load_model(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras", custom_objects={"tests>Scale": Scale})
    np.testing.assert_array_equal(loaded(data).numpy(), model(data).numpy())
