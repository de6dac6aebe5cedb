"""Keras' fit/evaluate on a model built under a strategy (accel/keras/training.py calls these).

Each global batch is split across the replicas; each replica's train_step averages its loss over its
shard and the gradients are averaged across replicas (TF scales each replica's loss by 1/replicas and
sums), so equal shards train exactly like one replica on the global batch. The logs are averaged across
replicas every step. Only the chief (rank 0) prints the progress bar and runs the callbacks that write
files (ModelCheckpoint, CSVLogger). Under MirroredStrategy the steps run eagerly (a compiled plan would
be traced by one replica thread and replayed by the others).
"""

from __future__ import annotations

import numpy as np

from accel.distribute import mirrored
from accel.distribute.collectives import MEAN
from accel.distribute.strategy import (
    MultiWorkerMirroredStrategy, PerReplica, _state, current_strategy, shard, world_strategy)
from accel.tensor import Tensor


def keras_strategy(model):
    """The strategy `model` trains under when it has more than one replica (else None): the open scope's, the
    MirroredStrategy its variables belong to, or this process's MultiWorkerMirroredStrategy."""
    if _state.replica is not None:
        return None  # already inside a replica: run the step itself
    cached = model.__dict__.get("_accel_distribute_strategy", False)
    if cached is False:
        s = current_strategy()
        if s is None:
            for v in model.variables:
                s = mirrored.owner(v)
                if s is not None:
                    break
        world = world_strategy()
        if s is None and world is not None and any(v._id in world.created for v in model.variables):
            s = world
        cached = s if s is not None and s.num_replicas_in_sync > 1 else None
        model.__dict__["_accel_distribute_strategy"] = cached
    return cached


class _SameOrder:
    """The batches of fit with the shuffle order drawn on rank 0 and broadcast, so every rank splits the same
    global batches."""

    def __init__(self, batches, strategy):
        self._b, self._s = batches, strategy

    def __getattr__(self, name):
        return getattr(self._b, name)

    def epoch(self, rng=None):
        if rng is not None:
            seed = int(rng.integers(2**31 - 1)) if self._s.rank == 0 else None
            rng = np.random.default_rng(self._s.group.comm.bcast(seed, root=0))
        return self._b.epoch(rng)


def _check_batches(batches, n, strategy):
    size = getattr(batches, "batch_size", None)
    total = getattr(batches, "num_samples", None)
    if size is not None:
        if size % n:
            raise ValueError("fit: the global batch size %d does not divide by the %d replicas in sync; pass a "
                             "batch_size that is a multiple of %d" % (size, n, n))
        last = total % size
        if 0 < last < n:
            raise ValueError("fit: the last batch has %d samples, fewer than the %d replicas (%d samples, batch "
                             "size %d); drop or add samples so that every replica gets some" % (last, n, total, size))
    if isinstance(strategy, MultiWorkerMirroredStrategy):
        mine = (total, size, batches.steps)
        every = strategy.group.allgather_object(mine)
        for r, other in enumerate(every):
            if other != mine:
                raise ValueError("fit: rank %d has (samples, batch size, steps) %s but rank %d has %s: every rank "
                                 "must pass the same global data" % (strategy.rank, mine, r, other))


def keras_fit(model, batches, verbose, callbacks):
    """Checks the data before any step; returns (batches, verbose, callbacks) for this replica."""
    s = keras_strategy(model)
    if s is None:
        return batches, verbose, callbacks
    _check_batches(batches, s.num_replicas_in_sync, s)
    if isinstance(s, MultiWorkerMirroredStrategy):
        batches = _SameOrder(batches, s)
    return batches, keras_verbose(model, verbose), _chief_callbacks(s, callbacks)


def keras_verbose(model, verbose):
    s = keras_strategy(model)
    return verbose if s is None or s.is_chief else 0


def _chief_callbacks(s, callbacks):
    if s.is_chief or not callbacks:
        return callbacks
    from accel.keras import callbacks as cbm  # noqa: PLC0415  (Keras sits above accel.distribute)

    writers = (cbm.ModelCheckpoint, cbm.CSVLogger)
    return [c for c in callbacks if not isinstance(c, writers)]


def _floats(logs):
    return {k: float(np.asarray(v._data if isinstance(v, Tensor) else v)) for k, v in logs.items()}


def keras_step(model, kind):
    """The train_step / test_step of fit and evaluate over all replicas: global batch in, averaged logs out."""
    s = keras_strategy(model)
    n = s.num_replicas_in_sync

    def replica_step(data):
        ctx = _state.replica
        ctx.gradient_op = MEAN
        if isinstance(s, MultiWorkerMirroredStrategy):
            return model._step_function(kind)(data)
        return getattr(model, kind)(data)

    def run(data):
        if isinstance(s, MultiWorkerMirroredStrategy):
            logs = _floats(s.run(replica_step, args=(shard(data, s.rank, n),)))
            keys = list(logs)
            vec = np.array([logs[k] for k in keys], np.float64)
            s.group.check_same("fit logs", [vec])
            s.group.allreduce_(vec, MEAN)
            return dict(zip(keys, vec.tolist()))
        per = s.run(replica_step, args=(PerReplica([shard(data, r, n) for r in range(n)]),))
        return {k: float(np.mean([_floats({k: x})[k] for x in v.values])) for k, v in per.items()}

    return run
