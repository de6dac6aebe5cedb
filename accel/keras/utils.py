"""`accel.keras.utils`: to_categorical, set_random_seed, get_file (download with a cache and hash check)."""

from __future__ import annotations

import hashlib
import os
import random as _pyrandom
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile

import numpy as np

import accel
from accel.keras.symbolic import KerasTensor


def to_categorical(x, num_classes=None):
    """One-hot rows (float32) for integer class labels; the last axis of size 1 is replaced (Keras 3)."""
    y = np.asarray(x.numpy() if isinstance(x, accel.Tensor) else x)
    if y.dtype.kind == "f":
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("to_categorical: labels must be integers, got %s values" % y.dtype)
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise ValueError("to_categorical: labels must be integers, got dtype %s" % y.dtype)
    shape = y.shape
    if shape and shape[-1] == 1 and len(shape) > 1:
        shape = shape[:-1]
    y = y.reshape(-1)
    if y.size and y.min() < 0:
        raise ValueError("to_categorical: labels must be >= 0, got %d" % y.min())
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif y.size and y.max() >= num_classes:
        raise ValueError("to_categorical: label %d is out of range for num_classes=%d" % (y.max(), num_classes))
    out = np.zeros((y.size, int(num_classes)), np.float32)
    out[np.arange(y.size), y] = 1
    return out.reshape(shape + (int(num_classes),))


def set_random_seed(seed):
    """Seeds Python's `random`, NumPy's global generator and accel's random streams."""
    if not isinstance(seed, int):
        raise ValueError("set_random_seed: seed must be an int, got %r" % (seed,))
    _pyrandom.seed(seed)
    np.random.seed(seed)
    accel.random.set_seed(seed)


def _hash(path, algorithm):
    h = hashlib.sha256() if algorithm in ("sha256", "auto") else hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _algorithm(file_hash, hash_algorithm):
    if hash_algorithm == "auto":
        return "sha256" if len(file_hash) == 64 else "md5"
    if hash_algorithm not in ("sha256", "md5"):
        raise ValueError("get_file: hash_algorithm must be 'auto', 'sha256' or 'md5', got %r" % hash_algorithm)
    return hash_algorithm


def _inside(root, name):
    target = os.path.realpath(os.path.join(root, name))
    return target == os.path.realpath(root) or target.startswith(os.path.realpath(root) + os.sep)


def _extract(path, into):
    """Extracts a tar or zip archive, refusing members that would land outside `into`."""
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tf_:
            for m in tf_.getmembers():
                if not _inside(into, m.name) or m.issym() or m.islnk():
                    raise ValueError("get_file: archive %s has an unsafe member %r" % (path, m.name))
            tf_.extractall(into)
        return True
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not _inside(into, name):
                    raise ValueError("get_file: archive %s has an unsafe member %r" % (path, name))
            zf.extractall(into)
        return True
    return False


def get_file(fname=None, origin=None, untar=False, md5_hash=None, file_hash=None, cache_subdir="datasets",
             hash_algorithm="auto", extract=False, archive_format="auto", cache_dir=None, force_download=False):
    """Downloads `origin` into `<cache_dir>/<cache_subdir>/<fname>` (cache_dir defaults to ~/.keras) unless a
    file with the right hash is already there, and returns its path. The download goes to a temporary file
    in the same folder and is checked against `file_hash` before it replaces anything. `extract=True`
    unpacks a tar/zip archive next to it (members that would land outside the folder are refused)."""
    if origin is None:
        raise ValueError("get_file: origin (the URL) is required")
    if fname is None:
        fname = os.path.basename(urllib.parse.urlparse(origin).path)
        if not fname:
            raise ValueError("get_file: cannot take a file name from origin %r; pass fname=" % origin)
    if os.path.isabs(fname) or ".." in fname.replace("\\", "/").split("/"):
        raise ValueError("get_file: fname must be a plain file name inside the cache, got %r" % fname)
    cache_dir = os.path.expanduser(cache_dir or os.path.join("~", ".keras"))
    folder = os.path.join(cache_dir, cache_subdir)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, fname + (".tar.gz" if untar and not fname.endswith((".tar.gz", ".tgz")) else ""))
    file_hash = file_hash or md5_hash
    algorithm = _algorithm(file_hash, "md5" if md5_hash and not file_hash else hash_algorithm) if file_hash else None
    fresh = force_download or not os.path.exists(path) or (
        file_hash is not None and _hash(path, algorithm) != file_hash)
    if fresh:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(origin) as src:  # noqa: S310
                shutil.copyfileobj(src, out)
            if file_hash is not None and _hash(tmp, algorithm) != file_hash:
                raise ValueError("get_file: the file downloaded from %s has %s hash %s, expected %s (left the "
                                 "cache untouched)" % (origin, algorithm, _hash(tmp, algorithm), file_hash))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    if extract:  # Keras 3: into "<fname>_extracted", whose path is returned
        into = os.path.join(folder, fname + "_extracted")
        os.makedirs(into, exist_ok=True)
        if not _extract(path, into):
            raise ValueError("get_file: %s is not a tar or zip archive" % path)
        return into
    if untar:  # Keras 2's form: unpacked beside the archive, the path without ".tar.gz" returned
        if not _extract(path, folder):
            raise ValueError("get_file: %s is not a tar archive" % path)
        return path[: -len(".tar.gz")]
    return path


def _dot_quote(text):
    return '"%s"' % str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def model_to_dot(model, show_shapes=False, show_dtype=False, show_layer_names=True, rankdir="TB",
                 expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False, **kwargs):
    """The model's layer graph in Graphviz's DOT language, as text (Keras returns a pydot graph; accel writes
    the same graph without needing pydot). One box per layer (name and class, optionally output shape, dtype,
    activation, trainable) and one edge per connection."""
    if rankdir not in ("TB", "LR"):
        raise ValueError("model_to_dot: rankdir must be 'TB' or 'LR', got %r" % (rankdir,))
    if expand_nested:
        raise NotImplementedError("model_to_dot: expand_nested=True is not supported by accel; nested models "
                                  "are drawn as one box")
    if not getattr(model, "built", False):
        raise ValueError("model_to_dot: model %s is not built yet; call it on data (or give it an Input) first"
                         % getattr(model, "name", model))

    def label(layer):
        cls = type(layer).__name__
        parts = ["%s (%s)" % (layer.name, cls) if show_layer_names else cls]
        activation = getattr(layer, "activation", None)
        if show_layer_activations and activation is not None:
            parts.append("activation: %s" % getattr(activation, "__name__", activation))
        if show_dtype:
            parts.append("dtype: %s" % getattr(layer, "dtype", "?"))
        if show_shapes:
            nodes = [n for n in getattr(layer, "_inbound_nodes", []) if n.outputs]
            if nodes:  # a symbolic call: its KerasTensors' shapes
                shapes = [tuple(t.shape) for t in nodes[0].outputs if isinstance(t, KerasTensor)]
                shape = shapes[0] if len(shapes) == 1 else shapes
            else:
                shape = getattr(layer, "_last_output_shape", None)
                if isinstance(shape, tuple) and shape:
                    shape = (None,) + shape[1:]  # the batch of whatever call it saw last
            parts.append("output: %s" % (shape,))
        if show_trainable:
            parts.append("trainable: %s" % ("yes" if layer.trainable else "no"))
        return "\n".join(parts)

    lines = ["digraph %s {" % _dot_quote(model.name), "  graph [rankdir=%s, dpi=%d];" % (rankdir, int(dpi)),
             "  node [shape=box];"]
    graph = getattr(model, "_graph", None)
    if graph is not None:
        ops = list(graph.operations)
        ids = {id(op): "n%d" % i for i, op in enumerate(ops)}
        edges = []
        for op in ops:
            for node in getattr(op, "_inbound_nodes", []):
                if id(node) not in graph.node_ids or node.is_input:
                    continue
                for t in node.input_tensors:
                    parent = t._keras_history[0]
                    if id(parent) in ids:
                        edges.append((ids[id(parent)], ids[id(op)]))
    else:  # Sequential: a chain, after its input when it has one
        ops = list(getattr(model, "_input_layers", []) or []) + list(model.layers)
        ids = {id(op): "n%d" % i for i, op in enumerate(ops)}
        edges = [("n%d" % i, "n%d" % (i + 1)) for i in range(len(ops) - 1)]
    for op in ops:
        lines.append("  %s [label=%s];" % (ids[id(op)], _dot_quote(label(op))))
    for a, b in dict.fromkeys(edges):
        lines.append("  %s -> %s;" % (a, b))
    lines.append("}")
    return "\n".join(lines) + "\n"


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=True,
               rankdir="TB", expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False,
               **kwargs):
    """Draws the model's layer graph into `to_file`, as Keras: a `.dot` file is written directly (DOT text, no
    dependency); .png, .svg, .pdf, ... are rendered by Graphviz's `dot` program, which must be installed
    (e.g. `apt-get install graphviz`, or `conda install graphviz`): without it, a clear error says so."""
    text = model_to_dot(model, show_shapes=show_shapes, show_dtype=show_dtype, show_layer_names=show_layer_names,
                        rankdir=rankdir, expand_nested=expand_nested, dpi=dpi,
                        show_layer_activations=show_layer_activations, show_trainable=show_trainable)
    path = os.fspath(to_file)
    ext = os.path.splitext(path)[1][1:].lower()
    if not ext:
        raise ValueError("plot_model: to_file needs an extension (.png, .svg, .pdf or .dot), got %r" % path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if ext in ("dot", "gv"):
        with open(path, "w") as f:
            f.write(text)
        return None
    dot = shutil.which("dot")
    if dot is None:
        raise ImportError("plot_model: rendering %s needs Graphviz's `dot` program, which is not on PATH. Install "
                          "Graphviz (apt-get install graphviz, brew install graphviz or conda install graphviz), or "
                          "write the graph as text with to_file='model.dot' (no dependency)" % path)
    run = subprocess.run([dot, "-T" + ext, "-o", path], input=text.encode(), capture_output=True, timeout=120)
    if run.returncode != 0:
        raise ValueError("plot_model: Graphviz could not render %s: %s" % (path, run.stderr.decode()[-500:]))
    return None
