"""Records TF 2.21's tf.nn convolution/pooling results and Keras 3's conv/pooling layers into
tests/data/tf_conv.npz (inputs, arguments as JSON, outputs, gradients of sum(out * r)).

    .venv-bench/bin/python tools/record_tf_conv.py     # tensorflow-cpu==2.21.* (Keras 3 as tf.keras)

TF's CPU kernels take only NHWC (and no dilated conv2d_transpose): NCHW/NCW cases are recorded by running the
NHWC op on transposed tensors, the definition TF's GPU kernels follow. TF's CPU conv3d also has no dilations,
groups or explicit padding: those are recorded with an inflated filter, one conv3d per group and tf.pad.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

RNG = np.random.default_rng(2021)
OUT = {}


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def distinct(*shape):
    """Values without ties (max-pool gradients are then unambiguous)."""
    return (RNG.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0).astype(np.float32)


def nchw(x):
    r = len(x.shape)
    return tf.transpose(x, (0, r - 1) + tuple(range(1, r - 1)))


def nhwc(x):
    r = len(x.shape)
    return tf.transpose(x, (0,) + tuple(range(2, r)) + (1,))


def inflate(w, dilations):
    """The filter with dilation - 1 zeros between its taps (differentiable): a dilated convolution is the
    undilated convolution with it. TF's CPU kernels have no dilated backprop, so gradients go this way.
    Each spatial axis is spread by a 0/1 matrix (tf.pad takes at most rank 6)."""
    for axis, d in enumerate(dilations):
        k = w.shape[axis]
        spread = np.zeros((k, (k - 1) * d + 1), np.float32)
        spread[np.arange(k), np.arange(k) * d] = 1
        w = tf.tensordot(w, spread, [[axis], [0]])
        r = len(w.shape)
        w = tf.transpose(w, tuple(range(axis)) + (r - 1,) + tuple(range(axis, r - 1)))
    return w


def grouped_conv2d(x, w, **kw):
    """conv2d, with a grouped filter split into one conv2d per group (TF's CPU has no grouped backprop)."""
    groups = x.shape[-1] // w.shape[2]
    if groups == 1:
        return tf.nn.conv2d(x, w, **kw)
    ys = [tf.nn.conv2d(xg, wg, **kw) for xg, wg in zip(tf.split(x, groups, -1), tf.split(w, groups, -1))]
    y = tf.concat(ys, -1)
    np.testing.assert_allclose(y.numpy(), tf.nn.conv2d(x, w, **kw).numpy(), rtol=1e-5, atol=1e-5)
    return y


def conv3d_cpu(x, w, strides, padding, **kw):
    """conv3d as TF's GPU kernel defines it, from what TF's CPU conv3d takes: explicit padding by tf.pad, a
    grouped filter by one conv3d per group, strides as 5 ints."""
    strides = [1, strides, strides, strides, 1] if isinstance(strides, int) else list(strides)
    strides = [1] + strides + [1] if len(strides) == 3 else strides
    if not isinstance(padding, str):
        x, padding = tf.pad(x, padding), "VALID"
    groups = x.shape[-1] // w.shape[3]
    ys = [tf.nn.conv3d(xg, wg, strides, padding, **kw) for xg, wg in zip(tf.split(x, groups, -1),
                                                                         tf.split(w, groups, -1))]
    return tf.concat(ys, -1)


def conv_layer_twin(x, w, b, layer):
    """A Keras Conv2D/Conv3D layer (no activation, channels_last) in TF ops whose CPU gradients exist."""
    if layer.rank == 3:
        return conv3d_cpu(x, inflate(w, layer.dilation_rate), 1, layer.padding.upper()) + b
    return grouped_conv2d(x, inflate(w, layer.dilation_rate), strides=layer.strides,
                          padding=layer.padding.upper()) + b


def tf_op(fn, args, channels_first):
    """The TF function for one case; channels-first cases run the channels-last op between transposes."""
    f0 = {"conv2d": grouped_conv2d, "conv3d": conv3d_cpu}.get(fn) or getattr(tf.nn, fn)
    args = dict(args)
    # tf.nn.convolution and tf.nn.pool dilate on TF's CPU (space_to_batch)
    dil = None if fn in ("convolution", "pool") else args.pop("dilations", None)
    if dil is None:
        f = f0
    else:
        nd = 1 if fn == "conv1d" else 3 if fn.startswith("conv3d") else 2
        dil = [dil] * nd if isinstance(dil, int) else dil[1:-1] if len(dil) == nd + 2 else dil

        def f(x, w, **kw):
            y = f0(x, inflate(w, dil), **kw)
            if not fn.startswith("conv3d"):  # TF's CPU conv3d kernels have no dilations
                direct = f0(x, w, dilations=dil, **kw)  # TF's own dilated forward agrees
                np.testing.assert_allclose(y.numpy(), direct.numpy(), rtol=1e-5, atol=1e-5)
            return y
    if not channels_first:
        return lambda *xs: f(*xs, **args)
    args.pop("data_format")
    if isinstance(args.get("padding"), list):
        p = args["padding"]
        args["padding"] = [p[0]] + p[2:] + [p[1]]
    for k in ("strides", "ksize"):
        v = args.get(k)
        if isinstance(v, list) and len(v) in (4, 5):
            args[k] = [v[0]] + v[2:] + [v[1]]
    if "output_shape" in args:
        s = args["output_shape"]
        args["output_shape"] = [s[0]] + s[2:] + [s[1]]
    return lambda x, *ws: nchw(f(nhwc(x), *ws, **args))


def record(name, fn, inputs, **args):
    channels_first = args.get("data_format") in ("NCHW", "NCW", "NCDHW")
    xs = [tf.constant(a) for a in inputs]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        y = tf_op(fn, args, channels_first)(*xs)
        r = rand(*y.shape)
        proj = tf.reduce_sum(y * r)
    grads = tape.gradient(proj, xs)
    key = "op/" + name
    OUT[key + "/spec"] = np.array(json.dumps({"fn": fn, "args": args, "n": len(xs)}))
    for i, a in enumerate(inputs):
        OUT["%s/in%d" % (key, i)] = a
        OUT["%s/grad%d" % (key, i)] = grads[i].numpy()
    OUT[key + "/r"] = r
    OUT[key + "/out"] = y.numpy()


record("conv2d_same", "conv2d", [rand(1, 5, 5, 3), rand(3, 3, 3, 2)], strides=1, padding="SAME")
record("conv2d_valid_stride21", "conv2d", [rand(2, 6, 5, 2), rand(2, 3, 2, 3)], strides=[2, 1], padding="VALID")
record("conv2d_same_stride2_even", "conv2d", [rand(1, 6, 6, 2), rand(3, 3, 2, 2)], strides=2, padding="SAME")
record("conv2d_dilated_valid", "conv2d", [rand(1, 7, 6, 2), rand(3, 2, 2, 2)], strides=1, padding="VALID",
       dilations=2)
record("conv2d_dilated_strided_same", "conv2d", [rand(1, 7, 7, 2), rand(3, 3, 2, 2)], strides=2, padding="SAME",
       dilations=2)
record("conv2d_explicit", "conv2d", [rand(1, 4, 5, 2), rand(3, 3, 2, 2)], strides=[1, 2, 1, 1],
       padding=[[0, 0], [1, 2], [0, 1], [0, 0]])
record("conv2d_grouped", "conv2d", [rand(1, 5, 5, 4), rand(3, 3, 2, 4)], strides=1, padding="SAME")
record("conv2d_nchw", "conv2d", [rand(1, 3, 5, 4), rand(3, 2, 3, 2)], strides=[1, 1, 2, 1], padding="SAME",
       data_format="NCHW")
record("conv2d_nchw_explicit", "conv2d", [rand(1, 2, 4, 4), rand(2, 2, 2, 2)], strides=1,
       padding=[[0, 0], [0, 0], [1, 0], [2, 1]], data_format="NCHW")
record("conv2d_1x1_spatial", "conv2d", [rand(2, 1, 1, 3), rand(1, 1, 3, 2)], strides=1, padding="VALID")
record("conv2d_kernel_over_input_same", "conv2d", [rand(1, 1, 2, 2), rand(3, 3, 2, 2)], strides=2, padding="SAME")
record("conv1d_same_stride2", "conv1d", [rand(2, 7, 3), rand(3, 3, 2)], stride=2, padding="SAME")
record("conv1d_dilated_valid", "conv1d", [rand(1, 8, 2), rand(3, 2, 2)], stride=1, padding="VALID", dilations=2)
record("conv1d_ncw", "conv1d", [rand(1, 3, 6), rand(2, 3, 2)], stride=1, padding="SAME", data_format="NCW")
record("conv2d_transpose_same", "conv2d_transpose", [rand(1, 3, 3, 2), rand(3, 3, 3, 2)], output_shape=[1, 6, 6, 3],
       strides=2, padding="SAME")
record("conv2d_transpose_same_odd", "conv2d_transpose", [rand(2, 3, 4, 2), rand(3, 3, 2, 2)],
       output_shape=[2, 5, 7, 2], strides=2, padding="SAME")
record("conv2d_transpose_valid", "conv2d_transpose", [rand(1, 3, 2, 2), rand(2, 3, 2, 2)],
       output_shape=[1, 7, 4, 2], strides=[2, 1], padding="VALID")
record("conv2d_transpose_nchw", "conv2d_transpose", [rand(1, 2, 3, 3), rand(3, 3, 2, 2)],
       output_shape=[1, 2, 6, 6], strides=2, padding="SAME", data_format="NCHW")
record("depthwise_same_stride2", "depthwise_conv2d", [rand(1, 5, 5, 3), rand(3, 3, 3, 2)], strides=[1, 2, 2, 1],
       padding="SAME")
record("depthwise_dilated_valid", "depthwise_conv2d", [rand(1, 6, 6, 2), rand(2, 2, 2, 1)], strides=[1, 1, 1, 1],
       padding="VALID", dilations=[2, 2])
record("max_pool2d_valid", "max_pool2d", [distinct(2, 4, 5, 2)], ksize=2, strides=2, padding="VALID")
record("max_pool2d_same_3s2", "max_pool2d", [distinct(1, 5, 6, 2)], ksize=3, strides=2, padding="SAME")
record("max_pool2d_ties", "max_pool2d", [np.round(rand(1, 5, 5, 2)).clip(-1, 0.5)], ksize=[2, 3], strides=1,
       padding="VALID")
record("max_pool2d_explicit", "max_pool2d", [distinct(1, 4, 4, 1)], ksize=2, strides=2,
       padding=[[0, 0], [1, 1], [0, 1], [0, 0]])
record("max_pool2d_nchw", "max_pool2d", [distinct(1, 2, 5, 4)], ksize=2, strides=[1, 2], padding="SAME",
       data_format="NCHW")
record("max_pool1d_same", "max_pool1d", [distinct(2, 7, 2)], ksize=3, strides=2, padding="SAME")
record("avg_pool2d_same_3s2", "avg_pool2d", [rand(1, 5, 6, 2)], ksize=3, strides=2, padding="SAME")
record("avg_pool2d_valid", "avg_pool2d", [rand(2, 4, 4, 1)], ksize=[2, 1], strides=[2, 1], padding="VALID")
record("avg_pool2d_nchw", "avg_pool2d", [rand(1, 2, 3, 5)], ksize=2, strides=1, padding="SAME", data_format="NCHW")
record("avg_pool1d_same", "avg_pool1d", [rand(1, 5, 3)], ksize=2, strides=2, padding="SAME")
record("max_pool_generic_1d", "max_pool", [distinct(1, 6, 2)], ksize=2, strides=2, padding="VALID")
record("avg_pool_generic_2d", "avg_pool", [rand(1, 4, 4, 2)], ksize=3, strides=1, padding="SAME")


# --- Keras layers ---------------------------------------------------------------------------

LAYERS = [
    ("conv1d_causal_dilated", "Conv1D", dict(filters=3, kernel_size=3, padding="causal", dilation_rate=2), (2, 7, 4)),
    ("conv1d_same_stride2_relu", "Conv1D", dict(filters=2, kernel_size=2, strides=2, padding="same",
                                                activation="relu"), (2, 7, 3)),
    ("conv2d_same_stride2_tanh", "Conv2D", dict(filters=4, kernel_size=3, strides=2, padding="same",
                                                activation="tanh"), (2, 6, 6, 3)),
    ("conv2d_groups_dilated", "Conv2D", dict(filters=4, kernel_size=(2, 3), dilation_rate=2, groups=2),
     (1, 7, 7, 4)),
    ("conv2d_channels_first", "Conv2D", dict(filters=2, kernel_size=3, padding="same",
                                             data_format="channels_first"), (1, 3, 5, 5)),
    ("conv2d_1x1_no_bias", "Conv2D", dict(filters=3, kernel_size=1, use_bias=False), (2, 1, 1, 2)),
    ("conv2d_transpose_same", "Conv2DTranspose", dict(filters=3, kernel_size=3, strides=2, padding="same"),
     (1, 4, 4, 2)),
    ("conv2d_transpose_valid", "Conv2DTranspose", dict(filters=2, kernel_size=(3, 2), strides=(2, 1),
                                                       padding="valid"), (1, 3, 3, 2)),
    ("conv2d_transpose_output_padding", "Conv2DTranspose", dict(filters=2, kernel_size=3, strides=2, padding="same",
                                                                output_padding=1), (1, 3, 3, 2)),
    ("depthwise_same_stride2", "DepthwiseConv2D", dict(kernel_size=3, depth_multiplier=2, padding="same",
                                                       strides=2), (1, 5, 5, 3)),
    ("depthwise_dilated_channels_first", "DepthwiseConv2D", dict(kernel_size=2, dilation_rate=2,
                                                                 data_format="channels_first"), (1, 2, 5, 5)),
    ("max_pooling2d", "MaxPooling2D", dict(), (2, 4, 5, 2)),
    ("max_pooling2d_same", "MaxPooling2D", dict(pool_size=3, strides=2, padding="same"), (1, 5, 6, 2)),
    ("max_pooling1d_same", "MaxPooling1D", dict(pool_size=2, padding="same"), (2, 5, 2)),
    ("average_pooling2d_same", "AveragePooling2D", dict(pool_size=3, strides=2, padding="same"), (1, 5, 6, 2)),
    ("average_pooling2d_channels_first", "AveragePooling2D", dict(pool_size=2, data_format="channels_first"),
     (1, 2, 4, 4)),
    ("average_pooling1d", "AveragePooling1D", dict(pool_size=3, strides=1), (2, 6, 2)),
    ("global_average_pooling2d_keepdims", "GlobalAveragePooling2D", dict(keepdims=True), (2, 3, 4, 2)),
    ("global_max_pooling2d", "GlobalMaxPooling2D", dict(), (2, 3, 4, 2)),
    ("global_average_pooling1d", "GlobalAveragePooling1D", dict(), (2, 5, 3)),
    ("global_max_pooling1d_channels_first", "GlobalMaxPooling1D", dict(data_format="channels_first",
                                                                      keepdims=True), (2, 3, 5)),
    ("up_sampling2d", "UpSampling2D", dict(size=(2, 3)), (1, 2, 3, 2)),
    ("zero_padding2d", "ZeroPadding2D", dict(padding=((1, 0), (2, 1))), (1, 2, 3, 2)),
    ("cropping2d", "Cropping2D", dict(cropping=((1, 0), (0, 2))), (1, 4, 5, 2)),
]


def first_to_last(x):
    return tf.transpose(x, (0,) + tuple(range(2, len(x.shape))) + (1,))


def last_to_first(x):
    return tf.transpose(x, (0, len(x.shape) - 1) + tuple(range(1, len(x.shape) - 1)))


def record_layer(name, cls, kwargs, shape):
    # TF's CPU kernels are NHWC only: a channels_first layer is recorded as its channels_last twin between
    # transposes (the same weights; Keras defines channels_first that way)
    channels_first = kwargs.get("data_format") == "channels_first"
    twin = dict(kwargs, data_format="channels_last") if channels_first else kwargs
    keras_layer = getattr(tf.keras.layers, cls)(**twin)
    layer = (lambda t, f=keras_layer: last_to_first(f(first_to_last(t)))) if channels_first else keras_layer
    x_np = distinct(*shape) if "max" in name.lower() else rand(*shape)
    x = tf.constant(x_np)
    layer(x)
    weights = [rand(*w.shape) * 0.5 for w in keras_layer.get_weights()]
    keras_layer.set_weights(weights)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        r = rand(*y.shape)
        proj = tf.reduce_sum(y * r)
    try:
        grads = tape.gradient(proj, [x] + keras_layer.trainable_weights)
    except tf.errors.InvalidArgumentError:  # TF's CPU: no grouped or dilated conv backprop; same math in TF ops
        assert cls in ("Conv2D", "Conv3D") and kwargs.get("data_format") is None and kwargs.get("activation") is None
        assert cls == "Conv2D" or kwargs.get("strides", 1) == 1
        ws = [tf.constant(w) for w in weights]
        with tf.GradientTape() as tape:
            tape.watch([x] + ws)
            y2 = conv_layer_twin(x, ws[0], ws[1], keras_layer)
            proj = tf.reduce_sum(y2 * r)
        np.testing.assert_allclose(y2.numpy(), y.numpy(), rtol=1e-5, atol=1e-5)
        grads = tape.gradient(proj, [x] + ws)
    key = "layer/" + name
    OUT[key + "/spec"] = np.array(json.dumps({"cls": cls, "kwargs": kwargs, "n_weights": len(weights),
                                              "weight_names": [w.name for w in keras_layer.weights]}))
    OUT[key + "/x"] = x_np
    OUT[key + "/r"] = r
    OUT[key + "/out"] = y.numpy()
    for i, (w, g) in enumerate(zip(weights, grads[1:])):
        OUT["%s/w%d" % (key, i)] = w
        OUT["%s/gw%d" % (key, i)] = g.numpy()
    OUT[key + "/gx"] = grads[0].numpy()


for case in LAYERS:
    record_layer(*case)


# --- 3-D, tf.nn.convolution and tf.nn.pool (recorded after the cases above, which keep their values) ----------

record("conv3d_same", "conv3d", [rand(1, 4, 5, 3, 2), rand(3, 3, 2, 2, 3)], strides=[1, 1, 1, 1, 1], padding="SAME")
record("conv3d_valid_strided", "conv3d", [rand(2, 5, 4, 7, 2), rand(2, 3, 2, 2, 2)], strides=[1, 2, 1, 3, 1],
       padding="VALID")
record("conv3d_same_stride2_odd", "conv3d", [rand(1, 5, 5, 4, 1), rand(3, 2, 3, 1, 2)], strides=[1, 2, 2, 2, 1],
       padding="SAME")
record("conv3d_dilated_same", "conv3d", [rand(1, 6, 5, 5, 2), rand(2, 2, 3, 2, 2)], strides=[1, 1, 1, 1, 1],
       padding="SAME", dilations=[1, 2, 1, 2, 1])
record("conv3d_grouped", "conv3d", [rand(1, 3, 4, 4, 4), rand(2, 2, 2, 2, 4)], strides=[1, 1, 1, 1, 1],
       padding="VALID")
record("conv3d_explicit", "conv3d", [rand(1, 3, 4, 3, 2), rand(2, 3, 2, 2, 2)], strides=[1, 1, 2, 1, 1],
       padding=[[0, 0], [1, 0], [2, 1], [0, 1], [0, 0]])
record("conv3d_ncdhw", "conv3d", [rand(1, 2, 3, 4, 5), rand(2, 2, 3, 2, 2)], strides=[1, 1, 1, 1, 2],
       padding="SAME", data_format="NCDHW")
record("conv3d_1x1x1_spatial", "conv3d", [rand(2, 1, 1, 1, 3), rand(1, 1, 1, 3, 2)], strides=[1, 1, 1, 1, 1],
       padding="VALID")
record("conv3d_kernel_over_input_same", "conv3d", [rand(1, 1, 2, 1, 2), rand(3, 3, 3, 2, 1)],
       strides=[1, 2, 2, 2, 1], padding="SAME")
record("conv3d_transpose_same", "conv3d_transpose", [rand(1, 2, 3, 2, 2), rand(3, 3, 3, 3, 2)],
       output_shape=[1, 4, 6, 4, 3], strides=[1, 2, 2, 2, 1], padding="SAME")
record("conv3d_transpose_same_odd", "conv3d_transpose", [rand(1, 2, 3, 2, 2), rand(3, 2, 3, 2, 2)],
       output_shape=[1, 3, 5, 4, 2], strides=[1, 2, 2, 2, 1], padding="SAME")
record("conv3d_transpose_valid", "conv3d_transpose", [rand(1, 2, 2, 3, 2), rand(2, 3, 2, 2, 2)],
       output_shape=[1, 3, 5, 4, 2], strides=[1, 1, 2, 1, 1], padding="VALID")
record("conv3d_transpose_ncdhw", "conv3d_transpose", [rand(1, 2, 2, 2, 3), rand(2, 2, 2, 3, 2)],
       output_shape=[1, 3, 4, 4, 6], strides=[1, 1, 2, 2, 2], padding="SAME", data_format="NCDHW")
record("conv3d_transpose_dilated", "conv3d_transpose", [rand(1, 3, 2, 3, 1), rand(2, 2, 2, 2, 1)],
       output_shape=[1, 5, 4, 5, 2], strides=[1, 1, 1, 1, 1], padding="VALID", dilations=[1, 2, 2, 2, 1])
record("max_pool3d_valid", "max_pool3d", [distinct(2, 4, 4, 5, 2)], ksize=2, strides=2, padding="VALID")
record("max_pool3d_same_3s2", "max_pool3d", [distinct(1, 5, 4, 3, 2)], ksize=3, strides=[1, 2, 1, 2, 1],
       padding="SAME")
record("max_pool3d_ties", "max_pool3d", [np.round(rand(1, 3, 4, 4, 2)).clip(-1, 0.5)], ksize=[2, 2, 3], strides=1,
       padding="VALID")
record("max_pool3d_ncdhw", "max_pool3d", [distinct(1, 2, 4, 4, 3)], ksize=2, strides=1, padding="SAME",
       data_format="NCDHW")
record("avg_pool3d_same_3s2", "avg_pool3d", [rand(1, 5, 4, 6, 2)], ksize=3, strides=2, padding="SAME")
record("avg_pool3d_valid", "avg_pool3d", [rand(2, 4, 3, 4, 1)], ksize=[2, 1, 2], strides=[2, 1, 1], padding="VALID")
record("avg_pool3d_ncdhw", "avg_pool3d", [rand(1, 2, 3, 4, 3)], ksize=2, strides=[1, 1, 2, 1, 1], padding="SAME",
       data_format="NCDHW")
# data_format given: TF 2.21's MaxPool3D/AvgPool3D/Conv3D gradients fail on the data_format=None that max_pool,
# avg_pool and convolution (undilated) pass on
record("max_pool_generic_3d", "max_pool", [distinct(1, 4, 4, 4, 2)], ksize=[2, 2, 2], strides=2, padding="SAME",
       data_format="NDHWC")
record("avg_pool_generic_3d", "avg_pool", [rand(1, 3, 4, 5, 1)], ksize=2, strides=1, padding="VALID",
       data_format="NDHWC")
record("convolution_3d_dilated_same", "convolution", [rand(1, 5, 5, 4, 2), rand(2, 2, 2, 2, 3)], padding="SAME",
       dilations=[2, 2, 1])
record("convolution_3d_default", "convolution", [rand(1, 3, 3, 3, 1), rand(2, 2, 2, 1, 2)], data_format="NDHWC")
record("convolution_2d_strided", "convolution", [rand(2, 5, 6, 3), rand(3, 3, 3, 2)], strides=[2, 1],
       padding="VALID")
record("convolution_2d_nchw", "convolution", [rand(1, 2, 5, 4), rand(2, 3, 2, 2)], strides=1, padding="SAME",
       data_format="NCHW")
record("convolution_1d_dilated_same", "convolution", [rand(2, 7, 2), rand(3, 2, 2)], padding="SAME", dilations=2)
record("convolution_batch_dims", "convolution", [rand(2, 3, 5, 4, 2), rand(2, 2, 2, 3)], padding="SAME")
record("pool_max_3d_same", "pool", [distinct(1, 4, 5, 3, 2)], window_shape=[2, 2, 2], pooling_type="MAX",
       strides=[2, 2, 2], padding="SAME")
record("pool_max_3d_dilated", "pool", [distinct(1, 5, 5, 5, 1)], window_shape=[2, 2, 2], pooling_type="MAX",
       dilations=[2, 1, 2])
record("pool_avg_3d_strided", "pool", [rand(1, 4, 4, 5, 2)], window_shape=[2, 3, 2], pooling_type="AVG",
       strides=[2, 1, 2])
record("pool_avg_2d_dilated", "pool", [rand(1, 6, 5, 2)], window_shape=[2, 2], pooling_type="AVG",
       dilations=[2, 1])
record("pool_max_1d_dilated", "pool", [distinct(2, 7, 2)], window_shape=[3], pooling_type="MAX", dilations=[2])
record("pool_avg_1d_same", "pool", [rand(1, 5, 3)], window_shape=[2], pooling_type="AVG", strides=[2],
       padding="SAME")

LAYERS_3D = [
    ("conv3d_same_stride2_relu", "Conv3D", dict(filters=3, kernel_size=3, strides=2, padding="same",
                                                activation="relu"), (2, 5, 4, 6, 2)),
    ("conv3d_valid_kernel_tuple", "Conv3D", dict(filters=2, kernel_size=(2, 3, 1)), (1, 4, 5, 3, 3)),
    ("conv3d_groups_dilated", "Conv3D", dict(filters=4, kernel_size=2, dilation_rate=(2, 1, 2), groups=2),
     (1, 5, 4, 5, 4)),
    ("conv3d_channels_first", "Conv3D", dict(filters=2, kernel_size=2, padding="same", data_format="channels_first"),
     (1, 3, 4, 3, 4)),
    ("conv3d_1x1x1_no_bias", "Conv3D", dict(filters=3, kernel_size=1, use_bias=False), (2, 1, 1, 1, 2)),
    ("conv3d_transpose_same", "Conv3DTranspose", dict(filters=3, kernel_size=3, strides=2, padding="same"),
     (1, 2, 3, 2, 2)),
    ("conv3d_transpose_valid", "Conv3DTranspose", dict(filters=2, kernel_size=(2, 3, 2), strides=(2, 1, 3)),
     (1, 2, 3, 2, 2)),
    ("conv3d_transpose_output_padding", "Conv3DTranspose", dict(filters=2, kernel_size=3, strides=2, padding="same",
                                                                output_padding=1), (1, 2, 2, 3, 2)),
    ("conv3d_transpose_channels_first", "Conv3DTranspose", dict(filters=2, kernel_size=2, strides=2,
                                                                data_format="channels_first"), (1, 3, 2, 2, 2)),
    ("max_pooling3d", "MaxPooling3D", dict(), (2, 4, 4, 5, 2)),
    ("max_pooling3d_same", "MaxPooling3D", dict(pool_size=3, strides=2, padding="same"), (1, 5, 4, 3, 2)),
    ("max_pooling3d_channels_first", "MaxPooling3D", dict(pool_size=(2, 1, 2), data_format="channels_first"),
     (1, 2, 4, 3, 4)),
    ("average_pooling3d_same", "AveragePooling3D", dict(pool_size=3, strides=(2, 1, 2), padding="same"),
     (1, 5, 4, 5, 2)),
    ("average_pooling3d_valid", "AveragePooling3D", dict(pool_size=2), (2, 4, 4, 4, 1)),
    ("global_average_pooling3d", "GlobalAveragePooling3D", dict(), (2, 3, 4, 2, 3)),
    ("global_max_pooling3d_channels_first", "GlobalMaxPooling3D", dict(data_format="channels_first", keepdims=True),
     (2, 3, 2, 4, 2)),
    ("up_sampling3d", "UpSampling3D", dict(size=(2, 1, 3)), (1, 2, 3, 2, 2)),
    ("up_sampling3d_channels_first", "UpSampling3D", dict(size=2, data_format="channels_first"), (1, 2, 2, 1, 3)),
    ("zero_padding3d", "ZeroPadding3D", dict(padding=((1, 0), (0, 2), (1, 1))), (1, 2, 3, 2, 2)),
    ("zero_padding3d_default", "ZeroPadding3D", dict(), (1, 1, 2, 1, 1)),
    ("cropping3d", "Cropping3D", dict(cropping=((1, 0), (0, 1), (1, 1))), (1, 3, 4, 4, 2)),
    ("cropping3d_channels_first", "Cropping3D", dict(cropping=1, data_format="channels_first"), (1, 2, 3, 4, 3)),
]
for case in LAYERS_3D:
    record_layer(*case)


def conv3d_model():
    """Every 3-D layer in one Keras model, saved as tests/data/keras3_conv3d.keras (accel loads Keras's configs
    and weights and must predict what Keras predicts)."""
    L = tf.keras.layers
    inp = tf.keras.Input((4, 6, 6, 2))
    h = L.ZeroPadding3D(((1, 0), (0, 1), (1, 1)))(inp)
    h = L.Conv3D(4, 3, padding="same", activation="relu", groups=2)(h)
    h = L.MaxPooling3D(2)(h)
    h = L.UpSampling3D((1, 2, 1))(h)
    h = L.Conv3DTranspose(3, 2, strides=(1, 1, 2), dilation_rate=1)(h)
    h = L.Cropping3D(((0, 1), (1, 0), (0, 0)))(h)
    h = L.AveragePooling3D(2, padding="same")(h)
    h = L.Conv3D(2, (1, 2, 1), data_format="channels_first", name="conv3d_channels_first")(h)
    h = L.Concatenate()([L.GlobalAveragePooling3D()(h), L.GlobalMaxPooling3D(keepdims=False)(h)])
    model = tf.keras.Model(inp, L.Dense(2)(h), name="conv3d")
    model.set_weights([rand(*w.shape) * 0.5 for w in model.get_weights()])
    x = rand(3, 4, 6, 6, 2)
    OUT["model/conv3d/x"] = x
    OUT["model/conv3d/out"] = model.predict(x, verbose=0)
    model.save(os.path.join(os.path.dirname(__file__), "..", "tests", "data", "keras3_conv3d.keras"))


conv3d_model()

path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tf_conv.npz")
np.savez_compressed(path, **OUT)
print("wrote %s (%d arrays, TF %s, Keras %s)" % (path, len(OUT), tf.__version__, tf.keras.__version__))
