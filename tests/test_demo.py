"""`python -m accel.demo`: a short run end to end in a subprocess."""

import os
import subprocess
import sys

import pytest

from accel import backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_demo(*args):
    return subprocess.run([sys.executable, "-m", "accel.demo", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_short_demo_run_trains_checks_the_checkpoint_and_plots(tmp_path):
    proc = run_demo("--epochs", "2", "--min-accuracy", "0", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # not a terminal: one summary line per epoch instead of a progress bar
    assert "Epoch 1/2 - " in out and "Epoch 2/2 - " in out
    assert "TEST accuracy: " in out and "(identical)" in out
    with open(tmp_path / "training.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "digits.weights.npz").stat().st_size > 0


def test_min_accuracy_failure_exits_non_zero(tmp_path):
    proc = run_demo("--epochs", "1", "--min-accuracy", "1.01", "--out", str(tmp_path))
    assert proc.returncode == 1
    assert "below --min-accuracy" in proc.stderr


@pytest.mark.skipif(backend.has_gpu(), reason="a GPU is present")
def test_gpu_request_without_a_gpu_fails_clearly(tmp_path):
    proc = run_demo("--device", "gpu", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "--device gpu needs a CUDA GPU" in proc.stderr
    assert not os.listdir(tmp_path)
