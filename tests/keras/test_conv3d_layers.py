"""Keras 3's 3-D convolution, pooling and resizing layers (accel/keras/layers/conv.py): a model Keras 3 saved
loads with Keras's predictions and configs, accel's own .keras files round-trip (and load in Keras 3 when
.venv-bench exists), get_config/from_config, Keras 3's defaults, dtypes and bad arguments.

Values and gradients of each layer against Keras (same weights) are rows of tests/test_conv_ops.py
(tools/record_tf_conv.py records both into tests/data/tf_conv.npz and tests/data/keras3_conv3d.keras).
"""

import json
import os
import subprocess
import textwrap
import zipfile

import numpy as np
import pytest

import accel
from accel import keras
from accel.keras import layers

pytest.importorskip("h5py")

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
RECORDED = np.load(os.path.join(DATA, "tf_conv.npz"))
KERAS_FILE = os.path.join(DATA, "keras3_conv3d.keras")
BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), ".venv-bench", "bin", "python")


def test_keras3_file_predicts_as_keras():
    model = keras.models.load_model(KERAS_FILE)
    got = model.predict(RECORDED["model/conv3d/x"], verbose=0)
    np.testing.assert_allclose(got, RECORDED["model/conv3d/out"], rtol=1e-5, atol=1e-5)


def _comparable(config):
    """A layer config without what differs only in form: the dtype policy's sharing id, initializer options
    that are None."""
    out = {}
    for key, value in config.items():
        if key == "dtype":
            value = value["config"]["name"] if isinstance(value, dict) else value
        elif key.endswith("_initializer") and isinstance(value, dict):
            value = (value["class_name"], {k: v for k, v in value["config"].items() if v is not None})
        out[key] = json.loads(json.dumps(value))
    return out


def test_configs_equal_keras3s():
    with zipfile.ZipFile(KERAS_FILE) as zf:
        saved = {entry["config"]["name"]: entry for entry in json.loads(zf.read("config.json"))["config"]["layers"]}
    model = keras.models.load_model(KERAS_FILE)
    seen = set()
    for layer in model.layers[1:]:
        if "3D" not in type(layer).__name__:
            continue
        entry = saved[layer.name]
        assert type(layer).__name__ == entry["class_name"]
        want = {k: v for k, v in _comparable(entry["config"]).items()
                if not (k.endswith(("_regularizer", "_constraint")) and v is None)}
        assert _comparable(layer.get_config()) == want, layer.name
        seen.add(entry["class_name"])
    assert {"Conv3D", "Conv3DTranspose", "MaxPooling3D", "AveragePooling3D", "GlobalAveragePooling3D",
            "GlobalMaxPooling3D", "UpSampling3D", "ZeroPadding3D", "Cropping3D"} <= seen


def accel_model():
    inp = keras.Input((3, 5, 4, 2))
    h = layers.ZeroPadding3D(1)(inp)
    h = layers.Conv3D(4, (2, 3, 2), strides=(1, 2, 1), padding="same", activation="tanh", groups=2)(h)
    # filters != the last spatial size: Keras 3.15 on TF 2.21's CPU adds a channels_first Conv3D's bias wrongly
    # when they are equal (its XLA path; accel computes the definition, the channels_last twin)
    h = layers.Conv3D(2, 2, dilation_rate=(1, 2, 1), data_format="channels_first")(h)
    h = layers.AveragePooling3D((1, 2, 1), padding="same", data_format="channels_first")(h)
    h = layers.Conv3DTranspose(2, 3, strides=(2, 1, 2), output_padding=(1, 0, 0), padding="same")(h)
    h = layers.MaxPooling3D(2, strides=1, padding="same")(h)
    h = layers.UpSampling3D((1, 1, 2), data_format="channels_first")(h)
    h = layers.Cropping3D(((0, 1), (1, 0), (0, 1)))(h)
    a = layers.GlobalAveragePooling3D()(h)
    b = layers.GlobalMaxPooling3D(data_format="channels_first")(h)
    model = keras.Model(inp, layers.Dense(2)(layers.Concatenate()([a, b])), name="conv3d_accel")
    rng = np.random.default_rng(3)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5 for w in model.get_weights()])
    return model, rng.standard_normal((2, 3, 5, 4, 2)).astype(np.float32)


def test_accel_file_round_trip(tmp_path):
    model, x = accel_model()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(model.layers, loaded.layers, strict=True):
        assert a.get_config() == b.get_config()
        clone = type(a).from_config(a.get_config())
        assert clone.get_config() == a.get_config()


@pytest.mark.skipif(not os.path.exists(BENCH), reason="needs .venv-bench (TensorFlow 2.21 / Keras 3)")
def test_accel_file_loads_in_keras3(tmp_path):
    model, x = accel_model()
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "io.npz", x=x, y=model.predict(x, verbose=0))
    script = textwrap.dedent("""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import numpy as np, keras
        d = sys.argv[1]
        io = np.load(os.path.join(d, "io.npz"))
        m = keras.models.load_model(os.path.join(d, "m.keras"))
        print(float(np.abs(m.predict(io["x"], verbose=0) - io["y"]).max()))
    """)
    run = subprocess.run([BENCH, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    assert float(run.stdout.strip().splitlines()[-1]) < 1e-5


# Keras 3.15's defaults (keras.layers.X().get_config() / signatures, TF 2.21's tf.keras)
DEFAULTS = [
    (lambda: layers.Conv3D(2, 3), dict(kernel_size=[3, 3, 3], strides=[1, 1, 1], padding="valid",
                                       data_format="channels_last", dilation_rate=[1, 1, 1], groups=1,
                                       activation="linear", use_bias=True)),
    (lambda: layers.Conv3DTranspose(2, 3), dict(kernel_size=[3, 3, 3], strides=[1, 1, 1], padding="valid",
                                                output_padding=None, data_format="channels_last",
                                                dilation_rate=[1, 1, 1], activation="linear", use_bias=True)),
    (lambda: layers.MaxPooling3D(), dict(pool_size=[2, 2, 2], strides=[2, 2, 2], padding="valid",
                                         data_format="channels_last")),
    (lambda: layers.AveragePooling3D(3), dict(pool_size=[3, 3, 3], strides=[3, 3, 3], padding="valid")),
    (lambda: layers.GlobalAveragePooling3D(), dict(data_format="channels_last", keepdims=False)),
    (lambda: layers.GlobalMaxPooling3D(), dict(data_format="channels_last", keepdims=False)),
    (lambda: layers.UpSampling3D(), dict(size=[2, 2, 2], data_format="channels_last")),
    (lambda: layers.ZeroPadding3D(), dict(padding=[[1, 1], [1, 1], [1, 1]], data_format="channels_last")),
    (lambda: layers.Cropping3D(), dict(cropping=[[1, 1], [1, 1], [1, 1]], data_format="channels_last")),
]


@pytest.mark.parametrize("make, want", DEFAULTS, ids=[str(i) for i in range(len(DEFAULTS))])
def test_defaults_are_keras3s(make, want):
    config = json.loads(json.dumps(make().get_config()))
    assert {k: config[k] for k in want} == want
    assert "groups" not in config or make().__class__ is layers.Conv3D  # Keras's transpose takes no groups


def test_names_and_aliases():
    assert layers.Conv3D(1, 1).name.startswith("conv3d")
    assert layers.MaxPooling3D().name.startswith("max_pooling3d")
    assert layers.Convolution3D is layers.Conv3D and layers.Convolution3DTranspose is layers.Conv3DTranspose
    assert layers.MaxPool3D is layers.MaxPooling3D and layers.AvgPool3D is layers.AveragePooling3D
    assert layers.GlobalAvgPool3D is layers.GlobalAveragePooling3D
    assert layers.GlobalMaxPool3D is layers.GlobalMaxPooling3D


LAYERS = [
    lambda dt: layers.Conv3D(2, 2, padding="same", dtype=dt),
    lambda dt: layers.Conv3DTranspose(2, 2, strides=2, dtype=dt),
    lambda dt: layers.MaxPooling3D(padding="same", dtype=dt),
    lambda dt: layers.AveragePooling3D(2, padding="same", dtype=dt),
    lambda dt: layers.GlobalAveragePooling3D(dtype=dt),
    lambda dt: layers.GlobalMaxPooling3D(dtype=dt),
    lambda dt: layers.UpSampling3D(dtype=dt),
    lambda dt: layers.ZeroPadding3D(dtype=dt),
    lambda dt: layers.Cropping3D(((0, 0), (1, 0), (0, 1)), dtype=dt),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make", LAYERS, ids=[str(i) for i in range(len(LAYERS))])
def test_output_and_gradients_keep_the_dtype(make, dtype):
    x = accel.constant(np.random.default_rng(0).standard_normal((1, 1, 3, 2, 3)).astype(dtype))
    layer = make(dtype)
    with accel.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = accel.reduce_sum(y * y)
    grads = tape.gradient(loss, [x] + list(layer.trainable_weights))
    assert y.dtype.name == dtype and all(g.dtype.name == dtype for g in grads)


X5 = np.zeros((1, 4, 4, 4, 2), np.float32)
ERRORS = [
    ("conv rank", lambda: layers.Conv3D(2, 2)(X5[0]), ValueError, r"expected a 5-D input"),
    ("conv kernel_size", lambda: layers.Conv3D(2, (2, 2)), ValueError, r"kernel_size must be a positive int or a "
                                                                       r"tuple of 3"),
    ("conv strides", lambda: layers.Conv3D(2, 2, strides=0), ValueError, "strides must be a positive int"),
    ("conv negative dilation", lambda: layers.Conv3D(2, 2, dilation_rate=(1, -1, 1)), ValueError, "dilation_rate"),
    ("conv dilated strided", lambda: layers.Conv3D(2, 2, strides=2, dilation_rate=2), ValueError,
     "not supported in conjunction"),
    ("conv padding", lambda: layers.Conv3D(2, 2, padding="causal"), ValueError, "padding argument must be one of"),
    ("conv data_format", lambda: layers.Conv3D(2, 2, data_format="NDHWC"), ValueError,
     "data_format must be 'channels_last' or 'channels_first'"),
    ("conv groups", lambda: layers.Conv3D(3, 2, groups=2), ValueError, "divisible by the number of groups"),
    ("conv input channels", lambda: layers.Conv3D(2, 2, groups=2)(np.zeros((1, 3, 3, 3, 3), np.float32)),
     ValueError, r"input channels \(3\) must be evenly divisible by the number of groups \(2\)"),
    ("conv channels changed", lambda: [conv(x) for conv in [layers.Conv3D(2, 2)] for x in (X5, X5[..., :1])],
     ValueError, r"expected 2 channels \(axis -1\), but received input with shape \(1, 4, 4, 4, 1\)"),
    ("conv window", lambda: layers.Conv3D(2, 6)(X5), accel.errors.InvalidArgumentError, "does not fit"),
    ("transpose output_padding", lambda: layers.Conv3DTranspose(2, 3, strides=2, output_padding=2), ValueError,
     "smaller than its stride"),
    ("transpose output_padding count", lambda: layers.Conv3DTranspose(2, 3, strides=2, output_padding=(1, 1)),
     ValueError, "output_padding must be 3 ints"),
    ("transpose groups", lambda: layers.Conv3DTranspose(2, 3, groups=2), TypeError, "groups"),
    ("pool rank", lambda: layers.MaxPooling3D()(X5[0]), ValueError, "5-D"),
    ("pool size", lambda: layers.MaxPooling3D((2, 2)), ValueError, "pool_size must be a positive int or a tuple of 3"),
    ("pool strides", lambda: layers.AveragePooling3D(2, strides=-1), ValueError, "strides"),
    ("pool padding", lambda: layers.AveragePooling3D(2, padding="full"), ValueError, "padding"),
    ("avg pool_size required", lambda: layers.AveragePooling3D(), TypeError, "pool_size"),
    ("global rank", lambda: layers.GlobalMaxPooling3D()(X5[0]), ValueError, "5-D"),
    ("upsampling size", lambda: layers.UpSampling3D(size=(2, 0, 2)), ValueError, "size"),
    ("padding count", lambda: layers.ZeroPadding3D((1, 2)), ValueError, "tuple of 3 ints"),
    ("padding negative", lambda: layers.ZeroPadding3D(((1, 1), (0, -1), (0, 0))), ValueError, "non-negative"),
    ("crop everything", lambda: layers.Cropping3D(((0, 0), (2, 2), (0, 0)))(X5), ValueError, "leaves nothing"),
    ("crop data_format", lambda: layers.Cropping3D(data_format="NCDHW"), ValueError, "data_format"),
]


@pytest.mark.parametrize("fn, error, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_arguments_raise_clear_errors(fn, error, match):
    with pytest.raises(error, match=match):
        fn()


def test_depthwise_regularizer_is_written_under_keras_name_and_round_trips():
    layer = keras.layers.DepthwiseConv2D(3, depthwise_regularizer=keras.regularizers.L2(0.5))
    config = layer.get_config()
    assert "depthwise_regularizer" in config and "kernel_regularizer" not in config
    x = np.ones((1, 4, 4, 2), np.float32)
    layer(x)
    again = keras.layers.DepthwiseConv2D.from_config(config)
    again(x)
    again.set_weights(layer.get_weights())
    assert float(sum(again.losses)) == pytest.approx(float(sum(layer.losses))) and float(sum(layer.losses)) > 0
