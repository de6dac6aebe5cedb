"""Run under mpiexec -n N: the bucketed all-reduce (ring buckets and MPI Allreduce buckets) against the sum of
every rank's gradients, blocking and as a session fed out of order; prints RANK r OK."""

import sys

import numpy as np
from mpi4py import MPI

import accel.distribute as dist
from accel.distribute import buckets
from accel.distribute.collectives import MPIGroup

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
group, ring_group = MPIGroup(comm.Dup()), MPIGroup(comm.Dup())
SHAPES = [(37, 11), (7,), (1,), (64, 33), (13,), (3, 5, 2), (2,), (301,)]


def grads_of(r, step):
    rng = np.random.default_rng(100 * r + step)
    return [rng.normal(size=s).astype(np.float64 if i == 5 else np.float32) for i, s in enumerate(SHAPES)]


def check(ok, what):
    if not ok:
        print("RANK %d FAIL: %s" % (rank, what), flush=True)
        comm.Abort(1)


for ring_min in (1, 200, 10**9):  # every bucket a ring (even tiny ones), some, none
    buckets.RING_MIN_BYTES = ring_min
    for bucket_bytes in (4, 151, 1000, 10**6):
        red = dist.Reducer(group, bucket_bytes, comm_group=ring_group)
        for step in range(3):  # buffers are reused across steps
            mine = grads_of(rank, step)
            want = [sum(grads_of(r, step)[i].astype(np.float64) for r in range(size)) for i in range(len(SHAPES))]
            for op, div in (("SUM", 1), ("MEAN", size)):
                if step % 2:
                    s = red.start(mine, op)
                    order = np.random.default_rng(step).permutation(len(SHAPES))  # same order on every rank
                    for i in order:
                        s.ready(int(i), mine[i])
                    out = s.finish()
                else:
                    out = red.reduce(mine, op)
                what = "ring_min %d bucket_bytes %d step %d %s" % (ring_min, bucket_bytes, step, op)
                for i, (o, w) in enumerate(zip(out, want)):
                    check(o.shape == mine[i].shape and o.dtype == mine[i].dtype, "%s: gradient %d is %s %s"
                          % (what, i, o.dtype, o.shape))
                    check(np.allclose(o, w / div, rtol=1e-5, atol=1e-5), "%s: gradient %d off by %g"
                          % (what, i, np.abs(o - w / div).max()))
                flat = np.concatenate([o.reshape(-1).astype(np.float64) for o in out])
                every = comm.allgather(flat)
                check(all(np.array_equal(every[0], f) for f in every), what + ": ranks differ")
                check(all(np.array_equal(a, b) for a, b in zip(mine, grads_of(rank, step))),
                      what + ": the input gradients changed")
        for b in red.layout(mine)[1]:  # a ring where the bucket is large enough (and splits into size chunks)
            check((b.chunks is not None) == (b.buf.nbytes >= ring_min and b.size >= size),
                  "ring_min %d bucket_bytes %d: bucket %d of %d bytes, ring %s" % (
                      ring_min, bucket_bytes, b.index, b.buf.nbytes, b.chunks is not None))
print("RANK %d OK" % rank, flush=True)
sys.exit(0)
