"""Run by test_multiworker.py under `mpiexec -n 2`: 2 replicas x batch 32 against 1 replica x batch 64."""

import hashlib
import pathlib
import sys

import numpy as np

import accel as tf
import accel.distribute as dist
from accel import keras
from accel.indexed_slices import IndexedSlices

out = pathlib.Path(sys.argv[1])
ckpt_in = sys.argv[2]
strategy = dist.MultiWorkerMirroredStrategy(bucket_bytes=1003)  # odd, smaller than one layer's gradients
rank, n = strategy.rank, strategy.num_replicas_in_sync
assert n == 2, n
STEPS, GLOBAL = 50, 64
rng = np.random.default_rng(0)
X = rng.normal(size=(STEPS * GLOBAL, 8)).astype(np.float32)
Y = rng.integers(0, 3, STEPS * GLOBAL)
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def same_everywhere(arrays):
    h = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()
    return len(set(strategy.group.allgather_object(h))) == 1


def make_vars():
    r = np.random.default_rng(1 + rank * 100)  # different on each rank: the scope broadcasts rank 0's
    return [tf.Variable(r.normal(size=(8, 40)).astype(np.float32) * 0.3, name="w0"),
            tf.Variable(np.zeros(40, np.float32), name="b0"),
            tf.Variable(r.normal(size=(40, 3)).astype(np.float32) * 0.3, name="w1")]


def loss_of(vs, x, y, gbs):
    h = tf.nn.relu(tf.matmul(x, vs[0]) + vs[1])
    per = tf.nn.sparse_softmax_cross_entropy_with_logits(y, tf.matmul(h, vs[2]))
    return tf.nn.compute_average_loss(per, global_batch_size=gbs)


# --- custom loop: the reference on one replica (rank 0's initial values), then strategy.run ---
with strategy.scope():
    dvars = make_vars()
    dopt = tf.optimizers.Adam(0.01)
ref = [tf.Variable(v.numpy()) for v in dvars]
ropt = tf.optimizers.Adam(0.01)
for s in range(STEPS):
    x, y = X[s * GLOBAL:(s + 1) * GLOBAL], Y[s * GLOBAL:(s + 1) * GLOBAL]
    with tf.GradientTape() as t:
        loss = loss_of(ref, x, y, GLOBAL)
    ropt.apply_gradients(zip(t.gradient(loss, ref), ref))


def step(x, y, kind):
    with tf.GradientTape(persistent=kind == "twice") as t:
        loss = loss_of(dvars, x, y, GLOBAL)
    if kind == "twice":  # a backward pass whose gradients are dropped, then the one applied
        t.gradient(loss, dvars)
    grads = t.gradient(loss, dvars)
    if kind == "changed":  # not the tape's gradients: the early all-reduce is dropped, these are reduced anew
        grads = [g * 1.0 for g in grads]
    dopt.apply_gradients(zip(grads, dvars))
    return loss


KINDS = ["plain", "changed", "twice"]
ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(GLOBAL)
for i, (x, y) in enumerate(strategy.experimental_distribute_dataset(ds)):
    check(x.shape[0] == GLOBAL // n, "shard of %d rows" % x.shape[0])
    kind = KINDS[i % 3]
    last = strategy.run(step, args=(x, y, kind))
    early = strategy._reducer_obj.last_stats["early"]  # the buckets were launched from the backward pass
    check(early == (kind != "changed"), "step %d (%s): early all-reduce %s" % (i, kind, early))
total = strategy.reduce(dist.ReduceOp.SUM, last, axis=None)
with tf.GradientTape() as t:
    ref_loss = loss_of(ref, X[-GLOBAL:], Y[-GLOBAL:], GLOBAL)
for a, b in zip(ref, dvars):
    check(np.allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6), "custom loop %s: max diff %g"
          % (b.name, np.abs(a.numpy() - b.numpy()).max()))
check(same_everywhere([v.numpy() for v in dvars] + [v.numpy() for v in dopt.variables]), "custom loop: ranks differ")
check(int(dopt.iterations.numpy()) == STEPS, "iterations %s" % dopt.iterations.numpy())
stats = strategy._reducer_obj.last_stats
# reverse order into 1003-byte buckets: w1 (480 bytes) + b0 (160), then w0 (1280 bytes, more than a bucket) alone
check(stats["buckets"] == 2, "buckets: %s" % stats)

# --- sparse gradients are gathered, not densified ---
def sparse_step():
    g = IndexedSlices(tf.constant(np.full((2, 4), rank + 1.0, np.float32)), tf.constant([rank, 5]),
                      np.array([100, 4], np.int64))
    return dist.all_reduce_gradients([g])[0]


sg = strategy.run(sparse_step)
check(isinstance(sg, IndexedSlices) and sg.values.shape[0] == 4 and
      sg.indices.numpy().tolist() == [0, 5, 1, 5] and float(tf.reduce_sum(sg.values)) == 24.0,
      "sparse all-reduce: %r" % (sg,))

# --- Keras fit: the same with the model built under the scope ---
def make_model():
    tf.random.set_seed(3 + rank)  # different per rank: the scope broadcasts rank 0's initial weights
    m = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(40, activation="relu"), keras.layers.Dense(3)])
    m.compile(optimizer=keras.optimizers.Adam(0.01),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return m


with strategy.scope():
    dm = make_model()
rm = make_model()
rm.set_weights(dm.get_weights())
rh = rm.fit(X, Y, batch_size=GLOBAL, epochs=1, shuffle=False, verbose=0)
dh = dm.fit(X, Y, batch_size=GLOBAL, epochs=1, shuffle=False, verbose=1)
for a, b in zip(rm.weights, dm.weights):
    check(np.allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6), "fit %s: max diff %g"
          % (b.name, np.abs(a.numpy() - b.numpy()).max()))
check(abs(rh.history["loss"][0] - dh.history["loss"][0]) < 1e-5, "fit loss %s vs %s" % (rh.history, dh.history))
check(same_everywhere([w.numpy() for w in dm.weights] + [v.numpy() for v in dm.optimizer.variables]),
      "fit: ranks differ")

# --- misuse: a global batch that does not divide; nothing trained ---
before = [w.numpy() for w in dm.weights]
try:
    dm.fit(X[:66], Y[:66], batch_size=33, epochs=1, verbose=0)
    check(False, "fit with batch 33 on 2 replicas did not raise")
except ValueError as e:
    check("does not divide by the 2 replicas" in str(e), str(e))
check(all(np.array_equal(a, w.numpy()) for a, w in zip(before, dm.weights)), "a refused fit changed weights")

# --- misuse: variables differing in shape across ranks ---
try:
    with strategy.scope():
        tf.Variable(np.zeros(3 + rank, np.float32), name="odd")
    check(False, "a variable of different shapes did not raise")
except dist.ReplicaMismatchError as e:
    check("rank 0" in str(e) and "rank 1" in str(e) and "(3,)" in str(e) and "(4,)" in str(e), str(e))

# --- misuse: ranks calling different collectives ---
try:
    if rank == 0:
        strategy.reduce("SUM", tf.constant([1.0, 2.0]))
    else:
        strategy.reduce("SUM", tf.constant([1.0, 2.0, 3.0]))
    check(False, "mismatched collectives did not raise")
except dist.CollectiveMismatchError as e:
    check("rank 0" in str(e) and "rank 1" in str(e), str(e))

# --- misuse: reduce inside run ---
try:
    strategy.run(lambda: strategy.reduce("SUM", tf.constant(1.0)))
    check(False, "reduce inside run did not raise")
except dist.DistributeError as e:
    check("cross-replica context" in str(e), str(e))

# --- checkpoints: one written by 1 replica restores here; rank 0 writes one for the test to restore ---
with strategy.scope():
    cm = make_model()
    cm.build((None, 8))
tf.train.Checkpoint(model=cm).restore(ckpt_in).assert_existing_objects_matched()
saved = np.load(str(out / "in_weights.npz"))
check(all(np.array_equal(saved["w%d" % i], w.numpy()) for i, w in enumerate(cm.weights)), "N=1 -> M=2 restore")
if strategy.is_chief:
    tf.train.Checkpoint(model=dm, optimizer=dm.optimizer).write(str(out / "ckpt_b"))
    np.savez(out / "b_weights.npz", **{"w%d" % i: w.numpy() for i, w in enumerate(dm.weights)})

strategy.group.barrier()
if failures:
    print("RANK %d FAILED:\n%s" % (rank, "\n".join(failures)), flush=True)
    sys.exit(1)
print("RANK %d OK loss %.6f ref %.6f" % (rank, float(total.numpy()), float(ref_loss)), flush=True)
