"""Conv2D forward + backward: batch 32, 32x32x16 -> 32 filters 3x3, 'same', float32 (grads of x, kernel, bias).

    python -m bench.bench_conv [--rounds 15]        # interleaved rounds, medians
    pytest bench/bench_conv.py                      # pytest-benchmark

Variants: accel's Conv2D layer (accel/ops/conv.py: im2col + one matmul, col2im input gradient); the Conv2D
accel had before it (kh * kw strided slices of the padded input concatenated by differentiable accel ops,
then one matmul: kept here as the baseline); a hand-written NumPy im2col floor; TF eager when importable.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import accel

try:
    import pytest
except ImportError:  # `python -m bench.bench_conv` in a venv without pytest (.venv-bench, for TF)
    pytest = None

N, H, W, C, F, K = 32, 32, 32, 16, 32, 3


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    k = (rng.standard_normal((K, K, C, F)) * 0.1).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    r = rng.standard_normal((N, H, W, F)).astype(np.float32)
    return x, k, b, r


def accel_layer():
    x, k, b, r = _data()
    layer = accel.keras.layers.Conv2D(F, K, padding="same")
    xt, rt = accel.constant(x), accel.constant(r)
    layer(xt)
    layer.set_weights([k, b])

    def step():
        with accel.GradientTape() as tape:
            tape.watch(xt)
            loss = accel.reduce_sum(layer(xt) * rt)
        return tape.gradient(loss, [xt, layer.kernel, layer.bias])

    return step


def accel_slices():
    """accel's previous Conv2D: the window slices concatenated into im2col rows by recorded accel ops."""
    x, k, b, r = _data()
    xt, rt = accel.constant(x), accel.constant(r)
    kv, bv = accel.Variable(k), accel.Variable(b)

    def conv(x):
        p = K // 2
        x = accel.pad(x, [[0, 0], [p, K - 1 - p], [p, K - 1 - p], [0, 0]])
        windows = [x[:, i: i + H, j: j + W, :] for i in range(K) for j in range(K)]
        cols = accel.reshape(accel.concat(windows, axis=-1), (N * H * W, K * K * C))
        return accel.reshape(accel.matmul(cols, accel.reshape(kv, (K * K * C, F))) + bv, (N, H, W, F))

    def step():
        with accel.GradientTape() as tape:
            tape.watch(xt)
            loss = accel.reduce_sum(conv(xt) * rt)
        return tape.gradient(loss, [xt, kv, bv])

    return step


def numpy_floor():
    x, k, b, r = _data()

    def step():
        p = K // 2
        xp = np.pad(x, ((0, 0), (p, K - 1 - p), (p, K - 1 - p), (0, 0)))
        s = xp.strides
        win = np.lib.stride_tricks.as_strided(xp, (N, H, W, K, K, C), (s[0], s[1], s[2], s[1], s[2], s[3]))
        cols = win.reshape(N * H * W, K * K * C)
        g = r.reshape(N * H * W, F)
        _ = cols @ k.reshape(K * K * C, F) + b  # forward
        gk = (cols.T @ g).reshape(k.shape)
        gb = g.sum(0)
        gxp = np.zeros_like(xp)
        for i in range(K):
            for j in range(K):  # one contiguous (g @ k[i, j].T) per offset: 3x faster than slicing a (.., K, K, C)
                gxp[:, i: i + H, j: j + W] += (g @ k[i, j].T).reshape(N, H, W, C)
        return gxp[:, p: p + H, p: p + W], gk, gb

    return step


def tf_eager():
    import tensorflow as tf  # noqa: PLC0415

    x, k, b, r = _data()
    layer = tf.keras.layers.Conv2D(F, K, padding="same")
    xt, rt = tf.constant(x), tf.constant(r)
    layer(xt)
    layer.set_weights([k, b])

    def step():
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = tf.reduce_sum(layer(xt) * rt)
        return tape.gradient(loss, [xt] + layer.trainable_weights)

    return step


VARIANTS = {"accel Conv2D": accel_layer, "accel previous Conv2D (slices)": accel_slices,
            "hand NumPy im2col": numpy_floor, "TF eager": tf_eager}


def _available():
    steps = {}
    for name, make in VARIANTS.items():
        try:
            steps[name] = make()
            steps[name]()
        except ImportError:
            continue
    return steps


if pytest is not None:
    @pytest.mark.parametrize("name", list(VARIANTS))
    def test_conv2d_step(benchmark, name):
        try:
            step = VARIANTS[name]()
        except ImportError as e:
            pytest.skip("%s: %s" % (name, e))
        step()
        benchmark(step)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    steps = _available()
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    ref = statistics.median(times["hand NumPy im2col"])
    print("Conv2D fwd+bwd, batch %d, %dx%dx%d -> %d filters %dx%d 'same', float32; medians of %d interleaved "
          "rounds" % (N, H, W, C, F, K, K, args.rounds))
    for name, ts in times.items():
        med = statistics.median(ts)
        q1, _, q3 = statistics.quantiles(ts, n=4)
        print("  %-32s %8.2f ms  (IQR %.2f-%.2f, %.2fx hand NumPy)" % (name, med * 1e3, q1 * 1e3, q3 * 1e3,
                                                                     med / ref))


if __name__ == "__main__":
    main()
