"""Counts the device operations accel issues (each would be one kernel launch on a GPU) and
the bytes they read and write, per op, inside a `with accel.profiler.profile() as prof:` block.

On the NumPy backend every array is seen through a counting view (`_Counted`): each ufunc
call, reduction, NumPy function that computes (not views such as reshape or slicing),
copy and fancy-index write is one device operation. A fused kernel (CPU twin or CUDA)
counts as one. Outside a profile block nothing is wrapped and nothing is counted.

    with accel.profiler.profile() as prof:
        train_step()
    print(prof)            # a Markdown table by op
    prof.total_ops, prof.total_bytes

A profile counts only its own thread's work (it installs itself through accel.recorder.hooks, which
are per thread, as the tapes are): another thread's ops run uncounted and unwrapped meanwhile.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import threading

import numpy as np

from accel import kernel_registry
from accel.recorder import hooks


def active():
    """The Profile this thread is filling, or None."""
    return hooks.profile


class Profile:
    def __init__(self):
        self.table = {}  # label -> [device ops, bytes]
        self.label = "other"

    def note(self, nbytes, label=None):
        row = self.table.get(label or self.label)
        if row is None:
            row = self.table[label or self.label] = [0, 0]
        row[0] += 1
        row[1] += nbytes

    @property
    def total_ops(self):
        return sum(r[0] for r in self.table.values())

    @property
    def total_bytes(self):
        return sum(r[1] for r in self.table.values())

    def counted(self, a):
        """A counting view of host array `a` (a itself when it is not one)."""
        return a.view(_Counted) if type(a) is np.ndarray else a

    @staticmethod
    def plain(a):
        return _plain(a)

    def rows(self):
        return sorted(((k, v[0], v[1]) for k, v in self.table.items()), key=lambda r: (-r[1], r[0]))

    def __str__(self):
        lines = ["| op | device ops | MB read+written |", "|---|---:|---:|"]
        for k, n, b in self.rows():
            lines.append("| %s | %d | %.3f |" % (k, n, b / 1e6))
        lines.append("| **total** | **%d** | **%.3f** |" % (self.total_ops, self.total_bytes / 1e6))
        return "\n".join(lines)


def _nbytes(objs):
    n = 0
    for o in objs:
        if isinstance(o, np.ndarray):
            n += o.nbytes
        elif isinstance(o, (list, tuple)):
            n += _nbytes(o)
    return n


def _plain(o):
    if type(o) is _Counted:
        return o.view(np.ndarray)
    if isinstance(o, (list, tuple)) and any(type(x) is _Counted for x in o):
        return type(o)(_plain(x) for x in o)
    return o


def _wrap(r):
    if type(r) is np.ndarray:
        return r.view(_Counted)
    if isinstance(r, tuple):
        return tuple(_wrap(x) for x in r)
    return r


class _Counted(np.ndarray):
    """An ndarray view whose every computation is counted in the active profile."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        args = [_plain(i) for i in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(_plain(o) for o in kwargs["out"])
        res = getattr(ufunc, method)(*args, **kwargs)
        prof = hooks.profile
        if prof is not None:
            prof.note(_nbytes(args) + _nbytes(res if isinstance(res, tuple) else (res,)))
        return _wrap(res)

    def __array_function__(self, func, types, args, kwargs):
        args = tuple(_plain(a) for a in args)
        kwargs = {k: _plain(v) for k, v in kwargs.items()}
        res = func(*args, **kwargs)
        prof = hooks.profile
        if prof is not None and func.__name__ not in _VIEW_FUNCTIONS:
            prof.note(_nbytes(args) + _nbytes(res if isinstance(res, tuple) else (res,)))
        return _wrap(res)

    def copy(self, order="C"):
        prof = hooks.profile
        if prof is not None:
            prof.note(2 * self.nbytes)
        return np.ndarray.copy(self, order)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        res = np.ndarray.astype(self.view(np.ndarray), dtype, order, casting, subok, copy)
        prof = hooks.profile
        if prof is not None and res is not self and not np.shares_memory(res, self):
            prof.note(self.nbytes + res.nbytes)
        return _wrap(res)

    def __setitem__(self, key, value):
        prof = hooks.profile
        if prof is not None:
            prof.note(_nbytes((value,)) + (self.nbytes if not isinstance(key, (int, slice)) else 0))
        np.ndarray.__setitem__(self.view(np.ndarray), _plain(key), _plain(value))


# NumPy functions that return views or metadata: no kernel on a GPU
_VIEW_FUNCTIONS = {"reshape", "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze", "broadcast_to",
                   "ravel", "shape", "ndim", "result_type", "may_share_memory", "shares_memory", "atleast_1d"}


def counted(a):
    """A counting view of host array `a` while this thread profiles (a itself otherwise)."""
    if type(a) is np.ndarray and hooks.profile is not None:
        return a.view(_Counted)
    return a


def plain(a):
    return _plain(a)


@contextlib.contextmanager
def scope(label):
    """Attributes the device ops inside to `label` (e.g. 'optimizer:Adam')."""
    prof = hooks.profile
    if prof is None:
        yield
        return
    old = prof.label
    prof.label = label
    try:
        yield
    finally:
        prof.label = old


def _counting_kernel(name, fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        args = tuple(_plain(a) for a in args)
        kwargs = {k: _plain(v) for k, v in kwargs.items()}
        prof = hooks.profile
        if prof is None:  # another thread profiles: this call is not counted, and returns plain arrays
            return fn(*args, **kwargs)
        prof.note(_nbytes(args) + _nbytes(list(kwargs.values())))
        return _wrap(fn(*args, **kwargs))

    return run


# the public kernel entry points: each call is one device operation
_KERNEL_MODULES = ("accel.cpu_kernels", "accel.fused")  # their entry points: kernel_registry.ENTRY_POINTS


# the kernel entry points are wrapped while at least one thread profiles; the wrappers count for the
# calling thread's profile only
_patch_lock = threading.Lock()
_patch_users = 0
_patched = []


def _patch_kernels():
    global _patch_users
    with _patch_lock:
        _patch_users += 1
        if _patch_users > 1:
            return
        for modname in _KERNEL_MODULES:
            try:
                mod = importlib.import_module(modname)
            except ImportError:
                continue
            for name in kernel_registry.ENTRY_POINTS.get(modname, ()):
                fn = getattr(mod, name)
                _patched.append((mod, name, fn))
                setattr(mod, name, _counting_kernel(name, fn))


def _unpatch_kernels():
    global _patch_users
    with _patch_lock:
        _patch_users -= 1
        if _patch_users:
            return
        for mod, name, fn in _patched:
            setattr(mod, name, fn)
        _patched.clear()


@contextlib.contextmanager
def profile():
    """Counts this thread's device ops and bytes by op inside the block; yields the Profile."""
    if hooks.profile is not None:
        raise RuntimeError("accel.profiler.profile() blocks do not nest")
    prof = Profile()
    _patch_kernels()
    hooks.set_profile(prof)
    try:
        yield prof
    finally:
        hooks.set_profile(None)
        _unpatch_kernels()
