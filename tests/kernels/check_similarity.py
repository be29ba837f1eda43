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
# normalizing and summing in one read
from membudget.engine.triton_similarity import unit_keys, unit_keys_reference  # noqa: E402

keys = torch.randn(5, 150, 32)
keys[1, 7] = 0.0
for got, want in zip(unit_keys(keys, block_n=16), unit_keys_reference(keys), strict=True):
    if not torch.allclose(got, want, atol=1e-5):
        sys.exit("unit_keys differs from the reference")
print("ok twins")
