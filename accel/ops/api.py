"""The flat public op namespace (what `import accel as tf; tf.<op>` sees)."""

from accel.ops.creation import (  # noqa: F401
    constant, convert_to_tensor, eye, fill, from_dlpack, identity, linspace, one_hot, ones, ones_like, range,
    rank, shape, size, stop_gradient, to_device, zeros, zeros_like)
from accel.ops.elementwise import (  # noqa: F401
    abs, acos, add, asin, atan, cast, ceil, clip_by_value, cos, cosh, divide, equal, erf, exp, expm1, floor,
    floor_div, floordiv, floormod, greater, greater_equal, inv, is_finite, is_inf, is_nan, less, less_equal, log,
    log1p, logical_and, logical_not, logical_or, logical_xor, maximum, minimum, mod, multiply, negative,
    not_equal, pow, realdiv, reciprocal, round, rsqrt, sigmoid, sign, sin, sinh, softplus, sqrt, square,
    squared_difference, subtract, tan, tanh, truediv, where)
from accel.ops.linalg import einsum, matmul, tensordot  # noqa: F401
from accel.ops.nn import (  # noqa: F401
    bias_add, dropout, elu, gelu, l2_loss, l2_normalize, leaky_relu, log_softmax, moments, relu, relu6, selu,
    sigmoid_cross_entropy_with_logits, silu, softmax, softmax_cross_entropy_with_logits,
    sparse_softmax_cross_entropy_with_logits, swish)
from accel.ops.reduce import (  # noqa: F401
    argmax, argmin, cumsum, norm, reduce_all, reduce_any, reduce_logsumexp, reduce_max, reduce_mean, reduce_min,
    reduce_prod, reduce_std, reduce_sum, reduce_variance)
from accel.ops.shape import (  # noqa: F401
    boolean_mask, broadcast_to, concat, expand_dims, gather, gather_nd, getitem, pad, reshape, reverse, split,
    squeeze, stack, tile, transpose, unstack)
from accel.ops.clipping import clip_by_global_norm, clip_by_norm, global_norm  # noqa: F401
from accel.ops.sorting import add_n, argsort, sort, top_k  # noqa: F401, E402
from accel.ops.scatter import (  # noqa: F401, E402
    meshgrid, scatter_nd, slice, strided_slice, tensor_scatter_nd_add, tensor_scatter_nd_max, tensor_scatter_nd_min,
    tensor_scatter_nd_sub, tensor_scatter_nd_update)
