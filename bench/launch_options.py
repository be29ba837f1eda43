"""Which Triton launch options reach our kernels when torch.compile calls them (the engine's decode
step is compiled): a register cap (`maxnreg`) on the one-row weight kernel, eager and compiled, read
back as the compiled kernels' register counts; and a user kernel launched with programmatic dependent
launch inside a compiled function with Inductor's PDL on.

Run on the device:  PYTHONPATH=src python3 bench/launch_options.py [--out DIR]
"""

import argparse
import gc
import json
import os

import torch
import triton
import triton.language as tl
from torch._inductor.runtime.triton_heuristics import CachingAutotuner

from membudget.engine.kernels.gemv import _gemv_kernel
from membudget.engine.wquant import quantize


@triton.jit
def _double(x, y, n, BLOCK: tl.constexpr):
    tl.extra.cuda.gdc_wait()
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y + offs, tl.load(x + offs, mask=offs < n) * 2, mask=offs < n)


def double_pdl(x: torch.Tensor) -> torch.Tensor:
    y = torch.empty_like(x)
    _double[(triton.cdiv(x.numel(), 256),)](x, y, x.numel(), BLOCK=256, launch_pdl=True)
    return y


def gemv_capped(x: torch.Tensor, w, cap: int) -> torch.Tensor:
    """One 4096 x 4096 4-bit row product in 8 splits, launched with a register cap."""
    n, k = w.shape
    y = torch.empty(n, dtype=x.dtype, device=x.device)
    partial = torch.empty(8, n, dtype=torch.float32, device=x.device)
    _gemv_kernel[(n // 64, 8)](
        x, w.qweight, w.scales, w.zeros, y, partial, n, k, k // 8, k // 128, k // 128 // 8, 8,
        partial.stride(0), BITS=4, BLOCK_N=64, BF16=True, ASM=True, STAGES=1, num_warps=2, maxnreg=cap,
    )  # fmt: skip
    return partial.sum(0)


def compiled_registers(name: str) -> list[tuple[int, str]]:
    """(registers, config) of every kernel called `name` that Inductor compiled in this process."""
    found = []
    for obj in gc.get_objects():
        try:
            if isinstance(obj, CachingAutotuner) and obj.fn.__name__ == name:
                found += [(launcher.n_regs, str(launcher.config)) for launcher in obj.launchers]
        except ReferenceError:
            pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    w = quantize(torch.randn(4096, 4096, device="cuda") * 0.02, 4)
    x = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)
    gemv_capped(x, w, 64)
    eager = []
    for cache in _gemv_kernel.device_caches.values():
        for kernel in cache[0].values():
            kernel._init_handles()
            eager.append((kernel.n_regs, kernel.metadata.maxnreg))
    torch.compile(gemv_capped, fullgraph=True)(x, w, 64)
    found = {
        "eager_registers_and_cap": eager,
        "compiled_registers_and_config": compiled_registers("_gemv_kernel"),
    }
    xs = torch.randn(4096, device="cuda")
    f = torch.compile(lambda t: double_pdl(t + 1) - 1, fullgraph=True, options={"triton.enable_pdl": True})
    found["pdl_user_kernel_correct"] = bool(torch.allclose(f(xs), (xs + 1) * 2 - 1))
    print(json.dumps(found, indent=1))
    with open(os.path.join(args.out, "launch_options.json"), "w") as fh:
        json.dump(found, fh, indent=1)


if __name__ == "__main__":
    main()
