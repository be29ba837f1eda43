"""R-KV's near-duplicate search on the GPU: for each key, the newest other key of its head whose
cosine similarity exceeds a threshold, and that similarity. One fused pass over the similarity
matrix, so the n x n matrix is never written (16 rows of Qwen3-8B at 4k+128 slots would be ~2.3 G
entries per layer).

R-KV's redundancy (engine/policies/rkv.py) zeroes exactly that entry of each row before it averages
the columns, so this is all of the pairwise work it needs.

Shapes: unit keys [B, n, D] (B = rows x KV heads, D a power of two, L2-normalized) -> (index int32
[B, n], -1 where no other key is similar enough; similarity fp32 [B, n] at that index, 0 where -1).
Tested on the CPU with TRITON_INTERPRET=1 against `last_twins_reference` (engine/policies/rkv.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _last_twin_kernel(
    K,
    Index,
    Sim,
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
    best = tl.full([BLOCK_I], -1, tl.int32)
    best_sim = tl.zeros([BLOCK_I], tl.float32)
    for j0 in range(0, n, BLOCK_J):  # ascending: a later hit replaces an earlier one
        offs_j = j0 + tl.arange(0, BLOCK_J)
        j_mask = offs_j < n
        kj = tl.load(K + b * s_kb + offs_j[:, None] * s_kn + offs_d[None, :], mask=j_mask[:, None], other=0.0)
        sim = tl.dot(ki, tl.trans(kj))  # [BLOCK_I, BLOCK_J] fp32
        sim = tl.where(offs_j[None, :] == offs_i[:, None], 0.0, sim)  # the diagonal counts as 0
        hit = (sim > THRESHOLD) & j_mask[None, :]
        last = tl.max(tl.where(hit, offs_j[None, :], -1), 1)  # [BLOCK_I]
        last_sim = tl.max(tl.where(offs_j[None, :] == last[:, None], sim, float("-inf")), 1)
        found = last >= 0
        best = tl.where(found, last, best)
        best_sim = tl.where(found, last_sim, best_sim)
    tl.store(Index + b * s_ob + offs_i, best, mask=i_mask)
    tl.store(Sim + b * s_ob + offs_i, best_sim, mask=i_mask)


def last_twins(
    unit: torch.Tensor, threshold: float, block_i: int = 128, block_j: int = 64, num_warps: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """unit [B, n, D] -> (index int32 [B, n], similarity fp32 [B, n]): per key, the largest other
    slot with similarity > threshold (-1 if none) and the similarity there (0 if none)."""
    b, n, d = unit.shape
    index = torch.empty(b, n, dtype=torch.int32, device=unit.device)
    sim = torch.empty(b, n, dtype=torch.float32, device=unit.device)
    _last_twin_kernel[(b, triton.cdiv(n, block_i))](
        unit,
        index,
        sim,
        n,
        unit.stride(0),
        unit.stride(1),
        index.stride(0),
        THRESHOLD=threshold,
        D=d,
        BLOCK_I=block_i,
        BLOCK_J=block_j,
        num_warps=num_warps,
    )
    return index, sim
