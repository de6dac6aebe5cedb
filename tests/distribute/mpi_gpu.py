"""Run by test_gpu.py under mpiexec -n 2: each rank on its own GPU, gradients over NCCL."""

import numpy as np

import accel as tf
import accel.distribute as dist
from mpi4py import MPI

rank = MPI.COMM_WORLD.Get_rank()
with tf.device("gpu:%d" % rank):
    s = dist.MultiWorkerMirroredStrategy()
    assert s.group.nccl is not None, "no NCCL communicator"
    with s.scope():
        w = tf.Variable(np.full((4, 3), float(rank), np.float32))  # rank 0's values are broadcast
    assert float(tf.reduce_sum(w)) == 0.0

    def step():
        g = tf.ones((4, 3)) * float(rank + 1)
        return dist.all_reduce_gradients([g])[0]

    got = s.run(step)
    assert np.allclose(got.numpy(), 3.0), got
print("RANK %d OK" % rank, flush=True)
