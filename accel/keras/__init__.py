"""`accel.keras`: Keras 3's layers and models on accel (`import accel as tf; tf.keras.Sequential(...)`).

`optimizers` is `accel.optimizers`; `losses`, `metrics` and `callbacks` are `accel.keras.*` modules. They are
imported on first use, so `accel.keras` works whether or not they are present.
"""

import importlib
import sys

_LAZY = {"optimizers": "accel.optimizers", "losses": "accel.keras.losses", "metrics": "accel.keras.metrics",
         "callbacks": "accel.keras.callbacks"}


# defined before the imports below, which may reach `accel.keras.optimizers` while this module is half-initialised
def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError("module 'accel.keras' has no attribute %r" % name)
    try:
        module = importlib.import_module(_LAZY[name])
    except ModuleNotFoundError as e:
        if e.name != _LAZY[name]:
            raise
        raise AttributeError("accel.keras.%s is not available: %s does not exist yet" % (name, _LAZY[name])) from e
    # `import accel.keras.optimizers` finds the alias from now on
    sys.modules.setdefault("accel.keras." + name, module)
    globals()[name] = module
    return module


from accel.keras import activations, initializers, layers, models  # noqa: E402, F401
from accel.keras.models import Input, Model, Sequential  # noqa: E402, F401
