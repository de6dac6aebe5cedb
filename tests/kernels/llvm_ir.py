"""Reading numba's LLVM IR: is a compiled loop a pure float32 vector loop?"""

import re


def main_function_ir(dispatcher):
    """LLVM IR of the compiled function itself (not the CPython / cfunc wrappers)."""
    (ir,) = dispatcher.inspect_llvm().values()
    name = dispatcher.py_func.__name__
    for block in re.findall(r"^define [^\n]*\{\n.*?^\}", ir, re.M | re.S):
        head = block.split("\n", 1)[0]
        if name in head and "cpython" not in head and "cfunc." not in head:
            return block
    raise AssertionError("no function %s in the module IR" % name)


def vector_float32_problems(dispatcher):
    """Why the loop is not a pure float32 vector loop ([] when it is)."""
    body = main_function_ir(dispatcher)
    problems = []
    if not re.search(r"<(4|8|16) x float>", body):
        problems.append("no <N x float> vectors (not vectorized)")
    if re.search(r"\bdouble\b", body):
        problems.append("float64 arithmetic (`double`)")
    if "fpext" in body:
        problems.append("float32 -> float64 promotion (`fpext`)")
    return problems
