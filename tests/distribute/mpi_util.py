"""Launching `mpiexec -n 2` from tests: the venv's own MPICH (pip install mpich mpi4py), a hard timeout."""

import os
import pathlib
import subprocess
import sys
import time

import pytest

MPIEXEC = pathlib.Path(sys.executable).parent / "mpiexec"
ROOT = pathlib.Path(__file__).resolve().parents[2]


def need_mpi():
    pytest.importorskip("mpi4py", reason="pip install 'accel-autodiff[distribute]' (mpi4py, mpich)")
    if not MPIEXEC.exists():
        pytest.skip("no mpiexec beside %s (pip install mpich)" % sys.executable)


def mpirun(script, *args, n=2, flags=(), timeout=60):
    """Runs `mpiexec -n N python script args`; returns (CompletedProcess, seconds)."""
    need_mpi()
    env = dict(os.environ, OMP_NUM_THREADS="1", MPIEXEC_TIMEOUT=str(timeout), PYTHONPATH=str(ROOT))
    cmd = [str(MPIEXEC), *flags, "-n", str(n), sys.executable, str(script), *map(str, args)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout + 30, cwd=str(ROOT))
    return p, time.monotonic() - t0
