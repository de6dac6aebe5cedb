"""`accel.keras.layers`: Keras layers on accel tensors."""

from accel.keras.layers.base import Layer  # noqa: F401
from accel.keras.layers.conv import Conv2D, Convolution2D, MaxPool2D, MaxPooling2D  # noqa: F401
from accel.keras.layers.core import Activation, Dense, Dropout, Embedding, Flatten, Input, Reshape  # noqa: F401
from accel.keras.layers.normalization import BatchNormalization, LayerNormalization  # noqa: F401
