"""Keras 3 losses: `Loss` classes with reductions and sample weights, and their function forms.

Numerics follow Keras 3 on the TensorFlow backend: with `from_logits=False`, probabilities are
clipped to [1e-7, 1 - 1e-7] (categorical ones renormalised per row first); with `from_logits=True`
the fused `accel.nn.*_cross_entropy_with_logits` ops are used, so extreme logits stay finite.
"""

from __future__ import annotations

import inspect

from accel.keras.naming import to_snake_case
from accel.math import divide_no_nan
from accel.ops.api import (
    abs, cast, clip_by_value, convert_to_tensor, expand_dims, log, not_equal, reduce_mean, reduce_sum,
    sigmoid_cross_entropy_with_logits, softmax_cross_entropy_with_logits,
    sparse_softmax_cross_entropy_with_logits, square, squeeze, where, zeros_like)

EPSILON = 1e-7  # keras.backend.epsilon()
FLOATX = "float32"  # keras.backend.floatx()

_REDUCTIONS = ("sum_over_batch_size", "sum", None, "none", "mean", "mean_with_sample_weight")


def _to_tensor(x, dtype=None):
    """Keras's `ops.convert_to_tensor`: like `convert_to_tensor`, but casts a tensor of another dtype."""
    t = convert_to_tensor(x)
    return t if dtype is None else cast(t, dtype)


def _rank(x):
    return len(x.shape)


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1=True):
    """Makes ranks that differ by one equal when the larger one ends in a dimension of size 1.

    (N,) against (N, 1) becomes (N, 1) and (N, 1): the element-wise losses then never broadcast
    into an (N, N) matrix.
    """
    r1, r2 = _rank(x1), _rank(x2)
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = expand_dims(x2, -1)
        else:
            x1 = squeeze(x1, -1)
    elif r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = expand_dims(x1, -1)
        else:
            x2 = squeeze(x2, -1)
    return x1, x2


def _size(x):
    n = 1
    for d in x.shape:
        n *= d
    return n


def _standardize_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError("Invalid value for argument `reduction`. Expected one of %s. Received: reduction=%r"
                         % (_REDUCTIONS, reduction))
    return reduction


def reduce_weighted_values(values, sample_weight=None, mask=None, reduction="sum_over_batch_size",
                           dtype=None):
    """Weights per-sample losses and reduces them (Keras 3 `reduce_weighted_values`).

    `mask` (bool, same shape as `values`) marks the entries that count; with the mean reductions
    the result is the mean over the unmasked entries.
    """
    reduction = _standardize_reduction(reduction)
    values = _to_tensor(values, dtype)
    if sample_weight is not None:
        sample_weight = _to_tensor(sample_weight, values.dtype)
    if mask is not None:
        if reduction in ("mean", "sum_over_batch_size"):
            valid = reduce_sum(cast(mask, values.dtype))
            mask_weight = where(mask, divide_no_nan(cast(_size(mask), values.dtype), valid), 0.0)
        else:
            mask_weight = cast(mask, values.dtype)
        if sample_weight is None:
            sample_weight = mask_weight
        else:
            mask_weight, sample_weight = squeeze_or_expand_to_same_rank(mask_weight, sample_weight)
            sample_weight = sample_weight * mask_weight
    if sample_weight is not None:
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        values = values * sample_weight

    if reduction in (None, "none") or tuple(values.shape) in ((), (0,)):
        return values
    loss = reduce_sum(values)
    if reduction == "sum":
        return loss
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        divisor = reduce_sum(sample_weight)
    else:
        divisor = cast(_size(values), loss.dtype)
    return divide_no_nan(loss, divisor)


class Loss:
    """Base class: subclasses implement `call(y_true, y_pred)` returning per-sample losses.

    `__call__` casts both arguments to `dtype`, then weights and reduces the result:
    `"sum_over_batch_size"` (default) and `"mean"` divide the weighted sum by the number of
    loss entries, `"mean_with_sample_weight"` by the sum of the weights, `"sum"` does not
    divide, and `None` / `"none"` return the per-sample losses.
    """

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        self.name = name or to_snake_case(type(self).__name__)
        self.reduction = _standardize_reduction(reduction)
        self.dtype = dtype or FLOATX

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = _to_tensor(y_pred, self.dtype)
        y_true = _to_tensor(y_true, self.dtype)
        losses = self.call(y_true, y_pred)
        mask = self._loss_mask(y_true, y_pred)
        return reduce_weighted_values(losses, sample_weight=sample_weight, mask=mask,
                                      reduction=self.reduction, dtype=self.dtype)

    def call(self, y_true, y_pred):
        raise NotImplementedError("%s must implement call(y_true, y_pred)" % type(self).__name__)

    def _loss_mask(self, y_true, y_pred):
        """Bool tensor of the per-sample losses that count, or None when all do."""
        return None

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class LossFunctionWrapper(Loss):
    """A `Loss` around a function `fn(y_true, y_pred, **kwargs)` returning per-sample losses; each keyword
    argument is also an attribute (`BinaryCrossentropy(from_logits=True).from_logits`)."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None), reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs
        vars(self).update(kwargs)

    def call(self, y_true, y_pred):
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}

    def __repr__(self):
        return "<LossFunctionWrapper(%s, kwargs=%s)>" % (self.fn, self._fn_kwargs)


# --- per-sample loss functions ----------------------------------------------------------------

def _pair(y_true, y_pred):
    y_pred = _to_tensor(y_pred)
    y_true = _to_tensor(y_true, y_pred.dtype)
    return squeeze_or_expand_to_same_rank(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    """mean(square(y_true - y_pred), axis=-1)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return reduce_mean(square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """mean(abs(y_true - y_pred), axis=-1)."""
    y_true, y_pred = _pair(y_true, y_pred)
    return reduce_mean(abs(y_true - y_pred), axis=-1)


def huber(y_true, y_pred, delta=1.0):
    """mean over the last axis of 0.5 e^2 where |e| <= delta, else delta |e| - 0.5 delta^2."""
    y_true, y_pred = _pair(y_true, y_pred)
    error = y_pred - y_true
    abs_error = abs(error)
    delta = float(delta)
    quadratic = 0.5 * square(error)
    linear = delta * abs_error - 0.5 * delta * delta
    return reduce_mean(where(abs_error <= delta, quadratic, linear), axis=-1)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Element-wise binary cross-entropy, averaged over `axis`.

    Label smoothing squeezes the targets towards 0.5: y * (1 - s) + 0.5 s.
    """
    y_pred = _to_tensor(y_pred)
    y_true = _to_tensor(y_true, y_pred.dtype)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        bce = sigmoid_cross_entropy_with_logits(labels=y_true, logits=y_pred)
    else:
        p = clip_by_value(y_pred, EPSILON, 1.0 - EPSILON)
        bce = -(y_true * log(p) + (1.0 - y_true) * log(1.0 - p))
    return reduce_mean(bce, axis=axis)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Cross-entropy between one-hot (or soft) targets and a distribution along `axis`.

    Label smoothing mixes the targets with the uniform distribution: y * (1 - s) + s / num_classes.
    """
    y_pred = _to_tensor(y_pred)
    y_true = _to_tensor(y_true, y_pred.dtype)
    if _rank(y_true) != _rank(y_pred) or tuple(y_true.shape) != tuple(y_pred.shape):
        raise ValueError("Arguments `target` and `output` must have the same shape. Received: "
                         "target.shape=%s, output.shape=%s" % (tuple(y_true.shape), tuple(y_pred.shape)))
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_pred.shape[axis]
    if from_logits:
        return softmax_cross_entropy_with_logits(labels=y_true, logits=y_pred, axis=axis)
    p = y_pred / reduce_sum(y_pred, axis=axis, keepdims=True)
    p = clip_by_value(p, EPSILON, 1.0 - EPSILON)
    return -reduce_sum(y_true * log(p), axis=axis)


def _sparse_labels(y_true, y_pred, axis):
    if axis not in (-1, _rank(y_pred) - 1):
        raise ValueError("Only axis=-1 is currently supported. Received: axis=%r" % (axis,))
    y_true = _to_tensor(y_true)
    if _rank(y_true) == _rank(y_pred) and y_true.shape[-1] == 1:
        y_true = squeeze(y_true, -1)
    if tuple(y_true.shape) != tuple(y_pred.shape[:-1]):
        raise ValueError("Arguments `target` and `output` must have the same shape up until the last "
                         "dimension: target.shape=%s, output.shape=%s"
                         % (tuple(y_true.shape), tuple(y_pred.shape)))
    return y_true


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """Cross-entropy with integer class ids (int or float dtype, shape (N,) or (N, 1)).

    With `from_logits=False` the clipped log-probabilities pass through log-softmax, which
    renormalises each row. Entries whose label is `ignore_class` give a loss of 0.
    """
    y_pred = _to_tensor(y_pred)
    y_true = _sparse_labels(y_true, y_pred, axis)
    if ignore_class is not None:
        valid = not_equal(y_true, cast(ignore_class, y_true.dtype))
        y_true = where(valid, y_true, zeros_like(y_true))
        y_pred = where(expand_dims(valid, -1), y_pred, zeros_like(y_pred))
    logits = y_pred if from_logits else log(clip_by_value(y_pred, EPSILON, 1.0 - EPSILON))
    res = sparse_softmax_cross_entropy_with_logits(labels=cast(y_true, "int64"), logits=logits)
    if ignore_class is not None:
        res = where(valid, res, zeros_like(res))
    return res


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
bce = BCE = binary_crossentropy


# --- Loss classes ---------------------------------------------------------------------------------

class MeanSquaredError(LossFunctionWrapper):
    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, name=name, reduction=reduction, dtype=dtype)


class MeanAbsoluteError(LossFunctionWrapper):
    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, name=name, reduction=reduction, dtype=dtype)


class Huber(LossFunctionWrapper):
    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(huber, name=name, reduction=reduction, dtype=dtype, delta=delta)


class BinaryCrossentropy(LossFunctionWrapper):
    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy", dtype=None):
        super().__init__(binary_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)


class CategoricalCrossentropy(LossFunctionWrapper):
    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy", dtype=None):
        super().__init__(categorical_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)


class SparseCategoricalCrossentropy(LossFunctionWrapper):
    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", axis=-1,
                 name="sparse_categorical_crossentropy", dtype=None):
        super().__init__(sparse_categorical_crossentropy, name=name, reduction=reduction, dtype=dtype,
                         from_logits=from_logits, ignore_class=ignore_class, axis=axis)

    def _loss_mask(self, y_true, y_pred):
        if self.ignore_class is None:
            return None
        labels = _sparse_labels(y_true, y_pred, self.axis)
        return not_equal(labels, cast(self.ignore_class, labels.dtype))


ALL_OBJECTS = (
    Loss, LossFunctionWrapper, MeanSquaredError, MeanAbsoluteError, Huber, BinaryCrossentropy,
    CategoricalCrossentropy, SparseCategoricalCrossentropy, mean_squared_error, mean_absolute_error, huber,
    binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy)
ALL_OBJECTS_DICT = {obj.__name__: obj for obj in ALL_OBJECTS}
ALL_OBJECTS_DICT.update({"mse": mse, "MSE": mse, "mae": mae, "MAE": mae, "bce": bce, "BCE": bce})


def get(identifier):
    """A loss from a name ('mse', 'sparse_categorical_crossentropy', 'Huber'), a class, or a callable.

    Class names give an instance with default arguments; function names give the function.
    """
    if identifier is None:
        return None
    obj = ALL_OBJECTS_DICT.get(identifier) if isinstance(identifier, str) else identifier
    if obj is None or not callable(obj):
        raise ValueError("Could not interpret loss identifier: %r" % (identifier,))
    return obj() if inspect.isclass(obj) else obj


def serialize(loss):
    """{'class_name', 'config'} for a `Loss`, the function's name for a loss function."""
    if isinstance(loss, Loss):
        return {"class_name": type(loss).__name__, "config": loss.get_config()}
    return loss.__name__


def deserialize(config):
    if isinstance(config, dict):
        return ALL_OBJECTS_DICT[config["class_name"]].from_config(config["config"])
    return get(config)

