"""On a machine with GPUs: MirroredStrategy over every visible GPU, and MultiWorkerMirroredStrategy with one GPU
per rank (NCCL between them). Skipped where there is no GPU (never run while writing them: no GPU here)."""

import pathlib

import numpy as np
import pytest

import accel as tf
import accel.distribute as dist
from accel import backend
from accel.distribute.mirrored import replica_arrays
from tests.distribute.mpi_util import mpirun

pytestmark = pytest.mark.gpu
HERE = pathlib.Path(__file__).parent


def _gpus():
    n = backend.gpu_count()
    if n == 0:
        pytest.skip("no CUDA GPU (CuPy %s)" % ("missing" if backend.cupy() is None else "found no device"))
    return n


def test_mirrored_over_every_gpu_trains_like_one_replica():
    n = _gpus()
    if n > 1 and not backend.nccl_available():
        pytest.skip("NCCL is not loadable (pip install nvidia-nccl-cu13)")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64 * n * 5, 8)).astype(np.float32), rng.integers(0, 3, 64 * n * 5)
    w0 = rng.normal(size=(8, 3)).astype(np.float32)

    def loss(w, xb, yb):
        return tf.nn.compute_average_loss(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, tf.matmul(xb, w)))

    with tf.device("gpu:0"):
        ref, ropt = tf.Variable(w0), tf.optimizers.Adam(0.01)
        for s in range(5):
            sl = slice(s * 64 * n, (s + 1) * 64 * n)
            with tf.GradientTape() as t:
                lv = loss(ref, tf.constant(x[sl]), tf.constant(y[sl]))
            ropt.apply_gradients([(t.gradient(lv, ref), ref)])
    strategy = dist.MirroredStrategy()
    assert strategy.num_replicas_in_sync == n
    with strategy.scope(), tf.device("gpu:0"):
        w, opt = tf.Variable(w0), tf.optimizers.Adam(0.01)

    def step(xb, yb):
        with tf.GradientTape() as t:
            lv = loss(w, xb, yb)
        opt.apply_gradients([(t.gradient(lv, w), w)])

    for xb, yb in strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(64 * n)):
        strategy.run(step, args=(xb, yb))
    copies = [backend.to_numpy(a) for a in replica_arrays(w)]
    assert len(copies) == n
    for c in copies:
        np.testing.assert_allclose(c, ref.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(c, copies[0])


def test_multiworker_with_one_gpu_per_rank():
    if _gpus() < 2 or not backend.nccl_available():
        pytest.skip("needs 2 GPUs and NCCL (pip install nvidia-nccl-cu13)")
    p, _ = mpirun(HERE / "mpi_gpu.py", timeout=120)
    assert p.returncode == 0 and "RANK 0 OK" in p.stdout and "RANK 1 OK" in p.stdout, p.stdout + p.stderr
