"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): the one-row packed-fp16 weight-only kernel
(engine/kernels/gemv.py, its inline PTX replaced by the same pairing per element) vs torch."""

import sys

import torch

from membudget.engine.kernels.gemv import gemv, gemv_partials
from membudget.engine.wquant import dequantize, quantize

torch.manual_seed(0)
cases = [  # (outputs N, inputs K, dtype, splits, block_n): K = 4.5 groups, < 1 group, several groups
    (51, 576, torch.bfloat16, None, 16),  # 4-bit: an odd number of zeros (N * G = 255)
    (40, 200, torch.float16, 3, 16),
    (64, 512, torch.bfloat16, 2, 32),
    (33, 1024, torch.float16, 1, 16),
]
for bits in (8, 4):
    for n, k, dtype, splits, block_n in cases:
        w = quantize(torch.randn(n, k) * 0.05, bits)
        # inputs over many magnitudes (a chunk's largest sets its scale), some exactly zero
        x = (torch.randn(1, k) * torch.exp2(torch.randint(-12, 8, (1, k)).float())).to(dtype)
        x[0, ::7] = 0
        ref = (x.double() @ dequantize(w, torch.float64).T).float()
        y = gemv(x, w, block_n=block_n, splits=splits)
        err = float((y.float() - ref).norm() / ref.norm())
        print(f"bits={bits} N={n} K={k} {dtype} splits={splits}: relative error {err:.2e}")
        if y.shape != (1, n) or y.dtype != dtype or not err < 4e-3:  # the output is rounded to 16 bits
            sys.exit(f"mismatch: {err}")

# the launch is an opaque op under torch.compile: its fake agrees with it (shapes, dtypes, strides)
w = quantize(torch.randn(40, 256) * 0.05, 4)
x = torch.randn(1, 256, dtype=torch.bfloat16)
for splits, per_split in ((1, 2), (2, 1)):
    torch.library.opcheck(
        gemv_partials, (x, w.qweight, w.scales, w.zeros, 4, 256, splits, per_split, 16, 2, 1, 0)
    )
print("ok gemv")
