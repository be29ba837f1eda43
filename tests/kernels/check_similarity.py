"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): R-KV's near-duplicate kernel vs torch."""

import sys

import torch
import torch.nn.functional as F

from membudget.engine.triton_similarity import newer_twins, newer_twins_reference

torch.manual_seed(0)
for b, n, d, threshold in [(3, 150, 32, 0.5), (2, 64, 64, 0.3), (1, 70, 16, 0.6)]:
    keys = torch.randn(b, n, d)
    keys[:, 40:50] = keys[:, 10:20] + 0.01 * torch.randn(b, 10, d)  # near-duplicates, newer copies
    unit = F.normalize(keys, dim=-1)
    ref = newer_twins_reference(unit, threshold, block_elements=1000)
    out = newer_twins(unit, threshold, block_i=16, block_j=32).bool()
    print(f"B={b} n={n} d={d} threshold={threshold}: {int(ref.sum())} keys with a newer twin")
    if not torch.equal(out, ref):
        sys.exit(f"mismatch at {torch.nonzero(out != ref)[:5].tolist()}")
    if threshold == 0.5 and not (ref[:, 10:20].all() and not ref[:, -1].any()):
        sys.exit("the planted near-duplicates were not found")
print("ok twins")
