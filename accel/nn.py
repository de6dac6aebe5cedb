"""`accel.nn.*`: TensorFlow's neural-network namespace."""

from accel.ops.nn import mish  # noqa: F401  (Keras 3's activations.mish; not in tf.nn)
from accel.ops.api import (  # noqa: F401
    bias_add, dropout, elu, gelu, l2_loss, l2_normalize, leaky_relu, log_softmax, moments, relu, relu6, selu,
    sigmoid, sigmoid_cross_entropy_with_logits, silu, softmax, softmax_cross_entropy_with_logits, softplus,
    sparse_softmax_cross_entropy_with_logits, swish, tanh, top_k)
from accel.ops.conv import (  # noqa: F401, E402
    avg_pool, avg_pool1d, avg_pool2d, conv1d, conv2d, conv2d_transpose, depthwise_conv2d, max_pool, max_pool1d,
    max_pool2d)
