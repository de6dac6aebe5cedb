"""accel's layering: no import circle beyond the allowed ones, and no module that writes another module's
namespace at import (tools/import_graph.py reads the source; run it to see the whole graph)."""

import importlib.util
import os

import pytest

_TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "import_graph.py")
_spec = importlib.util.spec_from_file_location("import_graph", _TOOL)
import_graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(import_graph)

# The one circle the engine may have: the ops and the recorder below them meet through its hooks. Today
# the recorder imports no op, so even that one is absent.
ALLOWED = [{"accel.ops.core", "accel.recorder"}]
_EDGES = import_graph.imports()


def _within(circle, allowed):
    return any(set(circle) <= a for a in allowed)


@pytest.mark.parametrize("kinds", [("module",), ("module", "function")], ids=["module-level", "all-imports"])
def test_no_import_circle_beyond_the_allowed_ones(kinds):
    circles = import_graph.circles(import_graph.graph(_EDGES, kinds))
    bad = [c for c in circles if not _within(c, ALLOWED)]
    assert not bad, "import circles in accel/ (break them: move the function, pass the dependency):\n" + \
        "\n".join(" ".join(c) for c in bad)


def test_engine_modules_are_in_no_circle():
    """Below Keras, nothing is in a circle (the recorder/ops link included): the layers are
    sites < recorder < tensor < ops < variables < tape < debugging."""
    circles = import_graph.circles(import_graph.graph(_EDGES))
    engine = [c for c in circles if not c[0].startswith("accel.keras")]
    assert engine == [] or all(set(c) <= ALLOWED[0] for c in engine), engine


def test_keras_modules_are_in_no_circle():
    """accel.keras is layered too, function-level imports included: symbolic < configs < layers < serialization <
    functional < models; a layer or model reaches what is above it through its own methods, never an import."""
    circles = import_graph.circles(import_graph.graph(_EDGES))
    assert [c for c in circles if any(m.startswith("accel.keras") for m in c)] == []


def test_no_module_assigns_another_modules_namespace_at_import():
    bad = import_graph.foreign_assignments()
    assert not bad, "modules writing into another module at import (install through an API instead):\n" + \
        "\n".join("%s:%d %s" % f for f in bad)


@pytest.mark.parametrize("src,expect", [
    ("from accel import tape as _t\n_t._Variable = 1\n", True),
    ("import accel.ops.core\naccel.ops.core._state = 1\n", True),
    ("from accel.tensor import Tensor\nTensor.__add__ = len\n", True),
    ("from accel import core\nsetattr(core, 'x', 1)\n", True),
    ("from accel import core\ndef f():\n    core.x = 1\n", False),  # at call time, not at import
    ("from accel import core\nif True:\n    core.x += 1\n", True),
    ("import numpy as np\nnp.x = 1\n", False),
])
def test_the_assignment_check_sees_what_it_should(tmp_path, src, expect):
    pkg = tmp_path / "accel"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(src)
    found = import_graph.foreign_assignments(str(pkg))
    assert bool(found) == expect, found


def test_the_circle_check_sees_function_level_imports(tmp_path):
    pkg = tmp_path / "accel"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from accel import b\n")
    (pkg / "b.py").write_text("def f():\n    from accel.a import g  # noqa: PLC0415\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from accel import a\n")
    edges = import_graph.imports(str(pkg))
    assert import_graph.circles(import_graph.graph(edges, ("module",))) == []
    assert import_graph.circles(import_graph.graph(edges)) == [["accel.a", "accel.b"]]
    assert import_graph.noqa_count(str(pkg)) == 1
