"""accel.distribute's all-reduce, measured on this machine, and a labelled model for GPUs.

    python -m bench.bench_allreduce      # runs the 1-rank figures, then itself under `mpiexec -n 2`

1. All-reduce of the MLP's gradients (bench.workloads.LAYERS) through accel's buckets against one mpi4py
   Allreduce of a flat buffer of the same bytes, 2 ranks (goal >= 0.9x the flat throughput).
2. Overlap: the tape's on_final notification hands each gradient to the bucket reducer as soon as it is
   final, and a bucket's non-blocking all-reduce starts once it is complete; the share of the all-reduce
   time hidden = (step with the all-reduce after the backward - step overlapped) / all-reduce alone.
3. Step time of the MLP (forward, backward, all-reduce, Adam) with 2 ranks vs 1 rank at the same global batch
   (the 2 ranks share this machine's 2 cores).
4. A MODEL (not a measurement) of ring all-reduce scaling for 8 GPUs on one host and 4 hosts x 8 GPUs.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

from bench.workloads import LAYERS  # the MLP of bench_mlp

GLOBAL_BATCH = 128
REPS = 20


def _median(fn, reps=REPS, sync=None):
    for _ in range(2):  # warm-up
        fn()
    ts = []
    for _ in range(reps):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _interleaved(fns, rounds, sync):
    """Median seconds of each of `fns`, run in turn (rotating the order) every round, after sync()."""
    names = list(fns)
    ts = {k: [] for k in names}
    for r in range(rounds + 3):
        for k in names[r % len(names):] + names[:r % len(names)]:
            sync()
            t0 = time.perf_counter()
            fns[k]()
            if r >= 3:  # warm-up rounds
                ts[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in ts.items()}


def _mlp():
    import accel as tf  # noqa: PLC0415

    rng = np.random.default_rng(0)
    vs = []
    for a, b in zip(LAYERS[:-1], LAYERS[1:]):
        vs += [tf.Variable(rng.uniform(-0.05, 0.05, (a, b)).astype(np.float32)), tf.Variable(np.zeros(b, np.float32))]
    return vs


def _batch(rows, seed):
    r = np.random.default_rng(seed)
    return r.normal(size=(rows, LAYERS[0])).astype(np.float32), r.integers(0, LAYERS[-1], rows)


def _loss(tf, vs, x, y, gbs):
    h = x
    for i in range(0, len(vs), 2):
        h = tf.matmul(h, vs[i]) + vs[i + 1]
        if i < len(vs) - 2:
            h = tf.nn.relu(h)
    return tf.nn.compute_average_loss(tf.nn.sparse_softmax_cross_entropy_with_logits(y, h), global_batch_size=gbs)


def step_time(strategy=None):
    """Median seconds of one training step at the global batch (split across the ranks)."""
    import accel as tf  # noqa: PLC0415

    n = 1 if strategy is None else strategy.num_replicas_in_sync
    rank = 0 if strategy is None else strategy.rank
    x, y = _batch(GLOBAL_BATCH // n, rank)
    if strategy is None:
        vs, opt = _mlp(), tf.optimizers.Adam(1e-3)
    else:
        with strategy.scope():
            vs, opt = _mlp(), tf.optimizers.Adam(1e-3)

    def step():
        with tf.GradientTape() as t:
            loss = _loss(tf, vs, x, y, GLOBAL_BATCH)
        opt.apply_gradients(zip(t.gradient(loss, vs), vs))

    if strategy is None:
        return _median(step)
    from accel import tape  # noqa: PLC0415

    hook = tape.final_hook

    def late():  # the all-reduce after the backward pass (no early buckets)
        tape.set_final_hook(None)
        try:
            strategy.run(step)
        finally:
            tape.set_final_hook(hook)

    return _interleaved({"step_2rank_s": lambda: strategy.run(step), "step_2rank_late_s": late}, 5 * REPS,
                        strategy.group.barrier)


def forward_backward(tf, vs, x, y, on_final=None):
    """One forward and backward pass; on_final(i, g) (the tape's notification) as each gradient becomes final."""
    with tf.GradientTape() as t:
        loss = _loss(tf, vs, x, y, GLOBAL_BATCH)
    t._on_final = on_final
    return t.gradient(loss, vs)


def worker():
    import accel as tf  # noqa: PLC0415
    import accel.distribute as dist  # noqa: PLC0415
    from mpi4py import MPI  # noqa: PLC0415

    tf.config.experimental.enable_op_determinism()  # numba loads up front, not in the background mid-timing
    s = dist.MultiWorkerMirroredStrategy()
    rank = s.rank
    if s.size == 1:  # the 1-rank step, under the same launcher and settings as the 2-rank one
        print("JSON " + json.dumps({"step_1rank_s": step_time()}), flush=True)
        return
    vs = _mlp()
    grads = [np.random.default_rng(i).normal(size=v.shape).astype(np.float32) for i, v in enumerate(vs)]
    nbytes = sum(g.nbytes for g in grads)
    flat = np.concatenate([g.reshape(-1) for g in grads])
    comm = s.comm
    res = {"ranks": s.size, "grad_bytes": nbytes}
    fns = {"flat_allreduce_s": lambda: comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)}
    reducers = {}
    for cap_mb in (25, 1):
        red = reducers[cap_mb] = dist.Reducer(s.group, cap_mb * 2**20, comm_group=s._comm_group)
        fns["bucketed_%dMB_s" % cap_mb] = lambda red=red: red.reduce(grads, "SUM")
    res.update(_interleaved(fns, 10 * REPS, comm.Barrier))
    for cap_mb, red in reducers.items():
        res["buckets_%dMB" % cap_mb] = red.last_stats["buckets"]
        out = red.reduce(grads, "SUM")
        assert all(np.array_equal(o, 2 * g) for o, g in zip(out, grads)), "the bucketed all-reduce is wrong"

    # overlap: the tape hands each gradient to the reducer as soon as it is final; 1 MB buckets, so that the
    # last layers' buckets are in flight while the first layer's backward runs. The baseline is the same
    # step with the all-reduce after the backward pass: both include the ranks' skew (their backward passes
    # never end at the same time on a shared 2-core machine), which a barrier-synchronised all-reduce alone
    # would not show.
    x, y = _batch(GLOBAL_BATCH // s.size, rank)
    red = dist.Reducer(s.group, 2**20, comm_group=s._comm_group)
    like = [v._data for v in vs]
    exposed = []

    def overlapped():
        sess = red.start(like, "SUM")
        forward_backward(tf, vs, x, y, sess.ready)
        sess.finish()
        exposed.append(red.last_stats["exposed_seconds"])

    res.update(_interleaved({"backward_alone_s": lambda: forward_backward(tf, vs, x, y),
                             "allreduce_alone_s": lambda: red.reduce(like, "SUM"),
                             "serial_s": lambda: red.reduce(forward_backward(tf, vs, x, y), "SUM"),
                             "overlapped_s": overlapped}, 10 * REPS, comm.Barrier))
    res["exposed_wait_s"] = float(np.median(exposed))
    res["overlap_buckets"] = red.last_stats["buckets"]
    res.update(step_time(s))
    if rank == 0:
        print("JSON " + json.dumps(res), flush=True)


def ring_model(compute_s, grad_bytes, hidden_share):
    """Predicted scaling efficiency = compute / (compute + exposed communication) for a ring all-reduce."""
    rows = []
    for label, p, bw, lat in (("8 GPUs, one host, NVLink 4 (450 GB/s per direction)", 8, 450e9, 5e-6),
                              ("4 hosts x 8 GPUs, InfiniBand NDR 400 Gb/s per GPU (50 GB/s)", 32, 50e9, 10e-6)):
        t_comm = 2 * (p - 1) * lat + 2 * (p - 1) / p * grad_bytes / bw
        exposed = (1 - hidden_share) * t_comm
        rows.append((label, t_comm, compute_s / (compute_s + exposed)))
    return rows


def main():
    if "PMI_RANK" in os.environ or "OMPI_COMM_WORLD_RANK" in os.environ:
        return worker()
    mpiexec = pathlib.Path(sys.executable).parent / "mpiexec"
    env = dict(os.environ, OMP_NUM_THREADS="1", MPIEXEC_TIMEOUT="300")
    r = {}
    for n in (1, 2):
        p = subprocess.run([str(mpiexec), "-n", str(n), sys.executable, "-m", "bench.bench_allreduce"], env=env,
                           capture_output=True, text=True, cwd=str(pathlib.Path(__file__).resolve().parents[1]))
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("JSON ")), None)
        if line is None:
            sys.exit("mpiexec -n %d failed:\n%s%s" % (n, p.stdout, p.stderr))
        r.update(json.loads(line[5:]))
    one = r["step_1rank_s"]
    mb = r["grad_bytes"] / 1e6
    print("MLP %s: %.1f MB of float32 gradients; 2 MPI ranks (MPICH, shared memory), medians of %d"
          % ("-".join(map(str, LAYERS)), mb, REPS))
    print("1. flat mpi4py Allreduce %.2f ms (%.2f GB/s)"
          % (1e3 * r["flat_allreduce_s"], mb / 1e3 / r["flat_allreduce_s"]))
    for cap in (25, 1):
        t = r["bucketed_%dMB_s" % cap]
        print("   accel buckets of %d MB (%d buckets): %.2f ms = %.2fx the flat throughput"
              % (cap, r["buckets_%dMB" % cap], 1e3 * t, r["flat_allreduce_s"] / t))
    hidden = (r["serial_s"] - r["overlapped_s"]) / r["allreduce_alone_s"]
    print("2. forward + backward %.2f ms; all-reduce (%d buckets of <= 1 MB) %.2f ms alone; the step's forward, "
          "backward and all-reduce one after the other %.2f ms, with the buckets launched from the tape's "
          "on_final %.2f ms (then %.2f ms waited for after the backward): %.0f%% of the all-reduce hidden"
          % (1e3 * r["backward_alone_s"], r["overlap_buckets"], 1e3 * r["allreduce_alone_s"], 1e3 * r["serial_s"],
             1e3 * r["overlapped_s"], 1e3 * r["exposed_wait_s"], 100 * hidden))
    hidden = min(1.0, max(0.0, hidden))  # for the model below
    print("3. training step at global batch %d: 1 rank %.2f ms, 2 ranks (2 x %d, sharing 2 cores) %.2f ms: %.2fx "
          "(%.2f ms with the all-reduce after the backward pass)" % (GLOBAL_BATCH, 1e3 * one, GLOBAL_BATCH // 2,
                                                                   1e3 * r["step_2rank_s"], one / r["step_2rank_s"],
                                                                   1e3 * r["step_2rank_late_s"]))
    print("4. MODEL, not a measurement: ring all-reduce, 2(p-1)/p of %.1f MB per replica, compute %.2f ms per step "
          "(measured here on the CPU, 1 rank), %.0f%% hidden as measured in 2:" % (mb, 1e3 * one, 100 * hidden))
    for label, t_comm, eff in ring_model(one, r["grad_bytes"], hidden):
        print("   %s: all-reduce %.3f ms, predicted scaling efficiency %.1f%%" % (label, 1e3 * t_comm, 100 * eff))


if __name__ == "__main__":
    main()
