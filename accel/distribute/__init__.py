"""`accel.distribute`: data-parallel training, TensorFlow's tf.distribute surface on MPI and NCCL.

    strategy = accel.distribute.MultiWorkerMirroredStrategy()   # mpiexec -n 2 python train.py
    with strategy.scope():
        model = make_model(); optimizer = accel.optimizers.Adam()
    for batch in strategy.experimental_distribute_dataset(dataset):
        strategy.run(step, args=(batch,))        # apply_gradients all-reduces the gradients in buckets

MirroredStrategy runs one replica per device of this process (GPUs, or logical CPU devices from
accel.config.set_logical_device_configuration). README: "Distributed training".
"""

from accel.distribute.buckets import DEFAULT_BUCKET_BYTES, Reducer, plan_buckets  # noqa: F401
from accel.distribute.errors import (  # noqa: F401
    CollectiveMismatchError, DistributeError, ReplicaMismatchError)
from accel.distribute.mirrored import MirroredVariable  # noqa: F401
from accel.distribute.strategy import (  # noqa: F401
    DistributedDataset, MirroredStrategy, MultiWorkerMirroredStrategy, PerReplica, ReduceOp, ReplicaContext,
    Strategy, all_reduce_gradients, backward_started, current_strategy, reducing_gradients, variable_created)
from accel.distribute.keras_support import keras_fit, keras_step, keras_strategy, keras_verbose  # noqa: F401
from accel.distribute import strategy as _strategy
from accel import tape as _tape

_tape.set_final_hook(_strategy.backward_started)  # backward passes in a replica start the all-reduce early


def get_strategy():
    """The strategy whose scope (or replica) this thread is in; the default one-replica strategy otherwise."""
    return _strategy.current_strategy() or _DEFAULT


def has_strategy() -> bool:
    return _strategy.current_strategy() is not None


def get_replica_context():
    """The ReplicaContext inside strategy.run; None in a strategy's cross-replica context (its scope); the
    default replica context (one replica) outside any strategy, as in TF."""
    ctx = _strategy._state.replica
    if ctx is not None:
        return ctx
    return None if _strategy._state.scopes else _DEFAULT_REPLICA


def in_cross_replica_context() -> bool:
    return _strategy._state.replica is None and bool(_strategy._state.scopes)


class _DefaultStrategy(Strategy):
    """One replica, this process: what get_strategy() returns outside any scope."""

    def __init__(self):
        super().__init__(DEFAULT_BUCKET_BYTES)

    @property
    def num_replicas_in_sync(self):
        return 1

    def run(self, fn, args=(), kwargs=None):
        return fn(*args, **(kwargs or {}))

    def reduce(self, reduce_op, value, axis=None):
        from accel.tensor import Tensor  # noqa: PLC0415
        import numpy as np  # noqa: PLC0415

        op = _strategy._op(reduce_op)
        t = value if isinstance(value, Tensor) else Tensor(np.asarray(value))
        if axis is None:
            return t
        from accel.ops.api import reduce_mean, reduce_sum  # noqa: PLC0415

        return reduce_sum(t, axis=axis) if op == "SUM" else reduce_mean(t, axis=axis)

    @property
    def scope(self):
        raise DistributeError("the default strategy has no scope; create a MirroredStrategy or "
                              "MultiWorkerMirroredStrategy")


class _DefaultReplicaContext:
    replica_id_in_sync_group = 0
    num_replicas_in_sync = 1

    def all_reduce(self, reduce_op, value):
        _strategy._op(reduce_op)
        return value


_DEFAULT = _DefaultStrategy()
_DEFAULT_REPLICA = _DefaultReplicaContext()
