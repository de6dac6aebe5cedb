"""MirroredVariable: one copy of a variable per replica of a MirroredStrategy, in one process.

A Variable created under a MirroredStrategy's scope becomes a MirroredVariable: replica r > 0 gets its own
copy on its device, initialised from replica 0's value (TF copies replica 0's initial value too). Inside
`strategy.run`, replica r's code reads and writes its own copy (`_data` resolves by the thread's replica
id), so the optimizer updates each copy with the same all-reduced gradients. Outside `run` (cross-replica
context: restoring a checkpoint, `assign` by hand) reads see replica 0's copy and writes go to every copy.
"""

from __future__ import annotations

import threading
import weakref

from accel import backend
from accel.tensor import Tensor
from accel.variables import Variable

_BASE_DATA = Tensor.__dict__["_data"]  # the slot that holds replica 0's array
_COPIES: dict = {}  # id(variable) -> [strategy, array of replica 1, array of replica 2, ...]


class _Replica(threading.local):
    rid = 0  # this thread's replica id inside MirroredStrategy.run (0 elsewhere)
    cross = True  # False inside a replica


current = _Replica()


def _get(self):
    r = current.rid
    if r:
        return _COPIES[id(self)][r]
    return _BASE_DATA.__get__(self, Variable)


def _set(self, value):
    r = current.rid
    if r:
        _COPIES[id(self)][r] = value
    else:
        _BASE_DATA.__set__(self, value)


class MirroredVariable(Variable):
    """A Variable with one copy per replica (see the module doc); `values` lists them as Tensors."""

    __slots__ = ()
    _data = property(_get, _set)

    @property
    def values(self):
        return tuple(Tensor(a) for a in replica_arrays(self))

    def _each(self, method, value, kw):
        if not current.cross:
            return getattr(Variable, method)(self, value, **kw)
        n = len(_COPIES[id(self)])
        saved = current.rid
        try:
            for r in range(n):
                current.rid = r
                getattr(Variable, method)(self, value, **kw)
        finally:
            current.rid = saved
        return self

    def assign(self, value, use_locking=None, name=None, read_value=True):
        out = self._each("assign", value, {})
        return out if read_value else None

    def assign_add(self, delta, use_locking=None, name=None, read_value=True):
        out = self._each("assign_add", delta, {})
        return out if read_value else None

    def assign_sub(self, delta, use_locking=None, name=None, read_value=True):
        out = self._each("assign_sub", delta, {})
        return out if read_value else None

    def __repr__(self):
        return "<accel.distribute.MirroredVariable '%s' shape=%s dtype=%s, replicas=%d>" % (
            self.name, tuple(self.shape), self.dtype.name, len(_COPIES[id(self)]))


def mirror(var, devices, strategy=None):
    """Turns `var` (just created, on replica 0's device) into a MirroredVariable over `devices`."""
    if type(var) is MirroredVariable:
        return var
    src = _BASE_DATA.__get__(var, Variable)
    copies = [strategy]  # slot 0 (replica 0's array is the Variable's own) names the owner
    for dev in devices[1:]:
        a = backend.to_device(src, dev) if dev.kind == "gpu" else backend.to_numpy(src)
        copies.append(a.copy() if a is src else a)
    var.__class__ = MirroredVariable
    key = id(var)
    _COPIES[key] = copies
    weakref.finalize(var, _COPIES.pop, key, None)
    return var


def replica_arrays(var):
    """Every replica's array of a MirroredVariable (one for a plain Variable)."""
    first = _BASE_DATA.__get__(var, Variable)
    if type(var) is not MirroredVariable:
        return [first]
    return [first] + list(_COPIES[id(var)][1:])


def owner(var):
    """The MirroredStrategy a MirroredVariable belongs to (None for other variables)."""
    return _COPIES[id(var)][0] if type(var) is MirroredVariable else None
