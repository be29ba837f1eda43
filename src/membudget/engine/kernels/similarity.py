"""R-KV's near-duplicate search on the GPU: for each key, the newest other key of its head whose
cosine similarity exceeds a threshold, and that similarity. One fused pass over the similarity
matrix, so the n x n matrix is never written (16 rows of Qwen3-8B at 4k+128 slots would be ~2.3 G
entries per layer).

R-KV's redundancy (engine/policies/rkv.py) zeroes exactly that entry of each row before it averages
the columns, so this is all of the pairwise work it needs.

Per tile of similarities the loop only selects (the newest hit per key and lane so far); the lanes are
reduced once after it, and the similarity at the chosen key is one more fp32 product per key. With
the launches of TWINS_LAUNCH that took 26 % less time than two reductions per tile at their launch at
head size 128, 44 % less at 64 (H100, 16 rows x 8 KV heads of 4,224 keys; bench/BASELINE.md).

Shapes: unit keys [B, n, D] (B = rows x KV heads, D a power of two, L2-normalized) -> (index int32
[B, n], -1 where no other key is similar enough; similarity fp32 [B, n] at that index, 0 where -1).
Tested on the CPU with TRITON_INTERPRET=1 against `last_twins_reference` (engine/policies/rkv.py).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import NamedTuple

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
    keys = K + b * s_kb
    offs_i = block * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_d = tl.arange(0, D)
    i_mask = offs_i < n
    ki = tl.load(keys + offs_i[:, None] * s_kn + offs_d[None, :], mask=i_mask[:, None], other=0.0)
    # per key i and lane j % BLOCK_J, the newest hit so far: elementwise selects in the loop, one
    # reduction over the lanes after it
    last = tl.full([BLOCK_I, BLOCK_J], -1, tl.int32)
    for j0 in range(0, n, BLOCK_J):  # ascending: a later hit replaces an earlier one
        offs_j = j0 + tl.arange(0, BLOCK_J)
        j_mask = offs_j < n
        kj = tl.load(keys + offs_j[:, None] * s_kn + offs_d[None, :], mask=j_mask[:, None], other=0.0)
        sim = tl.dot(ki, tl.trans(kj))  # [BLOCK_I, BLOCK_J] fp32
        hit = (sim > THRESHOLD) & (offs_j[None, :] != offs_i[:, None]) & j_mask[None, :]  # not the diagonal
        last = tl.where(hit, offs_j[None, :], last)
    best = tl.max(last, 1)  # [BLOCK_I]
    found = best >= 0
    # the similarity at the newest twin: one more product per key, in fp32
    kb = tl.load(
        keys + tl.maximum(best, 0)[:, None] * s_kn + offs_d[None, :],
        mask=(i_mask & found)[:, None],
        other=0.0,
    )
    best_sim = tl.sum(ki.to(tl.float32) * kb.to(tl.float32), 1)
    tl.store(Index + b * s_ob + offs_i, best, mask=i_mask)
    tl.store(Sim + b * s_ob + offs_i, best_sim, mask=i_mask)


class TwinsLaunch(NamedTuple):
    """Launch settings of the near-duplicate kernel: key rows per program, keys compared per
    iteration, warps."""

    block_i: int
    block_j: int
    num_warps: int


# per head size, the fastest of six settings timed on an H100 at R-KV's compaction shape (16 rows x 8
# KV heads, 4,224 keys); other sizes take the head-64 one
TWINS_LAUNCH = MappingProxyType({128: TwinsLaunch(128, 32, 4), 64: TwinsLaunch(128, 64, 8)})


def last_twins(
    unit: torch.Tensor, threshold: float, launch: TwinsLaunch | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """unit [B, n, D] -> (index int32 [B, n], similarity fp32 [B, n]): per key, the largest other
    slot with similarity > threshold (-1 if none) and the similarity there (0 if none)."""
    b, n, d = unit.shape
    launch = launch or TWINS_LAUNCH.get(d, TWINS_LAUNCH[64])
    index = torch.empty(b, n, dtype=torch.int32, device=unit.device)
    sim = torch.empty(b, n, dtype=torch.float32, device=unit.device)
    _last_twin_kernel[(b, triton.cdiv(n, launch.block_i))](
        unit,
        index,
        sim,
        n,
        unit.stride(0),
        unit.stride(1),
        index.stride(0),
        THRESHOLD=threshold,
        D=d,
        BLOCK_I=launch.block_i,
        BLOCK_J=launch.block_j,
        num_warps=launch.num_warps,
    )
    return index, sim
