"""`accel.linalg.*`: TensorFlow's linear-algebra namespace."""

from accel.ops.api import einsum, eye, matmul, norm, tensordot, transpose  # noqa: F401
from accel.ops.clipping import global_norm  # noqa: F401

matrix_transpose = transpose


def l2_normalize(x, axis=None, epsilon=1e-12, name=None):
    from accel.ops.nn import normalize  # noqa: PLC0415

    return normalize(x, axis, epsilon)
