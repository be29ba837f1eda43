"""Skinny matrix products for decode (a few rows times a weight matrix) in Triton.

At batch 1-16 a decode step's linears are matrix-vector products bound by reading the weights once.
cuBLAS reaches only 25-45 % of the copy bandwidth on Qwen3-0.6B's small matrices (measured on an
H200, bench/RESULTS.md). Here the weight matrix W [N, K] is cut into BLOCK_N output rows times
SPLIT_K slices of K, enough programs to fill the GPU; each program reads its tile of W exactly once
and writes an fp32 partial sum; the partials are summed by the caller (which torch.compile fuses into
the next element-wise operation).

Shapes: x [M, K] (M <= 16), w [N, K] row-major -> partial [SPLIT_K, M, N] fp32.
Tested on the CPU with TRITON_INTERPRET=1 against x @ w.T.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_ROWS = 16  # one tl.dot tile of rows


@triton.jit
def _gemv_kernel(
    X,
    W,
    Partial,
    M,
    N,
    K,
    K_PER_SPLIT,
    s_xm,
    s_wn,
    s_ps,
    s_pm,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    split = tl.program_id(1)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = offs_m < M
    n_mask = offs_n < N
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    k_start = split * K_PER_SPLIT
    k_end = tl.minimum(k_start + K_PER_SPLIT, K)
    for k0 in range(k_start, k_end, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < k_end
        x = tl.load(
            X + offs_m[:, None] * s_xm + offs_k[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0.0
        )
        w = tl.load(
            W + offs_n[:, None] * s_wn + offs_k[None, :], mask=n_mask[:, None] & k_mask[None, :], other=0.0
        )
        acc += tl.dot(x, tl.trans(w))  # [BLOCK_M, BLOCK_N]
    tl.store(
        Partial + split * s_ps + offs_m[:, None] * s_pm + offs_n[None, :],
        acc,
        mask=m_mask[:, None] & n_mask[None, :],
    )


def gemv_plan(
    n: int, k: int, block_n: int = 32, block_k: int = 256, target_programs: int = 264
) -> tuple[int, int]:
    """(split_k, k_per_split): enough K slices for ~2 programs per multiprocessor."""
    blocks_k = triton.cdiv(k, block_k)
    split = max(1, min(triton.cdiv(target_programs, triton.cdiv(n, block_n)), blocks_k))
    k_per_split = triton.cdiv(blocks_k, split) * block_k
    return triton.cdiv(k, k_per_split), k_per_split


def gemv_partials(x: torch.Tensor, w: torch.Tensor, block_n: int = 32, block_k: int = 256) -> torch.Tensor:
    """x [M, K] (M <= 16, last dim contiguous), w [N, K] contiguous -> fp32 partials [SPLIT_K, M, N]."""
    m, k = x.shape
    n = w.shape[0]
    split, k_per_split = gemv_plan(n, k, block_n, block_k)
    partial = torch.empty(split, m, n, dtype=torch.float32, device=x.device)
    _gemv_kernel[(triton.cdiv(n, block_n), split)](
        x,
        w,
        partial,
        m,
        n,
        k,
        k_per_split,
        x.stride(0),
        w.stride(0),
        partial.stride(0),
        partial.stride(1),
        BLOCK_M=MAX_ROWS,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
    )
    return partial


def skinny_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear for x [..., K] with at most 16 rows: Triton partials summed in fp32, cast to x's dtype."""
    rows = x.reshape(-1, x.shape[-1])
    y = gemv_partials(rows, w).sum(0)
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype).view(*x.shape[:-1], w.shape[0])
