"""Layers and models from their Keras 3 configs (config.json of `.keras` files): the class an entry names, then
the object, built where the entry says how.

Classes come from accel's own (every public Layer subclass declared in accel.keras), from objects registered with
`register_keras_serializable`, or from `custom_objects`; a module named in a config is never imported. The
configs' values (and the registry) are accel/keras/configs.py's, below the layers.
"""

from __future__ import annotations

import inspect
import sys

from accel.keras.configs import (  # noqa: F401  (the registry's public names, as Keras's serialization_lib)
    _NAMES, _REGISTRY, _state, short_repr, get_registered_name, get_registered_object, register_keras_serializable,
    serialize_keras_object, to_json)
from accel.keras.layers.base import Layer


def builtin_classes():
    """accel's layer and model classes by name: each public subclass of Layer declared in accel.keras (the class
    statement is the registration), under its name and the aliases its module gives it (Convolution2D).
    "Model" in a file names a Functional model."""
    classes, todo = set(), [Layer]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("accel.keras.") and not cls.__name__.startswith("_"):
            classes.add(cls)
    table = {cls.__name__: cls for cls in classes}
    for module in {sys.modules[cls.__module__] for cls in classes}:
        table.update((name, obj) for name, obj in vars(module).items() if inspect.isclass(obj) and obj in classes
                     and not name.startswith("_"))
    table["Model"] = table["Functional"]
    return table


_KERAS_MODULES = ("keras", "keras.layers", "keras.models", "keras.src.models.functional",
                  "keras.src.models.sequential", "keras.src.models.model")


def resolve_class(entry, custom_objects=None):
    """The class an entry names, from the registry, `custom_objects` or accel's built-ins; nothing is imported."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ValueError("expected a {'class_name': ..., 'config': ...} object, got %r" % (short_repr(entry),))
    class_name, registered = entry["class_name"], entry.get("registered_name")
    module = entry.get("module")
    if isinstance(registered, str) and ">" in registered:
        obj = get_registered_object(registered, custom_objects)
        if obj is None:
            obj = get_registered_object(class_name, custom_objects)
        if obj is None:
            raise ValueError("Unknown class %r (registered as %r): register it with "
                             "accel.keras.saving.register_keras_serializable(package=%r) or pass it in "
                             "custom_objects" % (class_name, registered, registered.split(">")[0]))
        return obj
    obj = get_registered_object(class_name, custom_objects)
    if obj is not None:
        return obj
    if module is not None and module not in _KERAS_MODULES and not str(module).startswith("keras."):
        raise ValueError("Unknown class %r from module %r: accel never imports modules named in a file; register "
                         "the class or pass it in custom_objects" % (class_name, module))
    table = builtin_classes()
    if class_name not in table:
        raise ValueError("Unknown layer class %r: accel has no such layer (known: %s)"
                         % (class_name, ", ".join(sorted(table))))
    if registered not in (None, class_name) and not (class_name == "Model" and registered == "Functional"):
        raise ValueError("class %r is built in, but the entry gives registered_name %r" % (class_name, registered))
    return table[class_name]


def deserialize_keras_object(entry, custom_objects=None, safe_mode=True):
    """A layer or model from its `serialize_keras_object` form (also Keras 3's config.json)."""
    previous = _state.safe_mode, _state.custom_objects
    _state.safe_mode = bool(safe_mode) and previous[0]
    _state.custom_objects = {**(previous[1] or {}), **(custom_objects or {})}
    try:
        return _deserialize(entry)
    finally:
        _state.safe_mode, _state.custom_objects = previous


def _deserialize(entry):
    cls = resolve_class(entry)
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError("the config of %r must be a dict" % entry["class_name"])
    if not (inspect.isclass(cls) and hasattr(cls, "from_config")):
        raise ValueError("%r is not a layer class" % entry["class_name"])
    obj = cls.from_config(config)
    build = entry.get("build_config")
    if isinstance(obj, Layer) and not obj.built and isinstance(build, dict) and build.get("input_shape") is not None:
        obj.build(_shape(build["input_shape"]))
        obj.built = True
    return obj


def _shape(value):
    if isinstance(value, list) and all(v is None or isinstance(v, int) for v in value):
        return tuple(value)
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    raise ValueError("cannot read shape %r" % (value,))
