"""bench.bench_gemm without a GPU: the GEMM list is the MLP step's, and the script refuses cleanly."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` lives at the repository root

from accel import backend  # noqa: E402
from bench.bench_gemm import main, step_gemms  # noqa: E402


def test_step_gemms_are_the_mlp_steps_matmuls():
    layers, batch = (6, 5, 4, 3), 2
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((a, b)) for a, b in zip(layers[:-1], layers[1:], strict=True)]
    x = rng.standard_normal((batch, layers[0]))
    shapes, hs = [], [x]
    for w in ws:  # the step's own products, with their operand shapes
        shapes.append((hs[-1].shape[0], hs[-1].shape[1], w.shape[1]))
        hs.append(hs[-1] @ w)
    dy = rng.standard_normal(hs[-1].shape)
    for i in reversed(range(len(ws))):
        shapes.append((hs[i].shape[1], batch, dy.shape[1]))  # dW = h^T @ dy
        if i:
            shapes.append((batch, dy.shape[1], ws[i].shape[0]))  # dx = dy @ W^T
            dy = dy @ ws[i].T
    assert [s for _, s, _, _ in step_gemms(batch, layers)] == shapes


@pytest.mark.skipif(backend.has_gpu(), reason="checks the refusal without a GPU")
def test_refuses_without_a_gpu():
    with pytest.raises(SystemExit, match="needs a CUDA device"):
        main([])
