"""Records Keras 3's outputs and input gradients for tests/keras/keras_layer_cases.py into
tests/data/keras_layers.npz.

    .venv-bench/bin/python tools/record_keras_layers.py     # tensorflow-cpu==2.21.* (Keras 3 as tf.keras)
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tests.keras.keras_layer_cases import adapt_data, cases, run_case  # noqa: E402

out = {}
for name, (make, inputs, weights) in cases(tf.keras).items():
    out[name + "/out"], grads = run_case(tf, make, inputs, weights)
    for i, g in enumerate(grads):
        out["%s/grad%d" % (name, i)] = g
norm = tf.keras.layers.Normalization()
norm.adapt(adapt_data())
out["adapt/mean"] = np.asarray(norm.mean)
out["adapt/variance"] = np.asarray(norm.variance)
out["adapt/out"] = norm(adapt_data()[:4]).numpy()
path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "keras_layers.npz")
np.savez(path, **out)
print("wrote %s (%d arrays, Keras %s)" % (path, len(out), tf.keras.__version__))
