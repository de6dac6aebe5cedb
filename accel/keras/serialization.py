"""Configs in Keras 3's JSON form (`get_config` / `from_config`, config.json of `.keras` files) and the registry
of custom classes (`register_keras_serializable`).

Deserialisation never imports a module named in a config: classes come from accel's own allow-list, from
objects registered with `register_keras_serializable`, or from `custom_objects`. A Lambda holding Python
bytecode is refused unless `safe_mode=False`.
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
from accel.keras.layers.base import Layer

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


# --- built-in classes: accel's allow-list ---------------------------------------------------------------------
def _builtin_layers():
    from accel.keras import functional, layers, models  # noqa: PLC0415

    table = {name: obj for name, obj in vars(layers).items() if inspect.isclass(obj) and issubclass(obj, Layer)}
    table.update(InputLayer=functional.InputLayer, Sequential=models.Sequential, Functional=functional.Functional,
                 Model=functional.Functional)
    return table


_KERAS_MODULES = ("keras", "keras.layers", "keras.models", "keras.src.models.functional",
                  "keras.src.models.sequential", "keras.src.models.model")


def _policy(dtype):
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
    if isinstance(v, Layer):
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


def _accepted(cls, config, stop, who):
    params = _init_params(cls, stop)
    layer_kw = stop is Layer
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


def layer_config(layer):
    """Keras's `get_config()` for an accel layer, from its constructor's parameters and the same-named
    attributes (`Dense(units=3).units`)."""
    from accel.keras import functional  # noqa: PLC0415

    if isinstance(layer, functional.InputLayer):
        return {"batch_shape": list(layer.batch_shape), "dtype": layer.dtype, "sparse": False, "ragged": False,
                "name": layer.name, "optional": False}
    if isinstance(layer, functional.OpLayer):
        return {"name": layer.name}
    cls = type(layer)
    config = {"name": layer.name, "trainable": layer.trainable, "dtype": _policy(layer.dtype_policy.name)}
    aliases = _ALIASES.get(cls.__name__, {})
    own = cls.__module__.startswith("accel.")
    if cls.__name__ == "Lambda":
        config.update(_lambda_config(layer))
        return config
    for name, p in _init_params(cls, Layer).items():
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


def layer_from_config(cls, config):
    who = "from_config(%s)" % cls.__name__
    if not isinstance(config, dict):
        raise TypeError("%s: the config must be a dict, got %s" % (who, type(config).__name__))
    config = dict(config)
    from accel.keras import functional  # noqa: PLC0415

    if issubclass(cls, functional.InputLayer):
        config["dtype"] = _dtype_from_config(config.get("dtype"), who)
        return cls(**_accepted(cls, config, Layer, who))
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
    return cls(**{aliases.get(k, k): v for k, v in _accepted(cls, config, Layer, who).items()})


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
    """{'module', 'class_name', 'config', 'registered_name'} for a layer or model (Keras 3's form)."""
    from accel.keras import functional, models  # noqa: PLC0415

    if isinstance(obj, Layer):
        cls = type(obj)
        if id(cls) in _NAMES:
            module, registered = cls.__module__, _NAMES[id(cls)]
        elif isinstance(obj, functional.Functional):
            module, registered = "keras.src.models.functional", "Functional"
        elif isinstance(obj, models.Sequential):
            module, registered = "keras", None
        elif cls.__module__.startswith("accel.keras"):
            module, registered = "keras.layers", None
        else:
            raise TypeError("cannot serialise layer %s of class %s.%s: register the class with "
                            "accel.keras.saving.register_keras_serializable" % (obj.name, cls.__module__,
                                                                                cls.__name__))
        class_name = cls.__name__
        if isinstance(obj, functional.OpLayer):
            module, class_name, registered = "keras.src.ops.numpy", obj.op, obj.op
        entry = {"module": module, "class_name": class_name, "config": obj.get_config(),
                 "registered_name": registered}
        shape = _build_shape(obj)
        if shape is not None and not isinstance(obj, (functional.InputLayer, functional.OpLayer)):
            entry["build_config"] = {"input_shape": shape}
        return entry
    return to_json(obj)


def _build_shape(layer):
    from accel.keras import models  # noqa: PLC0415

    if isinstance(layer, models.Sequential) and layer._input is not None:
        return list(layer._input.shape)
    return None


def resolve_class(entry, custom_objects=None):
    """The class an entry names, from the registry, `custom_objects` or accel's built-ins; nothing is imported."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ValueError("expected a {'class_name': ..., 'config': ...} object, got %r" % (_short(entry),))
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
    table = _builtin_layers()
    if class_name not in table:
        raise ValueError("Unknown layer class %r: accel has no such layer (known: %s)"
                         % (class_name, ", ".join(sorted(table))))
    if registered not in (None, class_name) and not (class_name == "Model" and registered == "Functional"):
        raise ValueError("class %r is built in, but the entry gives registered_name %r" % (class_name, registered))
    return table[class_name]


def _short(x):
    text = repr(x)
    return text if len(text) < 200 else text[:200] + "..."


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
    from accel.keras import models  # noqa: PLC0415

    cls = resolve_class(entry)
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise ValueError("the config of %r must be a dict" % entry["class_name"])
    if inspect.isclass(cls) and issubclass(cls, models.Model) and "layers" in config:
        return model_from_config(cls, config, build_config=entry.get("build_config"))
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


# --- models --------------------------------------------------------------------------------------------------
def model_config(model):
    from accel.keras import functional, models  # noqa: PLC0415

    if isinstance(model, functional.Functional):
        return _functional_config(model)
    if isinstance(model, models.Sequential):
        entries = []
        if model._input is not None:
            entries.append(serialize_keras_object(model._input._keras_history[0]))
        entries += [serialize_keras_object(layer) for layer in model._layers]
        return {"name": model.name, "trainable": model.trainable, "dtype": _policy(model.dtype_policy.name),
                "layers": entries}
    return layer_config(model)


def _functional_config(model):
    from accel.keras import functional  # noqa: PLC0415

    graph = model._graph

    def tensor(t):
        layer, i, j = t._keras_history
        return {"class_name": "__keras_tensor__", "config": {
            "shape": list(t.shape), "dtype": t.dtype,
            "keras_history": [layer.name, graph.node_index(layer, layer._inbound_nodes[i]), j]}}

    def value(v):
        if isinstance(v, functional.KerasTensor):
            return tensor(v)
        return functional.map_structure(lambda x: tensor(x) if isinstance(x, functional.KerasTensor) else to_json(x),
                                        v) if isinstance(v, (list, tuple, dict)) else to_json(v)

    layers = []
    for op in graph.operations:
        entry = serialize_keras_object(op)
        entry["name"] = op.name
        entry["inbound_nodes"] = [
            {"args": [value(n.call_inputs)] + [value(a) for a in n.call_args],
             "kwargs": {k: value(v) for k, v in n.call_kwargs.items()}}
            for n in op._inbound_nodes if id(n) in graph.node_ids and not n.is_input]
        layers.append(entry)
    ref = lambda t: [t._keras_history[0].name, 0, 0]  # noqa: E731
    out_ref = lambda t: tensor(t)["config"]["keras_history"]  # noqa: E731
    return {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": functional.map_structure(ref, graph.inputs),
            "output_layers": functional.map_structure(out_ref, graph.outputs)}


def model_from_config(cls, config, custom_objects=None, build_config=None):
    from accel.keras import functional, models  # noqa: PLC0415

    if custom_objects:
        return deserialize_keras_object({"class_name": cls.__name__, "config": config}, custom_objects,
                                        _state.safe_mode)
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise ValueError("from_config(%s): the config needs a 'layers' list" % cls.__name__)
    if issubclass(cls, functional.Functional) or cls is models.Model or "input_layers" in config:
        return _functional_from_config(config)
    if issubclass(cls, models.Sequential):
        layers = []
        for entry in config["layers"]:
            if isinstance(entry, dict) and entry.get("class_name") == "InputLayer":
                layers.append(_deserialize(entry).output)
            else:
                layers.append(_deserialize(entry))
        model = models.Sequential(layers, name=config.get("name"), trainable=config.get("trainable", True))
        shape = (build_config or {}).get("input_shape")
        if not model.built and shape is not None:
            model.build(_shape(shape))
        return model
    raise ValueError("from_config: cannot build a %s from a config" % cls.__name__)


def _functional_from_config(config):
    from accel.keras import functional  # noqa: PLC0415

    created, pending = {}, {}
    tensors = {}  # (layer name, node index, tensor index) -> KerasTensor
    order = []
    for entry in config["layers"]:
        if not isinstance(entry, dict):
            raise ValueError("each entry of 'layers' must be an object, got %r" % (_short(entry),))
        name = entry.get("name") or (entry.get("config") or {}).get("name")
        if not isinstance(name, str) or name in created:
            raise ValueError("layer entries need distinct names; got %r" % (name,))
        if entry.get("module") == "keras.src.ops.numpy" or entry.get("class_name") in functional._OPS and \
                entry.get("module", "").startswith("keras.src.ops"):
            layer = functional.OpLayer(entry["class_name"], name=name)
        else:
            layer = _deserialize(entry)
        created[name] = layer
        order.append(name)
        nodes = entry.get("inbound_nodes", [])
        if not isinstance(nodes, list):
            raise ValueError("layer %s: inbound_nodes must be a list" % name)
        pending[name] = list(nodes)
        if isinstance(layer, functional.InputLayer):
            tensors[(name, 0, 0)] = layer.output

    def ready(v):
        return all(key in tensors for key in _refs(v))

    progress = True
    while progress and any(pending.values()):
        progress = False
        for name in order:
            while pending[name] and ready(pending[name][0]):
                node = pending[name].pop(0)
                index = len(created[name]._inbound_nodes) if hasattr(created[name], "_inbound_nodes") else 0
                args, kwargs = _node_call(node, tensors)
                outs = created[name](*args, **kwargs)
                for j, t in enumerate(functional.flatten(outs)):
                    tensors[(name, index, j)] = t
                progress = True
    stuck = [n for n in order if pending[n]]
    if stuck:
        raise ValueError("the model config cannot be built: layers %s wait for tensors no layer makes" % stuck)

    def lookup(ref):
        if not (isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str)):
            raise ValueError("a model input or output must be [layer name, node index, tensor index], got %r"
                             % (ref,))
        key = (ref[0], int(ref[1]), int(ref[2]))
        if key not in tensors:
            raise ValueError("the model config names %r, which no layer makes" % (ref,))
        return tensors[key]

    def structure(value):
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
            return lookup(value)
        if isinstance(value, dict):
            return {k: structure(v) for k, v in value.items()}
        if isinstance(value, list):
            return [structure(v) for v in value]
        raise ValueError("cannot read the model's inputs or outputs %r" % (_short(value),))

    inputs = structure(config.get("input_layers"))
    outputs = structure(config.get("output_layers"))
    return functional.Functional(inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True))


def _refs(value):
    """The (layer, node, tensor) keys of the KerasTensors a node's data refers to."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            h = (value.get("config") or {}).get("keras_history")
            if not (isinstance(h, list) and len(h) == 3):
                raise ValueError("a __keras_tensor__ needs keras_history [layer, node, tensor], got %r" % (h,))
            return [(h[0], int(h[1]), int(h[2]))]
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        if len(value) == 4 and isinstance(value[0], str) and isinstance(value[3], dict):  # Keras 2 [name, n, t, {}]
            return [(value[0], int(value[1]), int(value[2]))]
        return [r for v in value for r in _refs(v)]
    return []


def _node_call(node, tensors):
    """(args, kwargs) of a node, with its KerasTensors; Keras 3's {'args', 'kwargs'} or Keras 2's list form."""
    def sub(v):
        if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__":
            h = v["config"]["keras_history"]
            return tensors[(h[0], int(h[1]), int(h[2]))]
        if isinstance(v, dict):
            return {k: sub(x) for k, x in v.items()}
        if isinstance(v, list):
            return [sub(x) for x in v]
        return v

    if isinstance(node, dict):
        args = node.get("args", [])
        kwargs = node.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict) or not args:
            raise ValueError("a node needs 'args' (a non-empty list) and 'kwargs' (an object), got %r"
                             % (_short(node),))
        # Keras records `mask=None` on every call of a layer whose call() takes a mask
        return [sub(a) for a in args], {k: sub(v) for k, v in kwargs.items() if not (k == "mask" and v is None)}
    if isinstance(node, list):  # Keras 2: [[name, node, tensor, kwargs], ...]
        ins = [tensors[(r[0], int(r[1]), int(r[2]))] for r in node]
        kwargs = node[0][3] if node and len(node[0]) > 3 and isinstance(node[0][3], dict) else {}
        return [ins[0] if len(ins) == 1 else ins], dict(kwargs)
    raise ValueError("cannot read node %r" % (_short(node),))
