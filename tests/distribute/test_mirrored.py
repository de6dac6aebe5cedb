"""MirroredStrategy over 2 logical CPU devices in this process: the same equivalence as under MPI, replicas'
copies bitwise identical, misuse errors."""

import numpy as np
import pytest

import accel as tf
import accel.distribute as dist
from accel import keras
from accel.distribute.mirrored import replica_arrays

STEPS, GLOBAL = 50, 64
_rng = np.random.default_rng(0)
X = _rng.normal(size=(STEPS * GLOBAL, 8)).astype(np.float32)
Y = _rng.integers(0, 3, STEPS * GLOBAL)


@pytest.fixture
def strategy(logical_cpus):
    logical_cpus(2)
    return dist.MirroredStrategy()


def _vars():
    r = np.random.default_rng(1)
    return [tf.Variable(r.normal(size=(8, 40)).astype(np.float32) * 0.3), tf.Variable(np.zeros(40, np.float32)),
            tf.Variable(r.normal(size=(40, 3)).astype(np.float32) * 0.3)]


def _loss(vs, x, y):
    h = tf.nn.relu(tf.matmul(x, vs[0]) + vs[1])
    return tf.nn.compute_average_loss(tf.nn.sparse_softmax_cross_entropy_with_logits(y, tf.matmul(h, vs[2])))


def test_custom_loop_on_two_logical_cpus_trains_like_one_replica(strategy):
    ref, ropt = _vars(), tf.optimizers.Adam(0.01)
    for s in range(STEPS):
        with tf.GradientTape() as t:
            loss = _loss(ref, X[s * GLOBAL:(s + 1) * GLOBAL], Y[s * GLOBAL:(s + 1) * GLOBAL])
        ropt.apply_gradients(zip(t.gradient(loss, ref), ref))
    with strategy.scope():
        vs, opt = _vars(), tf.optimizers.Adam(0.01)

    def step(x, y):
        assert dist.get_replica_context().num_replicas_in_sync == 2
        with tf.GradientTape() as t:
            loss = _loss(vs, x, y)  # compute_average_loss divides by 32 x 2 replicas
        opt.apply_gradients(zip(t.gradient(loss, vs), vs))
        return loss

    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(GLOBAL)
    for x, y in strategy.experimental_distribute_dataset(ds):
        assert [v.shape[0] for v in x.values] == [32, 32]
        losses = strategy.run(step, args=(x, y))
    assert isinstance(losses, dist.PerReplica) and len(losses.values) == 2
    for a, v in zip(ref, vs):
        copies = replica_arrays(v)
        assert type(v) is dist.MirroredVariable and len(copies) == 2 and copies[0] is not copies[1]
        np.testing.assert_allclose(copies[0], a.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(copies[0], copies[1])  # bitwise
    for s in opt.variables:
        np.testing.assert_array_equal(*replica_arrays(s))
    assert int(opt.iterations.numpy()) == STEPS


def _model():
    tf.random.set_seed(3)
    m = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(40, activation="relu"), keras.layers.Dense(3)])
    m.compile(optimizer=keras.optimizers.Adam(0.01),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return m


def test_fit_on_two_logical_cpus_trains_like_one_replica(strategy):
    ref = _model()
    rh = ref.fit(X, Y, batch_size=GLOBAL, epochs=1, shuffle=False, verbose=0)
    with strategy.scope():
        m = _model()
    h = m.fit(X, Y, batch_size=GLOBAL, epochs=1, shuffle=False, verbose=0)
    for a, w in zip(ref.weights, m.weights):
        copies = replica_arrays(w)
        np.testing.assert_allclose(copies[0], a.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(copies[0], copies[1])
    assert h.history["loss"][0] == pytest.approx(rh.history["loss"][0], abs=1e-5)
    assert h.history["accuracy"][0] == pytest.approx(rh.history["accuracy"][0], abs=1e-6)
    assert m.evaluate(X[:256], Y[:256], batch_size=64, verbose=0) == pytest.approx(
        ref.evaluate(X[:256], Y[:256], batch_size=64, verbose=0), abs=1e-5)


def test_reduce_and_all_reduce(strategy):
    per = strategy.run(lambda: tf.constant([1.0, 2.0]) * (dist.get_replica_context().replica_id_in_sync_group + 1))
    assert strategy.reduce(dist.ReduceOp.SUM, per, axis=None).numpy().tolist() == [3.0, 6.0]
    assert strategy.reduce("MEAN", per, axis=None).numpy().tolist() == [1.5, 3.0]
    assert float(strategy.reduce("MEAN", per, axis=0)) == pytest.approx(9.0 / 4)
    got = strategy.run(lambda: dist.get_replica_context().all_reduce(
        "SUM", tf.constant(float(dist.get_replica_context().replica_id_in_sync_group + 1))))
    assert [float(v) for v in got.values] == [3.0, 3.0]


def _one_replica_only():
    ctx = dist.get_replica_context()
    if ctx.replica_id_in_sync_group == 0:
        ctx.all_reduce("SUM", tf.constant(1.0))


def _different_shapes():
    ctx = dist.get_replica_context()
    ctx.all_reduce("SUM", tf.zeros([ctx.replica_id_in_sync_group + 1]))


MISUSE = [
    # (what, call(strategy), error, words in the message)
    ("collective in one replica only", lambda s: s.run(_one_replica_only), dist.CollectiveMismatchError,
     "returned without calling"),
    ("collectives of different shapes", lambda s: s.run(_different_shapes), dist.CollectiveMismatchError,
     "different collectives"),
    ("reduce inside run", lambda s: s.run(lambda: s.reduce("SUM", tf.constant(1.0))), dist.DistributeError,
     "cross-replica context"),
    ("bad reduce op", lambda s: s.reduce("MAX", tf.constant(1.0)), ValueError, "ReduceOp.SUM or .MEAN"),
    ("global batch not divisible", lambda s: list(s.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(X[:66]).batch(33))), ValueError, "33 does not divide by the 2 replicas"),
    ("fit batch not divisible", lambda s: _fit_under(s, 33), ValueError, "33 does not divide by the 2 replicas"),
    ("device that is not there", lambda s: dist.MirroredStrategy(["/cpu:0", "/cpu:7"]), ValueError,
     "not a logical device"),
    ("an exception in one replica", lambda s: s.run(_raise_in_1), KeyError, "replica 1"),
]


def _fit_under(s, batch):
    with s.scope():
        m = _model()
    m.fit(X[:66], Y[:66], batch_size=batch, verbose=0)


def _raise_in_1():
    if dist.get_replica_context().replica_id_in_sync_group == 1:
        raise KeyError("replica 1")
    dist.get_replica_context().all_reduce("SUM", tf.constant(1.0))


@pytest.mark.parametrize("what,call,error,words", MISUSE, ids=[m[0] for m in MISUSE])
def test_misuse_raises_a_clear_error(strategy, what, call, error, words):
    with pytest.raises(error, match=words):
        call(strategy)
