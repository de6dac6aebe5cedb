"""Checkpoint files: loading never executes code, damaged files fail with a clear ValueError and change
no weight, and a save interrupted at any point leaves the previous checkpoint loadable."""

import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("accel.keras")
if not hasattr(keras.Model, "save_weights"):
    pytest.skip("accel.keras has no save_weights yet", allow_module_level=True)

import accel as tf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVALID = r"not a valid weights file|does not match|no weight was changed|pickle|header"


def make_model(seed=0):
    m = keras.Sequential([keras.layers.Dense(8), keras.layers.Dense(3)])
    m(tf.constant(np.ones((1, 4), np.float32)))
    rng = np.random.default_rng(seed)
    m.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in m.get_weights()])
    return m


def weights(m):
    return [np.array(w, copy=True) for w in m.get_weights()]


def assert_weights(m, expected):
    got = m.get_weights()
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def ckpt(tmp_path):
    m = make_model(0)
    path = tmp_path / "model.weights.npz"
    m.save_weights(str(path))
    return path, weights(m)


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _write_zip(path, members):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy_bytes(a, allow_pickle=False):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def _load_rejected(path, match=INVALID):
    """Loading `path` into a fresh model raises ValueError matching `match` and changes no weight."""
    m = make_model(7)
    before = weights(m)
    with pytest.raises(ValueError, match=match) as info:
        m.load_weights(str(path))
    assert_weights(m, before)
    return str(info.value)


def test_round_trip_sanity(ckpt):
    path, w0 = ckpt
    m = make_model(5)
    m.load_weights(str(path))
    assert_weights(m, w0)


# --- never executes code ----------------------------------------------------------------------------

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        # unpickling this creates the marker file: proof that code ran
        return (open, (self.marker, "w"))


def test_pickle_bearing_npz_is_rejected_without_running_code(ckpt, tmp_path):
    path, _ = ckpt
    marker = tmp_path / "PWNED"
    members = _members(path)
    evil = np.empty(3, dtype=object)
    evil[0] = _Evil(str(marker))
    members["dense/kernel.npy"] = _npy_bytes(evil, allow_pickle=True)
    bad = tmp_path / "evil.npz"
    _write_zip(bad, members)
    # the file really is a working exploit for a loader that allows pickles
    with np.load(bad, allow_pickle=True) as f:
        f["dense/kernel"]
    assert marker.exists()
    marker.unlink()
    msg = _load_rejected(bad)
    assert "dense/kernel" in msg or "pickle" in msg.lower() or "object" in msg.lower(), msg
    assert not marker.exists(), "loading executed code from the checkpoint"


def test_raw_pickle_file_is_rejected(tmp_path):
    marker = tmp_path / "PWNED"
    bad = tmp_path / "pickle.npz"
    bad.write_bytes(pickle.dumps(_Evil(str(marker))))
    _load_rejected(bad)
    assert not marker.exists()


def test_object_dtype_member_without_payload_is_rejected(ckpt, tmp_path):
    path, _ = ckpt
    members = _members(path)
    members["dense/bias.npy"] = _npy_bytes(np.array([1, "a", None], dtype=object), allow_pickle=True)
    bad = tmp_path / "obj.npz"
    _write_zip(bad, members)
    _load_rejected(bad)


# --- damaged files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [0, 1, 4, 22, 30, 100, 0.25, 0.5, 0.75, 0.9, -22, -1])
def test_truncated_file_is_rejected(ckpt, tmp_path, keep):
    path, _ = ckpt
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    bad = tmp_path / "trunc.npz"
    bad.write_bytes(data[:n])
    _load_rejected(bad)


def test_every_single_byte_corruption_is_rejected_or_harmless(ckpt, tmp_path):
    """Flipping any one byte either gives a clear ValueError (weights untouched) or, where the byte is
    metadata the reader ignores, loads exactly the saved values; never garbage, never another error."""
    path, w0 = ckpt
    data = path.read_bytes()
    bad = tmp_path / "flip.npz"
    rejected = loaded = 0
    m = make_model(7)
    before = weights(m)
    for pos in range(0, len(data), max(1, len(data) // 400)):
        flipped = bytearray(data)
        flipped[pos] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        try:
            m.load_weights(str(bad))
        except ValueError:
            rejected += 1
            assert_weights(m, before)
            continue
        except Exception as e:  # noqa: BLE001
            pytest.fail("byte %d flipped: %s: %s (expected ValueError)" % (pos, type(e).__name__, e))
        loaded += 1
        assert_weights(m, w0)  # only harmless bytes may load, and then they load the true values
        m.set_weights(before)
    assert rejected > loaded, (rejected, loaded)


def test_corrupted_array_payload_caught_by_crc(ckpt, tmp_path):
    path, _ = ckpt
    data = bytearray(path.read_bytes())
    kernel = np.ascontiguousarray(weights(make_model(0))[0]).tobytes()
    at = bytes(data).find(kernel[:32])
    assert at > 0
    data[at + 5] ^= 0x01  # a single bit in a float: would load silently without the CRC
    bad = tmp_path / "crc.npz"
    bad.write_bytes(bytes(data))
    _load_rejected(bad, match=r"not a valid weights file|CRC|corrupt")


def test_oversized_npy_header_is_rejected(ckpt, tmp_path):
    path, _ = ckpt
    members = _members(path)
    header = ("{'descr': '<f4', 'fortran_order': False, 'shape': (8,), " + " " * 200_000 + "}").encode("latin1")
    header += b" " * ((64 - (12 + len(header) + 1) % 64) % 64) + b"\n"
    npy = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header)) + header + np.zeros(8, np.float32).tobytes()
    members["dense/bias.npy"] = npy
    bad = tmp_path / "header.npz"
    _write_zip(bad, members)
    _load_rejected(bad, match=r"not a valid weights file.*header|header")


def test_huge_declared_shape_is_rejected_without_allocating(ckpt, tmp_path):
    path, _ = ckpt
    members = _members(path)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }".encode("latin1")
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    members["dense/bias.npy"] = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 32
    bad = tmp_path / "shape.npz"
    _write_zip(bad, members)
    _load_rejected(bad)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64, np.complex64, np.bool_, "<U3"])
def test_wrong_dtype_is_rejected(ckpt, tmp_path, dtype):
    path, _ = ckpt
    members = _members(path)
    bias = np.zeros(8, dtype=dtype)
    members["dense/bias.npy"] = _npy_bytes(bias)
    bad = tmp_path / "dtype.npz"
    _write_zip(bad, members)
    msg = _load_rejected(bad, match=r"dense/bias")
    assert np.dtype(dtype).name in msg or str(np.dtype(dtype)) in msg, msg


@pytest.mark.parametrize("change", ["missing", "extra", "shape", "renamed", "not_npy", "duplicate", "empty"])
def test_structural_mismatch_is_rejected(ckpt, tmp_path, change):
    path, w0 = ckpt
    members = _members(path)
    if change == "missing":
        del members[sorted(members)[-1]]
    elif change == "extra":
        members["dense_9/kernel.npy"] = _npy_bytes(np.zeros(3, np.float32))
    elif change == "shape":
        k = sorted(members)[0]
        members[k] = _npy_bytes(np.zeros((2, 2), np.float32))
    elif change == "renamed":
        k = sorted(members)[0]
        members["x" + k] = members.pop(k)
    elif change == "not_npy":
        members["readme.txt"] = b"hello"
    elif change == "empty":
        members = {}
    bad = tmp_path / "struct.npz"
    if change == "duplicate":
        with zipfile.ZipFile(bad, "w") as zf, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate we write
            for k, v in members.items():
                zf.writestr(k, v)
            k = sorted(members)[0]
            zf.writestr(k, _npy_bytes(np.zeros_like(np.load(io.BytesIO(members[k])))))
    else:
        _write_zip(bad, members)
    _load_rejected(bad)


def test_directory_and_missing_path_errors_name_the_path(tmp_path):
    m = make_model(0)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        m.load_weights(str(tmp_path / "nope.npz"))
    with pytest.raises((IsADirectoryError, PermissionError, ValueError)):
        m.load_weights(str(tmp_path))


# --- interrupted saves -------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    sys.path.insert(0, {root!r})
    import accel as tf
    from accel import keras
    m = keras.Sequential([keras.layers.Dense({width}), keras.layers.Dense(3)])
    m(tf.constant(np.ones((1, 4), np.float32)))
    m.load_weights({path!r})
    m.set_weights([w + 1.0 for w in m.get_weights()])   # checkpoint B = A + 1
    point = {point!r}
    def die(*a, **k):
        os._exit(17)
    if point == "replace":
        os.replace = die
    elif point == "fsync":
        os.fsync = die
    elif point == "write_array":
        import numpy.lib.format as fmt
        real = fmt.write_array
        calls = []
        def partial(fp, array, *a, **k):
            calls.append(1)
            if len(calls) == 2:
                fp.write(b"\\x93NUMPY partial")
                die()
            return real(fp, array, *a, **k)
        fmt.write_array = partial
    elif point == "after_replace":
        real_replace = os.replace
        def replace_then_die(src, dst):
            real_replace(src, dst)
            die()
        os.replace = replace_then_die
    elif point == "loop":
        print("ready", flush=True)
        while True:
            m.save_weights({path!r})
            m.set_weights([w + 1.0 for w in m.get_weights()])
    m.save_weights({path!r})
    os._exit(0)
""")


def _child(path, point, width=8):
    code = CHILD.format(root=ROOT, path=str(path), point=point, width=width)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("point, expect", [("write_array", "A"), ("fsync", "A"), ("replace", "A"),
                                           ("after_replace", "B")])
def test_save_interrupted_at_each_step_leaves_a_loadable_checkpoint(ckpt, point, expect):
    path, w0 = ckpt
    p = _child(path, point)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 17, "child did not die at %s: rc %s\n%s" % (point, p.returncode, err.decode()[-2000:])
    m = make_model(3)
    m.load_weights(str(path))
    assert_weights(m, w0 if expect == "A" else [w + 1.0 for w in w0])
    assert path.name in os.listdir(path.parent)


def test_sigkill_during_repeated_saves_never_leaves_a_broken_checkpoint(tmp_path):
    """A child saves a larger model in a loop (each save = previous + 1); SIGKILL at several moments;
    the checkpoint is always a complete save: every weight equal to A + k for one k."""
    width = 2000
    m = keras.Sequential([keras.layers.Dense(width), keras.layers.Dense(3)])
    m(tf.constant(np.ones((1, 4), np.float32)))
    base = [np.zeros(w.shape, np.float32) for w in m.get_weights()]
    m.set_weights(base)
    path = tmp_path / "loop.weights.npz"
    m.save_weights(str(path))
    ks = []
    for delay in (0.05, 0.13, 0.29, 0.41, 0.6):
        p = _child(path, "loop", width=width)
        assert p.stdout.readline().strip() == b"ready", p.stderr.read().decode()[-2000:]
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(60)
        m.load_weights(str(path))
        got = m.get_weights()
        k = got[0].flat[0]
        for g in got:
            np.testing.assert_array_equal(g, np.full(g.shape, k, np.float32))
        ks.append(float(k))
    assert ks == sorted(ks)  # each run continued from the last complete save
