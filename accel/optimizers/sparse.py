"""Row-sparse gradients (TensorFlow's IndexedSlices) and the scatter helpers the optimizers use.

    g = IndexedSlices(values, indices, dense_shape)   # rows `indices` of a dense [N, ...] gradient
    opt.apply_gradients([(g, embedding)])

Repeated indices mean their rows add up, as in TensorFlow.
"""

from __future__ import annotations

import numpy as np

from accel import backend
from accel.indexed_slices import IndexedSlices, is_indexed_slices  # noqa: F401  (this module's public names)
from accel.ops import fusion


def scatter_rows(out, indices, values):
    """out[...] = 0, then out[indices[i]] += values[i] (repeated indices add up); returns out."""
    out.fill(0)
    if backend.xp_of(out) is np:
        np.add.at(out, indices, values)
    elif not fusion.scatter_add_rows(out, indices, values):
        backend.cupyx().scatter_add(out, indices, values)
    return out


def has_duplicates(indices) -> bool:
    xp = backend.xp_of(indices)
    return int(xp.unique(indices).size) != int(indices.size)
