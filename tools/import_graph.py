"""accel's import graph: the strongly connected components (import circles) of its modules, and
the assignments one module makes into another module's namespace.

    python tools/import_graph.py            # circles of module-level imports, then of all imports
    python tools/import_graph.py --edges    # also every function-level import inside accel

Edges come from the source (ast), not from running it: `import accel.x`, `from accel.x import y`
(to accel.x.y where that is a module, else accel.x) and `importlib.import_module("accel.x")`,
each marked module-level (runs at import) or function-level (runs when the function is called).
`if TYPE_CHECKING:` blocks never run and are skipped. Importing accel.x.y also runs the package
__init__ files above it; those implicit edges are left out, as import linters do, so the graph
shows which module needs which. tests/test_layering.py reads the same functions.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "accel")
NOQA = "noqa: PLC0415"


def module_files(root=ROOT):
    """{module name: path} for every .py file of the package at `root`."""
    base = os.path.dirname(root)
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith((".", "__pycache__")))
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(d, f), base)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join(rel)] = os.path.join(d, f)
    return out


def _resolve(name, modules):
    """The longest prefix of dotted `name` that is a module of ours (or a namespace package)."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in modules:
            return cand
        parts.pop()
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self, modname, path, modules, packages):
        self.mod = modname
        self.pkg = modname if path.endswith("__init__.py") else modname.rpartition(".")[0]
        self.modules = modules
        self.packages = packages
        self.depth = 0  # > 0 inside a function body
        self.edges = []  # (target, lineno, "module" | "function")

    def _add(self, target, node):
        if target is not None and target != self.mod:
            self.edges.append((target, node.lineno, "function" if self.depth else "module"))

    def _known(self, name):
        if name in self.modules:
            return name
        if name in self.packages:  # a namespace package (accel.ops): no code of its own
            return None
        return _resolve(name, self.modules)

    def visit_FunctionDef(self, node):
        for d in node.decorator_list:
            self.visit(d)
        self.depth += 1
        for stmt in node.body:
            self.visit(stmt)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_If(self, node):
        t = node.test
        if (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
                isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"):
            for stmt in node.orelse:
                self.visit(stmt)
            return
        self.generic_visit(node)

    def visit_Import(self, node):
        for a in node.names:
            if a.name == "accel" or a.name.startswith("accel."):
                self._add(self._known(a.name), node)

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.pkg.split(".")
            base = base[:len(base) - node.level + 1]
            src = ".".join(base + ([node.module] if node.module else []))
        else:
            src = node.module or ""
        if not (src == "accel" or src.startswith("accel.")):
            return
        for a in node.names:
            full = src + "." + a.name
            if full in self.modules:
                self._add(full, node)
            else:
                self._add(self._known(src), node)

    def visit_Call(self, node):
        f = node.func
        if (isinstance(f, ast.Attribute) and f.attr == "import_module" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            name = node.args[0].value
            if name.startswith("accel"):
                self._add(self._known(name), node)
        self.generic_visit(node)


def imports(root=ROOT):
    """{module: [(target module, line, "module" | "function")]} for the package at `root`."""
    modules = module_files(root)
    packages = {m.rpartition(".")[0] for m in modules} - set(modules)
    packages.discard("")
    out = {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        v = _Visitor(name, path, modules, packages)
        v.visit(tree)
        out[name] = v.edges
    return out


def graph(edges, kinds=("module", "function")):
    return {m: sorted({t for t, _, k in es if k in kinds}) for m, es in edges.items()}


def sccs(g):
    """Strongly connected components of directed graph g (Tarjan, iterative), largest first."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for start in sorted(g):
        if start in index:
            continue
        work = [(start, iter(g.get(start, ())))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(g.get(w, ()))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return sorted(out, key=lambda c: (-len(c), c))


def circles(g):
    """The SCCs with more than one module (the import circles)."""
    return [c for c in sccs(g) if len(c) > 1]


def noqa_count(root=ROOT):
    n = 0
    for path in module_files(root).values():
        with open(path, encoding="utf-8") as f:
            n += f.read().count(NOQA)
    return n


def _import_time_statements(body):
    """The statements that run when the module is imported: not those inside a function body."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(node, field, None)
            if isinstance(inner, list):
                yield from _import_time_statements(inner)


def _foreign_target(t, foreign, packages):
    """`name.attr` on a name imported from accel, or `accel.x.y.attr` through a plain `import accel.x.y`."""
    if not isinstance(t, ast.Attribute):
        return False
    if isinstance(t.value, ast.Name):
        return t.value.id in foreign
    v = t.value
    while isinstance(v, ast.Attribute):
        v = v.value
    return isinstance(v, ast.Name) and v.id in packages


def foreign_assignments(root=ROOT):
    """Statements that, at import, assign into another accel module's namespace: `mod.name = ...`,
    `mod.name += ...`, `del mod.name` or `setattr(mod, ...)` where `mod` is a name bound by an import
    from accel (a module, or a class such as Tensor). [(module, line, text)]."""
    found = []
    for name, path in module_files(root).items():
        with open(path, encoding="utf-8") as f:
            src = f.read()
        tree = ast.parse(src, path)
        foreign, packages = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("accel"):
                        foreign.add(a.asname or a.name.split(".")[0])
                        if not a.asname:
                            packages.add(a.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("accel")):
                foreign.update(a.asname or a.name for a in node.names)
        for node in _import_time_statements(tree.body):
            targets = []
            if isinstance(node, (ast.Assign, ast.Delete)):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                c = node.value
                if (isinstance(c.func, ast.Name) and c.func.id in ("setattr", "delattr") and c.args
                        and isinstance(c.args[0], ast.Name) and c.args[0].id in foreign):
                    found.append((name, node.lineno, ast.get_source_segment(src, node)))
                continue
            flat = []
            for t in targets:
                flat.extend(t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])
            if any(_foreign_target(t, foreign, packages) for t in flat):
                found.append((name, node.lineno, ast.get_source_segment(src, node).splitlines()[0]))
    return sorted(found)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--edges", action="store_true", help="list every function-level import inside accel")
    args = p.parse_args(argv)
    edges = imports()
    for title, kinds in (("module-level imports", ("module",)), ("all imports (module + function level)",
                                                                  ("module", "function"))):
        cs = circles(graph(edges, kinds))
        print("## circles of %s: %s" % (title, ", ".join(str(len(c)) for c in cs) or "none"))
        for c in cs:
            print("  %d: %s" % (len(c), " ".join(c)))
    fn = [(m, t, ln) for m, es in edges.items() for t, ln, k in es if k == "function"]
    print("## function-level imports of accel modules: %d" % len(fn))
    if args.edges:
        for m, t, ln in sorted(fn):
            print("  %s:%d -> %s" % (m, ln, t))
    print("## `# %s` in accel/: %d" % (NOQA, noqa_count()))
    fa = foreign_assignments()
    print("## assignments into another module's namespace: %d" % len(fa))
    for m, ln, text in fa:
        print("  %s:%d  %s" % (m, ln, text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
