"""Eviction's compaction in place on the GPU: move the kept slots of each (row, KV head) to the front of
a cache buffer in one pass (torch's gather-then-assign reads and writes every kept slot twice).

Kept slots are sorted ascending, so kept slot j comes from index[j] >= j: a program that walks its
slots in blocks, front to back, only ever overwrites slots that it has already read (within a block
it reads the whole block before writing it; earlier blocks wrote only below this block's sources).
That holds for value codes grouped by 4 slots too (kvquant.py): blocks are multiples of 4 slots.

Shapes: buffer [G, H_kv, C, W] (any dtype, last dim contiguous) or grouped [G, H_kv, C/4, W, 4],
rows [R] (int64 row ids), index [R, H_kv, B] (int64, ascending per row and head) ->
buffer[rows[r], h, j] = old buffer[rows[r], h, index[r, h, j]] for j < B. Tested on the CPU with
TRITON_INTERPRET=1 against the torch gather.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .kvwrite import slot_offsets


@triton.jit
def _compact_kernel(
    Buf, Rows, Index, kept, s_bg, s_bh, s_bc, s_ir, s_ih,
    KV_HEADS: tl.constexpr, W: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK: tl.constexpr, GROUPED: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    r, h = pid // KV_HEADS, pid % KV_HEADS
    base = Buf + tl.load(Rows + r) * s_bg + h * s_bh
    cols = tl.arange(0, BLOCK_W)
    for j0 in range(0, kept, BLOCK):
        offs = j0 + tl.arange(0, BLOCK)
        mask = (offs < kept)[:, None] & (cols < W)[None, :]
        source = tl.load(Index + r * s_ir + h * s_ih + offs, mask=offs < kept, other=0)
        x = tl.load(base + slot_offsets(source, cols, s_bc, GROUPED), mask=mask)
        tl.debug_barrier()  # every thread has read this block before any thread writes it
        tl.store(base + slot_offsets(offs, cols, s_bc, GROUPED), x, mask=mask)


def compact_(buffer: torch.Tensor, rows: torch.Tensor, index: torch.Tensor, block: int = 64) -> None:
    """In place: slots index [R, H_kv, B] of rows [R] of buffer [G, H_kv, C, W] (or grouped by 4 slots,
    [G, H_kv, C/4, W, 4], engine/kvquant.py) move to slots 0..B-1."""
    grouped = buffer.dim() == 5
    if index.stride(-1) != 1 or buffer.stride(-1) != 1 or (grouped and buffer.stride(-2) != 4):
        raise ValueError("compact_ needs the buffer's slot bytes and the index contiguous")
    r, kv_heads, kept = index.shape
    width = buffer.shape[-2 if grouped else -1]
    _compact_kernel[(r * kv_heads,)](
        buffer, rows, index, kept, buffer.stride(0), buffer.stride(1), buffer.stride(2),
        index.stride(0), index.stride(1),
        KV_HEADS=kv_heads, W=width, BLOCK_W=triton.next_power_of_2(width), BLOCK=block, GROUPED=grouped,
        num_warps=4,
    )  # fmt: skip
