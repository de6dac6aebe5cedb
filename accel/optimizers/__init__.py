"""Keras 3 optimizers on accel Variables: `accel.optimizers.Adam(1e-3).apply_gradients(zip(grads, vars))`."""

from accel.optimizers import schedules
from accel.optimizers.adafactor import Adafactor
from accel.optimizers.adam import Adam, Adamax, AdamW, Nadam
from accel.optimizers.base import Optimizer
from accel.optimizers.rmsprop import Adadelta, Adagrad, RMSprop
from accel.optimizers.sgd import SGD, Lion
from accel.optimizers.sparse import IndexedSlices

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "Nadam",
    "Lion",
    "Adafactor",
    "Optimizer",
    "IndexedSlices",
    "schedules",
    "get",
    "serialize",
    "deserialize",
]

_BY_NAME = {
    c.__name__.lower(): c
    for c in (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, Nadam, Lion, Adafactor)
}


def serialize(optimizer):
    """Keras' serialized form: {"module", "class_name", "config", "registered_name"}."""
    return schedules.keras_form("keras.optimizers", optimizer)


def deserialize(config, custom_objects=None):
    """The optimizer serialize() (or Keras) described; custom_objects maps class names to classes."""
    name = config.get("class_name", "")
    cls = (custom_objects or {}).get(name) or _BY_NAME.get(name.lower())
    if cls is None:
        raise ValueError(
            "Unknown optimizer %r; known: %s" % (name, sorted(c.__name__ for c in _BY_NAME.values()))
        )
    return cls.from_config(config["config"], custom_objects)


def get(identifier):
    """An optimizer from an instance (returned as is), a name ("adam"), or a serialized dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError("Could not interpret optimizer identifier: %r" % (identifier,))
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError("Could not interpret optimizer identifier: %r" % (identifier,))
