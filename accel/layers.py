"""`accel.layers`: the short name of `accel.keras.layers` (the same module)."""

import sys

from accel.keras import layers as _layers

sys.modules[__name__] = _layers
