"""Weight checkpoints: round trips, validation that changes nothing on error, corruption, crash safety."""

import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from accel.keras import Model, Sequential, layers
from accel.keras import saving


def make_model(seed=0):
    model = Sequential(
        [
            layers.Conv2D(2, 3, input_shape=(6, 6, 1)),
            layers.BatchNormalization(),
            layers.Flatten(),
            layers.Dense(3),
        ]
    )
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in model.weights])  # positive: valid BN variances
    return model


def assert_same_weights(a, b):
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


def test_round_trip_into_a_fresh_model(tmp_path):
    path = tmp_path / "ckpt.weights.npz"
    src, dst = make_model(0), make_model(1)
    src.save_weights(path)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.weights.npz"]  # no temp file left behind
    dst.load_weights(str(path))
    assert_same_weights(src, dst)  # non-trainable BN statistics included
    x = np.random.default_rng(2).standard_normal((2, 6, 6, 1)).astype(np.float32)
    np.testing.assert_array_equal(src(x).numpy(), dst(x).numpy())
    with zipfile.ZipFile(path) as zf:
        names = sorted(zf.namelist())
    assert names == sorted(k + ".npy" for k in saving.weight_paths(src))
    assert "dense/kernel.npy" in names and "batch_normalization/moving_variance.npy" in names


def test_subclassed_model_round_trip(tmp_path):
    class Net(Model):
        def __init__(self):
            super().__init__()
            self.blocks = [layers.Dense(4), layers.LayerNormalization()]
            self.head = layers.Dense(1)

        def call(self, inputs):
            x = inputs
            for b in self.blocks:
                x = b(x)
            return self.head(x)

    a, b = Net(), Net()
    x = np.ones((2, 3), np.float32)
    a(x), b(x)
    a.set_weights([np.random.default_rng(3).standard_normal(w.shape) for w in a.weights])
    a.save_weights(tmp_path / "net.npz")
    b.load_weights(tmp_path / "net.npz")
    assert_same_weights(a, b)
    assert set(saving.weight_paths(a)) == {
        "blocks/0/kernel",
        "blocks/0/bias",
        "blocks/1/gamma",
        "blocks/1/beta",
        "head/kernel",
        "head/bias",
    }


def test_overwrite_replaces_the_previous_checkpoint(tmp_path):
    path = tmp_path / "w.npz"
    make_model(0).save_weights(path)
    newer = make_model(5)
    newer.save_weights(path)
    loaded = make_model(1)
    loaded.load_weights(path)
    assert_same_weights(newer, loaded)


def test_mismatches_are_listed_and_nothing_changes(tmp_path):
    path = tmp_path / "w.npz"
    make_model(0).save_weights(path)
    other = Sequential(
        [
            layers.Conv2D(2, 3, input_shape=(6, 6, 1)),
            layers.BatchNormalization(),
            layers.Flatten(),
            layers.Dense(4),
            layers.Dense(1),
        ]
    )
    before = other.get_weights()
    with pytest.raises(ValueError) as err:
        other.load_weights(path)
    msg = str(err.value)
    assert "no weight was changed" in msg
    assert "missing from the file: dense_1/bias, dense_1/kernel" in msg
    assert (
        "mismatched: dense/bias: file has float32 (3,), model has float32 (4,); "
        "dense/kernel: file has float32 (32, 3), model has float32 (32, 4)" in msg
    )
    for x, y in zip(
        before, other.get_weights(), strict=True
    ):  # the conv and BN weights matched, and are unchanged too
        np.testing.assert_array_equal(x, y)


def test_extra_weights_and_dtype_mismatch(tmp_path):
    path = tmp_path / "w.npz"
    big = Sequential([layers.Dense(2, input_shape=(3,)), layers.Dense(2)])
    big.save_weights(path)
    small = Sequential([layers.Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="in the file but not in the model: dense_1/bias, dense_1/kernel"):
        small.load_weights(path)
    wide = Sequential([layers.Dense(2, input_shape=(3,), dtype="float64"), layers.Dense(2, dtype="float64")])
    with pytest.raises(ValueError, match=r"dense/bias: file has float32 \(2,\), model has float64 \(2,\)"):
        wide.load_weights(path)
    unbuilt = Sequential([layers.Dense(2), layers.Dense(2)])
    with pytest.raises(ValueError, match="the model is not built"):
        unbuilt.load_weights(path)
    with pytest.raises(ValueError, match="not built"):
        unbuilt.save_weights(tmp_path / "unbuilt.npz")


@pytest.mark.parametrize("damage", ["truncate_half", "truncate_tail", "flip_data_byte", "empty", "garbage"])
def test_damaged_files_are_rejected_cleanly(tmp_path, damage):
    path = tmp_path / "w.npz"
    src = make_model(0)
    src.save_weights(path)
    data = path.read_bytes()
    if damage == "truncate_half":
        data = data[: len(data) // 2]
    elif damage == "truncate_tail":
        data = data[:-10]
    elif damage == "flip_data_byte":
        # inside the last array's data, before the central directory: only the CRC-32 can notice
        with zipfile.ZipFile(path) as zf:
            info = zf.infolist()[-1]
        # the local header's name and extra-field lengths sit at bytes 26..30
        name_len, extra_len = np.frombuffer(data, "<u2", 2, info.header_offset + 26)
        pos = info.header_offset + 30 + int(name_len) + int(extra_len) + info.file_size - 1
        data = data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]
    elif damage == "empty":
        data = b""
    else:
        data = b"\x93NUMPY not really" * 10
    path.write_bytes(data)
    dst = make_model(1)
    before = dst.get_weights()
    with pytest.raises(ValueError, match="not a valid weights file") as err:
        dst.load_weights(path)
    assert damage != "flip_data_byte" or "CRC-32" in str(err.value)
    for x, y in zip(before, dst.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


def test_pickled_object_arrays_are_never_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"dense/kernel": np.array([object()], dtype=object)})
    model = Sequential([layers.Dense(1, input_shape=(1,))])
    with pytest.raises(ValueError, match="not a valid weights file.*pickle"):
        model.load_weights(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        make_model().load_weights(tmp_path / "nope.npz")


def test_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    old = make_model(0)
    old.save_weights(path)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(OSError, match="disk full"):
        make_model(7).save_weights(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["w.npz"]
    fresh = make_model(1)
    fresh.load_weights(path)
    assert_same_weights(old, fresh)


def test_crash_between_write_and_rename_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "w.npz"
    old = make_model(0)
    old.save_weights(path)
    child = textwrap.dedent("""
        import os, sys
        sys.path.insert(0, %r)
        from test_saving import make_model
        os.replace = lambda *args: os._exit(17)  # the process dies after the temp file is written and synced
        make_model(9).save_weights(%r)
    """) % (os.path.dirname(__file__), str(path))
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    leftovers = [n for n in os.listdir(tmp_path) if n != "w.npz"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".w.npz.")  # the complete, never-renamed temp
    fresh = make_model(1)
    fresh.load_weights(path)
    assert_same_weights(old, fresh)


class _ScalarWeight(layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale


@pytest.mark.parametrize("name", ["w.weights.npz", "w.weights.h5"])
def test_a_0d_weight_keeps_its_shape(tmp_path, name):
    src, dst = Sequential([_ScalarWeight(name="s")]), Sequential([_ScalarWeight(name="s")])
    src(np.ones((1, 2), np.float32))
    dst(np.ones((1, 2), np.float32))
    src.layers[0].scale.assign(2.5)
    src.save_weights(tmp_path / name)
    dst.load_weights(str(tmp_path / name))
    assert dst.layers[0].scale.shape == ()
    assert float(dst.layers[0].scale.numpy()) == 2.5
    if name.endswith(".npz"):
        with np.load(tmp_path / name) as f:
            assert [f[k].shape for k in f.files] == [()]
