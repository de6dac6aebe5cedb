"""The recording layer under the ops: the tapes active in this thread, how one op application is
recorded on them (`record`, `note_cut`, `note_exit`), and the hooks that observe op execution.

accel.ops.core.apply imports this module; it imports no op, no Tensor class and no tape class (it
reads the `_id`/`_data` of what it is given), so every op module can sit above it. GradientTape
(accel/tape.py) keeps its records in the fields `record` fills, and walks them backwards.

Everything here is per thread, as in TF: a tape, a profiler or a numerics check installed in one
thread never sees another thread's ops.
"""

from __future__ import annotations

import threading

from accel import sites


class _State(threading.local):
    def __init__(self):
        self.tapes = []  # active tapes of this thread, innermost last
        self.profile = None  # the accel.profiler.Profile being filled in this thread
        self.numerics_check = None  # fn(opname, arrays, phase), set by accel.debugging.enable_check_numerics
        self.trace = None  # the accel.function Trace recording this thread's ops, or None


state = _State()


class Hooks:
    """The one place that observes op execution: a profiler and a numerics check, each per thread.

    Read them as `hooks.profile` / `hooks.numerics_check` (this thread's, or None); install them with
    `hooks.set_profile` / `hooks.set_numerics_check`, which return the one they replace. `active`
    counts the threads that have any hook, so apply's fast path pays one attribute read while no
    thread observes (a thread that ends with a hook installed leaves ops on the checked path).
    """

    __slots__ = ("active", "_lock")

    def __init__(self):
        self.active = 0
        self._lock = threading.Lock()

    profile = property(lambda self: state.profile, doc="This thread's profiler, or None.")
    numerics_check = property(lambda self: state.numerics_check, doc="This thread's numerics check, or None.")

    def set_profile(self, prof):
        return self._set("profile", prof)

    def set_numerics_check(self, fn):
        return self._set("numerics_check", fn)

    def set_trace(self, trace):
        return self._set("trace", trace)

    def _set(self, field, value):
        s = state
        had = s.profile is not None or s.numerics_check is not None or s.trace is not None
        old = getattr(s, field)
        setattr(s, field, value)
        has = s.profile is not None or s.numerics_check is not None or s.trace is not None
        if had != has:
            with self._lock:
                self.active += 1 if has else -1
        return old


hooks = Hooks()


# A recorded op is a tuple (op, in_ids, out_ids, saved, out, attrs, in_shapes): tuples are the
# cheapest records to build, and building them is on every recorded op's path.
OP, IN_IDS, OUT_IDS, SAVED, OUT, ATTRS, IN_SHAPES = range(7)


def record(op, inputs, out, attrs, tapes):
    """Adds one op application to every active tape (of `tapes`) that tracks one of its inputs.

    A Variable (`_is_variable`) is saved as a snapshot of its current array under the same id, so a
    later assign does not change what the backward pass sees, and outer tapes still track it; reading a
    trainable one watches it on tapes that watch accessed variables."""
    node = None
    for tape in tapes:
        if not tape._recording:
            continue
        tracked = tape._tracked
        hit = False
        for t in inputs:
            if t._id in tracked:
                hit = True
            elif t._trainable and tape._watch_accessed:
                tape._watch_variable(t)
                hit = True
        if not hit:
            if tape._shadow:
                _shadow_edge(tape, inputs, out, op)
            continue
        if node is None:
            if len(inputs) == 2:
                a, b = inputs
                in_ids = (a._id, b._id)
                in_shapes = (a._data.shape, b._data.shape)
                saved = ((a._snapshot() if a._is_variable else a, b._snapshot() if b._is_variable else b)
                         if op.save_inputs else None)
            elif len(inputs) == 1:
                a = inputs[0]
                in_ids = (a._id,)
                in_shapes = (a._data.shape,)
                saved = (a._snapshot() if a._is_variable else a,) if op.save_inputs else None
            else:
                in_ids = tuple([t._id for t in inputs])
                in_shapes = tuple([t._data.shape for t in inputs])
                saved = tuple([t._snapshot() if t._is_variable else t for t in inputs]) \
                    if op.save_inputs else None
            if op.multi_out:
                out_ids = tuple([o._id for o in out])
            else:
                out_ids = (out._id,)
            node = (op, in_ids, out_ids, saved, out if op.save_out else None, attrs, in_shapes)
        tape._nodes.append(node)
        if op.multi_out:
            tracked.update(node[OUT_IDS])
        else:
            tracked.add(out._id)


def _shadow_edge(tape, inputs, out, op):
    """Follows values downstream of a cut (stop_gradient, argmax, ...) by id only, so explain() can
    name the op that broke the path. Costs nothing unless a cut happened on this tape."""
    shadow = tape._shadow
    for t in inputs:
        if t._id in shadow:
            outs = tuple(o._id for o in out) if op.multi_out else (out._id,)
            tape._shadow_edges.append((tuple(t._id for t in inputs), outs))
            shadow.update(outs)
            return


def note_cut(opname, inputs, out):
    """An op without a gradient consumed a tracked value: remembered so explain() can name it."""
    site = None
    for tape in state.tapes:
        if not tape._recording:
            continue
        for t in inputs:
            if getattr(t, "_trainable", False) and tape._watch_accessed:
                tape._watch_variable(t)  # reading a variable watches it, whatever the op
        ids = tuple(t._id for t in inputs if hasattr(t, "_id"))
        if any(i in tape._tracked or i in tape._shadow for i in ids):
            if site is None:
                site = sites.user_site()
            tape._cuts.append((opname, ids, out._id, site))
            tape._shadow.add(out._id)


def note_exit(t, what):
    """A tracked value left the tape (.numpy(), float(), __array__): remembered, and warned once per line."""
    for tape in state.tapes:
        if not tape._recording:
            continue
        if t._trainable and tape._watch_accessed:
            tape._watch_variable(t)  # reading a variable watches it, as in TF (v.numpy() reads it)
        if t._id in tape._tracked:
            site = sites.user_site()
            tape._exits.append((t._id, what, site))
            sites.warn_once(
                "%s on a tensor that a GradientTape is recording: the value leaves the tape here, and anything "
                "computed from the result is a new constant with no gradient path. Use accel ops instead, or "
                "do this after the `with` block." % what)
            return


def leaving(t, what):
    """Tensor t's value is read out of accel (numpy(), float(), bool(), __array__): tells this thread's
    tapes, and the accel.function trace (a guard, or an error for a value that would freeze)."""
    if state.tapes:
        note_exit(t, what)
    if state.trace is not None:
        state.trace.leaving(t, what)


def host_value(t):
    """Tensor t's value as a NumPy array for an argument Python decides with (a shape, axes, paddings, a
    seed): a guard inside accel.function (value_read), so such arguments may be traced tensors, as in TF."""
    if state.tapes:
        note_exit(t, "numpy()")
    value_read(t)
    from accel import backend  # noqa: PLC0415  (backend sits above this module's users, not below it)

    return backend.to_numpy(t._data)


def value_read(t):
    """Tensor t's value decides something in Python (a mask's true positions, a shape, a segment count):
    inside accel.function a guard on the whole value, so a call with another value traces that path
    instead of replaying this one's."""
    if state.trace is not None:
        state.trace.leaving(t, "value")


def shape_read(t):
    """Tensor t's whole shape is read into Python (accel.shape, accel.size): noted on the accel.function
    trace, which derives plans for new shapes only where the Python saw no size that changed."""
    if state.trace is not None:
        note = state.trace.watch_shape(t)
        if note is not None:
            note(None)
