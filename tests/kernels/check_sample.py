"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): the two-kernel top-k draw
(engine/kernels/sample.py) vs engine/sampling.py's torch path, token for token."""

import sys

import torch

from membudget.engine.kernels.sample import CHUNK, MAX_K, sample_top_k
from membudget.engine.sampling import SamplingParams, row_seeds, sample

torch.manual_seed(0)
cases = [  # (vocabulary, params): a vocabulary over several chunks with a ragged last one
    (3 * CHUNK + 77, SamplingParams()),
    (3 * CHUNK + 77, SamplingParams(temperature=1.0, top_p=0.8, top_k=MAX_K, min_p=0.05)),
    (CHUNK - 5, SamplingParams(temperature=0.3, top_p=1.0, top_k=7)),
    (50, SamplingParams(temperature=2.0, top_k=64)),  # k above the vocabulary: all of it
]
for vocab, params in cases:
    rows = 16
    # peaked rows (a few likely tokens, as a model's logits) and flat ones (top-p keeps many)
    logits = torch.randn(rows, vocab) * torch.tensor([4.0, 0.5]).repeat(rows // 2)[:, None]
    logits[0, 5:8] = 30.0  # equal largest values
    logits[1] = -logits[1].abs()
    logits[1, :3] = 0.0  # the largest values zero, one of them -0.0 (equal to +0.0)
    logits[1, 1] = -0.0
    seeds = torch.tensor(row_seeds(3, rows))
    positions = torch.arange(100, 100 + rows)
    want = sample(logits, params, seeds, positions)
    got = sample_top_k(logits, seeds, positions, params.temperature, params.top_k, params.top_p, params.min_p)
    same = int((got == want).sum())
    print(f"V={vocab} {params}: {same}/{rows} tokens equal")
    if same != rows:
        sys.exit(f"tokens differ: {got.tolist()} vs {want.tolist()}")

# a row's token depends only on its own logits, seed and position: alone == in a batch, and rows
# given as a broadcast view (the engine's first token after a shared prefill) are read correctly
logits = torch.randn(6, 5000) * 3
seeds, positions = torch.tensor(row_seeds(1, 6)), torch.full((6,), 9)
batch = sample_top_k(logits, seeds, positions, 0.6, 20, 0.95, 0.0)
alone = torch.cat([sample_top_k(logits[i : i + 1], seeds[i : i + 1], positions[i : i + 1], 0.6, 20, 0.95, 0.0)
                   for i in range(6)])  # fmt: skip
shared = sample_top_k(logits[:1].expand(6, -1), seeds, positions, 0.6, 20, 0.95, 0.0)
if not torch.equal(batch, alone) or not torch.equal(
    shared, sample(logits[:1].expand(6, -1), SamplingParams(), seeds, positions)
):
    sys.exit("rows are not independent")

# equal largest logits across the top-k boundary: the lower token ids are kept, -0.0 equal to +0.0
ties = torch.full((64, 300), -5.0)
ties[:, :3] = 0.0
ties[:, 1] = -0.0
drawn = set(sample_top_k(ties, torch.tensor(row_seeds(5, 64)), torch.arange(64), 1.0, 2, 1.0, 0.0).tolist())
if drawn != {0, 1}:
    sys.exit(f"ties at the top-k boundary: drew {sorted(drawn)}, want tokens 0 and 1")

torch.library.opcheck(sample_top_k, (logits, seeds, positions, 0.6, 20, 0.95, 0.0))
print("ok sample")
