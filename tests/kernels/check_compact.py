"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): in-place compaction vs torch's gather.

Prints one line per case and exits non-zero on the first mismatch.
"""

import sys

import torch

from membudget.engine.kernels.compact import compact_
from membudget.engine.kvquant import group_slots, slot_major

torch.manual_seed(0)
for rows, kv_heads, capacity, width, kept, dtype, subset in [
    (3, 2, 300, 128, 200, torch.bfloat16, None),  # kept slots overlap their sources
    (2, 4, 92, 64, 17, torch.uint8, [1]),  # one row of two; fewer kept than a block
    (4, 1, 257, 2, 130, torch.float16, [3, 0]),  # scale-like width 2; rows out of order
    (2, 2, 150, 24, 150, torch.float32, None),  # everything kept: unchanged
]:
    buf = (torch.rand(rows, kv_heads, capacity, width) * 200).to(dtype)
    row_ids = torch.arange(rows) if subset is None else torch.tensor(subset)
    index = torch.rand(len(row_ids), kv_heads, capacity).argsort(-1)[..., :kept].sort(-1).values
    want = buf.clone()
    gathered = want[row_ids].gather(2, index[..., None].expand(-1, -1, -1, width))
    want[row_ids, :, :kept] = gathered
    got = buf.clone()
    compact_(got, row_ids, index.contiguous(), block=16)
    same = torch.equal(got, want)
    if capacity % 4 == 0:  # the same slots of value codes grouped by 4 slots (engine/kvquant.py)
        grouped = group_slots(buf)
        compact_(grouped, row_ids, index.contiguous(), block=16)
        same = same and torch.equal(slot_major(grouped), want)
    print(f"rows={rows} heads={kv_heads} C={capacity} W={width} kept={kept} {dtype} rows={subset}: {same}")
    if not same:
        sys.exit("in-place compaction differs from the gather")
print("ok compact")
