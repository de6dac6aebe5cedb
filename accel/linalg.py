"""`accel.linalg.*`: TensorFlow's linear-algebra namespace."""

from accel.ops.api import einsum, eye, matmul, norm, tensordot, transpose  # noqa: F401
from accel.ops.clipping import global_norm  # noqa: F401
from accel.ops.linalg import (  # noqa: F401
    adjoint, band_part, cholesky, det, diag, diag_part, eigh, eigvalsh, inv, logdet, matrix_transpose, qr, slogdet,
    solve, svd, trace, triangular_solve)


def l2_normalize(x, axis=None, epsilon=1e-12, name=None):
    from accel.ops.nn import normalize  # noqa: PLC0415

    return normalize(x, axis, epsilon)
