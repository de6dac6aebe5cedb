"""tf.distribute's strategies: MirroredStrategy (replicas = devices of one process) and
MultiWorkerMirroredStrategy (replicas = MPI ranks), with TF's scope/run/reduce surface."""

from __future__ import annotations

import contextlib
import contextvars
import enum
import os
import threading

import numpy as np

from accel import backend
from accel.distribute import mirrored
from accel.distribute.buckets import DEFAULT_BUCKET_BYTES, Reducer
from accel.distribute.collectives import MEAN, SUM, LocalGroup, LocalMember, MPIGroup, ReplicaAborted
from accel.distribute.errors import DistributeError, ReplicaMismatchError
from accel.indexed_slices import IndexedSlices
from accel.tensor import Tensor
from accel.variables import Variable


class ReduceOp(enum.Enum):
    SUM = "SUM"
    MEAN = "MEAN"


def _op(op):
    if isinstance(op, ReduceOp):
        return op.value
    if isinstance(op, str) and op.upper() in ("SUM", "MEAN"):
        return op.upper()
    raise ValueError("reduce_op: expected accel.distribute.ReduceOp.SUM or .MEAN, got %r" % (op,))


class _State(threading.local):
    def __init__(self):
        self.scopes = []
        self.replica = None


_state = _State()


class PerReplica:
    """One value per replica (what MirroredStrategy.run returns and distributed datasets yield)."""

    def __init__(self, values):
        self.values = tuple(values)

    def __repr__(self):
        return "PerReplica:{\n%s\n}" % "\n".join("  %d: %r" % (i, v) for i, v in enumerate(self.values))


class ReplicaContext:
    """tf.distribute.ReplicaContext: the replica a piece of `strategy.run` code runs as."""

    def __init__(self, strategy, replica_id, group, device):
        self.strategy = strategy
        self.replica_id_in_sync_group = replica_id
        self.group = group
        self.device = device
        self.gradient_op = SUM  # TF sums replica gradients; Keras' fit averages (it scales its loss)
        self.pending = None  # the all-reduce a backward pass started early (backward_started)

    @property
    def num_replicas_in_sync(self):
        return self.strategy.num_replicas_in_sync

    def all_reduce(self, reduce_op, value):
        """Reduces a tensor (or a structure of tensors) across the replicas; every replica gets the result."""
        op = _op(reduce_op)
        leaves, rebuild = _flatten(value)
        out = []
        for leaf in leaves:
            a = leaf._data if isinstance(leaf, Tensor) else np.asarray(leaf)
            buf = a.astype(a.dtype, copy=True)
            self.group.check_same("all_reduce", [buf])
            out.append(Tensor(self.group.allreduce_(buf, op)))
        return rebuild(out)

    def all_gather(self, value, axis=0):
        a = value._data if isinstance(value, Tensor) else np.asarray(value)
        moved = np.moveaxis(backend.to_numpy(a), axis, 0) if axis else a
        g = self.group.allgather_rows(moved)
        return Tensor(np.moveaxis(g, 0, axis) if axis else g)


@contextlib.contextmanager
def _in_replica(ctx):
    saved = _state.replica
    _state.replica = ctx
    try:
        yield ctx
    finally:
        _state.replica = saved


class Strategy:
    """What both strategies share: scope, run, reduce, distributed datasets."""

    def __init__(self, bucket_bytes):
        self.bucket_bytes = int(bucket_bytes)
        self.extended = self

    # --- TF surface ---
    @property
    def num_replicas_in_sync(self) -> int:
        raise NotImplementedError

    @contextlib.contextmanager
    def scope(self):
        """Variables created inside are mirrored (created identically on every replica, replica 0's values)."""
        outer = current_strategy()
        if outer is not None and outer is not self:
            raise DistributeError("strategy.scope(): another strategy's scope (%r) is open in this thread; a "
                                  "scope may only nest itself" % outer)
        _state.scopes.append(self)
        try:
            yield self
        finally:
            _state.scopes.pop()

    def _check_cross_replica(self, what):
        if _state.replica is not None:
            raise DistributeError("%s must be called in the cross-replica context (outside strategy.run); inside "
                                  "a replica use accel.distribute.get_replica_context().all_reduce" % what)

    def experimental_distribute_dataset(self, dataset, options=None):
        """Each global batch of `dataset` (an accel.data.Dataset or any iterable of batches) split along axis 0,
        one shard per replica: the global batch size must divide by the replica count."""
        return DistributedDataset(self, dataset)

    def distribute_datasets_from_function(self, dataset_fn, options=None):
        raise NotImplementedError("distribute_datasets_from_function is not supported; use "
                                  "experimental_distribute_dataset on a dataset of global batches")

    def experimental_local_results(self, value):
        if isinstance(value, PerReplica):
            return value.values
        return (value,)

    def __repr__(self):
        return "<accel.distribute.%s with %d replica(s)>" % (type(self).__name__, self.num_replicas_in_sync)

    @property
    def is_chief(self):
        return True


class MirroredStrategy(Strategy):
    """tf.distribute.MirroredStrategy: one replica per device of this process.

    devices: names such as ["gpu:0", "gpu:1"] or ["/cpu:0", "/cpu:1"] (logical CPU devices come from
    accel.config.set_logical_device_configuration). Default: every GPU, else every logical CPU device.
    Replicas run as threads that take turns between collectives (accel.distribute.collectives); on GPUs the
    all-reduce is NCCL's (one communicator per device), on CPUs a sum in replica order.
    """

    def __init__(self, devices=None, cross_device_ops=None, bucket_bytes=DEFAULT_BUCKET_BYTES):
        super().__init__(bucket_bytes)
        from accel import config  # noqa: PLC0415

        if devices is None:
            gpus = config.list_logical_devices("GPU")
            names = [d.name for d in (gpus or config.list_logical_devices("CPU"))]
        else:
            if isinstance(devices, str) or not list(devices):
                raise ValueError("MirroredStrategy: devices must be a non-empty list of device names, got %r"
                                 % (devices,))
            names = list(devices)
        cpus = len(config.list_logical_devices("CPU"))
        devs = []
        for name in names:
            spec = name.lower().rsplit("device:", 1)[-1].lstrip("/")
            kind, _, idx = spec.partition(":")
            if kind == "cpu":
                if int(idx or 0) >= cpus:
                    raise ValueError("MirroredStrategy: %r is not a logical device (there are %d logical CPU "
                                     "devices; accel.config.set_logical_device_configuration makes more)"
                                     % (name, cpus))
                devs.append(backend.CPU)
            else:
                devs.append(backend.parse_device(name))
        kinds = {d.kind for d in devs}
        if len(kinds) > 1:
            raise ValueError("MirroredStrategy: devices mix CPUs and GPUs (%s); use one kind" % names)
        gpu_ids = [d.index for d in devs if d.kind == "gpu"]
        if len(set(gpu_ids)) != len(gpu_ids):
            raise ValueError("MirroredStrategy: a GPU is listed twice in %s" % names)
        self.devices = tuple(names)
        self._devs = devs
        self._nccl = (backend.nccl_comm_init_all(gpu_ids)
                      if len(gpu_ids) > 1 and backend.nccl_available() else None)  # else summed via the host
        self._reducers = {}

    @property
    def num_replicas_in_sync(self):
        return len(self._devs)

    def run(self, fn, args=(), kwargs=None):
        """Calls fn once per replica (replica r gets the r-th value of each PerReplica argument); returns a
        PerReplica of the results (a structure of them for tuple/list/dict results)."""
        self._check_cross_replica("strategy.run")
        kwargs = kwargs or {}
        n = len(self._devs)
        group = LocalGroup(self._devs, self._nccl)
        results, errors = [None] * n, [None] * n

        def body(r):
            ctx = ReplicaContext(self, r, LocalMember(group, r), self._devs[r])
            saved = mirrored.current.rid, mirrored.current.cross
            _state.scopes.append(self)
            try:
                mirrored.current.rid, mirrored.current.cross = r, False
                with _in_replica(ctx), backend.device(self._devs[r].short_name):
                    group.start(r)
                    results[r] = fn(*_select(args, r, n), **_select(kwargs, r, n))
                group.finish(r)
            except ReplicaAborted:
                group.finish(r)
            except BaseException as e:  # noqa: BLE001  (re-raised by the caller below)
                errors[r] = e
                group.finish(r, e)
            finally:
                _state.scopes.pop()
                mirrored.current.rid, mirrored.current.cross = saved

        threads = []
        for r in range(1, n):
            ctxvars = contextvars.copy_context()
            t = threading.Thread(target=ctxvars.run, args=(body, r), name="accel replica %d" % r, daemon=True)
            t.start()
            threads.append(t)
        body(0)
        for t in threads:
            t.join()
        if group.error is not None:
            raise group.error
        return _regroup(results)

    def reduce(self, reduce_op, value, axis=None):
        """tf.distribute.Strategy.reduce: across replicas (and along `axis` within each first)."""
        self._check_cross_replica("strategy.reduce")
        op = _op(reduce_op)
        values = value.values if isinstance(value, PerReplica) else (value,) * self.num_replicas_in_sync
        arrays = [backend.to_numpy(v._data if isinstance(v, Tensor) else np.asarray(v)) for v in values]
        count = len(arrays)
        if axis is not None:
            count = sum(a.shape[axis] for a in arrays)
            arrays = [a.sum(axis=axis) for a in arrays]
        total = arrays[0].copy()
        for a in arrays[1:]:
            total = total + a
        if op == MEAN:
            total = total / total.dtype.type(count) if total.dtype.kind == "f" else total / count
        return Tensor(np.asarray(total))

    def gather(self, value, axis):
        self._check_cross_replica("strategy.gather")
        values = value.values if isinstance(value, PerReplica) else (value,)
        return Tensor(np.concatenate([backend.to_numpy(v._data if isinstance(v, Tensor) else v) for v in values],
                                     axis=axis))

    def _reducer(self, ctx):
        return Reducer(ctx.group, self.bucket_bytes)  # the group changes per run (one rendezvous per call)

    def _on_variable_created(self, var):
        mirrored.mirror(var, self._devs, self)


class MultiWorkerMirroredStrategy(Strategy):
    """tf.distribute.MultiWorkerMirroredStrategy on MPI: one replica per process, launched by
    `mpiexec -n N python train.py` (or srun). Rank and size come from MPI's COMM_WORLD; rank 0 is the chief.
    Gradients are all-reduced in buckets (bucket_bytes) over MPI on CPUs and over NCCL between GPUs (the
    unique id broadcast over MPI). A failing rank ends the job (accel.distribute.faults); heartbeat_timeout is
    how long a silent peer is waited for."""

    def __init__(self, cluster_resolver=None, communication_options=None, bucket_bytes=DEFAULT_BUCKET_BYTES,
                 heartbeat_timeout=30.0, comm=None):
        super().__init__(bucket_bytes)
        try:
            from mpi4py import MPI  # noqa: PLC0415
        except ImportError as e:
            raise ImportError("MultiWorkerMirroredStrategy needs mpi4py and an MPI library: pip install "
                              "'accel-autodiff[distribute]' (mpi4py and MPICH from PyPI)") from e
        from accel.distribute import faults  # noqa: PLC0415

        world = comm if comm is not None else MPI.COMM_WORLD
        self.comm = world.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.watchdog = None
        if self.size > 1:
            faults.install_abort_hooks(world)
            self.watchdog = faults.Watchdog(world, timeout=heartbeat_timeout)
        nccl = None
        if backend.current_device().kind == "gpu" and self.size > 1 and backend.nccl_available():
            uid = backend.nccl_unique_id() if self.rank == 0 else None
            uid = self.comm.bcast(uid, root=0)
            nccl = backend.nccl_comm(self.size, uid, self.rank)
        self.group = MPIGroup(self.comm, self.watchdog, nccl)
        if self.size > 1:  # so that mpiexec's report of a dead PID names the rank
            where = self.group.allgather_object((os.getpid(), MPI.Get_processor_name()))
            if self.rank == 0:
                faults._say("accel.distribute: MultiWorkerMirroredStrategy over %d ranks: %s" % (self.size, ", ".join(
                    "rank %d = pid %d on %s" % (r, pid, host) for r, (pid, host) in enumerate(where))))
        self._comm_group = MPIGroup(self.comm.Dup(), self.watchdog, nccl) if self.size > 1 else None
        self._reducer_obj = None
        self.created = set()  # the ids (Tensor._id) of the variables created under this strategy (Keras asks)
        global _world_strategy
        _world_strategy = self

    @property
    def num_replicas_in_sync(self):
        return self.size

    @property
    def is_chief(self):
        return self.rank == 0

    @property
    def cluster_resolver(self):
        return self

    @property
    def task_id(self):
        return self.rank

    def run(self, fn, args=(), kwargs=None):
        """Calls fn as this process's replica (its values are this replica's); returns its result."""
        self._check_cross_replica("strategy.run")
        ctx = ReplicaContext(self, self.rank, self.group, backend.current_device())
        _state.scopes.append(self)
        try:
            with _in_replica(ctx):
                return fn(*_select(args, 0, 1), **_select(kwargs or {}, 0, 1))
        finally:
            _state.scopes.pop()
            if ctx.pending is not None:  # gradients never applied: let the launched buckets finish
                ctx.pending, pending = None, ctx.pending
                pending.cancel()

    def reduce(self, reduce_op, value, axis=None):
        self._check_cross_replica("strategy.reduce")
        op = _op(reduce_op)
        a = value._data if isinstance(value, Tensor) else np.asarray(value)
        host = np.array(backend.to_numpy(a), copy=True)
        if axis is not None:
            count = np.array([host.shape[axis]], np.float64)
            host = np.ascontiguousarray(host.sum(axis=axis))
        shape = host.shape
        host = np.array(host, copy=True).reshape(-1)  # 0-d values travel as one element
        self.group.check_same("strategy.reduce", [host])
        self.group.allreduce_(host, SUM)
        host = host.reshape(shape)
        if op == MEAN:
            if axis is not None:
                self.group.allreduce_(count, SUM)
                n = count[0]
            else:
                n = self.size
            host = host / host.dtype.type(n) if host.dtype.kind == "f" else host / n
        return Tensor(np.asarray(host))

    def gather(self, value, axis):
        self._check_cross_replica("strategy.gather")
        a = backend.to_numpy(value._data if isinstance(value, Tensor) else np.asarray(value))
        moved = np.ascontiguousarray(np.moveaxis(a, axis, 0))
        return Tensor(np.moveaxis(self.group.allgather_rows(moved), 0, axis))

    def _reducer(self, ctx):
        if self._reducer_obj is None:
            self._reducer_obj = Reducer(self.group, self.bucket_bytes, comm_group=self._comm_group)
        return self._reducer_obj

    def _on_variable_created(self, var):
        self.created.add(var._id)
        if self.size == 1:
            return
        a = var._data
        meta = (tuple(a.shape), str(a.dtype))
        metas = self.group.allgather_object((var.name, meta))
        for r, (name, m) in enumerate(metas):
            if m != meta:
                raise ReplicaMismatchError(
                    "variable %r is %s %s on rank %d but %r is %s %s on rank %d: under strategy.scope() every "
                    "replica must create the same variables, with the same shapes and dtypes, in the same order"
                    % (var.name, meta[1], meta[0], self.rank, name, m[1], m[0], r))
        self.group.broadcast_(a, root=0)


_world_strategy = None


# --- the current strategy and replica ---

def current_strategy():
    ctx = _state.replica
    if ctx is not None:
        return ctx.strategy
    return _state.scopes[-1] if _state.scopes else None


def world_strategy():
    """The MultiWorkerMirroredStrategy of this process, if one was created."""
    return _world_strategy


# --- helpers ---

def _select(value, r, n):
    if isinstance(value, PerReplica):
        if len(value.values) != n:
            raise ValueError("strategy.run: a PerReplica argument has %d values for %d replicas"
                             % (len(value.values), n))
        return value.values[r]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_select(v, r, n) for v in value)
    if isinstance(value, list):
        return [_select(v, r, n) for v in value]
    if isinstance(value, dict):
        return {k: _select(v, r, n) for k, v in value.items()}
    return value


def _regroup(results):
    first = results[0]
    if isinstance(first, (tuple, list)) and not hasattr(first, "_fields"):
        return type(first)(_regroup([res[i] for res in results]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _regroup([res[k] for res in results]) for k in first}
    if first is None:
        return None
    return PerReplica(results)


def _flatten(value):
    if isinstance(value, (list, tuple)):
        parts = [_flatten(v) for v in value]
        leaves = [leaf for p in parts for leaf in p[0]]

        def rebuild(vals, parts=parts, kind=type(value)):
            out, i = [], 0
            for p in parts:
                k = len(p[0])
                out.append(p[1](vals[i:i + k]))
                i += k
            return kind(out)
        return leaves, rebuild
    if isinstance(value, dict):
        keys = list(value)
        parts = [_flatten(value[k]) for k in keys]
        leaves = [leaf for p in parts for leaf in p[0]]

        def rebuild_d(vals, parts=parts, keys=keys):
            out, i = {}, 0
            for k, p in zip(keys, parts):
                n = len(p[0])
                out[k] = p[1](vals[i:i + n])
                i += n
            return out
        return leaves, rebuild_d
    return [value], lambda vals: vals[0]


# --- distributed datasets ---

def _rows(x):
    a = x._data if isinstance(x, Tensor) else x
    return int(a.shape[0])


def shard(batch, r, n):
    """Replica r's rows of a global batch (a structure of tensors/arrays), split as evenly as possible."""
    leaves, rebuild = _flatten(batch)
    out = []
    for leaf in leaves:
        if leaf is None:
            out.append(None)
            continue
        rows = _rows(leaf)
        bounds = np.linspace(0, rows, n + 1).round().astype(int) if rows % n else np.arange(n + 1) * (rows // n)
        lo, hi = int(bounds[r]), int(bounds[r + 1])
        t = leaf if isinstance(leaf, Tensor) else Tensor(np.asarray(leaf))
        out.append(t[lo:hi])
    return rebuild(out)


def batch_rows(batch):
    leaves, _ = _flatten(batch)
    sizes = {_rows(leaf) for leaf in leaves if leaf is not None}
    return sizes.pop() if len(sizes) == 1 else None


class DistributedDataset:
    """Iterates the global batches of a dataset as per-replica batches (PerReplica for MirroredStrategy, this
    rank's shard for MultiWorkerMirroredStrategy)."""

    def __init__(self, strategy, dataset):
        self.strategy = strategy
        self.dataset = dataset
        self.global_batch_size = None

    def __iter__(self):
        s = self.strategy
        n = s.num_replicas_in_sync
        for i, batch in enumerate(self.dataset):
            rows = batch_rows(batch)
            if i == 0:
                if rows is not None and rows % n:
                    raise ValueError("experimental_distribute_dataset: the global batch size %d does not divide by "
                                     "the %d replicas in sync; batch the dataset with a multiple of %d"
                                     % (rows, n, n))
                self.global_batch_size = rows
            if isinstance(s, MultiWorkerMirroredStrategy):
                yield shard(batch, s.rank, n)
            else:
                yield _regroup([shard(batch, r, n) for r in range(n)])


# --- gradients (the optimizer's hook) ---

def reducing_gradients() -> bool:
    """True inside a replica of a strategy with more than one replica (apply_gradients then all-reduces)."""
    ctx = _state.replica
    return ctx is not None and ctx.strategy.num_replicas_in_sync > 1 and not getattr(ctx, "reducing", False)


def backward_started(sources):
    """accel.tape's final_hook: in a MultiWorkerMirroredStrategy replica, a backward pass to this strategy's
    variables starts their buckets' all-reduce as the pass makes each gradient final (overlapping the rest of
    the pass, as DDP does). apply_gradients then takes the result if it gets exactly those gradients; other
    gradients (changed, or None, or sparse) are all-reduced anew after the early buckets finish. Such a
    backward pass is a collective (as with DDP): every replica must run the same ones, in the same order."""
    ctx = _state.replica
    if ctx is None or not isinstance(ctx.strategy, MultiWorkerMirroredStrategy) or ctx.strategy.size == 1:
        return None
    s = ctx.strategy
    if not sources or not all(isinstance(v, Variable) and v._id in s.created for v in sources):
        return None
    if ctx.pending is not None:  # a second backward pass before apply_gradients
        ctx.pending, pending = None, ctx.pending
        pending.cancel()
    ctx.pending = s._reducer(ctx).start([v._data for v in sources], ctx.gradient_op)
    return ctx.pending.ready


def all_reduce_gradients(grads):
    """The replica context's gradients all-reduced in buckets (SUM as TF's apply_gradients in strategy.run;
    MEAN under Keras' fit)."""
    ctx = _state.replica
    pending, ctx.pending = ctx.pending, None
    if pending is not None:
        given = pending.given
        if pending.complete and not pending.sparse and len(given) == len(grads) and all(
                given.get(i) is g for i, g in enumerate(grads)):
            return [Tensor(g) for g in pending.finish()]
        pending.cancel()
    arrays = []
    for g in grads:
        if g is None or isinstance(g, IndexedSlices):
            arrays.append(g)
        else:
            arrays.append(g._data if isinstance(g, Tensor) else np.asarray(g))
    out = ctx.strategy._reducer(ctx).reduce(arrays, ctx.gradient_op)
    return [g if g is None or isinstance(g, IndexedSlices) else Tensor(g) for g in out]


def variable_created(var):
    """accel.variables calls this for every new Variable once accel.distribute is imported."""
    s = current_strategy()
    if s is not None:
        s._on_variable_created(var)
