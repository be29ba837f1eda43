"""How the engine's forward is compiled on a GPU: torch.compile with Inductor, per batch regime.

The decode layer (engine/layer.py) compiles twice -- for the first layer and for the others -- per
batch size and cache layout; 2-4 rows take Inductor's autotuned matrix kernels, one row and many rows
a plain compile (AUTOTUNE_ROWS). The step's prologue, final norm and sampling compile plainly
(engine/model.py, engine/step.py).
"""

from __future__ import annotations

import os

import torch

# batch sizes whose decode layer is compiled with autotuning
AUTOTUNE_ROWS = range(2, 5)


def compiled(fn, default: str = "1"):
    """torch.compile(fn) as MEMBUDGET_COMPILE says (else `default`): "autotune" (Inductor also times its
    own matrix kernels against cuBLAS for every shape: measured faster at 2-4 rows, slower at 16;
    at one row, where our kernels do the products, only slower to compile and less repeatable),
    "1" (plain compile), or "0" (eager: same results, many more kernel launches).

    Inductor's kernels use programmatic dependent launch (Hopper and later; Inductor ignores it
    elsewhere): a kernel starts while its predecessor finishes and waits for its data on the device,
    which hides part of each launch's latency (a few per cent at batch 1)."""
    mode = os.environ.get("MEMBUDGET_COMPILE", default)
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
