"""`accel.nn.*`: TensorFlow's neural-network namespace."""

from accel.ops.nn import mish  # noqa: F401  (Keras 3's activations.mish; not in tf.nn)
from accel.ops.api import (  # noqa: F401
    bias_add, dropout, elu, gelu, l2_loss, l2_normalize, leaky_relu, log_softmax, moments, relu, relu6, selu,
    sigmoid, sigmoid_cross_entropy_with_logits, silu, softmax, softmax_cross_entropy_with_logits, softplus,
    sparse_softmax_cross_entropy_with_logits, swish, tanh, top_k)
from accel.ops.conv import (  # noqa: F401, E402
    avg_pool, avg_pool1d, avg_pool2d, avg_pool3d, conv1d, conv2d, conv2d_transpose, conv3d, conv3d_transpose,
    convolution, depthwise_conv2d, max_pool, max_pool1d, max_pool2d, max_pool3d, pool)


def compute_average_loss(per_example_loss, sample_weight=None, global_batch_size=None):
    """tf.nn.compute_average_loss: sum(per_example_loss * sample_weight) / global_batch_size. The global batch
    defaults to the per-replica batch times the replicas in sync (accel.distribute), so summing the replicas'
    gradients gives the gradient of the mean over the global batch."""
    import sys  # noqa: PLC0415

    from accel.ops.api import cast, convert_to_tensor, multiply, reduce_sum  # noqa: PLC0415

    loss = convert_to_tensor(per_example_loss)
    if sample_weight is not None:
        loss = multiply(loss, cast(convert_to_tensor(sample_weight), loss.dtype))
    if global_batch_size is None:
        n = 1
        dist = sys.modules.get("accel.distribute")
        if dist is not None:
            ctx = dist.get_replica_context()
            n = ctx.num_replicas_in_sync if ctx is not None else dist.get_strategy().num_replicas_in_sync
        global_batch_size = (loss.shape[0] if loss.shape.rank else 1) * n
    elif isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int) or global_batch_size <= 0:
        raise ValueError("compute_average_loss: global_batch_size must be a positive int, got %r"
                         % (global_batch_size,))
    if not global_batch_size:
        return reduce_sum(loss) * 0.0
    return reduce_sum(loss) / cast(global_batch_size, loss.dtype)
