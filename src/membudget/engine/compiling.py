"""How the engine's forward is compiled on a GPU: torch.compile with Inductor.

The decode layer (engine/layer.py) compiles twice -- for the first layer and for the others -- per
batch size and cache layout; it, the step's prologue, final norm and sampling compile plainly
(engine/model.py, engine/step.py).

Not with max-autotune by default, though its matrix kernels timed a little faster at 2-4 rows in
older A/Bs: its first compile benchmarks candidate kernels on inputs of its own, memory the
accounting cannot know, and one mode for every batch size is simpler to reason about. A first
compile holds memory beyond the accounting even plainly, though: on an H100 a 4-row generation of
4-bit Qwen3-1.7B peaked 0.61 GB (37 %) over its accounting while compiling its shapes for the first
time on the machine, with either mode, and matched it where they had been compiled before
(bench/BASELINE.md; cause not found).
"""

from __future__ import annotations

import os

import torch


def compiled(fn):
    """torch.compile(fn) as MEMBUDGET_COMPILE says: "1" (plain compile, the default), "0" (eager:
    same results, many more kernel launches), or "autotune" (Inductor also times its own matrix
    kernels against cuBLAS for every shape; its first compile peaks above the memory accounting,
    see the module docstring).

    Inductor's kernels use programmatic dependent launch (Hopper and later; Inductor ignores it
    elsewhere): a kernel starts while its predecessor finishes and waits for its data on the device,
    which hides part of each launch's latency (a few per cent at batch 1)."""
    mode = os.environ.get("MEMBUDGET_COMPILE", "1")
    if mode == "0":
        return fn
    # two compiled copies per (batch size, cache layout: store kind, KV bits, policy state), shared
    # by all models of a process; a sweep over KV policies needs more than torch's default of 8
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 128)
    options = torch._inductor.list_mode_options(
        "max-autotune-no-cudagraphs" if mode == "autotune" else "default"
    )
    options = {**options, "triton.enable_pdl": True}
    return torch.compile(fn, fullgraph=True, dynamic=False, options=options)
