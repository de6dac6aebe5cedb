"""Keras metrics: accumulation over batches, sample weights, label shapes, reset and lookup."""

import numpy as np
import pytest

import accel as tf
from accel.keras import losses, metrics


def test_mean_accumulates_weighted_values_across_updates():
    m = metrics.Mean()
    m.update_state([1.0, 3.0, 5.0, 7.0])
    assert float(m.result()) == 4.0
    m.update_state([10.0, 20.0], sample_weight=[1.0, 0.0])
    # (1 + 3 + 5 + 7 + 10) / (4 + 1)
    np.testing.assert_allclose(float(m.result()), 26.0 / 5.0, rtol=1e-6)
    assert float(m.count) == 5.0
    m.reset_state()
    assert float(m.result()) == 0.0 and float(m.total) == 0.0  # no division by zero when empty


def test_mean_of_scalar_with_scalar_weight_counts_the_weight():
    m = metrics.Mean()
    m.update_state(2.0, sample_weight=32)  # how fit tracks a batch loss
    m.update_state(4.0, sample_weight=16)
    np.testing.assert_allclose(float(m.result()), (2 * 32 + 4 * 16) / 48, rtol=1e-6)


def test_mean_reduces_extra_axes_to_one_value_per_sample():
    m = metrics.Mean()
    m.update_state(np.array([[1.0, 3.0], [5.0, 9.0]]), sample_weight=np.array([1.0, 3.0]))
    np.testing.assert_allclose(float(m.result()), (2.0 * 1 + 7.0 * 3) / 4, rtol=1e-6)


def test_sum_metric():
    m = metrics.Sum()
    m.update_state([1.0, 3.0, 5.0, 7.0], sample_weight=[1, 1, 0, 0])
    assert float(m.result()) == 4.0


def test_metric_state_is_non_trainable_variables():
    m = metrics.SparseCategoricalAccuracy()
    assert len(m.variables) == 2
    assert all(isinstance(v, tf.Variable) and not v.trainable for v in m.variables)


def test_accuracy_exact_match():
    m = metrics.Accuracy()
    m.update_state([[1], [2], [3], [4]], [[0], [2], [3], [4]])
    assert float(m.result()) == 0.75
    m.reset_state()
    m.update_state([[1], [2], [3], [4]], [[0], [2], [3], [4]], sample_weight=[1, 1, 0, 0])
    assert float(m.result()) == 0.5


def test_binary_accuracy_threshold_and_label_shapes():
    m = metrics.BinaryAccuracy()
    m.update_state([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]])
    assert float(m.result()) == 0.75
    m = metrics.BinaryAccuracy(threshold=0.7)
    m.update_state(np.array([1.0, 1.0, 0.0, 0.0]), np.array([[0.98], [0.6], [0.0], [0.65]]))
    assert float(m.result()) == 0.75


def test_categorical_accuracy_weighted():
    m = metrics.CategoricalAccuracy()
    m.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]], sample_weight=[0.7, 0.3])
    np.testing.assert_allclose(float(m.result()), 0.3, rtol=1e-6)


@pytest.mark.parametrize("labels", [
    np.array([2, 1]), np.array([[2], [1]]), np.array([2.0, 1.0], np.float32),
    tf.constant([2, 1], dtype=tf.int64)],
    ids=["int", "column", "float", "tensor"])
def test_sparse_categorical_accuracy_label_forms(labels):
    m = metrics.SparseCategoricalAccuracy()
    m.update_state(labels, [[0.1, 0.6, 0.3], [0.05, 0.95, 0]], sample_weight=[0.7, 0.3])
    np.testing.assert_allclose(float(m.result()), 0.3, rtol=1e-6)


def test_sparse_categorical_accuracy_over_batches_matches_numpy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=100)
    logits = rng.normal(size=(100, 5))
    m = metrics.SparseCategoricalAccuracy()
    for lo in range(0, 100, 32):
        m.update_state(labels[lo:lo + 32], logits[lo:lo + 32])
    np.testing.assert_allclose(float(m.result()), np.mean(np.argmax(logits, -1) == labels), rtol=1e-6)


def test_calling_a_metric_updates_and_returns_the_running_result():
    m = metrics.Mean()
    assert float(m([2.0])) == 2.0
    assert float(m([4.0])) == 3.0


def test_mean_metric_wrapper_over_a_loss_function():
    y, p = np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([[1.0, 1.0], [1.0, 0.0]])
    m = metrics.MeanMetricWrapper(losses.mean_squared_error)
    m.update_state(y, p)
    assert m.name == "mean_squared_error"
    np.testing.assert_allclose(float(m.result()), 0.5, rtol=1e-6)


def test_get_by_name():
    assert isinstance(metrics.get("SparseCategoricalAccuracy"), metrics.SparseCategoricalAccuracy)
    assert metrics.get("sparse_categorical_accuracy") is metrics.sparse_categorical_accuracy
    assert metrics.get("mse") is losses.mean_squared_error
    with pytest.raises(ValueError, match="Could not interpret"):
        metrics.get("no_such_metric")


@pytest.mark.parametrize("y_shape,p_shape,expected", [
    ((8,), (8, 10), metrics.SparseCategoricalAccuracy),
    ((8, 1), (8, 10), metrics.SparseCategoricalAccuracy),
    ((8, 10), (8, 10), metrics.CategoricalAccuracy),
    ((8, 1), (8, 1), metrics.BinaryAccuracy),
    ((8,), (8, 1), metrics.BinaryAccuracy),
])
def test_accuracy_string_resolves_by_output_shapes(y_shape, p_shape, expected):
    for name in ("accuracy", "acc"):
        m = metrics.get_for_outputs(name, np.zeros(y_shape), np.zeros(p_shape))
        assert type(m) is expected and m.name == name


def test_get_for_outputs_wraps_functions_and_keeps_objects():
    m = metrics.get_for_outputs("mae", np.zeros(3), np.zeros(3))
    assert isinstance(m, metrics.MeanMetricWrapper) and m.name == "mae"
    obj = metrics.CategoricalAccuracy(name="cat")
    assert metrics.get_for_outputs(obj, np.zeros(3), np.zeros(3)) is obj


def test_config_round_trip():
    m = metrics.BinaryAccuracy(name="bacc", threshold=0.3)
    assert metrics.BinaryAccuracy.from_config(m.get_config()).get_config() == m.get_config()
