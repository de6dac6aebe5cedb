"""The communicators replicas exchange arrays through.

- `MPIGroup`: one replica per process, over mpi4py (MPI `Allreduce`/`Bcast`/`Allgatherv` on host
  buffers; GPU arrays go through NCCL when a communicator was set up, else they are staged on the host).
- `LocalGroup`: the replicas of a MirroredStrategy, threads of one process. They take turns (a baton):
  one replica runs Python at a time, from one collective to the next, in replica order; the last one to
  reach a collective reduces for all. So a replica's Python is never concurrent with another's (Keras
  layers build lazily, optimizers keep scratch buffers), and the results do not depend on timing.

Every collective first checks that all replicas called the same one with the same kind of value: a
replica that skips a collective or calls a different one gets an error naming both, not a hang.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from accel import backend
from accel.distribute.errors import CollectiveMismatchError

SUM, MEAN = "SUM", "MEAN"


def _signature(kind, arrays):
    return (kind, tuple((tuple(a.shape), str(a.dtype)) for a in arrays))


def _describe(sig):
    kind, arrays = sig
    return "%s of %s" % (kind, ", ".join("%s %s" % (dt, shape) for shape, dt in arrays) or "nothing")


# --- one process per replica: MPI ---------------------------------------------------------------------

class MPIGroup:
    """The replicas of a MultiWorkerMirroredStrategy: the ranks of an MPI communicator."""

    def __init__(self, comm, watchdog=None, nccl=None):
        from mpi4py import MPI  # noqa: PLC0415

        self.MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.watchdog = watchdog
        self.nccl = nccl  # a backend NCCL communicator for GPU arrays, or None
        self.checks = True  # compare call signatures across ranks (one small allgather per call)

    def _enter(self, what):
        if self.watchdog is not None:
            self.watchdog.enter(what)

    def _leave(self):
        if self.watchdog is not None:
            self.watchdog.leave()

    def check_same(self, kind, arrays):
        """Raises on every rank when the ranks called different collectives (or with different values)."""
        if not self.checks or self.size == 1:
            return
        sig = _signature(kind, arrays)
        self._enter(kind + " (signature check)")
        try:
            sigs = self.comm.allgather(sig)
        finally:
            self._leave()
        if any(s != sigs[0] for s in sigs):
            lines = ["rank %d: %s" % (r, _describe(s)) for r, s in enumerate(sigs)]
            raise CollectiveMismatchError("replicas called different collectives (each must call the same ones, in "
                                          "the same order, with values of the same shape and dtype):\n  "
                                          + "\n  ".join(lines))

    def allreduce_(self, buf, op=SUM):
        """All-reduces `buf` in place (MEAN divides by the replica count)."""
        self._enter("all-reduce of %d bytes" % buf.nbytes)
        try:
            if backend.is_cupy_array(buf):
                if self.nccl is not None:
                    backend.nccl_all_reduce(self.nccl, buf, buf, "sum")
                else:
                    host = backend.to_numpy(buf)
                    self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
                    buf[...] = backend.to_device(host, backend.device_of(buf))
            else:
                self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        finally:
            self._leave()
        if op == MEAN:
            buf /= buf.dtype.type(self.size)
        return buf

    def iallreduce_(self, buf, op=SUM):
        """Starts an all-reduce of host `buf` in place; returns a handle whose wait() finishes it."""
        if backend.is_cupy_array(buf):
            self.allreduce_(buf, op)
            return _Done()
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return _MPIRequest(self, req, buf, op)

    def broadcast_(self, buf, root=0):
        self._enter("broadcast of %d bytes" % buf.nbytes)
        try:
            if backend.is_cupy_array(buf):
                if self.nccl is not None:
                    backend.nccl_broadcast(self.nccl, buf, root)
                else:
                    host = backend.to_numpy(buf).copy()
                    self.comm.Bcast(host, root=root)
                    buf[...] = backend.to_device(host, backend.device_of(buf))
            else:
                self.comm.Bcast(buf, root=root)
        finally:
            self._leave()
        return buf

    def allgather_rows(self, a):
        """Concatenates every rank's `a` along axis 0 (rows may differ per rank), in rank order."""
        host = np.ascontiguousarray(backend.to_numpy(a))
        self._enter("all-gather")
        try:
            counts = self.comm.allgather(host.shape[0])
            row = int(np.prod(host.shape[1:], dtype=np.int64))
            out = np.empty((sum(counts),) + host.shape[1:], host.dtype)
            mpi_type = self.MPI._typedict[host.dtype.char]
            self.comm.Allgatherv(host, [out, [c * row for c in counts], None, mpi_type])
        finally:
            self._leave()
        return out if not backend.is_cupy_array(a) else backend.to_device(out, backend.device_of(a))

    def allgather_object(self, obj):
        self._enter("all-gather of Python objects")
        try:
            return self.comm.allgather(obj)
        finally:
            self._leave()

    def barrier(self):
        self._enter("barrier")
        try:
            self.comm.Barrier()
        finally:
            self._leave()


class _Done:
    def wait(self):
        pass


class _MPIRequest:
    """An Iallreduce in flight; keeps its buffer alive (mpi4py's Request does not)."""

    def __init__(self, group, req, buf, op):
        self.group, self.req, self.buf, self.op = group, req, buf, op

    def test(self):
        return self.req.Test()

    def wait(self):
        g = self.group
        g._enter("all-reduce of %d bytes" % self.buf.nbytes)
        try:
            self.req.Wait()
        finally:
            g._leave()
        if self.op == MEAN:
            self.buf /= self.buf.dtype.type(g.size)
        return self.buf


# --- replicas as threads of one process: MirroredStrategy -------------------------------------------

class ReplicaAborted(BaseException):
    """Raised in a replica thread when another replica failed: it unwinds without running more user code."""


class LocalGroup:
    """The baton and the rendezvous of one `MirroredStrategy.run` call (see the module doc)."""

    def __init__(self, devices, nccl_comms=None):
        self.devices = list(devices)
        self.size = len(self.devices)
        self.nccl_comms = nccl_comms
        self._cond = threading.Condition()
        self._turn = 0
        self._finished = [False] * self.size
        self._waiting = {}  # replica -> the signature of the collective it waits in
        self._deposits = {}
        self._results = None
        self._round = 0
        self.error = None

    # the baton
    def start(self, r):
        with self._cond:
            while self._turn != r and self.error is None:
                self._cond.wait()
            if self.error is not None and r != 0:
                raise ReplicaAborted()

    def _pass_from(self, r):
        for k in range(1, self.size + 1):
            nxt = (r + k) % self.size
            if not self._finished[nxt]:
                self._turn = nxt
                break
        self._cond.notify_all()

    def finish(self, r, error=None):
        with self._cond:
            self._finished[r] = True
            if error is not None and self.error is None:
                self.error = error
            if self.error is None and self._waiting:
                self.error = CollectiveMismatchError(
                    "replica %d returned without calling the collective that replica(s) %s wait in (%s): every "
                    "replica must call the same collectives" % (r, sorted(self._waiting),
                                                                _describe(next(iter(self._waiting.values())))))
            self._pass_from(r)

    def fail(self, error):
        with self._cond:
            if self.error is None:
                self.error = error
            self._cond.notify_all()

    # the one collective: every replica gives its arrays, the last one reduces for all
    def exchange(self, r, sig, payload, reduce_fn):
        """Replica r's part of a collective: returns reduce_fn([payload of replica 0, 1, ...])[r]."""
        with self._cond:
            if self.error is not None:
                raise ReplicaAborted()
            others = {q: s for q, s in self._waiting.items() if s != sig}
            if others:
                q, s = next(iter(others.items()))
                self.error = CollectiveMismatchError(
                    "replicas called different collectives: replica %d: %s; replica %d: %s" % (
                        q, _describe(s), r, _describe(sig)))
                self._cond.notify_all()
                raise self.error
            self._deposits[r] = payload
            self._waiting[r] = sig
            if len(self._deposits) == self.size:
                inputs = [self._deposits[q] for q in range(self.size)]
                self._results = reduce_fn(inputs)
                self._deposits = {}
                self._waiting = {}
                self._round += 1
                return self._results[r]
            if all(self._finished[q] or q in self._deposits for q in range(self.size)):
                missing = [q for q in range(self.size) if q not in self._deposits]
                self.error = CollectiveMismatchError(
                    "replica %d called %s but replica(s) %s had already returned without it: every replica must "
                    "call the same collectives" % (r, _describe(sig), missing))
                self._cond.notify_all()
                raise self.error
            my_round = self._round
            self._pass_from(r)
            while (self._round == my_round or self._turn != r) and self.error is None:
                self._cond.wait()
            if self.error is not None:
                raise ReplicaAborted()
            return self._results[r]

    # reductions over the deposits (in replica order, so every replica gets bitwise the same sum)
    def sum_arrays(self, inputs, op):
        n = len(inputs[0])
        out = [[None] * n for _ in range(self.size)]
        for i in range(n):
            parts = [inputs[r][i] for r in range(self.size)]
            if backend.is_cupy_array(parts[0]) and self.nccl_comms is not None:
                reduced = backend.nccl_all_reduce_group(self.nccl_comms, parts)
            else:
                host = [backend.to_numpy(p) for p in parts]
                total = host[0].copy()
                for h in host[1:]:
                    total += h
                reduced = [total] * self.size
            for r in range(self.size):
                v = reduced[r]
                if op == MEAN:
                    v = v / v.dtype.type(self.size)
                dev = self.devices[r]
                out[r][i] = backend.to_device(v, dev) if dev.kind == "gpu" else np.array(v, copy=True)
        return out


class LocalMember:
    """Replica r's view of a LocalGroup, with MPIGroup's collective methods."""

    def __init__(self, group, r):
        self.group, self.rank, self.size = group, r, group.size

    def check_same(self, kind, arrays):
        pass  # the exchange itself compares signatures

    def _x(self, kind, arrays, reduce_fn):
        return self.group.exchange(self.rank, _signature(kind, arrays), arrays, reduce_fn)

    def allreduce_(self, buf, op=SUM):
        res = self._x("all-reduce", [buf], lambda ins: self.group.sum_arrays(ins, op))[0]
        buf[...] = res
        return buf

    def iallreduce_(self, buf, op=SUM):
        self.allreduce_(buf, op)
        return _Done()

    def broadcast_(self, buf, root=0):
        res = self._x("broadcast", [buf], lambda ins: [ins[root]] * self.size)[0]
        if backend.is_cupy_array(buf):
            buf[...] = backend.to_device(backend.to_numpy(res), backend.device_of(buf))
        else:
            buf[...] = backend.to_numpy(res)
        return buf

    def allgather_rows(self, a):
        sig = ("all-gather", (tuple(a.shape[1:]), str(a.dtype)))
        parts = self.group.exchange(self.rank, sig, a, lambda ins: [ins] * self.size)
        host = np.concatenate([backend.to_numpy(p) for p in parts], axis=0)
        return host if not backend.is_cupy_array(a) else backend.to_device(host, backend.device_of(a))

    def allgather_object(self, obj):
        return self.group.exchange(self.rank, ("all-gather of Python objects", ()), obj,
                                   lambda ins: [list(ins)] * self.size)

    def barrier(self):
        self._x("barrier", [], lambda ins: [None] * self.size)


def wait_all(handles, timeout=None):
    t0 = time.monotonic()
    for h in handles:
        h.wait()
    return time.monotonic() - t0
