"""accel.train: tf.train's Checkpoint, CheckpointManager and latest_checkpoint.

A Checkpoint saves the object graph under it: Modules (Keras layers and models included), optimizers (iterations,
learning rate, and each slot under its variable's key, e.g. "model/dense/kernel/.OPTIMIZER_SLOT/optimizer/m"),
Variables and nested Checkpoints. Each Variable is saved once, under the first path a breadth-first walk
reaches it by. A value whose variable does not exist yet (a layer not built, slots before the first step) is
kept and assigned when the variable is created, as TensorFlow does.

The file `<prefix>.npz` is a zip of .npy members plus an "index.json" member naming each key's member, shape
and dtype. It is read with allow_pickle=False after every member's header is checked against the index and its
size, and every value is checked against its variable before any variable is assigned. Writes go to a temporary
file in the same folder, fsynced, then renamed over the target.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import time
import warnings
import weakref
import zipfile

import numpy as np

from accel import backend, errors
from accel import module as _module
from accel._readonly import read_only
from accel.dtypes import int64
from accel.files import write_atomically
from accel.module import Module, _flatten_value
from accel.optimizers.base import Optimizer
from accel.variables import Variable

__all__ = ["Checkpoint", "CheckpointManager", "latest_checkpoint", "get_checkpoint_state"]

SUFFIX = ".npz"
_INDEX = "index.json"
_FORMAT = "accel.train.Checkpoint"
_VERSION = 1
_MAX_INDEX_BYTES = 64 << 20
_STATE_FILE = "checkpoint"
_now = time.time  # the managers' clock (tests replace it)


# ---- the object graph ---------------------------------------------------------------------------------


def _is_trackable(x):
    return isinstance(x, (Variable, Module, Optimizer, Checkpoint))


def _container_leaves(name, value, what):
    """(path, trackable) for `value`, looking inside lists, tuples and dicts; anything else is an error."""
    out = []
    for path, leaf in _flatten_value(value):
        if not _is_trackable(leaf):
            raise ValueError(
                "`Checkpoint` was expecting %s to be a trackable object (an accel Variable, Module, Keras layer or "
                "model, optimizer or Checkpoint), got %r." % (what, leaf)
            )
        out.append(("/".join([name] + [str(p) for p in path]), leaf))
    return out


def _children(obj):
    """(name, child) edges of the object graph, in a fixed order."""
    if isinstance(obj, Checkpoint):
        return obj._graph_children()
    if isinstance(obj, Optimizer):
        out = [("iterations", obj._iterations)]
        if isinstance(obj._learning_rate, Variable):
            out.append(("learning_rate", obj._learning_rate))
        out.extend(sorted(obj._globals.items()))
        return out
    if isinstance(obj, Module):
        out = [("/".join(str(p) for p in path), leaf) for path, leaf in obj._module_leaves() if _is_trackable(leaf)]
        # a Keras model's optimizer (and any optimizer or Checkpoint attribute) belongs to the graph too
        d = vars(obj)
        out.extend((k, d[k]) for k in sorted(d) if isinstance(d[k], (Optimizer, Checkpoint)))
        return out
    return []


def _walk(top):
    """{key: Variable} for the graph under `top` ((path, obj) pairs), slots included."""
    queue = collections.deque(top)
    seen, values, var_paths, optimizers = set(), {}, {}, []
    while queue:
        path, obj = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Variable):
            if path in values:
                raise ValueError("two variables have the checkpoint key %r; give them distinct names" % path)
            values[path] = obj
            var_paths[id(obj)] = path
            continue
        if isinstance(obj, Optimizer):
            optimizers.append((path, obj))
        queue.extend((path + "/" + name, child) for name, child in _children(obj))
    for opt_path, opt in optimizers:
        for st in opt._states.values():
            var_path = var_paths.get(id(st.var))
            if var_path is not None:  # slots of variables outside the graph have no key (as in TF)
                for slot, v in st.slots.items():
                    values["%s/.OPTIMIZER_SLOT/%s/%s" % (var_path, opt_path, slot)] = v
    return values


# ---- the file -----------------------------------------------------------------------------------------


def _data_file(prefix):
    return os.fspath(prefix) + SUFFIX


def _write_member(zf, name, array):
    with zf.open(name, "w", force_zip64=True) as member:
        np.lib.format.write_array(member, array, allow_pickle=False)


def _write_checkpoint(path, arrays):
    index = {"format": _FORMAT, "version": _VERSION, "values": []}
    for i, (key, a) in enumerate(arrays.items()):
        index["values"].append({"key": key, "member": "%d.npy" % i, "shape": list(a.shape), "dtype": a.dtype.str})

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr(_INDEX, json.dumps(index))
            for entry, a in zip(index["values"], arrays.values()):
                _write_member(zf, entry["member"], a)

    write_atomically(path, write)


def _check_entry(entry, members):
    if not isinstance(entry, dict) or not {"key", "member", "shape", "dtype"} <= entry.keys():
        raise ValueError("index entry %r lacks key/member/shape/dtype" % (entry,))
    key, member, shape = entry["key"], entry["member"], entry["shape"]
    if not isinstance(key, str) or member not in members:
        raise ValueError("index entry %r names no member of the archive" % (entry,))
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError("%s: shape %r is not a list of sizes" % (key, shape))
    try:
        dtype = np.dtype(entry["dtype"])
    except TypeError as e:
        raise ValueError("%s: dtype %r: %s" % (key, entry["dtype"], e)) from None
    if dtype.kind not in "biufc" or dtype.hasobject or dtype.fields is not None:
        raise ValueError("%s: dtype %s is not a plain numeric type" % (key, dtype))
    need = math.prod(shape) * dtype.itemsize
    size = members[member].file_size
    if need > size:
        raise ValueError("%s: shape %s of %s needs %d bytes but member %s holds %d" % (key, tuple(shape), dtype,
                                                                                      need, member, size))
    return key, member, tuple(shape), dtype


def _read_npy(data, key, shape, dtype):
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        header = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        header = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError("%s: unsupported .npy version %s" % (key, version))
    got_shape, fortran, got_dtype = header
    if tuple(got_shape) != shape or got_dtype != dtype:
        raise ValueError("%s: member holds %s %s, the index says %s %s" % (key, got_dtype, got_shape, dtype, shape))
    if len(data) - f.tell() != math.prod(shape) * dtype.itemsize:
        raise ValueError("%s: member holds %d data bytes, expected %d" % (key, len(data) - f.tell(),
                                                                         math.prod(shape) * dtype.itemsize))
    f.seek(0)
    return np.lib.format.read_array(f, allow_pickle=False)


def _read_checkpoint(path):
    """{key: NumPy array} from a checkpoint file; DataLossError naming the file if anything is off."""
    try:
        arrays = {}
        with zipfile.ZipFile(path) as zf:
            members = {info.filename: info for info in zf.infolist()}
            info = members.get(_INDEX)
            if info is None:
                raise ValueError("no %s member (not an accel checkpoint?)" % _INDEX)
            if info.file_size > _MAX_INDEX_BYTES:
                raise ValueError("%s is %d bytes" % (_INDEX, info.file_size))
            index = json.loads(zf.read(info).decode("utf-8"))
            if not isinstance(index, dict) or index.get("format") != _FORMAT:
                raise ValueError("not an accel checkpoint (format %r)" % (index.get("format")
                                                                           if isinstance(index, dict) else None))
            if index.get("version") != _VERSION:
                raise ValueError("format version %r; this accel reads version %d" % (index.get("version"), _VERSION))
            entries = [_check_entry(e, members) for e in index.get("values", [])]  # all checked before reading
            for key, member, shape, dtype in entries:
                if key in arrays:
                    raise ValueError("key %r appears twice" % key)
                arrays[key] = _read_npy(zf.read(member), key, shape, dtype)  # zf.read checks the CRC-32
        return arrays
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (zipfile.BadZipFile, ValueError, KeyError, EOFError, OSError, UnicodeDecodeError, NotImplementedError,
            zipfile.LargeZipFile) as e:
        raise errors.DataLossError(
            None, None, "%s is not a valid checkpoint (truncated or corrupted?): %s" % (path, e)) from e


def _resolve(save_path):
    """The data file of `save_path` (a prefix, or the file itself); NotFoundError if there is none."""
    save_path = os.fspath(save_path)
    path = _data_file(save_path)
    if os.path.isfile(path):
        return path
    if save_path.endswith(SUFFIX) and os.path.isfile(save_path):
        return save_path
    raise errors.NotFoundError(
        None, None,
        "Error when restoring from checkpoint at %s: found no file %s. Please double-check that the path is "
        "correct. You may be missing the checkpoint suffix (e.g. the '-1' in 'path/to/ckpt-1')." % (save_path, path))


# ---- restoring ----------------------------------------------------------------------------------------


def _describe(a):
    return "%s %s" % (np.dtype(a.dtype).name, tuple(a.shape))


def _assign_all(file, arrays, targets, where):
    """Assigns arrays[key] to targets[key] for every key, or nothing if one value does not fit."""
    problems = []
    for key, v in targets.items():
        a = arrays[key]
        if tuple(a.shape) != tuple(v._data.shape) or a.dtype != v._data.dtype:
            problems.append("%s: the checkpoint has %s, the variable %s has %s" % (key, _describe(a), v.name,
                                                                                   _describe(v._data)))
    if problems:
        more = " (and %d more mismatches)" % (len(problems) - 1) if len(problems) > 1 else ""
        raise ValueError(
            "%s: %s does not match the objects being restored (a checkpoint of another model?); no variable was "
            "changed. First mismatch: %s%s" % (where, file, problems[0], more))
    for key, v in targets.items():
        v.assign(arrays[key])


def _top_refs(top):
    return [(path, weakref.ref(obj)) for path, obj in top]


_pending = []  # _Restore records with values still waiting for their variables


class _Restore:
    """One restore: the file's values, which have been assigned, and weak references to the graph's top."""

    def __init__(self, file, arrays, checkpoint, top):
        self.file = file
        self.arrays = arrays
        self.checkpoint = weakref.ref(checkpoint)
        self.top = _top_refs(top)
        self.assigned = set()
        self.pending = set(arrays)
        self.expect_partial = False

    def current_top(self):
        ckpt = self.checkpoint()
        if ckpt is not None:
            return ckpt._graph_children()
        return [(p, r()) for p, r in self.top if r() is not None]

    def alive(self):
        return self.checkpoint() is not None or any(r() is not None for _, r in self.top)

    def apply(self, where):
        """Assigns every pending value whose variable now exists; raises (changing nothing) on a mismatch."""
        current = _walk(self.current_top())
        targets = {k: current[k] for k in self.arrays if k in self.pending and k in current}  # file order
        if targets:
            _assign_all(self.file, self.arrays, targets, where)
            self.assigned.update(targets)
            self.pending.difference_update(targets)
        return current


def _keep_pending(rec, top, checkpoint):
    """Keeps `rec` until its values are all assigned or its objects are all gone; then, as TensorFlow does,
    warns about values never restored unless the status said expect_partial()."""
    _pending.append(rec)
    ref = weakref.ref(rec)
    for obj in {id(o): o for o in [checkpoint] + [o for _, o in top]}.values():
        weakref.finalize(obj, _object_deleted, ref).atexit = False


def _object_deleted(rec_ref):
    rec = rec_ref()
    if rec is None or rec not in _pending or rec.alive():
        return
    _pending.remove(rec)
    if rec.pending and not rec.expect_partial:
        warnings.warn(
            "Objects restored from %s were deleted with checkpoint values never restored: %s. Use "
            "`status.expect_partial()` to silence this warning." % (rec.file, _first(rec.pending)), stacklevel=2)


def _on_variables_created(owner):
    for rec in list(_pending):
        if not rec.pending or not rec.alive():
            _pending.remove(rec)
            continue
        try:
            rec.apply("restoring a value deferred by Checkpoint.restore")
        except ValueError:
            _pending.remove(rec)  # reported once; the other values of that restore are abandoned too
            raise
        if not rec.pending:
            _pending.remove(rec)


_module.creation_hooks.append(_on_variables_created)


def _first(keys, n=5):
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (" (and %d more)" % (len(keys) - n) if len(keys) > n else "")


class CheckpointLoadStatus:
    """What `Checkpoint.restore` returns: checks of how the checkpoint matched the objects."""

    def __init__(self, record):
        self._record = record

    def _unbound(self):
        current = _walk(self._record.current_top())
        return current, sorted(k for k in current if k not in self._record.arrays)

    def assert_consumed(self):
        """Every value in the checkpoint was assigned, and every variable in the graph has a value there."""
        rec = self._record
        if rec.pending:
            raise AssertionError(
                "Unresolved values in checkpoint %s (their variables do not exist, or are not reachable from "
                "the Checkpoint): %s" % (rec.file, _first(rec.pending)))
        _, unbound = self._unbound()
        if unbound:
            raise AssertionError(
                "Some Python objects were not bound to checkpointed values, likely due to changes in the Python "
                "program: %s (not in %s)" % (_first(unbound), rec.file))
        return self

    def assert_existing_objects_matched(self):
        """Every variable that exists now got its value from the checkpoint (values for variables not created
        yet may remain)."""
        _, unbound = self._unbound()
        if unbound:
            raise AssertionError(
                "Some existing objects were not matched with checkpointed values: %s (not in %s)"
                % (_first(unbound), self._record.file))
        return self

    def assert_nontrivial_match(self):
        """At least one value in the checkpoint was assigned to a variable."""
        if not self._record.assigned:
            raise AssertionError(
                "No checkpointed value was matched to a variable in %s: the checkpoint holds %s"
                % (self._record.file, _first(self._record.arrays)))
        return self

    def expect_partial(self):
        """Silences the warning about values never restored when the restored objects are deleted."""
        self._record.expect_partial = True
        return self

    def run_restore_ops(self, session=None):
        """Nothing to run: accel restores eagerly."""

    def initialize_or_restore(self, session=None):
        """Nothing to run: accel restores eagerly."""


class InitializationOnlyStatus:
    """What `Checkpoint.restore(None)` returns: nothing is restored, so every assertion fails."""

    _MESSAGE = "No checkpoint specified (save_path=None); nothing is being restored."

    def assert_consumed(self):
        raise AssertionError(self._MESSAGE)

    assert_existing_objects_matched = assert_consumed
    assert_nontrivial_match = assert_consumed

    def expect_partial(self):
        return self

    def run_restore_ops(self, session=None):
        """Nothing to run."""

    def initialize_or_restore(self, session=None):
        """Nothing to run: variables are initialized when created."""


# ---- Checkpoint ---------------------------------------------------------------------------------------


class Checkpoint:
    """tf.train.Checkpoint: saves and restores the variables of the objects given as keyword arguments.

    >>> ckpt = accel.train.Checkpoint(model=model, optimizer=optimizer)
    >>> path = ckpt.save("ckpts/run")             # "ckpts/run-1", writes ckpts/run-1.npz
    >>> ckpt.restore(accel.train.latest_checkpoint("ckpts")).assert_consumed()
    """

    def __init__(self, root=None, **kwargs):
        object.__setattr__(self, "_deps", {})
        object.__setattr__(self, "_save_counter", None)
        object.__setattr__(self, "_root", None)
        if root is not None:
            if not _is_trackable(root):
                raise ValueError("`Checkpoint` was expecting root to be a trackable object, got %r." % (root,))
            object.__setattr__(self, "_root", root)
        for name, value in kwargs.items():
            setattr(self, name, value)

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        if name == "save_counter":
            raise AttributeError("Checkpoint.save_counter is managed by the Checkpoint")
        _container_leaves(name, value, name)  # checks that everything in it is trackable
        self._deps[name] = value
        object.__setattr__(self, name, value)

    def _graph_children(self):
        out = []
        if self._root is not None:
            out.extend(_children(self._root) if not isinstance(self._root, Variable) else [])
        for name in sorted(self._deps):
            out.extend(_container_leaves(name, self._deps[name], name))
        if self._save_counter is not None:
            out.append(("save_counter", self._save_counter))
        return out

    @property
    def save_counter(self):
        """int64 Variable: the number of `save()` calls (created on first use, restored by `restore`)."""
        if self._save_counter is None:
            with backend.device("cpu"):
                object.__setattr__(self, "_save_counter",
                                   Variable(0, dtype=int64, trainable=False, name="save_counter"))
            _module.variables_created(self)
        return self._save_counter

    def write(self, file_prefix, options=None):
        """Writes the checkpoint to `file_prefix` + ".npz" (no counter, no "checkpoint" state file); returns
        file_prefix."""
        file_prefix = os.fspath(file_prefix)
        values = _walk(self._graph_children())
        arrays = {k: np.array(backend.to_numpy(v._data), order="C") for k, v in values.items()}
        _write_checkpoint(_data_file(file_prefix), arrays)
        return file_prefix

    def save(self, file_prefix, options=None):
        """Increments `save_counter`, writes `file_prefix-N` and records it in the folder's "checkpoint" file;
        returns the path to pass to `restore`."""
        file_prefix = os.fspath(file_prefix)
        counter = self.save_counter
        counter.assign_add(1)
        try:
            path = self.write("%s-%d" % (file_prefix, int(counter.numpy())))
        except BaseException:
            counter.assign_sub(1)
            raise
        _write_state(os.path.dirname(os.path.abspath(file_prefix)), path, [path])
        return path

    def read(self, save_path, options=None):
        """Restores from `save_path` like `restore`, without creating `save_counter` first."""
        file = _resolve(save_path)
        arrays = _read_checkpoint(file)
        top = self._graph_children()
        rec = _Restore(file, arrays, self, top)
        rec.apply("Checkpoint.restore")
        top_ids = {id(obj) for _, obj in top}
        for old in list(_pending):  # a newer restore of the same objects replaces older deferred values
            if any(r() is not None and id(r()) in top_ids for _, r in old.top) or old.checkpoint() is self:
                _pending.remove(old)
        if rec.pending:
            _keep_pending(rec, top, self)
        return CheckpointLoadStatus(rec)

    def restore(self, save_path, options=None):
        """Restores the values saved at `save_path` (a path from `save` or `latest_checkpoint`). Values whose
        variables do not exist yet are assigned when they are created. Returns a status with
        `assert_consumed()`, `assert_existing_objects_matched()`, `expect_partial()`.

        Raises NotFoundError if there is no such checkpoint, DataLossError if the file is corrupt, and
        ValueError if a value's shape or dtype differs from its variable's; then no variable is changed.
        """
        if save_path is None:
            return InitializationOnlyStatus()
        _resolve(save_path)
        self.save_counter  # noqa: B018  (created so that it is restored too)
        return self.read(save_path, options)


# ---- the "checkpoint" state file and CheckpointManager ---------------------------------------------------


class CheckpointState:
    """The contents of a folder's "checkpoint" file (tf.train.get_checkpoint_state's fields)."""

    def __init__(self, model_checkpoint_path, all_model_checkpoint_paths, all_model_checkpoint_timestamps=(),
                 last_preserved_timestamp=0.0):
        self.model_checkpoint_path = model_checkpoint_path
        self.all_model_checkpoint_paths = list(all_model_checkpoint_paths)
        self.all_model_checkpoint_timestamps = list(all_model_checkpoint_timestamps)
        self.last_preserved_timestamp = last_preserved_timestamp


def _relative(path, directory):
    path = os.path.abspath(path)
    return os.path.relpath(path, directory) if os.path.dirname(path) == directory else path


def _write_state(directory, latest, paths, timestamps=(), last_preserved=0.0):
    directory = os.path.abspath(directory)
    state = {
        "model_checkpoint_path": _relative(latest, directory),
        "all_model_checkpoint_paths": [_relative(p, directory) for p in paths],
        "all_model_checkpoint_timestamps": list(timestamps),
        "last_preserved_timestamp": last_preserved,
    }
    write_atomically(os.path.join(directory, _STATE_FILE), lambda f: f.write(json.dumps(state, indent=1).encode()))


def get_checkpoint_state(checkpoint_dir, latest_filename=None):
    """The folder's CheckpointState, or None if it has no (readable) "checkpoint" file; paths are absolute
    or relative to the working folder, as given to save()."""
    directory = os.fspath(checkpoint_dir)
    path = os.path.join(directory, latest_filename or _STATE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_INDEX_BYTES + 1)
        if len(raw) > _MAX_INDEX_BYTES:
            raise ValueError("larger than %d bytes" % _MAX_INDEX_BYTES)
        state = json.loads(raw.decode("utf-8"))
        latest = state["model_checkpoint_path"]
        paths = state.get("all_model_checkpoint_paths", [])
        stamps = [float(t) for t in state.get("all_model_checkpoint_timestamps", [])]
        last = float(state.get("last_preserved_timestamp", 0.0))
        if not isinstance(latest, str) or not all(isinstance(p, str) for p in paths):
            raise ValueError("paths must be strings")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, OSError) as e:
        # TensorFlow logs an unreadable state file and carries on as if there were none
        warnings.warn("%s: %s; checkpoint state ignored" % (path, e), stacklevel=2)
        return None

    def full(p):
        return p if os.path.isabs(p) else os.path.join(directory, p)

    return CheckpointState(full(latest), [full(p) for p in paths], stamps, last)


def latest_checkpoint(checkpoint_dir, latest_filename=None):
    """The path of the newest checkpoint `save` recorded in `checkpoint_dir`, or None if there is none (or
    its file is gone)."""
    state = get_checkpoint_state(checkpoint_dir, latest_filename)
    if state is None or not state.model_checkpoint_path:
        return None
    if os.path.isfile(_data_file(state.model_checkpoint_path)):
        return state.model_checkpoint_path
    return None


class CheckpointManager:
    """tf.train.CheckpointManager: numbered saves in `directory`, keeping the newest `max_to_keep`.

    >>> manager = accel.train.CheckpointManager(ckpt, "ckpts", max_to_keep=3)
    >>> manager.save()                 # "ckpts/ckpt-1"
    >>> ckpt.restore(manager.latest_checkpoint)
    """

    def __init__(self, checkpoint, directory, max_to_keep=5, keep_checkpoint_every_n_hours=None,
                 checkpoint_name="ckpt", step_counter=None, checkpoint_interval=None, init_fn=None,
                 last_checkpoint_step=None):
        if not isinstance(checkpoint, Checkpoint):
            raise TypeError("CheckpointManager: checkpoint must be an accel.train.Checkpoint, got %r" % (checkpoint,))
        if max_to_keep is not None and max_to_keep <= 0:
            raise ValueError("Expected a positive integer or `None` for `max_to_keep`, got %d." % (max_to_keep,))
        if checkpoint_interval is not None and step_counter is None:
            raise ValueError("`step_counter` should be passed if `checkpoint_interval` is not None.")
        self._checkpoint = checkpoint
        self._max_to_keep = max_to_keep
        self._keep_checkpoint_every_n_hours = keep_checkpoint_every_n_hours
        self._directory = os.fspath(directory)
        self._checkpoint_prefix = os.path.join(self._directory, checkpoint_name)
        self._init_fn = init_fn
        self._step_counter = step_counter
        self._checkpoint_interval = checkpoint_interval
        self._last_checkpoint_step = last_checkpoint_step
        state = get_checkpoint_state(self._directory)
        now = _now()
        self._maybe_delete = collections.OrderedDict()
        if state is None:
            self._latest_checkpoint = None
            self._last_preserved_timestamp = now - 1.0
        else:
            self._latest_checkpoint = state.model_checkpoint_path
            self._last_preserved_timestamp = min(state.last_preserved_timestamp, now)
            stamps = state.all_model_checkpoint_timestamps or [self._last_preserved_timestamp] * len(
                state.all_model_checkpoint_paths)
            for path, stamp in zip(state.all_model_checkpoint_paths, stamps):
                stamp = min(stamp, now)
                if stamp > self._last_preserved_timestamp:
                    self._maybe_delete[path] = stamp

    directory = read_only("_directory")
    checkpoint_interval = read_only("_checkpoint_interval")
    latest_checkpoint = read_only("_latest_checkpoint", "The newest checkpoint's path (None while there is none).")

    @property
    def checkpoints(self):
        """Paths of the checkpoints this manager may still delete, oldest first."""
        return list(self._maybe_delete)

    def _record_state(self):
        _write_state(self._directory, self._latest_checkpoint, list(self._maybe_delete),
                     list(self._maybe_delete.values()), self._last_preserved_timestamp)

    def _sweep(self):
        if not self._max_to_keep:
            return
        while len(self._maybe_delete) > self._max_to_keep:
            path, stamp = self._maybe_delete.popitem(last=False)
            hours = self._keep_checkpoint_every_n_hours
            if hours and stamp - hours * 3600.0 >= self._last_preserved_timestamp:
                self._last_preserved_timestamp = stamp
                continue
            try:
                os.remove(_data_file(path))
            except FileNotFoundError:
                pass

    def save(self, checkpoint_number=None, check_interval=True, options=None):
        """Saves a checkpoint numbered `checkpoint_number` (default: the Checkpoint's save counter after its
        increment), deletes the oldest beyond max_to_keep; returns its path, or None if skipped by
        checkpoint_interval."""
        if self._checkpoint_interval is not None and check_interval:
            step = int(self._step_counter.numpy()) if isinstance(self._step_counter, Variable) else int(
                self._step_counter)
            if self._last_checkpoint_step is not None and step < self._last_checkpoint_step + self._checkpoint_interval:
                return None
            self._last_checkpoint_step = step
        counter = self._checkpoint.save_counter
        counter.assign_add(1)
        if checkpoint_number is None:
            checkpoint_number = counter
        if isinstance(checkpoint_number, Variable):
            checkpoint_number = int(checkpoint_number.numpy())
        try:
            path = self._checkpoint.write("%s-%d" % (self._checkpoint_prefix, int(checkpoint_number)))
        except BaseException:
            counter.assign_sub(1)
            raise
        self._maybe_delete.pop(path, None)  # an overwritten checkpoint moves to the end of the queue
        self._maybe_delete[path] = _now()
        self._latest_checkpoint = path
        self._record_state()  # before deleting, so a crash mid-sweep still finds the new checkpoint
        self._sweep()
        self._record_state()
        return path

    def restore_or_initialize(self):
        """Restores the latest checkpoint and returns its path, or runs init_fn and returns None."""
        if self._latest_checkpoint is not None:
            self._checkpoint.restore(self._latest_checkpoint)
            if self._checkpoint_interval is not None:
                self._last_checkpoint_step = int(self._step_counter.numpy())
            return self._latest_checkpoint
        if self._init_fn is not None:
            self._init_fn()
        return None
