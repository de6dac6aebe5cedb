"""Memory soak: a 784-512-512-10 MLP trained with accel.optimizers.Adam for 10,000 steps (raw ops +
GradientTape), printing RSS and tracemalloc growth after a warm-up.

    .venv/bin/python bench/memory_soak.py [--steps 10000] [--warmup 500] [--batch 128] [--every 1000]

Exit status 1 if traced memory grew by more than --max-growth (default 5%) after the warm-up.
"""

import argparse
import gc
import os
import resource
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import accel as tf  # noqa: E402


def rss_mb():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="784,512,512,10")
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--max-growth", type=float, default=0.05)
    ap.add_argument("--no-tracemalloc", action="store_true", help="RSS only (tracemalloc slows every allocation)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    rng = np.random.default_rng(0)
    ws = [tf.Variable((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32))
          for a, b in zip(sizes, sizes[1:])]
    bs = [tf.Variable(np.zeros(b, np.float32)) for b in sizes[1:]]
    params = ws + bs
    opt = tf.optimizers.Adam(1e-3)
    data = [(tf.constant(rng.standard_normal((args.batch, sizes[0])).astype(np.float32)),
             tf.constant(rng.integers(0, sizes[-1], args.batch).astype(np.int32))) for _ in range(16)]

    def step(x, y):
        with tf.GradientTape() as tape:
            h = x
            for i, (w, b) in enumerate(zip(ws, bs)):
                h = tf.matmul(h, w) + b
                if i < len(ws) - 1:
                    h = tf.nn.relu(h)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
        opt.apply_gradients(zip(tape.gradient(loss, params), params))
        return loss

    trace = not args.no_tracemalloc
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    base_traced = base_rss = None
    print("sizes %s batch %d steps %d warmup %d tracemalloc %s" % (sizes, args.batch, args.steps, args.warmup, trace))
    for i in range(args.steps):
        loss = step(*data[i % len(data)])
        if i + 1 == args.warmup:
            gc.collect()
            base_traced = tracemalloc.get_traced_memory()[0] if trace else 0
            base_rss = rss_mb()
            print("step %6d (end of warm-up): rss %.1f MiB traced %.0f KiB loss %.4f"
                  % (i + 1, base_rss, base_traced / 1024, float(loss.numpy())), flush=True)
        elif args.every and (i + 1) % args.every == 0:
            traced = tracemalloc.get_traced_memory()[0] if trace else 0
            print("step %6d: rss %.1f MiB traced %.0f KiB loss %.4f (%.1f ms/step)"
                  % (i + 1, rss_mb(), traced / 1024, float(loss.numpy()),
                     1e3 * (time.perf_counter() - t0) / (i + 1)), flush=True)
    gc.collect()
    end_rss = rss_mb()
    end_traced, peak = tracemalloc.get_traced_memory() if trace else (0, 0)
    growth = (end_traced - base_traced) / base_traced if trace and base_traced else 0.0
    print("RESULT: rss %.1f -> %.1f MiB (%+.2f%%); traced %.0f -> %.0f KiB (%+.3f%%), peak %.0f KiB; %.1f s"
          % (base_rss, end_rss, 100 * (end_rss - base_rss) / base_rss, base_traced / 1024, end_traced / 1024,
             100 * growth, peak / 1024, time.perf_counter() - t0))
    return 1 if growth > args.max_growth else 0


if __name__ == "__main__":
    sys.exit(main())
