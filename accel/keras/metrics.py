"""Keras 3 metrics: stateful accumulators whose state lives in non-trainable `accel.Variable`s.

    m = SparseCategoricalAccuracy()
    m.update_state(labels, logits)      # accumulate over batches
    float(m.result()); m.reset_state()
"""

from __future__ import annotations

import inspect

from accel.keras import losses as losses_module
from accel.keras.losses import _to_tensor, squeeze_or_expand_to_same_rank
from accel.keras.naming import to_snake_case
from accel.math import divide_no_nan
from accel.ops.api import (
    argmax, broadcast_to, cast, convert_to_tensor, equal, greater, reduce_mean, reduce_sum, reshape, squeeze,
    zeros)
from accel.variables import Variable

FLOATX = losses_module.FLOATX


class Metric:
    """Base class: subclasses create state with `add_variable` and implement `update_state` and `result`.

    Calling a metric updates its state and returns the running result. `_direction` ("up",
    "down" or None) tells callbacks in mode "auto" whether larger values are better.
    """

    _direction = None

    def __init__(self, name=None, dtype=None):
        self.name = name or to_snake_case(type(self).__name__)
        self.dtype = dtype or FLOATX
        self._variables = []

    def add_variable(self, shape=(), dtype=None, name=None):
        v = Variable(zeros(shape, dtype=dtype or self.dtype), trainable=False,
                     name="%s/%s" % (self.name, name or "variable"))
        self._variables.append(v)
        return v

    @property
    def variables(self):
        return list(self._variables)

    def update_state(self, *args, **kwargs):
        raise NotImplementedError("%s must implement update_state" % type(self).__name__)

    def result(self):
        raise NotImplementedError("%s must implement result" % type(self).__name__)

    def reset_state(self):
        for v in self._variables:
            v.assign(zeros(v.shape, dtype=v.dtype))

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return "<%s name=%s>" % (type(self).__name__, self.name)


def _samplewise(values, sample_weight, dtype):
    """Reduces `values` to one value per sample (times its weight) and the weights to match."""
    values = cast(_to_tensor(values), dtype)
    if sample_weight is not None:
        sample_weight = _to_tensor(sample_weight, dtype)
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        weight_ndim, values_ndim = len(sample_weight.shape), len(values.shape)
        if values_ndim > weight_ndim:
            values = reduce_mean(values, axis=list(range(weight_ndim, values_ndim)))
        # broadcast so that a scalar weight counts once per sample
        sample_weight = broadcast_to(sample_weight, values.shape)
        values = values * sample_weight
        if weight_ndim > 1:
            sample_weight = reduce_mean(sample_weight, axis=list(range(1, weight_ndim)))
    if len(values.shape) > 1:
        values = reduce_mean(values, axis=list(range(1, len(values.shape))))
    return values, sample_weight


class Mean(Metric):
    """The (weighted) mean of the values seen: total / count."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(name="total")
        self.count = self.add_variable(name="count")

    def update_state(self, values, sample_weight=None):
        values, sample_weight = _samplewise(values, sample_weight, self.dtype)
        self.total.assign_add(reduce_sum(values))
        if sample_weight is not None:
            self.count.assign_add(reduce_sum(sample_weight))
        else:
            self.count.assign_add(cast(values.shape[0] if values.shape else 1, self.dtype))

    def result(self):
        return divide_no_nan(self.total, self.count)


class Sum(Metric):
    """The (weighted) sum of the values seen."""

    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(name="total")

    def update_state(self, values, sample_weight=None):
        values, _ = _samplewise(values, sample_weight, self.dtype)
        self.total.assign_add(reduce_sum(values))

    def result(self):
        return convert_to_tensor(self.total)


class MeanMetricWrapper(Mean):
    """The running mean of `fn(y_true, y_pred, **kwargs)`, a function of per-sample values; each keyword
    argument is also an attribute (`BinaryAccuracy(threshold=0.7).threshold`)."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None) or "mean_metric_wrapper", dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs
        vars(self).update(kwargs)
        if fn in losses_module.ALL_OBJECTS:
            self._direction = "down"

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


# --- per-sample metric functions ---------------------------------------------------------------

def accuracy(y_true, y_pred):
    """1.0 where y_true == y_pred exactly, else 0.0."""
    y_pred = _to_tensor(y_pred)
    y_true = _to_tensor(y_true, y_pred.dtype)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    return cast(equal(y_true, y_pred), FLOATX)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1.0 where (y_pred > threshold) equals y_true."""
    y_pred = _to_tensor(y_pred)
    y_true = _to_tensor(y_true)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    y_pred = cast(greater(y_pred, threshold), y_true.dtype)
    return cast(equal(y_true, y_pred), FLOATX)


def categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_true) == argmax(y_pred) along the last axis."""
    return cast(equal(argmax(_to_tensor(y_true), axis=-1), argmax(_to_tensor(y_pred), axis=-1)), FLOATX)


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where the integer label (shape (N,) or (N, 1), any dtype) equals argmax(y_pred)."""
    y_pred = _to_tensor(y_pred)
    y_true = _to_tensor(y_true)
    true_shape = tuple(y_true.shape)
    squeezed = len(true_shape) == len(y_pred.shape) and true_shape[-1] == 1
    if squeezed:
        y_true = squeeze(y_true, -1)
    matches = cast(equal(y_true, cast(argmax(y_pred, axis=-1), y_true.dtype)), FLOATX)
    if squeezed and len(true_shape) > 2:
        matches = reshape(matches, true_shape)
    return matches


class _Accuracy(MeanMetricWrapper):
    """How often `_match`, a per-sample 0/1 function, holds; named after the function unless `name` is given."""

    _direction = "up"

    def __init__(self, name=None, dtype=None):
        super().__init__(self._match, name=name or self._match.__name__, dtype=dtype)


class Accuracy(_Accuracy):
    """How often predictions equal labels exactly."""

    _match = staticmethod(accuracy)


class BinaryAccuracy(_Accuracy):
    """How often (y_pred > threshold) matches binary labels."""

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        MeanMetricWrapper.__init__(self, binary_accuracy, name=name, dtype=dtype, threshold=threshold)


class CategoricalAccuracy(_Accuracy):
    """How often argmax(y_pred) matches argmax of one-hot labels."""

    _match = staticmethod(categorical_accuracy)


class SparseCategoricalAccuracy(_Accuracy):
    """How often argmax(y_pred) matches integer labels."""

    _match = staticmethod(sparse_categorical_accuracy)


ALL_OBJECTS = (
    Metric, Mean, Sum, MeanMetricWrapper, Accuracy, BinaryAccuracy, CategoricalAccuracy,
    SparseCategoricalAccuracy, accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy)
ALL_OBJECTS_DICT = {obj.__name__: obj for obj in ALL_OBJECTS}
ALL_OBJECTS_DICT.update({"acc": accuracy})
# the loss functions double as metrics
ALL_OBJECTS_DICT.update({k: v for k, v in losses_module.ALL_OBJECTS_DICT.items()
                         if not inspect.isclass(v)})


def get(identifier):
    """A metric from a name ('sparse_categorical_accuracy', 'mse', 'Accuracy'), a class or a callable.

    Class names give an instance with default arguments; function names give the function
    (`compile` wraps functions in `MeanMetricWrapper`).
    """
    if identifier is None:
        raise ValueError("Expected metric, received None")
    obj = ALL_OBJECTS_DICT.get(identifier) if isinstance(identifier, str) else identifier
    if obj is None or not callable(obj):
        raise ValueError("Could not interpret metric identifier: %r" % (identifier,))
    return obj() if inspect.isclass(obj) else obj


def get_for_outputs(identifier, y_true, y_pred):
    """What `compile(metrics=[...])` makes of `identifier` for these labels and predictions.

    As in Keras 3, 'accuracy' / 'acc' picks the accuracy that fits the shapes: one output unit
    gives BinaryAccuracy, integer labels (rank below y_pred's, or a last dimension of 1 against
    several classes) give SparseCategoricalAccuracy, otherwise CategoricalAccuracy. The metric is
    named after the string it came from, so history keys read as written in `compile`.
    """
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        t_shape, p_shape = tuple(y_true.shape), tuple(y_pred.shape)
        if p_shape[-1] == 1:
            return BinaryAccuracy(name=identifier)
        if len(t_shape) < len(p_shape) or (t_shape[-1] == 1 and p_shape[-1] > 1):
            return SparseCategoricalAccuracy(name=identifier)
        return CategoricalAccuracy(name=identifier)
    metric = get(identifier)
    if not isinstance(metric, Metric):
        metric = MeanMetricWrapper(metric)
    if isinstance(identifier, str):
        metric.name = identifier
    return metric
