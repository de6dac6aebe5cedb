"""The installed package (a wheel, not the source checkout) carries the CUDA sources it compiles."""

import glob
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), ROOT],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip("pip could not build a wheel here: %s" % proc.stderr[-500:])
    (path,) = glob.glob(str(out / "accel-*.whl"))
    return path


def test_wheel_ships_every_kernel_source(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "kernels", "*.cu*")))
    assert sources and all("accel/_kernels/" + s in names for s in sources)


def test_an_installed_accel_finds_and_inlines_its_kernels(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path)  # what pip would put in site-packages
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from accel import kernel_registry as k\n"
            "print(k.kernels_dir())\n"
            "print(all('#include \"' not in k.source(f) for f in k.FAMILIES))\n" % str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    where, inlined = proc.stdout.split()
    assert where == str(tmp_path / "accel" / "_kernels") and inlined == "True"
