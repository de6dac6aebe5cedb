"""`accel.keras.layers`: Keras layers on accel tensors."""

from accel.keras.layers.base import Layer  # noqa: F401
from accel.keras.layers.conv import (  # noqa: F401
    AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D, Conv1D, Conv2D, Conv2DTranspose, Convolution1D,
    Convolution2D, Convolution2DTranspose, Cropping2D, DepthwiseConv2D, GlobalAveragePooling1D,
    GlobalAveragePooling2D, GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPooling1D,
    GlobalMaxPooling2D, MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D, UpSampling2D, ZeroPadding2D)
from accel.keras.layers.conv import (  # noqa: F401
    AveragePooling3D, AvgPool3D, Conv3D, Conv3DTranspose, Convolution3D, Convolution3DTranspose, Cropping3D,
    GlobalAveragePooling3D, GlobalAvgPool3D, GlobalMaxPool3D, GlobalMaxPooling3D, MaxPool3D, MaxPooling3D,
    UpSampling3D, ZeroPadding3D)
from accel.keras.layers.core import Activation, Dense, Dropout, Embedding, Flatten, Input, Reshape  # noqa: F401
from accel.keras.layers.normalization import BatchNormalization, LayerNormalization  # noqa: F401
from accel.keras.layers.activation import ELU, LeakyReLU, PReLU, ReLU, Softmax  # noqa: F401
from accel.keras.layers.lambda_layer import Lambda  # noqa: F401
from accel.keras.layers.merging import (  # noqa: F401
    Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add, average, concatenate, maximum, minimum,
    multiply, subtract)
from accel.keras.layers.preprocessing import Normalization, Rescaling  # noqa: F401
from accel.keras.layers.recurrent import (  # noqa: F401
    GRU, LSTM, RNN, Bidirectional, GRUCell, LSTMCell, SimpleRNN, SimpleRNNCell)
