"""Run with TRITON_INTERPRET=1 (tests/test_kernels.py does): writing a decode step's new token into a
quantized cache -- by `quantize_write`, and inside both quantized attention kernels (`new=`) -- against
`kvquant.quantize`: bit-identical codes, scales and zeros at each row's slot and nowhere else, and the
attention output unchanged by the write."""

import sys

import torch

from membudget.engine.kernels.kvwrite import quantize_write
from membudget.engine.kernels.quant_attention import FAST_LAUNCH, split_kv_decode_quant
from membudget.engine.kvquant import RESIDUAL, quantize, slot_major


def check(buffers, k, v, slots, bits, d, label):
    buffers = list(buffers)
    if buffers[3].dim() == 5:  # value codes grouped by 4 slots: compared slot-major
        buffers[3] = slot_major(buffers[3])
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
        if bits == 4:  # value codes grouped by 4 slots (engine/kvquant.py)
            buffers[3] = torch.zeros(rows, kv_heads, capacity // 4, d * bits // 8, 4, dtype=torch.uint8)
            buffers[:3] = [torch.zeros_like(b) for b in buffers[:3]]
            buffers[4:] = [torch.zeros_like(b) for b in buffers[4:]]
            quantize_write(k, v, slots, tuple(buffers))
            check(buffers, k, v, slots, bits, d, "quantize_write, grouped values")

        q = torch.randn(rows, 2 * kv_heads, 1, d).half()
        rings = [torch.randn(rows, kv_heads, min(capacity, RESIDUAL), d).half() for _ in range(2)]
        # (fast kernel, value codes grouped by 4 slots, the fast kernel writes itself: None = its default)
        runs = [(True, False, None), (False, False, None)] if bits != 2 else [(False, False, None)]
        # grouped and written by the separate kernel: quantize_write above and check_split_kv.py
        runs += [(True, True, True)] if bits == 4 and d == 64 else []
        for fast, grouped, write in runs:
            buffers = [torch.zeros(rows, kv_heads, capacity, w, dtype=t) for w, t in shapes]
            if grouped:
                buffers[3] = torch.zeros(rows, kv_heads, capacity // 4, d * bits // 8, 4, dtype=torch.uint8)
            store = (*buffers, *rings, bits)
            launch = FAST_LAUNCH[bits]._replace(write=write) if write is not None else None
            before = split_kv_decode_quant(q, store, slots + 1, d**-0.5, fast=fast, block_n=16, launch=launch)
            after = split_kv_decode_quant(
                q, store, slots + 1, d**-0.5, fast=fast, block_n=16, new=(k, v), launch=launch
            )
            label = f"attention(fast={fast}, new=, grouped={grouped}, kernel writes={write})"
            check(buffers, k, v, slots, bits, d, label)
            if not torch.equal(before, after):
                sys.exit(f"{label} bits={bits} d={d}: the write changed this step's attention output")
print("ok kvwrite")
