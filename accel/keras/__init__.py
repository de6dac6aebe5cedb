"""`accel.keras`: Keras 3's layers and models on accel (`import accel as tf; tf.keras.Sequential(...)`).

`optimizers` is `accel.optimizers`; `losses`, `metrics` and `callbacks` are `accel.keras.*` modules. Each is
optional: `accel.keras` imports without them, and an absent one raises AttributeError when used.
"""

import importlib
import sys

_OPTIONAL = {
    "optimizers": "accel.optimizers",
    "losses": "accel.keras.losses",
    "metrics": "accel.keras.metrics",
    "callbacks": "accel.keras.callbacks",
    "utils": "accel.keras.utils",
    "regularizers": "accel.keras.regularizers",
    "mixed_precision": "accel.keras.mixed_precision",
}


def _load(name):
    """The module behind `accel.keras.<name>`, or None if it does not exist."""
    target = _OPTIONAL[name]
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name != target:
            raise
        return None
    sys.modules.setdefault("accel.keras." + name, module)  # so `import accel.keras.optimizers` works
    globals()[name] = module
    return module


# defined before the imports below, which may reach `accel.keras.optimizers` mid-initialisation
def __getattr__(name):
    module = _load(name) if name in _OPTIONAL else None
    if module is None:
        raise AttributeError("module 'accel.keras' has no attribute %r" % name)
    return module


from accel.keras import activations, initializers, layers, models  # noqa: E402, F401
from accel.keras.models import Input, Model, Sequential  # noqa: E402, F401

for _name in _OPTIONAL:
    _load(_name)
