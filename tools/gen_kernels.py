"""Writes the kernels generated from the ops' gradient rules (accel.ops.codegen):

    python tools/gen_kernels.py           # rewrites accel/ops/generated_loops.py and kernels/elementwise.cu
                                          # (elementwise backward loops and kernels; optimizer update loops)
    python tools/gen_kernels.py --check   # exit 1 when either file differs from what the rules give

Run it after changing an elementwise op's rule or declaring a new one with fused=fusion.Generated(), or
after changing an optimizer update declared with accel.optimizers.base.defupdate.
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import accel  # noqa: E402,F401  (declares every op)
from accel.ops import codegen  # noqa: E402
from accel.ops.core import REGISTRY  # noqa: E402
from accel.optimizers.base import UPDATES  # noqa: E402

def generated():
    kernels = codegen.backward_kernels(REGISTRY)
    return {
        ROOT / "accel" / "ops" / "generated_loops.py": codegen.render_numba(kernels, codegen.update_kernels(UPDATES)),
        ROOT / "kernels" / "elementwise.cu": codegen.render_cuda(kernels),
    }


def main(argv):
    stale = []
    for path, text in generated().items():
        if path.exists() and path.read_text() == text:
            continue
        if "--check" in argv:
            stale.append(path)
        else:
            path.write_text(text)
            print("wrote", path.relative_to(ROOT))
    if stale:
        print("stale (run python tools/gen_kernels.py):", ", ".join(str(p.relative_to(ROOT)) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
