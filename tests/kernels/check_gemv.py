"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): skinny_linear against x @ w.T."""

import sys

import torch

from membudget.engine.triton_gemv import gemv_plan, skinny_linear

torch.manual_seed(0)
worst = 0.0
for m, n, k, bias in [(1, 64, 512, False), (3, 40, 300, True), (16, 96, 1000, False), (2, 33, 64, True)]:
    x = torch.randn(m, 1, k)
    w = torch.randn(n, k)
    b = torch.randn(n) if bias else None
    ref = torch.nn.functional.linear(x.double(), w.double(), None if b is None else b.double())
    out = skinny_linear(x, w, b)
    err = ((out.double() - ref).norm() / ref.norm()).item()
    worst = max(worst, err)
    print(f"m={m} n={n} k={k} bias={bias} plan={gemv_plan(n, k)} shape={tuple(out.shape)} rel_err={err:.2e}")
    if out.shape != ref.shape or not torch.isfinite(out).all() or err > 1e-5:
        sys.exit(f"mismatch: relative error {err:.2e}")
print(f"ok worst={worst:.2e}")
