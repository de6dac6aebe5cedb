"""Weight checkpoints: `model.save_weights(path)` / `model.load_weights(path)`.

The file is a NumPy .npz archive (an uncompressed zip of .npy members) keyed by weight path, e.g.
`dense/kernel`. It holds plain numeric arrays only and is read with `allow_pickle=False`, so loading can never
run code; the zip's CRC-32 per member catches corruption, which safetensors would not, and it needs nothing
beyond NumPy. Saving is atomic: a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import os
import secrets
import zipfile

import numpy as np


def weight_paths(layer):
    """{path: Variable} for every weight of `layer`, e.g. {'dense/kernel': ..., 'dense/bias': ...}."""
    out = {}
    for path, v in layer._weight_items():
        if path in out:
            raise ValueError("%s has two weights at path %r; give them distinct names" % (layer.name, path))
        out[path] = v
    return out


def save_weights(layer, filepath):
    """Writes every weight of `layer` to `filepath` (that exact name), atomically replacing any file there."""
    if not layer.built:
        raise ValueError(
            "save_weights: %s is not built yet, so it has no weights; call it on data first" % layer.name
        )
    arrays = {path: np.ascontiguousarray(v.numpy()) for path, v in weight_paths(layer).items()}
    _write_atomic(os.path.abspath(os.fspath(filepath)), arrays)


def _write_atomic(path, arrays):
    directory, base = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, ".%s.%s.tmp" % (base, secrets.token_hex(6)))
    # os.open with mode 0o666 lets the umask decide the permissions, as for any new file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for key, a in arrays.items():
                    with zf.open(key + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, a, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


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


def load_weights(layer, filepath):
    """Sets every weight of `layer` from `filepath`, or none if names, shapes or dtypes disagree."""
    path = os.fspath(filepath)
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
