"""`accel.layers`: the short name of `accel.keras.layers`."""

from accel.keras.layers import (  # noqa: F401
    Activation,
    BatchNormalization,
    Conv2D,
    Convolution2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    Input,
    Layer,
    LayerNormalization,
    MaxPool2D,
    MaxPooling2D,
    Reshape,
)
