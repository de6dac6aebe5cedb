"""TensorFlow: the accel workload code run on `import tensorflow as tf`, eagerly and under tf.function."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from . import _tf_style  # noqa: E402

NAME = "tensorflow"
DEVICES = ("cpu", "gpu") if tf.config.list_physical_devices("GPU") else ("cpu",)
MEMORY_TRACEABLE = False


def versions():
    return {"tensorflow": tf.__version__, "keras": tf.keras.__version__}


def configure(threads):
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # only allowed before TensorFlow's runtime starts
        pass


def synchronize(device):
    pass  # every timed function copies its result to the host


MLP = {
    "eager": lambda params, x, y, device: _tf_style.MLPStep(tf, params, x, y, device),
    "tf.function": lambda params, x, y, device: _tf_style.MLPStep(tf, params, x, y, device, compiled=True),
}
TAPE = {
    "eager": lambda x0, n_ops, device: _tf_style.Chain(tf, x0, n_ops, device),
    "tf.function": lambda x0, n_ops, device: _tf_style.Chain(tf, x0, n_ops, device, compiled=True),
}
CNN = {
    "eager": lambda params, x, y, device: _tf_style.CNNStep(tf, params, x, y, device),
    "tf.function": lambda params, x, y, device: _tf_style.CNNStep(tf, params, x, y, device, compiled=True),
}
ENCODER = {
    "eager": lambda params, x, y, device: _tf_style.EncoderStep(tf, params, x, y, device),
    "tf.function": lambda params, x, y, device: _tf_style.EncoderStep(tf, params, x, y, device, compiled=True),
}
RECORD = {"eager": lambda x0, device: _tf_style.recorder(tf, x0, device)}
