"""The values of Keras 3 configs: the registry of custom objects (`register_keras_serializable`), the JSON forms
of numbers, arrays, initializers, regularizers, activations and Lambda functions, and `get_config` /
`from_config` for a layer from its constructor's parameters.

This module sits below the layers (layers/base.py reads its configs here); accel/keras/serialization.py, above
them, resolves class names and rebuilds layers and models. Deserialisation never imports a module named in a
config: a Lambda holding Python bytecode is refused unless `safe_mode=False`.
"""

from __future__ import annotations

import base64
import builtins
import inspect
import marshal
import threading
import types

import numpy as np

import accel
from accel.keras import activations, initializers, regularizers
from accel.keras.symbolic import Operation

_REGISTRY: dict[str, object] = {}  # "package>Name" -> class or function
_NAMES: dict[int, str] = {}  # id(object) -> "package>Name"


class _State(threading.local):
    safe_mode = True
    custom_objects = None


_state = _State()


def register_keras_serializable(package="Custom", name=None):
    """Decorator: registers a class or function as '<package>>name' so configs can name it and loading finds it
    (never by importing a module)."""

    def decorator(obj):
        key = "%s>%s" % (package, name or obj.__name__)
        if inspect.isclass(obj) and not hasattr(obj, "get_config"):
            raise ValueError("register_keras_serializable: class %s needs a get_config() method" % obj.__name__)
        _REGISTRY[key] = obj
        _NAMES[id(obj)] = key
        return obj

    return decorator


def get_registered_name(obj):
    return _NAMES.get(id(obj), getattr(obj, "__name__", type(obj).__name__))


def get_registered_object(name, custom_objects=None, module_objects=None):
    """The object registered or passed under `name` ('package>Name' or a custom_objects key), else None."""
    for table in (custom_objects, _state.custom_objects, _REGISTRY, module_objects):
        if table and name in table:
            return table[name]
    return None


def policy_config(dtype):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype}, "registered_name": None}


def _dtype_from_config(value, who):
    if value is None or isinstance(value, str):
        name = value
    elif isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "Policy"):
        name = (value.get("config") or {}).get("name")
    else:
        raise ValueError("%s: cannot read dtype %r" % (who, value))
    return name


# --- values --------------------------------------------------------------------------------------------------
def _init_params(cls, stop):
    """The named parameters of `cls.__init__` and, while it takes **kwargs, its bases' (up to `stop`)."""
    seen = {}
    for klass in cls.__mro__:
        if klass is stop or klass is object:
            break
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        for p in params:
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in seen:
                seen[p.name] = p
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return seen


def _activation_name(fn):
    for name, f in activations._BY_NAME.items():
        if f is fn:
            return name
    if id(fn) in _NAMES:
        return _NAMES[id(fn)]
    return None


def serialize_initializer(init):
    if init is None or isinstance(init, str):
        return init
    if id(type(init)) in _NAMES:
        return {"module": type(init).__module__, "class_name": type(init).__name__, "config": init.get_config(),
                "registered_name": _NAMES[id(type(init))]}
    if not isinstance(init, initializers.Initializer):
        raise TypeError("cannot serialise initializer %r: register it with register_keras_serializable" % (init,))
    config = {name: to_json(getattr(init, name)) for name in _init_params(type(init), initializers.Initializer)
              if hasattr(init, name)}
    return {"module": "keras.initializers", "class_name": type(init).__name__, "config": config,
            "registered_name": None}


def deserialize_initializer(value, who):
    if value is None or isinstance(value, str):
        return initializers.get(value)
    if not isinstance(value, dict):
        raise ValueError("%s: cannot read initializer %r" % (who, value))
    obj = _custom(value)
    if obj is not None:
        return obj.from_config(value.get("config") or {}) if hasattr(obj, "from_config") else obj(
            **(value.get("config") or {}))
    cls = initializers._BY_NAME.get(value.get("class_name"))
    if cls is None or not inspect.isclass(cls):
        raise ValueError("%s: unknown initializer %r" % (who, value.get("class_name")))
    return cls(**_accepted(cls, dict(value.get("config") or {}), initializers.Initializer, who))


def to_json(v):
    """A config value as JSON: tuples become lists, NumPy values plain numbers."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, accel.Tensor):
        return v.numpy().tolist()
    if isinstance(v, dict):
        return {str(k): to_json(x) for k, x in v.items()}
    if isinstance(v, initializers.Initializer):
        return serialize_initializer(v)
    if isinstance(v, regularizers.Regularizer):
        return regularizers.serialize(v)
    if isinstance(v, Operation):
        return serialize_keras_object(v)
    if callable(v):
        name = _activation_name(v)
        if name is not None:
            return name
    raise TypeError("cannot serialise %r in a config; register it with "
                    "accel.keras.saving.register_keras_serializable" % (v,))


# Keras config keys accel's layers do not take, and the values for which dropping them changes nothing
_ANY = object()
_IGNORABLE = {
    "quantization_config": (None,), "lora_rank": (None,), "lora_alpha": _ANY, "rms_scaling": (False,),
    "synchronized": (False,), "renorm": (False,), "renorm_clipping": (None,), "renorm_momentum": _ANY,
    "sparse": (False, None), "ragged": (False, None), "optional": (False,), "input_axes": (None,),
    "output_axes": (None,), "data_format": ("channels_last", None), "gradient_checkpointing": (False, None),
}


def _accepted(cls, config, stop, who, layer_kw=False):
    """The entries of `config` that `cls(...)` takes (`layer_kw`: also a layer's own keywords); ignorable Keras
    keys are dropped, any other is refused."""
    params = _init_params(cls, stop)
    out = {}
    for key, value in config.items():
        if key in params or (layer_kw and (key in ("name", "trainable", "dtype", "input_shape", "input_dim")
                                           or key.endswith("_regularizer") or key.endswith("_constraint"))):
            out[key] = value
        elif key in _IGNORABLE and (_IGNORABLE[key] is _ANY or value in _IGNORABLE[key]):
            continue
        else:
            raise ValueError("%s: accel's %s does not support %s=%r" % (who, cls.__name__, key, value))
    return out


# --- layers --------------------------------------------------------------------------------------------------
_ALIASES = {"Normalization": {"mean": "input_mean", "variance": "input_variance"}}


def layer_config(layer, stop):
    """Keras's `get_config()` for an accel layer, from its constructor's parameters (those of its classes below
    `stop`, the Layer base) and the same-named attributes (`Dense(units=3).units`)."""
    cls = type(layer)
    config = {"name": layer.name, "trainable": layer.trainable, "dtype": policy_config(layer.dtype_policy.name)}
    aliases = _ALIASES.get(cls.__name__, {})
    own = cls.__module__.startswith("accel.")
    if cls.__name__ == "Lambda":
        config.update(_lambda_config(layer))
        return config
    for name, p in _init_params(cls, stop).items():
        attr = aliases.get(name, name)
        if hasattr(layer, attr):
            config[name] = to_json(getattr(layer, attr))
        elif p.default is inspect.Parameter.empty and own:
            raise NotImplementedError("get_config: %s has no attribute %r for its argument %r"
                                      % (cls.__name__, attr, name))
    for name, reg in getattr(layer, "_regularizers", {}).items():
        config[name + "_regularizer"] = regularizers.serialize(reg)
    if getattr(layer, "_activity_regularizer", None) is not None:
        config["activity_regularizer"] = regularizers.serialize(layer._activity_regularizer)
    return config


def layer_from_config(cls, config, stop):
    """`cls(**config)` for a layer config: dtype policies, initializers, regularizers and activations read back,
    keys `cls` does not take refused (those of Keras's that change nothing dropped)."""
    who = "from_config(%s)" % cls.__name__
    if not isinstance(config, dict):
        raise TypeError("%s: the config must be a dict, got %s" % (who, type(config).__name__))
    config = dict(config)
    if "dtype" in config:
        config["dtype"] = _dtype_from_config(config["dtype"], who)
    if cls.__name__ == "Lambda" and cls.__module__.startswith("accel."):
        config["function"] = _lambda_function(config.get("function"), who)
    for key in list(config):
        if key.endswith("_initializer"):
            config[key] = deserialize_initializer(config[key], who)
        elif key.endswith("_regularizer") and isinstance(config[key], dict):
            obj = _custom(config[key])
            config[key] = obj.from_config(config[key].get("config") or {}) if obj else regularizers.get(config[key])
        elif key == "activation" or key.endswith("_activation"):
            config[key] = _activation_from_config(config[key], who)
    aliases = {v: k for k, v in _ALIASES.get(cls.__name__, {}).items()}
    if not cls.__module__.startswith("accel."):
        return cls(**config)
    return cls(**{aliases.get(k, k): v for k, v in _accepted(cls, config, stop, who, layer_kw=True).items()})


def _activation_from_config(value, who):
    if value is None or callable(value):
        return value
    if isinstance(value, str):
        obj = get_registered_object(value)
        return obj if obj is not None else activations.get(value)
    if isinstance(value, dict) and value.get("class_name") == "function":
        return _activation_from_config(value.get("config"), who)
    if isinstance(value, dict):
        obj = _custom(value)
        if obj is not None:
            return obj
    raise ValueError("%s: cannot read activation %r" % (who, value))


def _custom(entry):
    """The registered or custom object an entry names, or None for built-ins."""
    reg = entry.get("registered_name")
    for name in (reg, entry.get("class_name")):
        if isinstance(name, str):
            obj = get_registered_object(name)
            if obj is not None:
                return obj
    return None


# --- Lambda --------------------------------------------------------------------------------------------------
def _lambda_config(layer):
    fn = layer.function
    name = _activation_name(fn)
    if name is not None:
        function = {"class_name": "function", "config": name, "module": "keras.activations",
                    "registered_name": "function"}
    else:
        code = base64.b64encode(marshal.dumps(fn.__code__)).decode("ascii")
        closure = None if fn.__closure__ is None else [to_json(c.cell_contents) for c in fn.__closure__]
        defaults = None if fn.__defaults__ is None else [to_json(d) for d in fn.__defaults__]
        function = {"class_name": "__lambda__", "config": {"code": code, "defaults": defaults, "closure": closure}}
    return {"function": function, "arguments": to_json(layer.arguments)}


def _lambda_function(value, who):
    if callable(value):
        return value
    if isinstance(value, dict) and value.get("class_name") == "__lambda__":
        if _state.safe_mode:
            raise ValueError(
                "%s: the file holds a Lambda layer with Python bytecode, which can run arbitrary code; it is "
                "refused in safe mode. If you trust the file, load it with safe_mode=False" % who)
        cfg = value.get("config") or {}
        code = marshal.loads(base64.b64decode(cfg["code"]))
        env = {"__builtins__": builtins, "accel": accel, "tf": accel, "np": np}
        closure = cfg.get("closure")
        if closure is not None:
            closure = tuple(types.CellType(c) for c in closure)
        defaults = tuple(cfg["defaults"]) if cfg.get("defaults") else None
        return types.FunctionType(code, env, code.co_name, defaults, closure)
    if isinstance(value, dict) and value.get("class_name") == "function":
        value = value.get("config")
    if isinstance(value, str):
        obj = get_registered_object(value)
        if obj is not None:
            return obj
        return activations.get(value)
    raise ValueError("%s: cannot read the Lambda's function %r" % (who, value))


# --- objects -------------------------------------------------------------------------------------------------
def serialize_keras_object(obj):
    """{'module', 'class_name', 'config', 'registered_name'} for a layer, model or op (Keras 3's form)."""
    if not isinstance(obj, Operation):
        return to_json(obj)
    cls = type(obj)
    if id(cls) in _NAMES:
        module, class_name, registered = cls.__module__, cls.__name__, _NAMES[id(cls)]
    else:
        module, class_name, registered = obj._keras_names()
    entry = {"module": module, "class_name": class_name, "config": obj.get_config(), "registered_name": registered}
    build_config = obj._build_config()
    if build_config is not None:
        entry["build_config"] = build_config
    return entry


def short_repr(x):
    text = repr(x)
    return text if len(text) < 200 else text[:200] + "..."
