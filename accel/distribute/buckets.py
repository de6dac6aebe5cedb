"""Gradient all-reduce in flat buckets, as PyTorch DDP does.

Dense gradients are laid out, in reverse variable order (roughly the order a backward pass produces
them), into flat buffers of one dtype each, at most `bucket_bytes` long (a gradient larger than that
gets a bucket of its own). A bucket is launched as soon as every gradient in it has arrived and every
bucket before it has been launched: all replicas launch the same buckets in the same order, whatever
order their gradients arrive in. With MPI, a communication thread runs the buckets' all-reduces on its
own duplicate of the communicator while the caller keeps producing and packing gradients.

Sparse gradients (IndexedSlices) are gathered (values and indices concatenated over replicas) when that
moves fewer bytes than the dense tensor, else densified and all-reduced.

The layout is checked across replicas the first time it is seen (one small all-gather): gradients
that differ in shape or dtype between replicas raise before any reduction.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from accel import backend
from accel.distribute.collectives import MEAN, SUM
from accel.distribute.errors import ReplicaMismatchError
from accel.indexed_slices import IndexedSlices
from accel.tensor import Tensor

DEFAULT_BUCKET_BYTES = 25 * 2**20


class Bucket:
    __slots__ = ("index", "dtype", "entries", "size", "device")

    def __init__(self, index, dtype, device):
        self.index, self.dtype, self.device = index, dtype, device
        self.entries = []  # (gradient position, offset, size, shape)
        self.size = 0


def plan_buckets(specs, bucket_bytes):
    """Buckets for dense gradients `specs` = [(position, shape, dtype, device)], filled in the given order."""
    buckets, open_by_key = [], {}
    for pos, shape, dtype, dev in specs:
        n = int(np.prod(shape, dtype=np.int64))
        key = (np.dtype(dtype).str, dev)
        b = open_by_key.get(key)
        if b is None or (b.size + n) * np.dtype(dtype).itemsize > bucket_bytes and b.entries:
            b = open_by_key[key] = Bucket(len(buckets), np.dtype(dtype), dev)
            buckets.append(b)
        b.entries.append((pos, b.size, n, tuple(shape)))
        b.size += n
    return buckets


class _CommThread:
    """Runs queued all-reduces one after another (in queue order) on its own communicator."""

    def __init__(self, group):
        self.group = group
        self.q = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="accel.distribute all-reduce", daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            buf, op, done = item
            try:
                t0 = time.perf_counter()
                self.group.allreduce_(buf, op)
                done.seconds = time.perf_counter() - t0
            except BaseException as e:  # noqa: BLE001  (handed to the waiting caller)
                done.error = e
            done.set()

    def submit(self, buf, op):
        done = threading.Event()
        done.error = None
        done.seconds = 0.0
        self.q.put((buf, op, done))
        return done


class Reducer:
    """All-reduces lists of gradients through buckets over `group` (an MPIGroup or a LocalMember)."""

    def __init__(self, group, bucket_bytes=DEFAULT_BUCKET_BYTES, comm_group=None):
        if not (isinstance(bucket_bytes, (int, np.integer)) and bucket_bytes > 0):
            raise ValueError("bucket_bytes: expected a positive number of bytes, got %r" % (bucket_bytes,))
        self.group = group
        self.bucket_bytes = int(bucket_bytes)
        self._layouts = {}
        self._comm = _CommThread(comm_group) if comm_group is not None else None
        self.last_stats = {}

    def layout(self, grads):
        """(key, buckets) for the gradients' structure; new structures are checked across replicas."""
        key = tuple(None if g is None else ("sparse", tuple(_shape(g)), str(_dtype(g))) if isinstance(
            g, IndexedSlices) else (tuple(g.shape), str(g.dtype)) for g in grads)
        buckets = self._layouts.get(key)
        if buckets is None:
            self._check_same_everywhere(key)
            specs = [(i, k[0], k[1], backend.device_of(grads[i])) for i, k in reversed(list(enumerate(key)))
                     if k is not None and k[0] != "sparse"]
            buckets = self._layouts[key] = plan_buckets(specs, self.bucket_bytes)
        return key, buckets

    def _check_same_everywhere(self, key):
        if self.group.size == 1:
            return
        keys = self.group.allgather_object(key)
        for r, k in enumerate(keys):
            if k == key:
                continue
            if len(k) != len(key):
                raise ReplicaMismatchError("gradients: replica %d has %d gradients, replica %d has %d (every replica "
                                           "must train the same variables)" % (r, len(k), self.group.rank, len(key)))
            for i, (a, b) in enumerate(zip(k, key)):
                if a != b:
                    raise ReplicaMismatchError(
                        "gradient %d differs across replicas: replica %d has %s, replica %d has %s (None = no "
                        "gradient; the variables must have the same shapes and dtypes everywhere, and every "
                        "replica must compute a gradient for the same ones)" % (i, r, _fmt(a), self.group.rank,
                                                                                 _fmt(b)))

    def start(self, grads_like, op=MEAN):
        """A reduction session for gradients structured like `grads_like` (arrays, IndexedSlices or None)."""
        return _Session(self, grads_like, op)

    def reduce(self, grads, op=MEAN):
        """All-reduced copies of `grads` (a list of arrays, IndexedSlices or None), same order."""
        s = self.start(grads, op)
        for i in reversed(range(len(grads))):
            if grads[i] is not None:
                s.ready(i, grads[i])
        return s.finish()


class _Session:
    def __init__(self, reducer, grads_like, op):
        self.r = reducer
        self.op = op
        self.key, self.buckets = reducer.layout(list(grads_like))
        self.where = {}
        for b in self.buckets:
            for entry in b.entries:
                self.where[entry[0]] = b
        self.bufs = [None] * len(self.buckets)
        self.missing = [len(b.entries) for b in self.buckets]
        self.next_launch = 0
        self.handles = []
        self.out = [None] * len(self.key)
        self.sparse = {}
        self.t_launch = []

    def ready(self, i, g):
        """Gradient i has its final value: pack it; launch the buckets that are now complete."""
        if isinstance(g, Tensor):
            g = g._data
        if isinstance(g, IndexedSlices):
            self.sparse[i] = g
            return
        b = self.where[i]
        buf = self.bufs[b.index]
        if buf is None:
            xp = backend.xp_of(g)
            buf = self.bufs[b.index] = xp.empty(b.size, b.dtype)
        for pos, off, n, _ in b.entries:
            if pos == i:
                buf[off:off + n] = g.reshape(-1)
                break
        self.missing[b.index] -= 1
        self._launch_ready()

    def _launch_ready(self):
        comm = self.r._comm
        while self.next_launch < len(self.buckets) and self.missing[self.next_launch] == 0:
            buf = self.bufs[self.next_launch]
            self.t_launch.append(time.perf_counter())
            if comm is not None:
                self.handles.append(comm.submit(buf, self.op))
            else:
                self.r.group.allreduce_(buf, self.op)
                self.handles.append(None)
            self.next_launch += 1

    def finish(self):
        """Waits for every bucket; returns the reduced gradients (dense ones are views of the buckets)."""
        if self.next_launch != len(self.buckets):
            lost = [pos for b in self.buckets[self.next_launch:] for pos, *_ in b.entries
                    if self.bufs[b.index] is None]
            raise ValueError("gradient(s) %s were never marked ready" % sorted(lost))
        t0 = time.perf_counter()
        comm_s = 0.0
        for h in self.handles:
            if h is not None:
                h.wait()
                if h.error is not None:
                    raise h.error
                comm_s += h.seconds
        waited = time.perf_counter() - t0
        for b in self.buckets:
            buf = self.bufs[b.index]
            for pos, off, n, shape in b.entries:
                self.out[pos] = buf[off:off + n].reshape(shape)
        for i, g in sorted(self.sparse.items()):
            self.out[i] = _reduce_sparse(self.r.group, g, self.op)
        self.r.last_stats = {"buckets": len(self.buckets), "comm_seconds": comm_s, "exposed_seconds": waited}
        return self.out


def _reduce_sparse(group, g, op):
    values, indices = g.values._data, g.indices._data
    dense_shape = tuple(int(d) for d in backend.to_numpy(g.dense_shape._data if isinstance(g.dense_shape, Tensor)
                                                         else g.dense_shape))
    rows = group.allgather_object(int(values.shape[0]))
    row_bytes = values.dtype.itemsize * int(np.prod(dense_shape[1:], dtype=np.int64))
    gathered = sum(rows) * (row_bytes + indices.dtype.itemsize)
    dense = int(np.prod(dense_shape, dtype=np.int64)) * values.dtype.itemsize
    if gathered < dense:
        v = group.allgather_rows(values)
        ix = group.allgather_rows(indices)
        if op == MEAN:
            v = v / v.dtype.type(group.size)
        return IndexedSlices(Tensor(v), Tensor(ix), Tensor(np.asarray(dense_shape, np.int64)))
    xp = backend.xp_of(values)
    d = xp.zeros(dense_shape, values.dtype)
    xp.add.at(d, indices, values)
    return group.allreduce_(d, op)


def _shape(g):
    return backend.to_numpy(g.dense_shape._data if isinstance(g.dense_shape, Tensor) else g.dense_shape).tolist()


def _dtype(g):
    return g.values.dtype.name if hasattr(g.values.dtype, "name") else g.values.dtype


def _fmt(k):
    if k is None:
        return "None"
    if k[0] == "sparse":
        return "IndexedSlices %s %s" % (k[2], k[1])
    return "%s %s" % (k[1], k[0])


__all__ = ["DEFAULT_BUCKET_BYTES", "Reducer", "plan_buckets", "SUM", "MEAN"]
