"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): the one-row 16-bit matrix product
(engine/kernels/gemv16.py) vs torch, called directly and from torch.compile'd code (a custom op)."""

import sys

import torch

from membudget.engine.kernels.gemv16 import gemv16, gemv16_partials

torch.manual_seed(0)
cases = [  # (outputs N, inputs K, dtype, launch): ragged N and K, one split, empty trailing splits
    (50, 300, torch.bfloat16, {"block_n": 16, "block_k": 64, "target_programs": 16}),
    (64, 256, torch.float16, {"block_n": 32, "block_k": 64, "target_programs": 2}),
    (17, 96, torch.bfloat16, {"block_n": 16, "block_k": 32, "target_programs": 100}),
    (40, 512, torch.float16, {"block_n": 8, "block_k": 64, "num_stages": 1}),
]
for n, k, dtype, launch in cases:
    w = (torch.randn(n, k) * 0.05).to(dtype)
    x = torch.randn(1, 1, k).to(dtype)
    ref = (x.double() @ w.double().T).float()
    y = gemv16(x, w, **launch)
    err = float((y.float() - ref).norm() / ref.norm())
    print(f"N={n} K={k} {dtype} {launch}: relative error {err:.2e}")
    if y.shape != (1, 1, n) or y.dtype != dtype or not err < 4e-3:  # the output is rounded to 16 bits
        sys.exit(f"mismatch: {err}")

# a range past K holds zeros: 3 splits of 2 blocks over 4 blocks of inputs
partial = gemv16_partials(torch.randn(128), torch.randn(8, 128), 3, 16, 32, 4, 1)
if partial.shape != (3, 8) or partial[2].abs().max() != 0:
    sys.exit(f"empty split not zero: {partial}")

# inside compiled code the launcher is an opaque op (its fake gives the shape) and computes the same
w = torch.randn(48, 160, dtype=torch.bfloat16) * 0.05
x = torch.randn(1, 160, dtype=torch.bfloat16)
compiled = torch.compile(lambda x, w: torch.relu(gemv16(x * 2, w, block_k=32)), fullgraph=True)
if not torch.equal(compiled(x, w), torch.relu(gemv16(x * 2, w, block_k=32))):
    sys.exit("compiled call differs from eager")
torch.library.opcheck(gemv16_partials, (x[0], w, 2, 16, 64, 4, 1))
print("ok gemv16")
