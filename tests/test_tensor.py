"""Tensor protocol, TensorFlow dtype rules, devices and Variables."""

import warnings

import numpy as np
import pytest

import accel as tf
from accel.errors import InvalidArgumentError


@pytest.mark.parametrize("value, dtype", [
    (1.5, tf.float32), (1, tf.int32), (True, tf.bool), ([1.0, 2], tf.float32), ([1, 2], tf.int32),
    (np.array([1.0]), tf.float64), (np.array([1], np.int64), tf.int64), (np.float64(2.0), tf.float64),
    (np.array([1.0], np.float32), tf.float32), ([], tf.float32), ([[1, 2], [3, 4]], tf.int32),
])
def test_constant_dtype_inference(value, dtype, device):
    assert tf.constant(value).dtype == dtype


def test_dtype_constants_compare_with_numpy():
    assert tf.float32 == np.float32 and tf.float32 == np.dtype("float32") and tf.float32 == "float32"
    assert tf.float32 != tf.float64 and tf.int64.is_integer and tf.float16.is_floating
    assert np.zeros(2, dtype=tf.float64).dtype == np.float64
    assert tf.as_dtype("int32") is tf.int32 and tf.bool.as_numpy_dtype is np.bool_


def test_int_division_gives_float64_and_python_scalars_take_tensor_dtype(device):
    assert (tf.constant(1) / tf.constant(2)).dtype == tf.float64
    assert float(tf.constant(1) / tf.constant(2)) == 0.5
    assert (tf.constant([1.0]) * 2).dtype == tf.float32
    assert (2.5 * tf.constant([1.0], tf.float64)).dtype == tf.float64
    assert (tf.constant(7) // 2).numpy() == 3 and (tf.constant(7) % 3).numpy() == 1


def test_mixed_float_dtypes_raise_naming_both(device):
    with pytest.raises(InvalidArgumentError, match="float32 and float64"):
        tf.constant([1.0]) + tf.constant(np.array([1.0]))
    assert issubclass(InvalidArgumentError, ValueError)


def test_float_python_scalar_into_int_tensor_raises(device):
    with pytest.raises(TypeError, match="int32"):
        tf.constant([1, 2]) * 2.5


def test_operators_and_reflected_forms(device):
    x = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose((1 - x).numpy(), 1 - x.numpy())
    np.testing.assert_allclose((2 / x).numpy(), 2 / x.numpy())
    np.testing.assert_allclose((2 ** x).numpy(), 2 ** x.numpy())
    np.testing.assert_allclose((x ** 2).numpy(), x.numpy() ** 2)
    np.testing.assert_allclose(([[1.0, 0.0]] @ x).numpy(), [[1.0, 2.0]])
    np.testing.assert_allclose((-x).numpy(), -x.numpy())
    np.testing.assert_allclose((np.ones((2, 2), np.float32) + x).numpy(), 1 + x.numpy())
    v = tf.Variable([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(([[2.0, 3.0]] @ v).numpy(), [[2.0, 3.0]])
    assert bool(tf.constant(2.0) > 1) and not (tf.constant(2.0) < 1)
    assert ((x > 2) & (x < 4)).numpy().tolist() == [[False, False], [True, False]]


def test_scalar_conversions_and_protocol(device):
    t = tf.constant(3.0)
    assert float(t) == 3.0 and int(tf.constant(7)) == 7
    n = 0
    while tf.constant(n) < 3:
        n += 1
    assert n == 3
    with pytest.raises(TypeError, match="exactly one element"):
        float(tf.constant([1.0, 2.0]))
    x = tf.constant([[1.0, 2.0, 3.0]])
    assert x.shape == (1, 3) and x.shape == [1, 3] and list(x.shape) == [1, 3] and x.shape.as_list() == [1, 3]
    assert x.ndim == 2 and len(x[0]) == 3
    assert isinstance(x.numpy(), np.ndarray)
    assert np.mean(x) == 2.0
    assert np.asarray(x).dtype == np.float32
    assert "shape=(1, 3)" in repr(x) and "float32" in repr(x)
    with pytest.raises(TypeError, match="unhashable"):
        hash(x)
    assert [float(r) for r in tf.constant([1.0, 2.0])] == [1.0, 2.0]


def test_indexing(device):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = tf.constant(a)
    for key in [1, -1, (0, 2), (slice(None), slice(None, None, -1)), (Ellipsis, 1), (None, 0),
                (slice(1, None), slice(None, None, 2)), (0, slice(3, 0, -1)), (Ellipsis, None)]:
        np.testing.assert_array_equal(t[key].numpy(), a[key])
    np.testing.assert_array_equal(t[t > 10].numpy(), a[a > 10])
    np.testing.assert_array_equal(t[tf.constant([1, 0, 1])].numpy(), a[[1, 0, 1]])
    with pytest.raises(InvalidArgumentError, match="out of bounds"):
        t[5]
    with pytest.raises(InvalidArgumentError, match="out of bounds"):
        t[:, tf.constant([0, 3])]
    with pytest.raises(TypeError):
        t["a"]


def test_tensors_are_immutable_and_do_not_alias_numpy(device):
    a = np.ones(3, np.float32)
    t = tf.constant(a)
    a[0] = 5
    assert t.numpy()[0] == 1.0
    with pytest.raises(TypeError):
        t[0] = 2.0


@pytest.mark.parametrize("bad, err", [
    ([[1, 2], [3]], ValueError), ("abc", TypeError), ([1, "a"], TypeError), (object(), TypeError),
    ({"a": 1}, TypeError),
])
def test_bad_python_input_raises_clearly(bad, err, device):
    with pytest.raises(err, match="convert"):
        tf.constant(bad)


def test_variable_basics(device):
    v = tf.Variable([1.0, 2.0], name="weights")
    assert isinstance(v, tf.Variable) and v.name == "weights:0" and v.trainable
    assert v.dtype == tf.float32 and v.shape == (2,)
    assert v.assign([3.0, 4.0]) is v
    np.testing.assert_array_equal(v.numpy(), [3.0, 4.0])
    np.testing.assert_array_equal(v.assign_add([1.0, 1.0]).numpy(), [4.0, 5.0])
    np.testing.assert_array_equal(v.assign_sub(tf.constant([4.0, 5.0])).numpy(), [0.0, 0.0])
    snap = v.read_value()
    v.assign([9.0, 9.0])
    np.testing.assert_array_equal(snap.numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(v[1:].numpy(), [9.0])
    assert tf.Variable(np.zeros(2)).dtype == tf.float64
    assert tf.Variable(1.0, dtype=tf.float64).dtype == tf.float64
    assert tf.Variable(1).trainable is False or tf.Variable(1).dtype == tf.int32


def test_failed_assign_leaves_value_untouched(device):
    v = tf.Variable([1.0, 2.0])
    with pytest.raises(ValueError, match=r"shape \(3,\).*shape \(2,\)"):
        v.assign([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="float64"):
        v.assign(tf.constant(np.array([1.0, 2.0])))
    with pytest.raises(ValueError):
        v.assign_add([[1.0, 2.0]])
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])


def test_variable_names_follow_tf_eager():
    a = tf.Variable(1.0, name="same")
    b = tf.Variable(1.0, name="same")
    assert a.name == b.name == "same:0"  # TF eager does not make variable names unique
    assert tf.Variable(1.0).name == "Variable:0"


def test_device_placement_and_errors():
    with tf.device("cpu"):
        t = tf.constant([1.0])
    assert "CPU:0" in t.device
    with pytest.raises(ValueError, match="device"):
        with tf.device("tpu:0"):
            pass



def test_soft_device_placement_falls_back_to_the_cpu_once_warned(monkeypatch):
    from accel import backend

    missing = "gpu:%d" % backend.gpu_count()  # a GPU this machine lacks (gpu:0 in CPU-only CI)
    monkeypatch.setattr(backend, "_soft_warned", False)
    assert tf.config.get_soft_device_placement()
    with pytest.warns(RuntimeWarning, match="soft device placement runs it on the CPU"):
        with tf.device(missing.upper()):
            t = tf.constant([1.0]) + 1
    assert "CPU:0" in t.device
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per process, as TF logs it
        with tf.device(missing):
            pass
    tf.config.set_soft_device_placement(False)
    try:
        with pytest.raises(RuntimeError, match="GPU"):
            with tf.device(missing):
                pass
    finally:
        tf.config.set_soft_device_placement(True)


def test_dlpack_round_trip():
    t = tf.constant([1.0, 2.0])
    back = tf.from_dlpack(t)
    np.testing.assert_array_equal(back.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(np.from_dlpack(t), [1.0, 2.0])


def test_creation_ops(device):
    assert tf.zeros((2, 3)).dtype == tf.float32 and tf.ones([2], tf.int64).dtype == tf.int64
    np.testing.assert_array_equal(tf.fill([2], 7).numpy(), [7, 7])
    assert tf.range(5).dtype == tf.int32 and tf.range(0.0, 1.0, 0.5).dtype == tf.float32
    np.testing.assert_array_equal(tf.range(1, 10, 3).numpy(), [1, 4, 7])
    np.testing.assert_array_equal(tf.eye(2).numpy(), np.eye(2))
    np.testing.assert_allclose(tf.linspace(0.0, 1.0, 3).numpy(), [0, 0.5, 1])
    np.testing.assert_array_equal(tf.one_hot([0, 2], 3).numpy(), [[1, 0, 0], [0, 0, 1]])
    assert tf.shape(tf.zeros((2, 3))).numpy().tolist() == [2, 3]
    assert int(tf.size(tf.zeros((2, 3)))) == 6 and int(tf.rank(tf.zeros((2, 3)))) == 2
    assert tf.cast(tf.constant([1.7, -1.7]), tf.int32).numpy().tolist() == [1, -1]
    assert tf.argmax(tf.constant([[1, 3], [4, 2]]), axis=1).dtype == tf.int64
    assert int(tf.argmax(tf.constant([1.0, 3.0]))) == 1
    assert tf.reduce_sum(tf.constant([1, 2])).dtype == tf.int32


def test_random_is_seeded_and_reproducible(device):
    tf.random.set_seed(42)
    a = tf.random.normal((3,)).numpy()
    b = tf.random.uniform((3,)).numpy()
    tf.random.set_seed(42)
    np.testing.assert_array_equal(tf.random.normal((3,)).numpy(), a)
    np.testing.assert_array_equal(tf.random.uniform((3,)).numpy(), b)
    t = tf.random.truncated_normal((1000,), stddev=2.0).numpy()
    assert np.all(np.abs(t) <= 4.0)
    np.testing.assert_array_equal(tf.random.normal((2,), seed=7).numpy(), tf.random.normal((2,), seed=7).numpy())


@pytest.mark.parametrize("call, match", [
    (lambda: tf.reshape(tf.zeros((2, 3)), (4, 2)), "6 elements"),
    (lambda: tf.matmul(tf.zeros((2, 3)), tf.zeros((2, 3))), "inner dimensions"),
    (lambda: tf.matmul(tf.zeros(3), tf.zeros((3, 1))), "rank >= 2"),
    (lambda: tf.concat([tf.zeros((2, 3)), tf.zeros((3, 2))], 0), "does not match"),
    (lambda: tf.reduce_sum(tf.zeros((2, 3)), axis=2), "out of range"),
    (lambda: tf.transpose(tf.zeros((2, 3)), [0, 0]), "permutation"),
    (lambda: tf.gather(tf.zeros((3, 2)), [0, 3]), "outside"),
    (lambda: tf.constant([1.0, 2.0]) + tf.constant([1.0, 2.0, 3.0]), "broadcast"),
    (lambda: tf.exp(tf.constant([1, 2])), "floating"),
    (lambda: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=[0, 5], logits=tf.zeros((2, 3))), "range"),
    (lambda: tf.stack([tf.zeros(2), tf.zeros(3)]), "one shape"),
    (lambda: tf.split(tf.zeros(5), 2), "equal"),
    (lambda: tf.squeeze(tf.zeros((2, 3)), 0), "squeeze"),
    (lambda: tf.tile(tf.zeros((2, 3)), [2]), "multiples"),
    (lambda: tf.expand_dims(tf.zeros(2), 3), "out of range"),
    (lambda: tf.reduce_max(tf.zeros((0, 3)), 0), "empty"),
])
def test_bad_arguments_raise_invalid_argument(call, match, device):
    with pytest.raises(InvalidArgumentError, match=match):
        call()
