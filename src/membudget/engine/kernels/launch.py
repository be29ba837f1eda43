"""How our Triton kernels are launched on a GPU: programmatic dependent launch (PDL).

With PDL (Hopper and later) a kernel starts while its predecessor in the stream still runs; on the
device it waits (`griddepcontrol.wait`) until the predecessor has finished and its writes are visible.
What no earlier kernel writes -- the weights -- can be loaded before that wait, so a matrix product
fetches its first weights while the kernel before it finishes, and the launch latency between the two
is hidden. Inductor's own kernels do the same (engine/compiling.py).

torch.compile launches a user's Triton kernel itself and drops `launch_pdl` (and `maxnreg`), so the
launchers that use PDL are torch custom ops: compiled code calls them as opaque functions, and what a
CUDA graph records is the launcher's own Triton launch with its options.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Our kernels use PDL where the GPU has it.
PDL = True


def use_pdl(device: torch.device) -> bool:
    """Whether kernels on `device` are launched with PDL (CUDA, compute capability 9.0 or later)."""
    return PDL and device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9


@triton.jit
def await_inputs(PDL: tl.constexpr):
    """Wait until the preceding kernel has finished and its writes are visible, then let the next
    kernel launch (it waits in turn). Every program calls it before it reads any activation or writes
    anything: a buffer it writes may be one the predecessor still reads."""
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()
