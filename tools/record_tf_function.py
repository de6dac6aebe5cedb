"""Records what tf.function (TensorFlow 2.21) does for the retracing programs in tests/tf_function_cases.py
into tests/data/tf_function.json: per call the trace count, the result or error, prints and warnings.

    .venv-bench/bin/python tools/record_tf_function.py     # a venv with tensorflow-cpu==2.21.*
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import tensorflow as tf  # noqa: E402

from tests.tf_function_cases import CASES  # noqa: E402

out = {"tensorflow": tf.__version__, "cases": {}}
for name, case in CASES.items():
    try:
        out["cases"][name] = case(tf)
    except Exception as e:  # a case must record its errors per call; one escaping is a bug in the case
        raise RuntimeError("case %s raised outside a recorded call" % name) from e
path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tf_function.json")
text = json.dumps(out, indent=1, sort_keys=True)  # before opening: a failure leaves the old file whole
with open(path, "w") as f:
    f.write(text)
print("wrote %s (%d cases, TF %s)" % (path, len(out["cases"]), tf.__version__))
