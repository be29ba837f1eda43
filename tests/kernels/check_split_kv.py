"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): the split-KV kernel against the reference.

Prints one line per case and exits non-zero on the first mismatch.
"""

import sys

import torch

from membudget.engine.attention import decode_attention_reference
from membudget.engine.triton_attention import split_kv_decode

CASES = [  # rows, heads, kv_heads, head_dim, capacity, chunk
    (1, 4, 2, 32, 80, 32),
    (3, 8, 2, 24, 130, 32),  # head_dim not a power of two; lengths not multiples of the block
    (2, 6, 6, 16, 64, 16),  # no grouping (MHA)
    (4, 4, 1, 16, 40, 16),  # short rows leave chunks empty: they must weigh nothing
]

torch.manual_seed(0)
worst = 0.0
for rows, heads, kv_heads, d, capacity, chunk in CASES:
    q = torch.randn(rows, heads, 1, d)
    k = torch.randn(rows, kv_heads, capacity, d)
    v = torch.randn(rows, kv_heads, capacity, d)
    lengths = torch.randint(1, capacity + 1, (rows,))
    lengths[0] = 1  # a single valid slot
    k[:, :, :] += 0  # fresh random data per case
    ref = decode_attention_reference(q.double(), k.double(), v.double(), lengths, d**-0.5)
    out = split_kv_decode(q, k, v, lengths, d**-0.5, chunk=chunk, block_n=16)
    err = ((out.double() - ref).norm() / ref.norm()).item()
    worst = max(worst, err)
    print(
        f"rows={rows} heads={heads}/{kv_heads} d={d} C={capacity} chunk={chunk} lengths={lengths.tolist()} "
        f"rel_err={err:.2e}"
    )
    if not torch.isfinite(out).all() or err > 1e-5:
        sys.exit(f"mismatch: relative error {err:.2e}")
# a row's result does not depend on the cache capacity or on the other rows of the batch
q = torch.randn(3, 8, 1, 32)
k, v = torch.randn(3, 2, 200, 32), torch.randn(3, 2, 200, 32)
lengths = torch.tensor([70, 150, 33])
full = split_kv_decode(q, k, v, lengths, 0.2, chunk=32, block_n=16)
short = split_kv_decode(q, k[:, :, :160], v[:, :, :160], lengths, 0.2, chunk=32, block_n=16)
alone = split_kv_decode(q[1:2], k[1:2], v[1:2], lengths[1:2], 0.2, chunk=32, block_n=16)
if not (torch.equal(full, short) and torch.equal(full[1:2], alone)):
    sys.exit("the result changed with the capacity or the batch")
print(f"ok worst={worst:.2e}")
