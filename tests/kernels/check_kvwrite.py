"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): writing a decode step's new token into a
quantized cache -- by `quantize_write`, and inside both quantized attention kernels (`new=`) -- against
`kvquant.quantize`: bit-identical codes, scales and zeros at each row's slot and nowhere else, and the
attention output unchanged by the write."""

import sys

import torch

from membudget.engine.kvquant import RESIDUAL, quantize
from membudget.engine.triton_attention import split_kv_decode_quant
from membudget.engine.triton_kvwrite import quantize_write


def check(buffers, k, v, slots, bits, d, label):
    for x, (codes, scale, zero) in ((k, buffers[0:3]), (v, buffers[3:6])):
        ref = quantize(x, bits)
        for r in range(k.shape[0]):
            slot = int(slots[r])
            for got, want in zip((codes, scale, zero), ref, strict=True):
                if not torch.equal(got[r, :, slot], want[r]):
                    sys.exit(
                        f"{label} bits={bits} d={d} row {r}: written values differ from kvquant.quantize"
                    )
            untouched = torch.ones(codes.shape[2], dtype=torch.bool)
            untouched[slot] = False
            if codes[r, :, untouched].any() or scale[r, :, untouched].any() or zero[r, :, untouched].any():
                sys.exit(f"{label} bits={bits} d={d} row {r}: wrote outside its slot")
    print(f"{label} bits={bits} d={d}: identical")


torch.manual_seed(0)
for bits in (8, 4, 2):
    for d, capacity in ((128, 300), (64, 100)):
        rows, kv_heads = 3, 2
        shapes = [(d * bits // 8, torch.uint8), (d // 64, torch.float16), (d // 64, torch.float16)] * 2
        qkv = (torch.randn(rows, 1, 3 * kv_heads, d) * 3).half()  # the layout a decode step has
        qkv[0, 0, 1, :64] = 0.5  # a constant group: scale 0, every code 0
        k = qkv[:, :, :kv_heads].transpose(1, 2)[:, :, 0]
        v = qkv[:, :, kv_heads : 2 * kv_heads].transpose(1, 2)[:, :, 0].contiguous()  # other strides
        slots = torch.tensor([5, capacity - 1, 130 % capacity])

        buffers = [torch.zeros(rows, kv_heads, capacity, w, dtype=t) for w, t in shapes]
        quantize_write(k, v, slots, tuple(buffers))
        check(buffers, k, v, slots, bits, d, "quantize_write")

        q = torch.randn(rows, 2 * kv_heads, 1, d).half()
        rings = [torch.randn(rows, kv_heads, min(capacity, RESIDUAL), d).half() for _ in range(2)]
        for fast in (True, False) if bits != 2 else (False,):
            buffers = [torch.zeros(rows, kv_heads, capacity, w, dtype=t) for w, t in shapes]
            store = (*buffers, *rings, bits)
            before = split_kv_decode_quant(q, store, slots + 1, d**-0.5, fast=fast, block_n=16)
            after = split_kv_decode_quant(q, store, slots + 1, d**-0.5, fast=fast, block_n=16, new=(k, v))
            check(buffers, k, v, slots, bits, d, f"attention(fast={fast}, new=)")
            if not torch.equal(before, after):
                sys.exit(f"bits={bits} d={d} fast={fast}: the write changed this step's attention output")
print("ok kvwrite")
