"""IndexedSlices: TensorFlow's row-sparse gradient, what a gather's gradient comes back as.

    g = IndexedSlices(values, indices, dense_shape)   # rows `indices` of a dense [N, ...] gradient

Repeated indices mean their rows add up, as in TensorFlow. It sits above the ops (ops that take a
tensor densify it through `_dense`) and below the tape, which returns one for a RowGrad cotangent.
"""

from __future__ import annotations

from accel import backend
from accel.dtypes import int64
from accel.ops.creation import convert_to_tensor
from accel.ops.tensor_ns import TENSOR_NS
from accel.tensor import TensorShape


class IndexedSlices:
    """A gradient that is zero outside the rows `indices`: dense[indices[i]] += values[i].

    values: [n, *row_shape]; indices: [n] int32/int64; dense_shape: the full shape
    [N, *row_shape] (or None when unknown).
    """

    __slots__ = ("values", "indices", "dense_shape")

    def __init__(self, values, indices, dense_shape=None):
        self.values = convert_to_tensor(values)
        self.indices = convert_to_tensor(indices)
        if self.indices._data.dtype.kind not in "iu":
            raise TypeError("IndexedSlices: indices must be integers, got %s" % self.indices.dtype.name)
        self.dense_shape = None if dense_shape is None else convert_to_tensor(dense_shape, dtype=int64)

    @property
    def dtype(self):
        return self.values.dtype

    @property
    def shape(self):
        """The dense shape (TensorShape), or the values' row shape with an unknown first dimension."""
        if self.dense_shape is None:
            return TensorShape((None,) + tuple(self.values.shape[1:]))
        return TensorShape(int(d) for d in backend.to_numpy(self.dense_shape._data))

    @property
    def device(self):
        return self.values.device

    def _dense(self):
        """The dense Tensor (differentiable in values): what an op that takes a tensor sees."""
        shape = tuple(int(d) for d in backend.to_numpy(self.dense_shape._data))
        return TENSOR_NS.scatter_add(shape, self.values._data.dtype, self.indices, self.values, 0)

    def __repr__(self):
        return "IndexedSlices(indices=%s, values=%s, dense_shape=%s)" % (
            self.indices,
            self.values,
            self.dense_shape,
        )


def is_indexed_slices(g) -> bool:
    return isinstance(g, IndexedSlices)
