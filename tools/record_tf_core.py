"""Records TensorFlow 2.21's results for tests/tf_core_cases.py into tests/data/tf_core.json.

    .venv-bench/bin/python tools/record_tf_core.py     # a venv with tensorflow-cpu==2.21.*
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import tensorflow as tf  # noqa: E402

from tests.tf_core_cases import CASES  # noqa: E402

out = {"tensorflow": tf.__version__, "cases": {}}
for name, fn in CASES.items():
    try:
        out["cases"][name] = {"result": fn(tf)}
    except Exception as e:  # an error TF raises is a result too
        out["cases"][name] = {"error": type(e).__name__, "message": str(e)[:300]}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tf_core.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
print("wrote %s (%d cases, TF %s)" % (path, len(out["cases"]), tf.__version__))
