"""Layer A: every registry instantiation compiles with NVRTC (PyPI wheel, no GPU)
to CUBIN for each target arch, and ptxas' resource report stays within budget.

Proves the source and the engine's own options compile with the NVRTC that CuPy
loads, for these archs and dtypes; not that the kernels are right or run.
"""

import concurrent.futures as cf

import pytest

from accel import kernel_registry as reg

nvrtc = pytest.importorskip("nvrtc_ctypes", reason="tests/kernels/nvrtc_ctypes.py not importable")

LIB = nvrtc.find_libnvrtc()
INC = nvrtc.find_cuda_include()
pytestmark = pytest.mark.skipif(
    LIB is None or INC is None,
    reason="NVRTC or CUDA headers missing: "
    "pip install 'nvidia-cuda-nvrtc==13.5.*' 'nvidia-cuda-runtime==13.5.*'",
)

ARCHS = ("75", "80", "86", "90", "100", "120")  # CUDA 13 NVRTC: Turing .. Blackwell


def compile_family(family, arch, extra=(), source=None, names=None):
    opts = ["-arch=sm_%s" % arch, "-I" + INC, "-Xptxas=-v", *reg.options(family), *extra]
    return nvrtc.NVRTC(LIB).compile(
        source or reg.source(family), opts, names or reg.name_expressions(family), family + ".cu"
    )


def violations(family, result, budget=None):
    """Budget breaches in a compile result: ['name: why', ...]."""
    usage = nvrtc.parse_ptxas(result.log)
    bad = []
    for k in reg.FAMILIES[family].kernels:
        max_regs, max_smem = budget or (k.max_regs, k.max_smem)
        for ts in k.instantiations():
            ne = k.name_expr(*ts)
            u = usage.get(result.lowered.get(ne))
            if u is None:
                bad.append("%s: no ptxas report for %r" % (ne, result.lowered.get(ne)))
                continue
            if u["spill_stores"] or u["spill_loads"]:
                bad.append("%s: spills %d/%d bytes" % (ne, u["spill_stores"], u["spill_loads"]))
            if u["regs"] > max_regs:
                bad.append("%s: %d registers > budget %d" % (ne, u["regs"], max_regs))
            if u["smem"] > min(max_smem, reg.STATIC_SMEM_LIMIT):
                bad.append("%s: %d bytes static smem > budget %d" % (ne, u["smem"], max_smem))
    return bad


@pytest.fixture(scope="module")
def compiled():
    """{(family, arch): Result or the exception}, compiled two at a time (ctypes drops the GIL)."""
    jobs = [(f, a) for a in ARCHS for f in reg.FAMILIES]

    def run(job):
        try:
            return job, compile_family(*job)
        except nvrtc.CompileError as e:
            return job, e

    with cf.ThreadPoolExecutor(2) as pool:
        return dict(pool.map(run, jobs))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("family", list(reg.FAMILIES))
def test_family_compiles_within_budget(compiled, family, arch):
    res = compiled[(family, arch)]
    if isinstance(res, Exception):
        pytest.fail("kernels/%s.cu does not compile for sm_%s:\n%s" % (family, arch, res))
    names = reg.name_expressions(family)
    assert set(res.lowered) == set(names)
    assert all(res.lowered[n].startswith("_Z") for n in names), res.lowered
    assert violations(family, res) == []


def test_source_is_self_contained():
    for fam in reg.FAMILIES:
        src = reg.source(fam)
        assert '#include "' not in src, fam
        assert "block_reduce" in src or fam in ("elementwise", "optimizers", "accumulate")


# ---- negative controls: each check must be able to fail ----


def test_broken_source_fails():
    src = reg.source("elementwise") + "\n__global__ void broken(float* y) { y[0] = not_a_function(1.f); }\n"
    with pytest.raises(nvrtc.CompileError, match="not_a_function"):
        compile_family("elementwise", "80", source=src)


def test_unknown_instantiation_fails():
    with pytest.raises(nvrtc.CompileError):
        compile_family("elementwise", "80", names=["relu_bwd<signed char>"])


def test_tight_maxrregcount_is_caught_as_spills():
    res = compile_family("optimizers", "90", extra=("--maxrregcount=16",))
    bad = violations("optimizers", res)
    assert any("spills" in b for b in bad), bad


def test_register_budget_is_enforced():
    res = compile_family("accumulate", "80")
    bad = violations("accumulate", res, budget=(8, 0))
    assert any("registers > budget 8" in b for b in bad), bad
