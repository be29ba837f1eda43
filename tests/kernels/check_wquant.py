"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): the int8/int4 weight-only matmul vs torch."""

import sys

import torch

from membudget.engine.kernels.qlinear import qlinear
from membudget.engine.wquant import dequantize, quantize

torch.manual_seed(0)
cases = [  # (rows M, outputs N, inputs K, dtype, splits): K = 4.5 groups, < 1 group, several groups
    (1, 51, 576, torch.float32, None),  # 4-bit: an odd number of zeros (N * G = 255)
    (1, 40, 200, torch.float32, 3),
    (3, 50, 576, torch.float32, 2),
    (20, 70, 384, torch.float32, None),
    (1, 64, 512, torch.bfloat16, 2),
    (
        5,
        64,
        256,
        torch.float16,
        None,
    ),  # 4-bit: codes straight to fp16 for tl.dot (engine/kernels/ptx_codes.py)
]
# Two or more rows go through tl.dot, which Triton 3.6's interpreter gets wrong for bf16 inputs (it
# multiplies their bit patterns); that path is checked here in fp16 and fp32, and in bf16 on the GPU
# by bench/weights.py.
for bits in (8, 4):
    for m, n, k, dtype, splits in cases:
        w = quantize(torch.randn(n, k) * 0.05, bits)
        x = torch.randn(m, k).to(dtype)
        ref = (x.double() @ dequantize(w, torch.float64).T).float()
        # one 16-bit row: the packed kernel (engine/kernels/gemv.py) by default, and this module's
        for packed in (None, False) if m == 1 and dtype != torch.float32 else (None,):
            y = qlinear(x, w, block_n=16, splits=splits, packed=packed)
            out = y.float()
            err = float((out - ref).norm() / ref.norm())
            print(
                f"bits={bits} M={m} N={n} K={k} {dtype} splits={splits} packed={packed}: relative error {err:.2e}"
            )
            bound = 1e-6 if dtype == torch.float32 else 1e-2  # 16-bit: the output is rounded
            if y.shape != (m, n) or y.dtype != dtype or not err < bound:
                sys.exit(f"mismatch: {err} (bound {bound})")
print("ok qlinear")
