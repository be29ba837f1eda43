"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): the fused quantize-and-write kernel of a
decode step against `kvquant.quantize`: bit-identical codes, scales, zeros and ring entries, written at
each row's slot and nowhere else."""

import sys

import torch

from membudget.engine.kvquant import RESIDUAL, quantize
from membudget.engine.triton_kvwrite import quantize_write

torch.manual_seed(0)
for bits in (8, 4, 2):
    for d, capacity in ((128, 300), (64, 100)):
        rows, kv_heads = 3, 2
        shapes = [(d * bits // 8, torch.uint8), (d // 64, torch.float16), (d // 64, torch.float16)] * 2
        buffers = [torch.zeros(rows, kv_heads, capacity, w, dtype=t) for w, t in shapes]
        ring = min(capacity, RESIDUAL)
        buffers += [torch.zeros(rows, kv_heads, ring, d, dtype=torch.bfloat16) for _ in range(2)]
        qkv = (torch.randn(rows, 1, 3 * kv_heads, d) * 3).bfloat16()  # the layout a decode step has
        qkv[0, 0, 1, :64] = 0.5  # a constant group: scale 0, every code 0
        k = qkv[:, :, :kv_heads].transpose(1, 2)[:, :, 0]
        v = qkv[:, :, kv_heads : 2 * kv_heads].transpose(1, 2)[:, :, 0].contiguous()  # other strides
        slots = torch.tensor([5, capacity - 1, 130 % capacity])
        quantize_write(k, v, slots, tuple(buffers))
        for x, (codes, scale, zero), exact in ((k, buffers[0:3], buffers[6]), (v, buffers[3:6], buffers[7])):
            ref = quantize(x, bits)
            for r in range(rows):
                slot = int(slots[r])
                for got, want in zip((codes, scale, zero), ref, strict=True):
                    if not torch.equal(got[r, :, slot], want[r]):
                        sys.exit(f"bits={bits} d={d} row {r}: written values differ from kvquant.quantize")
                if not torch.equal(exact[r, :, slot % RESIDUAL], x[r]):
                    sys.exit(f"bits={bits} d={d} row {r}: ring entry differs")
                untouched = torch.ones(capacity, dtype=torch.bool)
                untouched[slot] = False
                if codes[r, :, untouched].any() or scale[r, :, untouched].any():
                    sys.exit(f"bits={bits} d={d} row {r}: wrote outside its slot")
        print(f"bits={bits} d={d} identical")
print("ok kvwrite")
