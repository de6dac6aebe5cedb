"""`accel.keras.regularizers`: penalties on weights that Keras adds to the training loss (`layer.losses`)."""

from __future__ import annotations

import accel


class Regularizer:
    def __call__(self, x):
        return accel.constant(0.0, dtype=x.dtype)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _factor(name, value):
    v = float(value)
    if not v >= 0:
        raise ValueError("%s: the regularization factor must be a number >= 0, got %r" % (name, value))
    return v


class L1(Regularizer):
    """l1 * sum(|x|)."""

    def __init__(self, l1=0.01):
        self.l1 = _factor("L1", l1)

    def __call__(self, x):
        return self.l1 * accel.reduce_sum(accel.abs(x))

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """l2 * sum(x ** 2) (Keras's L2: no factor 1/2)."""

    def __init__(self, l2=0.01):
        self.l2 = _factor("L2", l2)

    def __call__(self, x):
        return self.l2 * accel.reduce_sum(accel.square(x))

    def get_config(self):
        return {"l2": self.l2}


class L1L2(Regularizer):
    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor("L1L2", l1)
        self.l2 = _factor("L1L2", l2)

    def __call__(self, x):
        out = accel.constant(0.0, dtype=x.dtype)
        if self.l1:
            out = out + self.l1 * accel.reduce_sum(accel.abs(x))
        if self.l2:
            out = out + self.l2 * accel.reduce_sum(accel.square(x))
        return out

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """factor * mean of the off-diagonal |cosine similarity| between the kernel's rows (or columns)."""

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = _factor("OrthogonalRegularizer", factor)
        if mode not in ("rows", "columns"):
            raise ValueError("OrthogonalRegularizer: mode must be 'rows' or 'columns', got %r" % (mode,))
        self.mode = mode

    def __call__(self, x):
        if x.ndim != 2:
            raise ValueError("OrthogonalRegularizer: needs a rank-2 kernel, got shape %s" % (tuple(x.shape),))
        if self.mode == "columns":
            x = accel.transpose(x)
        x = accel.math.l2_normalize(x, axis=1)
        prod = accel.abs(accel.matmul(x, x, transpose_b=True))
        n = int(x.shape[0])
        off = accel.reduce_sum(prod * (1.0 - accel.eye(n, dtype=prod.dtype)))
        return self.factor * off / float(n * (n - 1) if n > 1 else 1)

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


l1 = L1
l2 = L2
l1_l2 = L1L2
orthogonal_regularizer = OrthogonalRegularizer

_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2, "orthogonal_regularizer": OrthogonalRegularizer}


def get(identifier):
    """A regularizer from None, a name ('l2'), a config dict ({'class_name': 'L2', 'config': {...}}) or a callable."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError("Could not interpret regularizer identifier: %r (known: %s)"
                             % (identifier, sorted(_BY_NAME)))
        return cls()
    if isinstance(identifier, dict):
        name = identifier.get("class_name", "")
        cls = {c.__name__: c for c in (L1, L2, L1L2, OrthogonalRegularizer)}.get(name)
        if cls is None:
            raise ValueError("Could not interpret regularizer config: %r" % (identifier,))
        return cls.from_config(identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise ValueError("Could not interpret regularizer identifier: %r" % (identifier,))


def serialize(regularizer):
    return {"module": "keras.regularizers", "class_name": type(regularizer).__name__,
            "config": regularizer.get_config(), "registered_name": None}


def deserialize(config):
    return get(config)
