"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): the split-KV kernel against the reference.

Prints one line per case and exits non-zero on the first mismatch.
"""

import sys

import torch

from membudget.engine.attention import decode_attention_reference
from membudget.engine.kernels.attention import dense_attention, split_kv_decode

CASES = [  # rows, heads, kv_heads, head_dim, capacity, splits
    (1, 4, 2, 32, 80, None),
    (3, 8, 2, 24, 130, 4),  # head_dim not a power of two; lengths not multiples of the block
    (2, 6, 6, 16, 64, 3),  # no grouping (MHA)
    (4, 4, 1, 16, 40, 8),  # more splits than blocks: empty splits must weigh nothing
]


def check_merged(out, fn, *args, **kwargs):
    """The splits merged inside the partial kernel by its last program (tickets) == the merge kernel;
    the tickets are left zero for the next call, which gives the same result again."""
    tickets = torch.zeros(64, dtype=torch.int32)
    for _ in range(2):
        if not torch.equal(fn(*args, **kwargs, tickets=tickets), out):
            sys.exit("the in-kernel merge differs from the merge kernel")
        if tickets.any():
            sys.exit(f"tickets left non-zero: {tickets.tolist()}")


torch.manual_seed(0)
worst = 0.0
for rows, heads, kv_heads, d, capacity, splits in CASES:
    q = torch.randn(rows, heads, 1, d)
    k = torch.randn(rows, kv_heads, capacity, d)
    v = torch.randn(rows, kv_heads, capacity, d)
    lengths = torch.randint(1, capacity + 1, (rows,))
    lengths[0] = 1  # a single valid slot
    k[:, :, :] += 0  # fresh random data per case
    ref = decode_attention_reference(q.double(), k.double(), v.double(), lengths, d**-0.5)
    out = split_kv_decode(q, k, v, lengths, d**-0.5, splits=splits, block_n=16)
    check_merged(out, split_kv_decode, q, k, v, lengths, d**-0.5, splits=splits, block_n=16)
    err = ((out.double() - ref).norm() / ref.norm()).item()
    worst = max(worst, err)
    print(
        f"rows={rows} heads={heads}/{kv_heads} d={d} C={capacity} splits={splits} lengths={lengths.tolist()} "
        f"rel_err={err:.2e}"
    )
    if not torch.isfinite(out).all() or err > 1e-5:
        sys.exit(f"mismatch: relative error {err:.2e}")
# a row's result does not depend on the cache capacity (budget checkpoints == separate runs)
q = torch.randn(3, 8, 1, 32)
k, v = torch.randn(3, 2, 600, 32), torch.randn(3, 2, 600, 32)
lengths = torch.tensor([70, 150, 33])
full = split_kv_decode(q, k, v, lengths, 0.2, block_n=16)
short = split_kv_decode(q, k[:, :, :160], v[:, :, :160], lengths, 0.2, block_n=16)
if not torch.equal(full, short):
    sys.exit("the result changed with the cache capacity")
# the two kernels are one opaque op under torch.compile: its fake agrees with it; q as the engine
# passes it (a transposed view)
q = torch.randn(3, 1, 8, 32).transpose(1, 2)
torch.library.opcheck(dense_attention, (q, k, v, lengths, 0.2, 4, 16, 4))
print(f"ok worst={worst:.2e}")

# the quantized cache: codes, scales, zeros and the exact ring of the newest 128 slots
from membudget.engine.kernels.quant_attention import split_kv_decode_quant  # noqa: E402
from membudget.engine.kvquant import (  # noqa: E402
    RESIDUAL,
    group_slots,
    quant_decode_attention_reference,
    quantize,
)

# fp32 queries: the dequantizing kernel (exact to 1e-5); fp16 queries at 8/4 bits: the scale-after-dot
# kernel (engine/kernels/quant_attention.py; its fp16 query and p * scale give ~1e-3, bounded at 2e-3).
# The interpreter cannot check bf16 tensor-core products (it multiplies their bit patterns).
for bits, rows, heads, kv_heads, d, capacity, splits, dtype in [
    (8, 2, 4, 2, 64, 300, None, torch.float32),
    (4, 3, 8, 2, 128, 200, 3, torch.float32),
    (2, 1, 2, 1, 64, 90, 2, torch.float32),  # capacity under the ring size
    (2, 2, 4, 1, 64, 260, None, torch.float32),
    (8, 2, 8, 2, 128, 300, 3, torch.float16),
    (8, 3, 6, 2, 64, 200, None, torch.float16),  # one group, 3 heads per KV head
    (4, 2, 16, 2, 128, 300, 2, torch.float16),  # 8 heads per KV head: the stacked tile is full
    (4, 1, 2, 1, 64, 90, 4, torch.float16),  # capacity under the ring size
]:
    k, v = torch.randn(rows, kv_heads, capacity, d) * 2, torch.randn(rows, kv_heads, capacity, d)
    k[..., 5] *= 8  # an outlier channel, as real keys have
    ring = min(capacity, RESIDUAL)
    store = []
    for x in (k, v):
        store += list(quantize(x, bits))
    rings = [torch.zeros(rows, kv_heads, ring, d, dtype=dtype) for _ in range(2)]
    lengths = torch.randint(1, capacity + 1, (rows,))
    lengths[0] = capacity
    for r in range(rows):
        for s in range(max(0, int(lengths[r]) - RESIDUAL), int(lengths[r])):
            rings[0][r, :, s % RESIDUAL], rings[1][r, :, s % RESIDUAL] = k[r, :, s], v[r, :, s]
    quant = (store[0], store[1], store[2], store[3], store[4], store[5], rings[0], rings[1], bits)
    q = torch.randn(rows, heads, 1, d).to(dtype)
    ref = quant_decode_attention_reference(q.double(), quant, lengths, d**-0.5, chunk=64)
    fast = dtype != torch.float32
    out = split_kv_decode_quant(q, quant, lengths, d**-0.5, splits=splits, block_n=16, fast=fast)
    check_merged(out, split_kv_decode_quant, q, quant, lengths, d**-0.5, splits=splits, block_n=16, fast=fast)
    err = ((out.double() - ref).norm() / ref.norm()).item()
    print(
        f"quant bits={bits} rows={rows} heads={heads}/{kv_heads} d={d} C={capacity} fast={fast} rel_err={err:.2e}"
    )
    if not torch.isfinite(out).all() or err > (2e-3 if fast else 1e-5):
        sys.exit(f"quantized mismatch: relative error {err:.2e}")
    if fast and bits == 4 and capacity % 4 == 0:  # value codes grouped by 4 slots: the same result
        grouped = (*quant[:3], group_slots(quant[3]), *quant[4:])
        same = split_kv_decode_quant(q, grouped, lengths, d**-0.5, splits=splits, block_n=16, fast=fast)
        print(f"  grouped value codes: {'identical' if torch.equal(same, out) else 'DIFFERENT'}")
        if not torch.equal(same, out):
            sys.exit("grouped value codes give another result")
    exact = decode_attention_reference(q.double(), k.double(), v.double(), lengths, d**-0.5)
    drift = ((out.double() - exact).norm() / exact.norm()).item()
    print(f"  vs the unquantized cache: {drift:.2e}")
print("ok quantized")
