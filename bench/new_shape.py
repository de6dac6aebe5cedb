"""Cost of a new batch size under a generic signature: a plan derived from the recorded graph against tracing
again (the Python body re-run, what accel.function did before plans were derived).

    python -m bench.new_shape [--batches 64,48,32,17,100] [--repeat 5] [--jit] [--keras]

An MLP training step (784-256-256-10, softmax cross-entropy, Adam; --keras: the same as a Keras Sequential
of Dense layers, whose Python does more per call) under
input_signature=[TensorSpec([None, 784]), TensorSpec([None], int32)]. For each new batch size it times the
first call (trace or derive, build the plan, replay it) and the next call (a replay), each mode in a fresh
accel.function; medians over --repeat rounds. Prints one JSON line per mode.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np


def _step_fn(tf, params, opt):
    def step(x, y):
        with tf.GradientTape() as tape:
            h = x
            for i in range(0, len(params) - 2, 2):
                h = tf.nn.relu(tf.matmul(h, params[i]) + params[i + 1])
            logits = tf.matmul(h, params[-2]) + params[-1]
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        opt.apply_gradients(zip(tape.gradient(loss, params), params))
        return loss

    return step


def _keras_step_fn(tf, model, opt):
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    return step


def measure(batches, repeat, jit, keras=False):
    import accel as tf  # noqa: PLC0415

    fmod = sys.modules["accel.function"]
    rng = np.random.default_rng(0)
    sizes = [(784, 256), (256,), (256, 256), (256,), (256, 10), (10,)]
    data = {n: (tf.constant(rng.standard_normal((n, 784)).astype(np.float32)),
                tf.constant(rng.integers(0, 10, n).astype(np.int32))) for n in batches}
    out = {}
    for mode in ("derive", "retrace"):
        firsts, replays, derived = [], [], 0
        for _ in range(repeat):
            opt = tf.keras.optimizers.Adam(1e-3)
            if keras:
                model = tf.keras.Sequential([tf.keras.layers.Dense(256, activation="relu"),
                                             tf.keras.layers.Dense(256, activation="relu"), tf.keras.layers.Dense(10)])
                model.build((None, 784))
                opt.build(model.trainable_variables)
                step = _keras_step_fn(tf, model, opt)
            else:
                params = [tf.Variable(rng.standard_normal(s).astype(np.float32) * 0.05) for s in sizes]
                opt.build(params)
                step = _step_fn(tf, params, opt)
            f = tf.function(step, jit_compile=jit,
                            input_signature=[tf.TensorSpec([None, 784], tf.float32), tf.TensorSpec([None], tf.int32)])
            f(*data[batches[0]])  # the trace
            f(*data[batches[0]])
            saved = fmod._Recording.derive
            if mode == "retrace":
                fmod._Recording.derive = lambda self, arrays, arg_vars: None
            try:
                for n in batches[1:]:
                    t0 = time.perf_counter()
                    f(*data[n])
                    firsts.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    f(*data[n])
                    replays.append(time.perf_counter() - t0)
            finally:
                fmod._Recording.derive = saved
            derived += sum(getattr(p, "derived", False) for cf in f._cache.values() for p in cf.plans)
        out[mode] = {"mode": mode, "keras": keras, "jit_compile": jit,
                     "new_size_first_call_ms": 1e3 * statistics.median(firsts),
                     "replay_ms": 1e3 * statistics.median(replays), "calls": len(firsts), "derived_plans": derived}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="64,48,32,17,100")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--jit", action="store_true")
    ap.add_argument("--keras", action="store_true")
    a = ap.parse_args()
    for row in measure([int(b) for b in a.batches.split(",")], a.repeat, a.jit or None, a.keras).values():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
