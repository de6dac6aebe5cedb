"""Start-up cost of a new process: `import accel`, building a Keras model, the first and second `fit`.

    python -m bench.startup [--runs 5] [--mode auto]

Each run is a fresh interpreter (what a user's script pays). Prints the median and range of each phase.
The first fit in fused mode "auto" does not wait for numba: it loads in a background thread while the
NumPy paths run, and the CPU twins take over once it is ready.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import accel as tf
t1 = time.perf_counter()
rng = np.random.default_rng(0)
x = rng.random((256, 20), dtype=np.float32); y = rng.integers(0, 3, 256)
m = tf.keras.Sequential([tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(3)])
m.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
t2 = time.perf_counter()
m.fit(x, y, epochs=1, batch_size=32, verbose=0)
t3 = time.perf_counter()
m.fit(x, y, epochs=1, batch_size=32, verbose=0)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "first fit": t3 - t2, "second fit": t4 - t3,
                  "numba loaded by the end": "numba" in sys.modules}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mode", default="auto", choices=("auto", "always", "never"))
    args = ap.parse_args(argv)
    env = dict(os.environ, ACCEL_FUSED=args.mode)
    runs = []
    for _ in range(args.runs):
        r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print("fused mode %s, %d fresh interpreters (MLP 20-32-3, Adam, 8 batches of 32 per fit):" % (args.mode, args.runs))
    for phase in ("import", "build", "first fit", "second fit"):
        xs = [r[phase] for r in runs]
        print("  %-11s median %.3f s (%.3f-%.3f)" % (phase, statistics.median(xs), min(xs), max(xs)))


if __name__ == "__main__":
    main()
