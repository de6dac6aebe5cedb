"""accel: TensorFlow-style eager autodiff on NumPy (CPU) or CuPy (CUDA GPU).

    import accel as tf
    w = tf.Variable(0.5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean((w * x - y) ** 2)
    w.assign_sub(0.1 * tape.gradient(loss, w))
"""

from accel import backend, errors  # noqa: F401
from accel.backend import device, has_gpu  # noqa: F401
from accel.dtypes import (  # noqa: F401
    DType, as_dtype, bool_ as bool, double, float16, float32, float64, half, int8, int16, int32, int64, uint8)
from accel.tensor import Tensor, TensorShape, TensorSpec  # noqa: F401
from accel.ops.api import *  # noqa: F401, F403
from accel.ops.api import abs, add, matmul, multiply, pow, range, round, subtract, truediv  # noqa: F401
from accel.tape import GradientTape, UnconnectedGradients  # noqa: F401
from accel.variables import Variable  # noqa: F401
from accel.gradients import custom_gradient, gradients, recompute_grad  # noqa: F401
from accel import config, linalg, math, nn, random  # noqa: F401
from accel.printing import print_ as print  # noqa: F401, A001
from accel.function import function  # noqa: F401
from accel import tensor as _tensor

_tensor.bind_operators({
    name: globals()[name] for name in (
        "add", "subtract", "multiply", "truediv", "floordiv", "mod", "pow", "matmul", "negative", "abs",
        "logical_not", "logical_and", "logical_or", "logical_xor", "equal", "not_equal", "less", "less_equal",
        "greater", "greater_equal", "getitem")
})

newaxis = None
__version__ = "0.1.0"


def executing_eagerly():
    return True


def is_tensor(x):
    return isinstance(x, Tensor)

from accel import debugging  # noqa: E402, F401

_LAZY = ("keras", "layers", "losses", "metrics", "optimizers", "profiler", "demo", "data", "train", "distribute")


# TensorFlow names accel does not have on purpose, each with what to use instead (README: Differences from TF)
UNSUPPORTED = {
    "strings": "accel has no string tensors; keep text in Python or NumPy and feed token ids (integers)",
    "ragged": "accel has no ragged tensors; pad to a dense tensor (and mask) instead",
    "RaggedTensor": "accel has no ragged tensors; pad to a dense tensor (and mask) instead",
    "sparse": "accel has no sparse tensors; use dense tensors (gradients of gather are IndexedSlices already)",
    "SparseTensor": "accel has no sparse tensors; use dense tensors",
    "saved_model": "accel does not write SavedModel; use accel.train.Checkpoint or model.save_weights",
    "image": "accel has no image ops; decode and resize images with Pillow or NumPy before accel",
    "io": "accel has no file ops (tf.io, TFRecord); read files with Python or NumPy and use accel.data for batches",
    "compat": "TF1 compatibility (tf.compat.v1: sessions, placeholders) is not supported; accel is TF2 eager",
    "dtensor": "DTensor is not supported; use accel.distribute (MirroredStrategy, MultiWorkerMirroredStrategy)",
    "summary": "TensorBoard summaries are not supported; log values with Python (or accel.print)",
    "audio": "accel has no audio ops; decode audio with another library",
    "lookup": "lookup tables over strings are not supported (accel has no string tensors)",
    "feature_column": "feature columns are not supported (removed in TF 2.x Keras too); preprocess with NumPy",
    "estimator": "tf.estimator is not supported (removed from TF 2.16); use Keras fit or a training loop",
    "tpu": "TPUs are not supported; accel runs on NVIDIA GPUs (CuPy) or the CPU",
    "signal": "tf.signal (FFT, STFT) is not supported yet; use numpy.fft outside the differentiable path",
    "autograph": "AutoGraph is not used by accel; Python control flow runs eagerly",
    "queue": "TF1 queues are not supported; use accel.data",
    "sets": "tf.sets is not supported; use NumPy set operations outside the differentiable path",
}


def __getattr__(name):
    """The training stack and the profiler import on first use, keeping `import accel` light."""
    import importlib  # noqa: PLC0415

    if name in UNSUPPORTED:
        raise AttributeError("accel.%s (tf.%s) is not supported: %s" % (name, name, UNSUPPORTED[name]))

    if name in _LAZY:
        return importlib.import_module("accel." + name)
    if name in ("Module", "name_scope"):
        return getattr(importlib.import_module("accel.module"), name)
    if name == "IndexedSlices":
        return importlib.import_module("accel.optimizers.sparse").IndexedSlices
    raise AttributeError("module 'accel' has no attribute %r" % name)
