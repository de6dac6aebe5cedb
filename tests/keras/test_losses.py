"""Keras losses against NumPy reference formulas, Keras's documented values and finite differences."""

import numpy as np
import pytest

import accel as tf
from accel.keras import losses
from tests.gradcheck import check_grads

EPS = 1e-7


# --- NumPy references (float64), written from the formulas -----------------------------------------

def np_mse(t, p):
    return np.mean((t - p) ** 2, axis=-1)


def np_mae(t, p):
    return np.mean(np.abs(t - p), axis=-1)


def np_huber(t, p, delta=1.0):
    e = np.abs(p - t)
    return np.mean(np.where(e <= delta, 0.5 * e**2, delta * e - 0.5 * delta**2), axis=-1)


def np_sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_bce(t, p, from_logits=False, smoothing=0.0):
    t = t * (1 - smoothing) + 0.5 * smoothing
    if from_logits:
        p = np_sigmoid(p)
    p = np.clip(p, EPS, 1 - EPS)
    return np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)), axis=-1)


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_cce(t, p, from_logits=False, smoothing=0.0):
    t = t * (1 - smoothing) + smoothing / p.shape[-1]
    if from_logits:
        z = p - p.max(-1, keepdims=True)
        return np.sum(t, -1) * np.log(np.exp(z).sum(-1)) - np.sum(t * z, -1)
    p = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
    return -np.sum(t * np.log(p), axis=-1)


def np_scce(labels, p, from_logits=False):
    labels = np.asarray(labels).astype(int).reshape(-1)
    if from_logits:
        logp = np.log(np_softmax(p))
    else:
        q = np.clip(p, EPS, 1 - EPS)
        logp = np.log(q / q.sum(-1, keepdims=True))
    return -logp[np.arange(len(labels)), labels]


def reduce_ref(per_sample, sample_weight=None, reduction="sum_over_batch_size"):
    v = per_sample if sample_weight is None else per_sample * sample_weight
    if reduction in (None, "none"):
        return v
    if reduction == "sum":
        return v.sum()
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        return v.sum() / np.sum(sample_weight)
    return v.sum() / v.size


rng = np.random.default_rng(0)
N, C = 6, 4
Y_REG = rng.normal(size=(N, C))
P_REG = Y_REG + rng.normal(scale=1.5, size=(N, C))
Y_BIN = rng.integers(0, 2, size=(N, C)).astype(np.float64)
P_PROB = rng.uniform(0.05, 0.95, size=(N, C))
LOGITS = rng.normal(scale=3, size=(N, C))
LABELS = rng.integers(0, C, size=N)
ONE_HOT = np.eye(C)[LABELS]
P_DIST = np_softmax(LOGITS)
WEIGHTS = rng.uniform(0.1, 2.0, size=N)

# (loss instance factory, y_true, y_pred, per-sample NumPy reference)
CASES = {
    "mse": (losses.MeanSquaredError, Y_REG, P_REG, np_mse(Y_REG, P_REG)),
    "mae": (losses.MeanAbsoluteError, Y_REG, P_REG, np_mae(Y_REG, P_REG)),
    "huber": (lambda **kw: losses.Huber(delta=0.7, **kw), Y_REG, P_REG, np_huber(Y_REG, P_REG, 0.7)),
    "bce_probs": (losses.BinaryCrossentropy, Y_BIN, P_PROB, np_bce(Y_BIN, P_PROB)),
    "bce_logits": (lambda **kw: losses.BinaryCrossentropy(from_logits=True, **kw), Y_BIN, LOGITS,
                   np_bce(Y_BIN, LOGITS, from_logits=True)),
    "bce_smooth": (lambda **kw: losses.BinaryCrossentropy(label_smoothing=0.2, **kw), Y_BIN, P_PROB,
                   np_bce(Y_BIN, P_PROB, smoothing=0.2)),
    "cce_probs": (losses.CategoricalCrossentropy, ONE_HOT, P_DIST, np_cce(ONE_HOT, P_DIST)),
    "cce_logits": (lambda **kw: losses.CategoricalCrossentropy(from_logits=True, **kw), ONE_HOT, LOGITS,
                   np_cce(ONE_HOT, LOGITS, from_logits=True)),
    "cce_smooth": (lambda **kw: losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, **kw),
                   ONE_HOT, LOGITS, np_cce(ONE_HOT, LOGITS, from_logits=True, smoothing=0.1)),
    "scce_probs": (losses.SparseCategoricalCrossentropy, LABELS, P_DIST, np_scce(LABELS, P_DIST)),
    "scce_logits": (lambda **kw: losses.SparseCategoricalCrossentropy(from_logits=True, **kw), LABELS, LOGITS,
                    np_scce(LABELS, LOGITS, from_logits=True)),
}

REDUCTIONS = ["sum_over_batch_size", "sum", None, "none", "mean", "mean_with_sample_weight"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_matches_numpy_reference(case, reduction, weighted):
    make, y_true, y_pred, per_sample = CASES[case]
    sw = WEIGHTS if weighted else None
    out = make(reduction=reduction)(y_true, y_pred, sample_weight=sw)
    assert out.dtype == tf.float32  # float64 inputs are cast to the loss dtype, floatx
    np.testing.assert_allclose(out.numpy(), reduce_ref(per_sample, sw, reduction), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_float64_dtype_and_column_sample_weight(case):
    make, y_true, y_pred, per_sample = CASES[case]
    out = make(dtype="float64")(y_true, y_pred, sample_weight=WEIGHTS[:, None])
    assert out.dtype == tf.float64
    np.testing.assert_allclose(out.numpy(), reduce_ref(per_sample, WEIGHTS), rtol=1e-10)


def test_scalar_sample_weight_scales_the_loss():
    make, y_true, y_pred, per_sample = CASES["mse"]
    np.testing.assert_allclose(make()(y_true, y_pred, sample_weight=2.5).numpy(), 2.5 * per_sample.mean(),
                               rtol=1e-6)


def test_keras_documented_values():
    y, p = np.array([1, 2]), np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
    scce = losses.SparseCategoricalCrossentropy()
    np.testing.assert_allclose(scce(y, p).numpy(), 1.177, atol=1e-3)
    np.testing.assert_allclose(scce(y, p, sample_weight=np.array([0.3, 0.7])).numpy(), 0.814, atol=1e-3)
    np.testing.assert_allclose(losses.SparseCategoricalCrossentropy(reduction="sum")(y, p).numpy(), 2.354,
                               atol=1e-3)
    np.testing.assert_allclose(losses.SparseCategoricalCrossentropy(reduction=None)(y, p).numpy(),
                               [0.0513, 2.303], atol=1e-3)
    np.testing.assert_allclose(losses.CategoricalCrossentropy()(np.eye(3)[y], p).numpy(), 1.177, atol=1e-3)

    yb, zb = np.array([[0, 1], [0, 0]]), np.array([[-18.6, 0.51], [2.94, -12.8]])
    bce = losses.BinaryCrossentropy(from_logits=True)
    np.testing.assert_allclose(bce(yb, zb).numpy(), 0.8654, atol=1e-4)
    np.testing.assert_allclose(bce(yb, zb, sample_weight=[0.8, 0.2]).numpy(), 0.243, atol=1e-3)
    np.testing.assert_allclose(losses.BinaryCrossentropy(from_logits=True, reduction="sum")(yb, zb).numpy(),
                               1.730, atol=1e-3)
    np.testing.assert_allclose(losses.BinaryCrossentropy(from_logits=True, reduction=None)(yb, zb).numpy(),
                               [0.235, 1.496], atol=1e-3)
    np.testing.assert_allclose(losses.MeanSquaredError()([1.0, 0.0, 1.0], [0.9, 0.1, 0.8]).numpy(), 0.02,
                               rtol=1e-5)
    np.testing.assert_allclose(losses.MeanAbsoluteError()([1.0, 0.3, 1.0], [1.9, 0.3, 1.8]).numpy(),
                               0.5666667, rtol=1e-5)


def test_categorical_crossentropy_renormalises_rows_and_clips():
    t = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    unnormalised = np.array([[2.0, 6.0, 2.0], [0.0, 3.0, 1.0]])  # rows sum to 10 and 4; p(class 0) = 0 below
    out = losses.CategoricalCrossentropy(reduction=None)(t, unnormalised).numpy()
    np.testing.assert_allclose(out, [-np.log(0.6), -np.log(np.float32(EPS))], rtol=1e-5)


def test_sparse_labels_accept_float_and_column_shapes():
    expected = losses.SparseCategoricalCrossentropy(reduction=None)(LABELS, P_DIST).numpy()
    for labels in (LABELS.astype(np.float32), LABELS[:, None], tf.constant(LABELS.astype(np.int64))):
        out = losses.SparseCategoricalCrossentropy(reduction=None)(labels, P_DIST).numpy()
        np.testing.assert_array_equal(out, expected)


def test_sparse_ignore_class_averages_over_kept_entries():
    labels = LABELS.copy()
    labels[[1, 4]] = -1
    keep = labels != -1
    ref = np_scce(np.where(keep, labels, 0), LOGITS, from_logits=True) * keep
    scce = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    np.testing.assert_allclose(scce(labels, LOGITS).numpy(), ref.sum() / keep.sum(), rtol=1e-5)
    per = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction=None)
    np.testing.assert_allclose(per(labels, LOGITS).numpy(), ref, rtol=1e-5, atol=1e-7)


def test_binary_label_shapes_do_not_broadcast():
    t = np.array([0.0, 1.0, 1.0])
    p = np.array([[0.2], [0.7], [0.4]])
    expected = np_bce(t[:, None], p).mean()
    np.testing.assert_allclose(losses.BinaryCrossentropy()(t, p).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(losses.MeanSquaredError()(t, p).numpy(), np.mean((t - p[:, 0]) ** 2),
                               rtol=1e-6)


EXTREME_LOGITS = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0], [0.0, 0.0, -1e4]], dtype=np.float32)


@pytest.mark.parametrize("make,y_true", [
    (lambda: losses.BinaryCrossentropy(from_logits=True),
     np.array([[0, 1, 1], [1, 0, 0], [0, 1, 0]], np.float32)),
    (lambda: losses.CategoricalCrossentropy(from_logits=True), np.eye(3, dtype=np.float32)[[1, 0, 2]]),
    (lambda: losses.SparseCategoricalCrossentropy(from_logits=True), np.array([1, 0, 2])),
], ids=["bce", "cce", "scce"])
def test_extreme_logits_stay_finite(make, y_true):
    z = tf.Variable(EXTREME_LOGITS)
    with tf.GradientTape() as tape:
        loss = make()(y_true, z)
    grad = tape.gradient(loss, z)
    assert np.isfinite(loss.numpy()) and loss.numpy() > 1e3  # the confidently wrong rows cost ~1e4
    assert np.all(np.isfinite(grad.numpy()))


@pytest.mark.parametrize("make,y_true", [
    (losses.BinaryCrossentropy, np.array([[0, 1, 1], [1, 0, 0]], np.float32)),
    (losses.CategoricalCrossentropy, np.eye(3, dtype=np.float32)[[1, 0]]),
    (losses.SparseCategoricalCrossentropy, np.array([1, 0])),
], ids=["bce", "cce", "scce"])
def test_saturated_probabilities_are_clipped(make, y_true):
    p = tf.Variable(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32))
    with tf.GradientTape() as tape:
        loss = make()(y_true, p)
    assert np.isfinite(loss.numpy()) and 10 < loss.numpy() < 20  # -log(1e-7) = 16.1 per wrong entry
    assert np.all(np.isfinite(tape.gradient(loss, p).numpy()))


GRAD_CASES = {
    "mse": (losses.mean_squared_error, Y_REG, P_REG),
    "mae": (losses.mean_absolute_error, Y_REG, P_REG),
    "huber": (lambda t, p: losses.huber(t, p, delta=0.7), Y_REG, P_REG),
    "bce_probs": (losses.binary_crossentropy, Y_BIN, P_PROB),
    "bce_logits": (lambda t, p: losses.binary_crossentropy(t, p, from_logits=True, label_smoothing=0.1),
                   Y_BIN, LOGITS),
    "cce_probs": (lambda t, p: losses.categorical_crossentropy(t, p, label_smoothing=0.1), ONE_HOT,
                  rng.uniform(0.1, 1.0, size=(N, C))),
    "cce_logits": (lambda t, p: losses.categorical_crossentropy(t, p, from_logits=True), ONE_HOT, LOGITS),
    "scce_probs": (losses.sparse_categorical_crossentropy, LABELS, P_DIST),
    "scce_logits": (lambda t, p: losses.sparse_categorical_crossentropy(t, p, from_logits=True),
                    LABELS, LOGITS),
}


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_gradient_matches_float64_finite_differences(case):
    fn, y_true, y_pred = GRAD_CASES[case]
    check_grads(lambda p: fn(y_true, p), [np.asarray(y_pred, np.float64)], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
def test_reduced_gradient_matches_finite_differences(reduction):
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction, dtype="float64")
    check_grads(lambda z: loss(LABELS, z, sample_weight=WEIGHTS), [LOGITS.copy()], rtol=1e-5, atol=1e-8)


def test_function_forms_return_per_sample_values():
    assert losses.mse is losses.mean_squared_error and losses.mae is losses.mean_absolute_error
    assert losses.mse(Y_REG, P_REG).shape == (N,)
    np.testing.assert_allclose(losses.mse(Y_REG, P_REG).numpy(), np_mse(Y_REG, P_REG), rtol=1e-12)
    scce = losses.sparse_categorical_crossentropy(LABELS, LOGITS, from_logits=True)
    np.testing.assert_allclose(scce.numpy(), np_scce(LABELS, LOGITS, from_logits=True), rtol=1e-12)
    cce = losses.categorical_crossentropy(ONE_HOT, P_DIST)
    np.testing.assert_allclose(cce.numpy(), np_cce(ONE_HOT, P_DIST), rtol=1e-12)


def test_custom_loss_subclass_gets_reduction_and_weights():
    class Cubic(losses.Loss):
        def call(self, y_true, y_pred):
            return tf.reduce_mean((y_pred - y_true) ** 3, axis=-1)

    out = Cubic(reduction="sum")(Y_REG, P_REG, sample_weight=WEIGHTS)
    np.testing.assert_allclose(out.numpy(), np.sum(np.mean((P_REG - Y_REG) ** 3, -1) * WEIGHTS), rtol=1e-5)
    assert Cubic().name == "cubic"


def test_get_config_round_trip_and_lookup():
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=3, reduction="sum", name="x")
    clone = losses.SparseCategoricalCrossentropy.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    assert loss.get_config() == {"name": "x", "reduction": "sum", "from_logits": True, "ignore_class": 3,
                                 "axis": -1}
    assert losses.Huber(delta=2.0).get_config()["delta"] == 2.0
    assert isinstance(losses.deserialize(losses.serialize(losses.Huber(delta=2.0))), losses.Huber)

    assert losses.get("mse") is losses.mean_squared_error
    assert losses.get("sparse_categorical_crossentropy") is losses.sparse_categorical_crossentropy
    assert isinstance(losses.get("BinaryCrossentropy"), losses.BinaryCrossentropy)
    assert losses.get(None) is None
    with pytest.raises(ValueError, match="Could not interpret"):
        losses.get("no_such_loss")
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="average")


def test_shape_errors_are_reported():
    with pytest.raises(ValueError, match="same shape"):
        losses.CategoricalCrossentropy()(ONE_HOT[:, :3], P_DIST)
    with pytest.raises(ValueError, match="up until the last dimension"):
        losses.SparseCategoricalCrossentropy()(LABELS[:4], P_DIST)


def test_short_namespace_reexports():
    import accel.losses

    assert accel.losses.SparseCategoricalCrossentropy is losses.SparseCategoricalCrossentropy
    assert accel.losses.get is losses.get
