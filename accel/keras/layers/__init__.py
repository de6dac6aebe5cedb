"""`accel.keras.layers`: Keras layers on accel tensors."""

from accel.keras.layers.base import Layer  # noqa: F401
from accel.keras.layers.conv import Conv2D, Convolution2D, MaxPool2D, MaxPooling2D  # noqa: F401
from accel.keras.layers.core import Activation, Dense, Dropout, Embedding, Flatten, Input, Reshape  # noqa: F401
from accel.keras.layers.normalization import BatchNormalization, LayerNormalization  # noqa: F401
from accel.keras.layers.activation import ELU, LeakyReLU, PReLU, ReLU, Softmax  # noqa: F401
from accel.keras.layers.lambda_layer import Lambda  # noqa: F401
from accel.keras.layers.merging import (  # noqa: F401
    Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add, average, concatenate, maximum, minimum,
    multiply, subtract)
from accel.keras.layers.preprocessing import Normalization, Rescaling  # noqa: F401
