"""Saving: Keras 3's `.keras` model files and `.weights.h5` weight files, and accel's `.npz` checkpoints.

`.keras` is a zip of config.json (the model's config), metadata.json and model.weights.h5 (HDF5, through h5py,
the binding Keras itself uses; `pip install "accel-autodiff[keras]"`). Loading never unpickles, imports or evaluates
anything (a Lambda's bytecode only with `safe_mode=False`); zip entries and HDF5 datasets are checked before
anything is read, and every weight is validated before any is assigned, so a failed load changes nothing.

Any other weights file name gives accel's checkpoint: a NumPy .npz archive (an uncompressed zip of .npy members)
keyed by weight path, e.g. `dense/kernel`, read with `allow_pickle=False`. Writes are atomic: a temp file in the
same folder, then os.replace.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import warnings
import zipfile

import numpy as np

import accel
from accel.files import replace_atomically, write_atomically
from accel.keras import serialization
from accel.keras.configs import get_registered_name, get_registered_object, register_keras_serializable  # noqa: F401


def weight_paths(layer):
    """{path: Variable} for every weight of `layer`, e.g. {'dense/kernel': ..., 'dense/bias': ...}."""
    out = {}
    for path, v in layer._weight_items():
        if path in out:
            raise ValueError("%s has two weights at path %r; give them distinct names" % (layer.name, path))
        out[path] = v
    return out


def save_weights(layer, filepath, overwrite=True):
    """Writes every weight of `layer` to `filepath` (that exact name), atomically replacing any file there:
    Keras 3's HDF5 layout for `*.weights.h5`, accel's .npz otherwise."""
    path = os.path.abspath(os.fspath(filepath))
    kind = _kind(path, "save_weights")
    if not overwrite and os.path.exists(path):
        raise FileExistsError("save_weights: %s exists and overwrite=False" % path)
    if kind == "h5":
        if not layer.built:
            raise ValueError("save_weights: %s is not built yet, so it has no weights; call it on data first"
                             % layer.name)
        replace_atomically(path, lambda f: _write_h5(f, layer))
        return
    if not layer.built:
        raise ValueError(
            "save_weights: %s is not built yet, so it has no weights; call it on data first" % layer.name
        )
    # np.array, not ascontiguousarray, which gives a 0-d weight shape (1,)
    arrays = {path: np.array(v.numpy(), order="C") for path, v in weight_paths(layer).items()}
    _write_npz(filepath, arrays)


def _write_npz(path, arrays):
    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, a in arrays.items():
                with zf.open(key + ".npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, a, allow_pickle=False)

    write_atomically(path, write)


def _read_npy(f, size, member):
    """One .npy member; its header's shape must fit the bytes actually present (no huge allocations)."""
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    if dtype.hasobject:
        raise ValueError("member %r holds Python objects (pickles are never loaded)" % member)
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if need > size:
        raise ValueError("member %r declares shape %s of %s (%d bytes) but holds only %d bytes"
                         % (member, shape, dtype, need, size))
    f.seek(0)
    return np.lib.format.read_array(f, allow_pickle=False)


def _read(path):
    try:
        arrays = {}
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                key = info.filename[:-4]
                if not info.filename.endswith(".npy") or key in arrays:
                    raise ValueError("unexpected member %r" % info.filename)
                data = zf.read(info)  # verifies the member's CRC-32
                arrays[key] = _read_npy(io.BytesIO(data), len(data), info.filename)
        return arrays
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError) as e:
        raise ValueError("%s is not a valid weights file (truncated or corrupted?): %s" % (path, e)) from e


def load_weights(layer, filepath, skip_mismatch=False):
    """Sets every weight of `layer` from `filepath` (`.weights.h5`, `.keras` or accel's .npz), or none if the
    structure, shapes or dtypes disagree."""
    path = os.fspath(filepath)
    kind = _kind(path, "load_weights", loading=True)
    if kind == "h5":
        pairs = _guard(path, "weights", lambda: _read_h5_file(path, layer, skip_mismatch))
        _assign(pairs)
        return
    if kind == "keras":
        with _open_keras(path) as archive:
            pairs = _guard(path, "Keras", lambda: _read_h5_bytes(archive.weights(), path, layer, skip_mismatch))
        _assign(pairs)
        return
    arrays = _read(path)
    expected = weight_paths(layer)
    missing = sorted(expected.keys() - arrays.keys())
    extra = sorted(arrays.keys() - expected.keys())
    mismatched = []
    for key in sorted(expected.keys() & arrays.keys()):
        v, a = expected[key], arrays[key]
        if tuple(a.shape) != tuple(v.shape) or a.dtype != v.dtype.dtype:
            mismatched.append(
                "%s: file has %s %s, model has %s %s"
                % (key, a.dtype, tuple(a.shape), v.dtype.name, tuple(v.shape))
            )
    if missing or extra or mismatched:
        lines = ["load_weights: %s does not match %s; no weight was changed." % (path, layer.name)]
        if missing:
            lines.append("missing from the file: " + ", ".join(missing))
        if extra:
            lines.append("in the file but not in the model: " + ", ".join(extra))
            if not layer.built:
                lines.append("(the model is not built: call it on data or build() it before loading)")
        if mismatched:
            lines.append("mismatched: " + "; ".join(mismatched))
        raise ValueError("\n  ".join(lines))
    for key, v in expected.items():
        v.assign(arrays[key])


# === Keras 3 formats =========================================================================================
_MAX_CONFIG_BYTES = 64 << 20
_MAX_WEIGHTS_BYTES = 4 << 30
_MAX_RATIO = 100
_MAX_JSON_DEPTH = 200


def _h5py():
    try:
        import h5py  # noqa: PLC0415
    except ImportError as e:
        raise ImportError("Keras .keras and .weights.h5 files need h5py: pip install \"accel-autodiff[keras]\" "
                          "(or pip install h5py)") from e
    return h5py


def _kind(path, what, loading=False):
    name = os.path.basename(path)
    if name.endswith(".weights.h5"):
        return "h5"
    if name.endswith(".keras"):
        if loading:
            return "keras"
        raise ValueError("%s: %s is a .keras name; use model.save() for a whole model" % (what, path))
    if name.endswith(".h5") or name.endswith(".hdf5"):
        raise ValueError("%s: %s: Keras 3 weight files must end in .weights.h5 (legacy Keras 2 .h5 files are not "
                         "supported)" % (what, path))
    return "npz"


def keras_weight_tree(obj):
    """[(group path, [Variable, ...])] in Keras 3's layout: `vars` of each object, `layers/<key>/` for a model's
    layers (keys: snake-case class name, _1, _2 ... for repeats), attribute names for other nested layers."""
    out = []

    def visit(o, prefix):
        out.append((prefix + "vars", _keras_vars(o)))
        for path, child in o._weight_tree_children():
            visit(child, prefix + path + "/")

    visit(obj, "")
    return out


class _Slot:
    """One dataset of Keras's layout: a Variable, stored with `file_shape` (which may differ from the variable's
    by axes of size 1), or a constant accel does not keep (`var` None: written as `value`, skipped on load)."""

    def __init__(self, var=None, file_shape=None, value=None):
        self.var = var
        self.value = value
        if file_shape is None:
            file_shape = var.shape if var is not None else np.shape(value)
        self.shape = tuple(file_shape)
        self.dtype = var.dtype.dtype if var is not None else np.asarray(value).dtype
        self.name = var.name.split("/")[-1].split(":")[0] if var is not None else "count"

    def numpy(self):
        return np.asarray(self.var.numpy() if self.var is not None else self.value).reshape(self.shape)

    def assign(self, a):
        if self.var is not None:
            self.var.assign(np.asarray(a).reshape(tuple(self.var.shape)))


def _keras_vars(layer):
    variables = [v for _, v in layer._own_variables()]
    if type(layer).__name__ == "Normalization" and type(layer).__module__.startswith("accel."):
        if getattr(layer, "input_mean", None) is not None:
            return []  # Keras keeps statistics given as arguments in the config, not in variables
        if not variables:
            return []
        # Keras: mean and variance over the kept axes only, then an int64 sample count accel does not keep
        keep = getattr(layer, "_keep", [])
        return [_Slot(v, tuple(v.shape[a] for a in keep)) for v in variables] + [_Slot(value=np.int64(0))]
    return [_Slot(v) for v in variables]


def _built_optimizer(model):
    """The compiled model's optimizer once it has state (Keras writes `optimizer/vars` only then), else None."""
    opt = getattr(model, "optimizer", None)
    return opt if opt is not None and getattr(model, "_compiled", False) and opt.built else None


def _write_h5(target, layer):
    h5py = _h5py()
    with h5py.File(target, "w") as h:
        for path, variables in keras_weight_tree(layer):
            g = h.require_group(path)
            for i, v in enumerate(variables):
                ds = g.create_dataset(str(i), data=np.array(v.numpy(), order="C"))
                ds.attrs["name"] = v.name
        opt = _built_optimizer(layer)
        if opt is not None:
            # Keras' order: iteration, learning_rate (unless a schedule), then each variable's slots
            g = h.require_group("optimizer/vars")
            g.attrs["name"] = opt.name
            for i, v in enumerate(opt.variables):
                ds = g.create_dataset(str(i), data=np.array(v.numpy(), order="C"))
                ds.attrs["name"] = v.name.split("/")[-1].split(":")[0]


def _read_optimizer(h, where, model):
    """[(Variable, array)] restoring the optimizer from `optimizer/vars`, or [] with a warning where Keras
    skips it too: an uncompiled model ignores the group; a count that differs from optimizer.variables (an
    optimizer not built yet, another optimizer) is skipped. Shapes and dtypes are checked like the weights'."""
    h5py = _h5py()
    opt = getattr(model, "optimizer", None)
    g = _get_safe(h5py, h, "optimizer/vars")
    if g is None or opt is None or not getattr(model, "_compiled", False):
        return []
    if not isinstance(g, h5py.Group):
        raise ValueError("%s: optimizer/vars is not a group" % where)
    variables = opt.variables
    names = sorted(g.keys())
    if names != sorted(str(i) for i in range(len(names))) or len(names) != len(variables):
        warnings.warn("Skipping the optimizer state in %s: it holds %d variables, but optimizer %s has %d (build "
                      "the optimizer first: compile, then train a step or load with load_model)"
                      % (where, len(names), opt.name, len(variables)), stacklevel=4)
        return []
    pairs = []
    for i, v in enumerate(variables):
        ds = _get_safe(h5py, g, str(i))
        full = "optimizer/vars/%d" % i
        if not isinstance(ds, h5py.Dataset) or ds.is_virtual or ds.external:
            raise ValueError("%s: %s is not a plain dataset" % (where, full))
        if tuple(ds.shape) != tuple(v.shape):
            raise ValueError("%s: %s has shape %s, optimizer variable %s has %s; no weight was changed"
                             % (where, full, tuple(ds.shape), v.name, tuple(v.shape)))
        if ds.dtype.kind not in "biuf":
            raise ValueError("%s: %s has unsupported dtype %s" % (where, full, ds.dtype))
        pairs.append((v, np.asarray(ds[()]).astype(v.dtype.dtype, copy=False)))
    return pairs


def _get_safe(h5py, root, path):
    """root[path], following hard links only; None if absent."""
    node = root
    for part in path.split("/"):
        if not isinstance(node, h5py.Group) or part not in node:
            return None
        link = node.get(part, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise ValueError("%s is a %s; only plain groups and datasets are read" % (path, type(link).__name__))
        node = node[part]
    return node


def _read_h5(h, where, layer, skip_mismatch):
    """[(Variable, array)] for every weight of `layer` from an open HDF5 file, all validated before any read."""
    h5py = _h5py()
    plan, problems = [], []
    for path, variables in keras_weight_tree(layer):
        g = _get_safe(h5py, h, path)
        if not variables:
            continue
        if g is None or not isinstance(g, h5py.Group):
            problems.append("%s: missing (the layer has %d weights)" % (path, len(variables)))
            continue
        names = sorted(g.keys())
        want = [str(i) for i in range(len(variables))]
        if sorted(names) != sorted(want):
            problems.append("%s: holds datasets %s, the layer has %d weights" % (path, names, len(variables)))
            continue
        for i, v in enumerate(variables):
            ds = _get_safe(h5py, g, str(i))
            full = "%s/%d" % (path, i)
            if not isinstance(ds, h5py.Dataset):
                problems.append("%s: not a dataset" % full)
                continue
            if ds.is_virtual or ds.external:
                problems.append("%s: external or virtual datasets are not read" % full)
                continue
            if tuple(ds.shape) != tuple(v.shape):
                message = "%s: file has shape %s, weight %s has %s" % (full, tuple(ds.shape), v.name, v.shape)
                if skip_mismatch:
                    warnings.warn("skipping " + message, stacklevel=3)
                    continue
                problems.append(message)
                continue
            kind = ds.dtype.kind
            bf16 = kind == "V" and ds.dtype.itemsize == 2 and ds.attrs.get("dtype") in ("bfloat16", b"bfloat16")
            if kind not in "biuf" and not bf16:
                problems.append("%s: unsupported dtype %s" % (full, ds.dtype))
                continue
            plan.append((v, ds, bf16, full))
    if problems:
        raise ValueError("%s does not match %s; no weight was changed:\n  %s"
                         % (where, layer.name, "\n  ".join(problems)))
    pairs = []
    for v, ds, bf16, _ in plan:
        a = ds[()]
        if bf16:
            a = (np.frombuffer(a.tobytes(), np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(ds.shape)
        pairs.append((v, np.asarray(a).astype(v.dtype, copy=False)))
    return pairs


def _assign(pairs):
    for v, a in pairs:
        v.assign(a)


def _read_h5_file(path, layer, skip_mismatch):
    h5py = _h5py()
    with h5py.File(path, "r") as h:
        return _read_h5(h, path, layer, skip_mismatch) + _read_optimizer(h, path, layer)


def _read_h5_bytes(data, path, layer, skip_mismatch):
    h5py = _h5py()
    with h5py.File(io.BytesIO(data), "r") as h:
        where = "%s (model.weights.h5)" % path
        return _read_h5(h, where, layer, skip_mismatch) + _read_optimizer(h, where, layer)


def _guard(path, what, fn):
    """fn(), with a corrupt file's low-level errors turned into one ValueError that names the file."""
    try:
        return fn()
    except (FileNotFoundError, IsADirectoryError, PermissionError, ImportError):
        raise
    except ValueError as e:
        if str(path) in str(e):
            raise
        raise ValueError("%s is not a valid %s file: %s" % (path, what, e)) from e
    except (OSError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError, TypeError) as e:
        raise ValueError("%s is not a valid %s file (truncated or corrupted?): %s: %s"
                         % (path, what, type(e).__name__, e)) from e


class _KerasArchive:
    """The two entries of a .keras zip that accel reads, checked before reading."""

    def __init__(self, path):
        self.path = path
        try:
            self.zf = zipfile.ZipFile(path)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise ValueError("%s is not a valid .keras file (not a zip, truncated or corrupted?): %s"
                             % (path, e)) from e
        for info in self.zf.infolist():
            name = info.filename.replace("\\", "/")
            if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in name.split("/"):
                self.zf.close()
                raise ValueError("%s is refused: its zip entry %r has an absolute or '..' path" % (path, name))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zf.close()

    def _entry(self, name, limit):
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise ValueError("%s is not a valid .keras file: it has no %s entry" % (self.path, name)) from None
        if info.file_size > limit or (info.compress_type != zipfile.ZIP_STORED
                                      and info.file_size > _MAX_RATIO * max(info.compress_size, 1)):
            raise ValueError("%s is refused: entry %s declares %d bytes (limit %d, or over %dx its compressed size)"
                             % (self.path, name, info.file_size, limit, _MAX_RATIO))
        try:
            data = self.zf.read(info)  # checks the CRC-32
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
            raise ValueError("%s is not a valid .keras file (truncated or corrupted?): entry %s: %s"
                             % (self.path, name, e)) from e
        if len(data) != info.file_size:
            raise ValueError("%s is not a valid .keras file: entry %s is truncated" % (self.path, name))
        return data

    def config(self):
        data = self._entry("config.json", _MAX_CONFIG_BYTES)
        try:
            config = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError("%s is not a valid .keras file: config.json is not JSON: %s" % (self.path, e)) from e
        if _depth(config) > _MAX_JSON_DEPTH:
            raise ValueError("%s is refused: config.json nests deeper than %d levels" % (self.path, _MAX_JSON_DEPTH))
        if not isinstance(config, dict):
            raise ValueError("%s is not a valid .keras file: config.json is not an object" % self.path)
        return config

    def weights(self):
        return self._entry("model.weights.h5", _MAX_WEIGHTS_BYTES)


def _open_keras(path):
    return _KerasArchive(path)


def _depth(x):
    stack, deepest = [(x, 1)], 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > _MAX_JSON_DEPTH:
            return deepest
        if isinstance(v, dict):
            stack.extend((c, d + 1) for c in v.values())
        elif isinstance(v, list):
            stack.extend((c, d + 1) for c in v)
    return deepest


def save_model(model, filepath, overwrite=True):
    """Writes `model` as a Keras 3 `.keras` file, atomically (missing folders are created)."""
    path = os.path.abspath(os.fspath(filepath))
    if not path.endswith(".keras"):
        raise ValueError("save: the file name must end in .keras, got %s (use save_weights for weights only)" % path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError("save: %s exists and overwrite=False" % path)
    if not model.built:
        raise ValueError("save: model %s is not built yet; call it on data first" % model.name)
    config = serialization.serialize_keras_object(model)
    compile_config = model.get_compile_config() if hasattr(model, "get_compile_config") else None
    if compile_config is not None:
        config["compile_config"] = compile_config
    json_text = json.dumps(config)
    buffer = io.BytesIO()
    _write_h5(buffer, model)
    metadata = {"keras_version": "3.15.1", "accel_version": _version(),
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr("metadata.json", json.dumps(metadata))
            zf.writestr("config.json", json_text)
            zf.writestr("model.weights.h5", buffer.getvalue())

    replace_atomically(path, write)


def _version():
    return getattr(accel, "__version__", "unknown")


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """A model from a Keras 3 `.keras` file (written by Keras or accel): its config, then its weights.

    Classes come only from accel's layers, registered objects and `custom_objects`; a Lambda holding Python
    bytecode loads only with `safe_mode=False`. With `compile=True` and a `compile_config` in the file, the model
    comes back compiled (optimizer, loss, metrics) with the optimizer's saved state (iterations, slots), so
    training continues where it stopped.
    """
    path = os.fspath(filepath)
    if not str(path).endswith(".keras"):
        hint = " (a weights file: build the model and call load_weights)" if str(path).endswith(".h5") else ""
        raise ValueError("load_model: the file name must end in .keras, got %s%s" % (path, hint))
    with _open_keras(path) as archive:
        config = archive.config()
        weights = archive.weights()
    try:
        model = serialization.deserialize_keras_object(config, custom_objects=custom_objects, safe_mode=safe_mode)
    except (ValueError, TypeError, KeyError, NotImplementedError) as e:
        raise type(e)("%s: cannot rebuild the model from config.json: %s" % (path, e)) from e
    if not model.built:
        raise ValueError("%s: the model in config.json has no input shape (no InputLayer or build_config)" % path)
    compile_config = config.get("compile_config")
    if compile and compile_config and compile_config.get("loss") is None:
        # Keras writes {} for an uncompiled model; a compile without a loss (a custom train_step) accel's
        # compile() cannot repeat
        if compile_config:
            warnings.warn("%s: the model was compiled without a loss; it loads uncompiled (call compile())" % path,
                          stacklevel=2)
    elif compile and compile_config:
        try:
            model.compile_from_config(compile_config)
        except (ValueError, TypeError, KeyError, NotImplementedError) as e:
            raise type(e)("%s: cannot compile the model from compile_config: %s" % (path, e)) from e
    pairs = _guard(path, "Keras", lambda: _read_h5_bytes(weights, path, model, False))
    _assign(pairs)
    return model

