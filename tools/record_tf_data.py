"""Records TensorFlow 2.21's tf.data elements for tests/tf_data_cases.py into tests/data/tf_data.json.

    .venv-bench/bin/python tools/record_tf_data.py
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import tensorflow as tf  # noqa: E402

from tests.tf_data_cases import CASES, cardinalities  # noqa: E402

out = {"tensorflow": tf.__version__, "cases": {name: fn(tf) for name, fn in CASES.items()},
       "cardinalities": cardinalities(tf)}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tf_data.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
print("wrote %s (%d cases, TF %s)" % (path, len(out["cases"]), tf.__version__))
