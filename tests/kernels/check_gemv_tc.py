"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): the one-row 4-bit tensor-core kernel
(engine/kernels/gemv_tc.py, each MMA replaced by the same pairs multiplied per lane and summed over the
quad) vs an fp64 dequantize-and-multiply."""

import sys

import torch

from membudget.engine.kernels.gemv_tc import gemv_tc, gemv_tc_partials, supports
from membudget.engine.wquant import dequantize, quantize

torch.manual_seed(0)
cases = [  # (outputs N, inputs K, dtype, splits, tiles): one program with rows past N; several groups
    (48, 256, torch.bfloat16, None, 4),  # 3 of 4 tiles
    (32, 384, torch.float16, 3, 1),
    (64, 512, torch.bfloat16, 2, 2),
    (16, 128, torch.float16, 1, 1),
]
for case, (n, k, dtype, splits, tiles) in enumerate(cases):
    w = quantize(torch.randn(n, k) * 0.05, 4)
    # inputs over many magnitudes, some exactly zero
    x = (torch.randn(1, k) * torch.exp2(torch.randint(-12, 8, (1, k)).float())).to(dtype)
    x[0, ::7] = 0
    ref = (x.double() @ dequantize(w, torch.float64).T).float()
    y = gemv_tc(x, w, tiles=tiles, splits=splits, at_once=(1, 2, 4)[case % 3])
    err = float((y.float() - ref).norm() / ref.norm())
    print(f"N={n} K={k} {dtype} splits={splits} tiles={tiles}: relative error {err:.2e}")
    if y.shape != (1, n) or y.dtype != dtype or not err < 4e-3:  # the output is rounded to 16 bits
        sys.exit(f"mismatch: {err}")

# what it does not take
w8 = quantize(torch.randn(32, 256), 8)
w_odd = quantize(torch.randn(40, 256), 4)
w_k = quantize(torch.randn(32, 200), 4)
x = torch.randn(1, 256, dtype=torch.bfloat16)
if (
    supports(x, w8)
    or supports(x, w_odd)
    or supports(torch.randn(1, 200), w_k)
    or supports(x.repeat(2, 1), w_odd)
):
    sys.exit("supports() accepted a product the kernel does not take")

# the launch is an opaque op under torch.compile: its fake agrees with it (shapes, dtypes, strides)
w = quantize(torch.randn(32, 256) * 0.05, 4)
for splits, per_split in ((1, 2), (2, 1)):
    torch.library.opcheck(gemv_tc_partials, (x, w.qweight, w.scales, w.zeros, 256, splits, per_split, 1, 2))
print("ok gemv_tc")
