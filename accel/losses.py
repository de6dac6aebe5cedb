"""`accel.losses`: the short name of `accel.keras.losses`."""

from accel.keras.losses import (  # noqa: F401
    BCE, MAE, MSE, BinaryCrossentropy, CategoricalCrossentropy, Huber, Loss, LossFunctionWrapper,
    MeanAbsoluteError, MeanSquaredError, SparseCategoricalCrossentropy, bce, binary_crossentropy,
    categorical_crossentropy, deserialize, get, huber, mae, mean_absolute_error, mean_squared_error, mse,
    serialize, sparse_categorical_crossentropy)
