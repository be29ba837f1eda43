"""R-KV's near-duplicate test on the GPU: does a key have a newer key of its head with cosine
similarity above a threshold? One fused pass over the upper triangle of the similarity matrix, so
the n x n matrix is never written (on an H200 it would be ~2.3 G entries per layer for 16 rows of
Qwen3-8B at 4k+128 slots).

Shapes: unit keys [B, n, D] (B = rows x KV heads, D a power of two, L2-normalized) -> int8 [B, n].
Tested on the CPU with TRITON_INTERPRET=1 against `newer_twins_reference`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _newer_twin_kernel(
    K,
    Out,
    n,
    s_kb,
    s_kn,
    s_ob,
    THRESHOLD: tl.constexpr,
    D: tl.constexpr,
    BLOCK_I: tl.constexpr,
    BLOCK_J: tl.constexpr,
):
    b = tl.program_id(0)
    block = tl.program_id(1)
    offs_i = block * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_d = tl.arange(0, D)
    i_mask = offs_i < n
    ki = tl.load(K + b * s_kb + offs_i[:, None] * s_kn + offs_d[None, :], mask=i_mask[:, None], other=0.0)
    found = tl.zeros([BLOCK_I], tl.int32)
    for j0 in range(block * BLOCK_I, n, BLOCK_J):  # only newer keys (j > i) matter
        offs_j = j0 + tl.arange(0, BLOCK_J)
        j_mask = offs_j < n
        kj = tl.load(K + b * s_kb + offs_j[:, None] * s_kn + offs_d[None, :], mask=j_mask[:, None], other=0.0)
        sim = tl.dot(ki, tl.trans(kj))  # [BLOCK_I, BLOCK_J] fp32
        hit = (sim > THRESHOLD) & (offs_j[None, :] > offs_i[:, None]) & j_mask[None, :]
        found = tl.maximum(found, tl.max(hit.to(tl.int32), 1))
    tl.store(Out + b * s_ob + offs_i, found.to(tl.int8), mask=i_mask)


def newer_twins(
    unit: torch.Tensor, threshold: float, block_i: int = 128, block_j: int = 64, num_warps: int = 8
) -> torch.Tensor:
    """unit [B, n, D] -> int8 [B, n]: 1 where a newer key has similarity > threshold."""
    b, n, d = unit.shape
    out = torch.empty(b, n, dtype=torch.int8, device=unit.device)
    _newer_twin_kernel[(b, triton.cdiv(n, block_i))](
        unit,
        out,
        n,
        unit.stride(0),
        unit.stride(1),
        out.stride(0),
        THRESHOLD=threshold,
        D=d,
        BLOCK_I=block_i,
        BLOCK_J=block_j,
        num_warps=num_warps,
    )
    return out


def newer_twins_reference(unit: torch.Tensor, threshold: float, block_elements: int = 2**26) -> torch.Tensor:
    """The same in torch, a block of key rows at a time (bounded memory): unit [B, n, D] -> bool [B, n]."""
    b, n, _ = unit.shape
    slots = torch.arange(n, device=unit.device)
    block = max(1, block_elements // (b * n))
    out = []
    for start in range(0, n, block):
        rows = slots[start : start + block]
        sim = unit[:, rows] @ unit.transpose(-1, -2)  # [B, rows, n]
        out.append(((sim > threshold) & (slots[None, :] > rows[:, None])).any(dim=-1))
    return torch.cat(out, dim=-1)
