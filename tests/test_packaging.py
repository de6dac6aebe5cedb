"""The installable package: the sdist and the wheel carry the CUDA sources, a wheel installed into a fresh
virtual environment imports with NumPy alone and compiles every kernel family with NVRTC from its
installed copy, and the distribution name, the README's install lines and `make demo` agree with
pyproject.toml."""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL_SOURCES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "kernels", "*.cu*")))


def _pyproject():
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _dist_stem():
    return re.sub(r"[-_.]+", "_", _pyproject()["project"]["name"]).lower()


def _run(cmd, what, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, "%s failed:\n%s" % (what, (proc.stdout + proc.stderr)[-3000:])
    return proc


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """{"sdist": path, "wheel": path}: the sdist built from a copy of the working tree (so no build
    files land in the checkout), then the wheel built from the unpacked sdist, as `python -m build`
    does; offline (setuptools from this environment, no build isolation)."""
    pytest.importorskip("setuptools", minversion="77", reason="building needs setuptools>=77 (the test extra)")
    tmp = tmp_path_factory.mktemp("dist")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    junk = shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.so")
    shutil.copytree(os.path.join(ROOT, "kernels"), src / "kernels", ignore=junk)
    shutil.copytree(os.path.join(ROOT, "accel"), src / "accel", symlinks=True, ignore=junk)
    _run([sys.executable, "-c", "from setuptools import build_meta as b; b.build_sdist(%r)" % str(tmp)],
         "building the sdist", cwd=str(src))
    (sdist,) = glob.glob(str(tmp / "*.tar.gz"))
    with tarfile.open(sdist) as t:
        t.extractall(tmp / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (unpacked,) = glob.glob(str(tmp / "unpacked" / "*"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation",
          "-w", str(tmp), unpacked], "building the wheel from the sdist")
    (wheel,) = glob.glob(str(tmp / "*.whl"))
    return {"sdist": sdist, "wheel": wheel}


def test_wheel_and_sdist_are_named_after_the_distribution(dists):
    stem = _dist_stem()
    assert os.path.basename(dists["wheel"]).startswith(stem + "-") and dists["wheel"].endswith("-py3-none-any.whl")
    assert os.path.basename(dists["sdist"]).startswith(stem + "-")


@pytest.mark.parametrize("kind", ["sdist", "wheel"])
def test_the_archive_ships_every_kernel_source(dists, kind):
    path = dists[kind]
    if kind == "wheel":
        names = set(zipfile.ZipFile(path).namelist())
    else:
        with tarfile.open(path) as t:
            names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert KERNEL_SOURCES and [s for s in KERNEL_SOURCES if "accel/_kernels/" + s not in names] == []
    assert "accel/__init__.py" in names and "accel/kernel_registry.py" in names


# Runs with the fresh environment's interpreter: every kernel family of the INSTALLED accel, its source
# read from the installed accel/_kernels, compiled with NVRTC for the oldest and newest target arch.
_COMPILE_INSTALLED = r"""
import json, sys
sys.path.insert(0, sys.argv[1])  # tests/kernels, for the ctypes NVRTC binding (no accel in it)
import numpy
import accel
from accel import kernel_registry as reg
import nvrtc_ctypes
lib, inc = sys.argv[2], sys.argv[3]
out = {"accel": accel.__file__, "kernels_dir": str(reg.kernels_dir()), "numpy": numpy.__file__, "families": {},
       "inlined": all('#include "' not in reg.source(f) for f in reg.FAMILIES)}
for family in reg.FAMILIES:
    for arch in ("75", "120"):
        opts = ["-arch=sm_" + arch, "-I" + inc, *reg.options(family)]
        names = reg.name_expressions(family)
        r = nvrtc_ctypes.NVRTC(lib).compile(reg.source(family), opts, names, family + ".cu")
        out["families"]["%s/sm_%s" % (family, arch)] = [len(names), len(r.lowered), len(r.cubin)]
print(json.dumps(out))
"""


def test_an_installed_wheel_compiles_every_kernel_family_with_nvrtc(dists, tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "tests", "kernels"))
    try:
        import nvrtc_ctypes
    finally:
        sys.path.pop(0)
    lib, inc = nvrtc_ctypes.find_libnvrtc(), nvrtc_ctypes.find_cuda_include()
    if lib is None or inc is None:
        pytest.skip("NVRTC or CUDA headers missing: pip install 'nvidia-cuda-nvrtc==13.5.*' "
                    "'nvidia-cuda-runtime==13.5.*'")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "creating the venv")
    py = str(venv / "bin" / "python")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index", dists["wheel"]],
         "installing the wheel")
    site = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "site-packages").stdout.strip()
    # NumPy, the one dependency, from this environment: a folder holding links to it alone, so that
    # neither the checkout nor this environment's editable accel can be imported by mistake
    import numpy

    deps = tmp_path / "deps"
    deps.mkdir()
    np_dir = os.path.dirname(numpy.__file__)
    for name in ("numpy", "numpy.libs"):
        if os.path.isdir(os.path.join(os.path.dirname(np_dir), name)):
            os.symlink(os.path.join(os.path.dirname(np_dir), name), deps / name)
    with open(os.path.join(site, "_numpy_from_test_env.pth"), "w") as f:
        f.write(str(deps) + "\n")
    proc = _run([py, "-I", "-c", _COMPILE_INSTALLED, os.path.join(ROOT, "tests", "kernels"), lib, inc],
                "compiling from the installed copy", cwd=str(tmp_path))
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["accel"] == os.path.join(site, "accel", "__init__.py")
    assert got["kernels_dir"] == os.path.join(site, "accel", "_kernels") and got["inlined"]
    from accel import kernel_registry as reg

    assert sorted(got["families"]) == sorted("%s/sm_%s" % (f, a) for f in reg.FAMILIES for a in ("75", "120"))
    for key, (names, lowered, cubin) in got["families"].items():
        assert names > 0 and lowered == names and cubin > 0, (key, names, lowered, cubin)


def _extras_closure(extras, table, name):
    """The requirements an install of `name[extras]` pulls from pyproject (extras may name the project)."""
    reqs, todo, seen = [], list(extras), set()
    while todo:
        e = todo.pop()
        if e in seen:
            continue
        seen.add(e)
        assert e in table, "extra %r is not in pyproject.toml" % e
        for r in table[e]:
            m = re.match(r"([A-Za-z0-9_.-]+)\[([^\]]+)\]", r)
            if m and re.sub(r"[-_.]+", "-", m.group(1)).lower() == re.sub(r"[-_.]+", "-", name).lower():
                todo.extend(x.strip() for x in m.group(2).split(","))
            else:
                reqs.append(r)
    return reqs


def test_make_demo_installs_no_cupy():
    """`make demo` on a CPU machine must not download CuPy or CUDA wheels."""
    project = _pyproject()["project"]
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    stamp = re.search(r"^demo:\s*\$\((\w+)\)", makefile, re.M).group(1)
    recipe = re.search(r"^\$\(%s\):.*\n((?:\t.*\n)+)" % stamp, makefile, re.M).group(1)
    installs = re.findall(r'pip install[^\n]*?-e "?\.\[([^\]"]*)\]', recipe)
    assert installs, recipe
    reqs = project["dependencies"] + _extras_closure(
        [e.strip() for i in installs for e in i.split(",")], project["optional-dependencies"], project["name"])
    assert reqs and not [r for r in reqs if re.match(r"(cupy|nvidia-)", r, re.I)], reqs


def test_install_lines_name_this_distribution():
    """Every `NAME[extras]` the README or an error message of accel installs names this project or the
    checkout (not PyPI's unrelated `accel`) and extras it has."""
    project = _pyproject()["project"]
    files = [os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "accel", "**", "*.py"), recursive=True)
    found = {}
    for path in files:
        for name, extras in re.findall(r"(?<![\w.-])(accel[\w-]*|\.)\[([\w,]+)\]", open(path).read()):
            found.setdefault(os.path.relpath(path, ROOT), []).append((name, extras))
    assert "README.md" in found, "the README has no install line"
    for path, lines in found.items():
        for name, extras in lines:
            assert name in (project["name"], "."), "%s installs %r, not %r" % (path, name, project["name"])
            for e in extras.split(","):
                assert e.strip() in project["optional-dependencies"], "%s installs extra %r" % (path, e)
