"""Run by test_faults.py under mpiexec -n 2: rank 1 fails in the way argv[1] names while rank 0 trains on."""

import os
import signal
import sys

import numpy as np

import accel as tf
import accel.distribute as dist

mode = sys.argv[1]
# a short watchdog only where it is what must fire: under load a start-up stall of a few seconds would
# otherwise be reported as a lost rank before the failure the other modes test
strategy = dist.MultiWorkerMirroredStrategy(heartbeat_timeout=3.0 if mode == "stop" else 20.0)
rank = strategy.rank
with strategy.scope():
    w = tf.Variable(np.ones((64, 64), np.float32))
    opt = tf.optimizers.SGD(0.001)
x = tf.constant(np.random.default_rng(rank).normal(size=(16, 64)).astype(np.float32))


def step():
    with tf.GradientTape() as t:
        loss = tf.reduce_mean(tf.matmul(x, w) ** 2)
    opt.apply_gradients([(t.gradient(loss, w), w)])


if mode == "skip":  # rank 1 leaves without the collective rank 0 waits in
    if rank == 0:
        strategy.reduce("SUM", tf.constant(1.0))
    print("RANK %d LEFT" % rank, flush=True)
    sys.exit(0)
for i in range(100000):
    strategy.run(step)
    if rank == 1 and i == 20:
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "stop":  # alive but silent (a hang MPI cannot see): the watchdog names it
            os.kill(os.getpid(), signal.SIGSTOP)
        if mode == "raise":
            raise RuntimeError("replica 1 broke on purpose")
