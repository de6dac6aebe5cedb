"""Gradient all-reduce in flat buckets, as PyTorch DDP does.

Dense gradients are laid out, in reverse variable order (roughly the order a backward pass produces
them), into flat buffers of one dtype each, at most `bucket_bytes` long (a gradient larger than that
gets a bucket of its own). A bucket is launched as soon as every gradient in it has arrived and every
bucket before it has been launched: all replicas launch the same buckets in the same order, whatever
order their gradients arrive in. The buffers are allocated once per gradient structure and reused.

On host buffers over MPI, a bucket of RING_MIN_BYTES or more goes round a ring of point-to-point
messages (reduce-scatter then all-gather, see _Ring) that reads the gradients where they lie, so only
1/n of the bucket is copied before the first message; smaller buckets (latency-bound) and GPU buckets
(NCCL) are packed and all-reduced whole. A session started before the backward pass (Reducer.start, fed by
the tape's on_final notification) launches buckets non-blocking and moves them along at every later
ready() call, while the backward pass goes on.

Sparse gradients (IndexedSlices) are gathered (values and indices concatenated over replicas) when that
moves fewer bytes than the dense tensor, else densified and all-reduced.

The layout is checked across replicas the first time it is seen (one small all-gather): gradients
that differ in shape or dtype between replicas raise before any reduction.
"""

from __future__ import annotations

import time

import numpy as np

from accel import backend
from accel.distribute.collectives import MEAN, SUM
from accel.distribute.errors import ReplicaMismatchError
from accel.indexed_slices import IndexedSlices
from accel.tensor import Tensor

DEFAULT_BUCKET_BYTES = 25 * 2**20
RING_MIN_BYTES = 256 * 2**10  # smaller host buckets go through MPI's Allreduce (latency, not bandwidth, bound)


class Bucket:
    __slots__ = ("index", "dtype", "entries", "size", "device", "buf", "views", "flat", "bounds", "chunks", "tmp")

    def __init__(self, index, dtype, device):
        self.index, self.dtype, self.device = index, dtype, device
        self.entries = []  # (gradient position, offset, size, shape)
        self.size = 0
        self.buf = None  # the flat buffer, allocated on first use and reused by every later step
        self.views = None  # gradient position -> its slice of buf, shaped like the gradient
        self.flat = None  # gradient position -> its slice of buf, flat
        self.bounds = None  # ring all-reduce only: the replicas' chunks of buf, and the gradients' pieces of each
        self.chunks = None
        self.tmp = None


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


class _Layout:
    """The buckets of one gradient structure, with the per-step bookkeeping precomputed."""

    def __init__(self, key, buckets, like, ring_size):
        self.key, self.buckets = key, buckets
        self.where = {}  # position -> bucket
        for b in buckets:
            xp = backend.xp_of(like[b.entries[0][0]])
            b.buf = xp.empty(b.size, b.dtype)
            b.views, b.flat = {}, {}
            for pos, off, n, shape in b.entries:
                b.flat[pos] = b.buf[off:off + n]
                b.views[pos] = b.flat[pos].reshape(shape)
                self.where[pos] = b
            if ring_size and xp is np and b.buf.nbytes >= RING_MIN_BYTES and b.size >= ring_size:
                _plan_ring(b, ring_size)
        self.counts = [len(b.entries) for b in buckets]


def _plan_ring(b, n):
    """Splits bucket b into n chunks (one per replica) and each chunk into the pieces of the gradients in it."""
    b.bounds = [b.size * k // n for k in range(n + 1)]
    b.chunks = []
    for a, e in zip(b.bounds[:-1], b.bounds[1:]):
        pieces = []
        for pos, off, size, _ in b.entries:
            lo, hi = max(a, off), min(e, off + size)
            if lo < hi:
                pieces.append((pos, lo - off, hi - off, lo - a, hi - a))  # gradient [lo:hi] <-> chunk [lo:hi]
        b.chunks.append(pieces)
    b.tmp = np.empty(max(e - a for a, e in zip(b.bounds[:-1], b.bounds[1:])), b.dtype)


class _Ring:
    """Ring all-reduce of one host bucket over MPI point-to-point messages (reduce-scatter, then all-gather;
    each replica sends and receives 2(n-1)/n of the bucket, as NCCL's ring does). Only the chunk a replica
    sends first is gathered into the bucket; the others are read where the gradients lie by the additions
    that fill them, so a replica copies 1/n of the bucket where a flat all-reduce needs it all packed first.
    Advanced by test() (non-blocking) or wait()."""

    __slots__ = ("comm", "group", "b", "src", "scale", "tag", "rank", "n", "step", "reqs")

    def __init__(self, comm, group, b, src, scale, tag):
        self.comm, self.group, self.b, self.src, self.scale, self.tag = comm, group, b, src, scale, tag
        self.rank, self.n = group.rank, group.size
        self.step = 0
        self.reqs = None
        self._post()

    def _chunk(self, c):
        bd = self.b.bounds
        return self.b.buf[bd[c]:bd[c + 1]]

    def _post(self):
        r, n, s, comm, tag = self.rank, self.n, self.step, self.comm, self.tag
        right, left = (r + 1) % n, (r - 1) % n
        b = self.b
        if s < n - 1:  # reduce-scatter: send chunk r-s (its partial sum), receive chunk r-s-1 to add ours to
            c_out, c_in = (r - s) % n, (r - s - 1) % n
            if s == 0:  # our own gradients of chunk r, gathered into it (one message, not one per piece)
                out = self._chunk(c_out)
                for pos, g0, g1, t0, t1 in b.chunks[c_out]:
                    out[t0:t1] = self.src[pos][g0:g1]
            reqs = [comm.Irecv(b.tmp[:b.bounds[c_in + 1] - b.bounds[c_in]], left, tag),
                    comm.Isend(self._chunk(c_out), right, tag)]
        else:  # all-gather: pass the reduced chunks along the ring, straight into the bucket
            k = s - (n - 1)
            reqs = [comm.Irecv(self._chunk((r - k) % n), left, tag),
                    comm.Isend(self._chunk((r + 1 - k) % n), right, tag)]
        self.reqs = reqs

    def _complete(self):
        r, n, s, b = self.rank, self.n, self.step, self.b
        if s < n - 1:
            c = (r - s - 1) % n
            out = b.buf[b.bounds[c]:]
            for pos, g0, g1, t0, t1 in b.chunks[c]:
                np.add(self.src[pos][g0:g1], b.tmp[t0:t1], out=out[t0:t1])
            if s == n - 2 and self.scale is not None:
                chunk = self._chunk(c)
                chunk *= b.dtype.type(self.scale)
        self.step += 1

    def test(self):
        """Moves the ring on as far as the messages that arrived allow; True once the bucket is reduced."""
        MPI = self.group.MPI
        last = 2 * (self.n - 1)
        while self.step < last:
            if not MPI.Request.Testall(self.reqs):
                return False
            self._complete()
            if self.step < last:
                self._post()
        return True

    def wait(self):
        # polling Testall: MPICH's Waitall measured 3-5% slower here for the MLP's 2.7 MB bucket
        self.group._enter("all-reduce of %d bytes" % self.b.buf.nbytes)
        try:
            while not self.test():
                pass
        finally:
            self.group._leave()


class Reducer:
    """All-reduces lists of gradients through buckets over `group` (an MPIGroup or a LocalMember).

    The buckets' flat buffers are allocated once per gradient structure and reused: the reduced gradients
    a reduction returns are views of them, valid until the next reduction of the same structure."""

    def __init__(self, group, bucket_bytes=DEFAULT_BUCKET_BYTES, comm_group=None):
        if not (isinstance(bucket_bytes, (int, np.integer)) and bucket_bytes > 0):
            raise ValueError("bucket_bytes: expected a positive number of bytes, got %r" % (bucket_bytes,))
        self.group = group
        self.bucket_bytes = int(bucket_bytes)
        self._layouts = {}
        self.last_stats = {}
        # the ring's messages travel on their own communicator (comm_group: a duplicate of group's), so that
        # they never match anyone else's point-to-point messages
        self._ring = comm_group if comm_group is not None and getattr(comm_group, "size", 1) > 1 and hasattr(
            comm_group, "comm") else None

    def _layout(self, grads):
        key = tuple(None if g is None else _sparse_key(g) if isinstance(g, IndexedSlices)
                    else (type(g), g.shape, g.dtype) for g in grads)
        lay = self._layouts.get(key)
        if lay is None:
            portable = tuple(k if k is None or k[0] == "sparse" else (tuple(k[1]), str(k[2])) for k in key)
            self._check_same_everywhere(portable)
            specs = [(i, k[0], k[1], backend.device_of(grads[i])) for i, k in reversed(list(enumerate(portable)))
                     if k is not None and k[0] != "sparse"]
            lay = self._layouts[key] = _Layout(portable, plan_buckets(specs, self.bucket_bytes), grads,
                                               self._ring.size if self._ring is not None else 0)
        return lay

    def layout(self, grads):
        """(key, buckets) for the gradients' structure; new structures are checked across replicas."""
        lay = self._layout([g._data if isinstance(g, Tensor) else g for g in grads])
        return lay.key, lay.buckets

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
        """A reduction session for gradients structured like `grads_like` (arrays, IndexedSlices or None):
        mark each gradient with ready(i, g) as it becomes final (a bucket's non-blocking all-reduce starts
        as soon as it is complete), then finish() waits and returns the reduced gradients."""
        like = [g._data if isinstance(g, Tensor) else g for g in grads_like]
        return _Session(self, self._layout(like), op, blocking=False)

    def reduce(self, grads, op=MEAN):
        """All-reduced `grads` (a list of arrays, IndexedSlices or None), same order (see the class doc)."""
        grads = [g._data if isinstance(g, Tensor) else g for g in grads]
        s = _Session(self, self._layout(grads), op, blocking=True)
        for i in reversed(range(len(grads))):
            if grads[i] is not None:
                s.ready(i, grads[i])
        return s.finish()


class _Session:
    __slots__ = ("r", "op", "lay", "missing", "next_launch", "reqs", "tested", "sparse", "blocking", "scale",
                 "group", "src", "given")

    def __init__(self, reducer, lay, op, blocking):
        self.r, self.lay, self.op, self.blocking = reducer, lay, op, blocking
        self.group = reducer.group
        n = self.group.size
        # MEAN: float buckets are scaled by 1/n (while packing, or by the ring on its reduced chunk), then summed
        self.scale = None if op != MEAN or n == 1 else 1.0 / n
        self.missing = list(lay.counts)
        self.next_launch = 0
        self.reqs = []
        self.tested = 0
        self.sparse = {}
        self.src = {}  # ring buckets: position -> the flat gradient, read where it lies
        self.given = {}  # position -> the gradient object marked ready

    def ready(self, i, g):
        """Gradient i has its final value: pack it (or note where it lies); launch the buckets now complete."""
        self.given[i] = g
        if isinstance(g, Tensor):
            g = g._data
        if isinstance(g, IndexedSlices):
            self.sparse[i] = g
            return
        b = self.lay.where[i]
        if b.chunks is not None:
            if type(g) is np.ndarray and g.dtype == b.dtype and g.flags.c_contiguous:
                self.src[i] = g.reshape(-1)
            else:
                b.views[i][...] = g
                self.src[i] = b.flat[i]
        elif self.scale is not None and b.dtype.kind == "f":
            view = b.views[i]
            backend.xp_of(view).multiply(g, b.dtype.type(self.scale), out=view)
        else:
            b.views[i][...] = g
        k = b.index
        self.missing[k] -= 1
        if k == self.next_launch and self.missing[k] == 0:
            self._launch_ready()
        elif self.tested < len(self.reqs):
            self._progress()

    def _progress(self):
        """Lets the buckets in flight move along (MPI moves non-blocking operations only inside its calls)."""
        reqs = self.reqs
        while self.tested < len(reqs) and reqs[self.tested].test():
            self.tested += 1

    def _launch_ready(self):
        buckets, missing, group = self.lay.buckets, self.missing, self.group
        while self.next_launch < len(buckets) and missing[self.next_launch] == 0:
            b = buckets[self.next_launch]
            scaled = self.scale is not None and b.dtype.kind == "f"
            if b.chunks is not None:
                ring = _Ring(self.r._ring.comm, self.r._ring, b, self.src, self.scale if scaled else None, b.index)
                if self.blocking:
                    ring.wait()
                else:
                    self.reqs.append(ring)
            elif self.blocking:
                group.allreduce_(b.buf, SUM if scaled else self.op)
            else:
                self.reqs.append(group.iallreduce_(b.buf, SUM if scaled else self.op))
            self.next_launch += 1
        if self.tested < len(self.reqs):
            self._progress()

    @property
    def complete(self):
        """Every bucket launched (every dense gradient marked ready)."""
        return self.next_launch == len(self.lay.buckets)

    def cancel(self):
        """Waits for the buckets already launched (every replica launched the same ones) and drops them."""
        for h in self.reqs[self.tested:]:
            h.wait()
        self.reqs, self.src = [], None

    def finish(self):
        """Waits for every bucket; returns the reduced gradients (dense ones are views of the buckets)."""
        buckets = self.lay.buckets
        if self.next_launch != len(buckets):
            lost = [pos for b in buckets[self.next_launch:] for pos, *_ in b.entries]
            raise ValueError("gradient(s) %s were never marked ready" % sorted(lost))
        t0 = time.perf_counter()
        for h in self.reqs[self.tested:]:
            h.wait()
        waited = time.perf_counter() - t0
        self.src = None
        out = [None] * len(self.lay.key)
        for b in buckets:
            for pos, view in b.views.items():
                out[pos] = view
        for i, g in sorted(self.sparse.items()):
            out[i] = _reduce_sparse(self.group, g, self.op)
        self.r.last_stats = {"buckets": len(buckets), "exposed_seconds": waited, "early": not self.blocking}
        return out


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


def _sparse_key(g):
    return ("sparse", tuple(_shape(g)), str(_dtype(g)))


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
