"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): R-KV's newest-near-duplicate kernel vs
torch, at head sizes 64 and 128 and a few others, with planted near-duplicates."""

import sys

import torch
import torch.nn.functional as F

from membudget.engine.kernels.similarity import TwinsLaunch, last_twins
from membudget.engine.policies.rkv import last_twins_reference

torch.manual_seed(0)
for b, n, d, threshold in [(3, 150, 128, 0.5), (2, 100, 64, 0.5), (2, 64, 32, 0.3), (1, 70, 16, 0.6)]:
    keys = torch.randn(b, n, d)
    keys[:, 40:50] = keys[:, 10:20] + 0.01 * torch.randn(b, 10, d)  # near-duplicates, newer copies
    unit = F.normalize(keys, dim=-1)
    ref_index, ref_sim = last_twins_reference(unit, threshold, block_elements=1000)
    index, sim = last_twins(unit, threshold, TwinsLaunch(16, 32, 4))
    print(f"B={b} n={n} d={d} threshold={threshold}: {int((ref_index >= 0).sum())} keys with a twin")
    if not torch.equal(index, ref_index):
        sys.exit(f"index mismatch at {torch.nonzero(index != ref_index)[:5].tolist()}")
    if not torch.allclose(sim, ref_sim, atol=1e-5):
        sys.exit(f"similarity off by {(sim - ref_sim).abs().max().item():.2e}")
    if threshold == 0.5 and not (
        (ref_index[:, 10:20] == torch.arange(40, 50)).all()
        and (ref_index[:, 40:50] == torch.arange(10, 20)).all()
    ):
        sys.exit("the planted near-duplicates were not found")
print("ok twins")
