"""MultiWorkerMirroredStrategy under `mpiexec -n 2` (the venv's MPICH): equivalence with one replica, buckets,
sparse gathering, misuse errors and N -> M checkpoints (tests/distribute/mpi_train.py does the work on each
rank and prints RANK r OK; rc 0 alone proves nothing)."""

import pathlib

import numpy as np
import pytest

import accel as tf
from accel import keras
from tests.distribute.mpi_util import mpirun

HERE = pathlib.Path(__file__).parent


def _model(seed):
    tf.random.set_seed(seed)
    m = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(40, activation="relu"), keras.layers.Dense(3)])
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("mwms")
    m = _model(11)
    tf.train.Checkpoint(model=m).write(str(out / "ckpt_a"))
    np.savez(out / "in_weights.npz", **{"w%d" % i: w.numpy() for i, w in enumerate(m.weights)})
    p, secs = mpirun(HERE / "mpi_train.py", out, out / "ckpt_a")
    return out, p, secs


def test_two_ranks_train_like_one_replica_on_the_global_batch(trained):
    out, p, secs = trained
    text = p.stdout + p.stderr
    assert p.returncode == 0, text
    assert "RANK 0 OK" in p.stdout and "RANK 1 OK" in p.stdout, text
    assert text.count("Epoch 1/1") == 1, text  # only the chief prints the progress bar


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_checkpoint_written_by_two_ranks_restores_on_m_replicas(trained, replicas, logical_cpus):
    import accel.distribute as dist

    out, p, _ = trained
    assert p.returncode == 0, p.stdout + p.stderr
    want = np.load(out / "b_weights.npz")
    if replicas == 1:
        m = _model(5)
    else:
        logical_cpus(2)
        with dist.MirroredStrategy().scope():
            m = _model(5)
    m.build((None, 8))
    tf.train.Checkpoint(model=m, optimizer=m.optimizer).restore(str(out / "ckpt_b")).expect_partial()
    for i, w in enumerate(m.weights):
        for a in dist.mirrored.replica_arrays(w):
            np.testing.assert_array_equal(a, want["w%d" % i])
