"""Merge layers: combine a list of same-shaped tensors (Concatenate joins along an axis)."""

from __future__ import annotations

import functools

import accel
from accel.keras.layers.base import Layer


class _Merge(Layer):
    def _check(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 1:
            raise ValueError("%s: call it on a list of at least one tensor, got %r" % (type(self).__name__, inputs))
        return list(inputs)

    def call(self, inputs):
        xs = self._check(inputs)
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) > 1:
            # Keras broadcasts inputs of equal rank; a rank mismatch is an error
            if len({len(s) for s in shapes}) > 1:
                raise ValueError("%s: inputs must have the same rank, got shapes %s"
                                 % (type(self).__name__, [tuple(x.shape) for x in xs]))
        return self._merge(xs)


class Add(_Merge):
    def _merge(self, xs):
        return accel.add_n(xs) if len({tuple(x.shape) for x in xs}) == 1 else functools.reduce(accel.add, xs)


class Subtract(_Merge):
    def _merge(self, xs):
        if len(xs) != 2:
            raise ValueError("Subtract: takes exactly 2 inputs, got %d" % len(xs))
        return xs[0] - xs[1]


class Multiply(_Merge):
    def _merge(self, xs):
        return functools.reduce(accel.multiply, xs)


class Average(_Merge):
    def _merge(self, xs):
        return functools.reduce(accel.add, xs) / float(len(xs))


class Maximum(_Merge):
    def _merge(self, xs):
        return functools.reduce(accel.maximum, xs)


class Minimum(_Merge):
    def _merge(self, xs):
        return functools.reduce(accel.minimum, xs)


class Concatenate(Layer):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 1:
            raise ValueError("Concatenate: call it on a list of tensors, got %r" % (inputs,))
        ranks = {x.ndim for x in inputs}
        if len(ranks) > 1:
            raise ValueError("Concatenate: inputs must have the same rank, got shapes %s"
                             % [tuple(x.shape) for x in inputs])
        return accel.concat(list(inputs), axis=self.axis)


def _functional_form(cls):
    """Keras's function for a merge layer: `add(inputs, **kwargs)` is `Add(**kwargs)(inputs)`."""

    def merge(inputs, **kwargs):
        return cls(**kwargs)(inputs)

    merge.__name__ = merge.__qualname__ = cls.__name__.lower()
    merge.__doc__ = "`%s(**kwargs)(inputs)`: the %s layer called on the list `inputs`." % (cls.__name__, cls.__name__)
    return merge


add, subtract, multiply, average, maximum, minimum = map(_functional_form,
                                                         (Add, Subtract, Multiply, Average, Maximum, Minimum))


def concatenate(inputs, axis=-1, **kwargs):
    return Concatenate(axis=axis, **kwargs)(inputs)
