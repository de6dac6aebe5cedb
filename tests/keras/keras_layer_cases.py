"""Layer programs run on Keras 3 (through TF 2.21's tf.keras) and on accel.keras with the same inputs and
weights: tools/record_keras_layers.py records Keras's outputs and gradients into
tests/data/keras_layers.npz; tests/keras/test_layers_extra.py checks accel against them."""

import numpy as np


def _inputs(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


# name -> (make layer(keras), inputs, weights to set after build or None)
def cases(keras):
    L = keras.layers
    x34 = _inputs(0, (3, 4))
    x245 = _inputs(1, (2, 4, 5))
    pair = _inputs(2, (3, 4), (3, 4))
    triple = _inputs(3, (2, 3), (2, 3), (2, 3))
    return {
        "softmax": (lambda: L.Softmax(), x34, None),
        "softmax_axis1": (lambda: L.Softmax(axis=1), x245, None),
        "relu": (lambda: L.ReLU(), x34, None),
        "relu_options": (lambda: L.ReLU(max_value=0.8, negative_slope=0.1, threshold=0.2), x34, None),
        "leaky_relu_default": (lambda: L.LeakyReLU(), x34, None),
        "leaky_relu_slope": (lambda: L.LeakyReLU(negative_slope=0.05), x34, None),
        "elu": (lambda: L.ELU(alpha=0.7), x34, None),
        "prelu": (lambda: L.PReLU(), x245, [np.linspace(-0.5, 0.5, 20).reshape(4, 5).astype(np.float32)]),
        "prelu_shared": (lambda: L.PReLU(shared_axes=[1]), x245,
                         [np.linspace(0.1, 0.5, 5).reshape(1, 5).astype(np.float32)]),
        "add": (lambda: L.Add(), pair, None),
        "subtract": (lambda: L.Subtract(), pair, None),
        "multiply": (lambda: L.Multiply(), triple, None),
        "average": (lambda: L.Average(), triple, None),
        "maximum": (lambda: L.Maximum(), triple, None),
        "minimum": (lambda: L.Minimum(), triple, None),
        "concatenate": (lambda: L.Concatenate(), pair, None),
        "concatenate_axis0": (lambda: L.Concatenate(axis=0), pair, None),
        "rescaling": (lambda: L.Rescaling(1 / 255.0, offset=-0.5), x34, None),
        "normalization": (lambda: L.Normalization(mean=[0.5, -1.0, 0.0, 2.0], variance=[1.0, 4.0, 0.25, 9.0]),
                          x34, None),
        "normalization_invert": (lambda: L.Normalization(mean=[0.5, -1.0, 0.0, 2.0], variance=[1.0, 4.0, 0.25, 9.0],
                                                         invert=True), x34, None),
        "lambda": (lambda: L.Lambda(lambda t: t * 3.0 + 1.0), x34, None),
    }


def adapt_data():
    return np.random.default_rng(5).standard_normal((50, 3)).astype(np.float32) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]


def run_case(tf, make, inputs, weights):
    """(output, input gradients of a fixed random projection) of one case, on either framework."""
    layer = make()
    xs = [tf.constant(x) for x in inputs]
    arg = xs if len(xs) > 1 else xs[0]
    layer(arg)
    if weights is not None:
        layer.set_weights(weights)
    with tf.GradientTape() as tape:
        tape.watch(xs)
        y = layer(arg)
        r = tf.constant(np.random.default_rng(9).standard_normal(tuple(y.shape)).astype(np.float32))
        proj = tf.reduce_sum(y * r)
    return y.numpy(), [g.numpy() for g in tape.gradient(proj, xs)]
