"""One-row 16-bit matrix product (batch-1 decode): y = x @ w.T for bf16 / fp16 weights.

Each program owns BLOCK_N output rows and a range of inputs (split-K; the partial sums are added by
`gemv.add_splits`, which torch.compile folds into the kernel consuming the product). The
program loads its first [BLOCK_N, BLOCK_K] block of weights *before* it waits for its predecessor
(engine/kernels/launch.py): launched with programmatic dependent launch, the product fetches weights while the
kernel before it finishes. At Qwen3-0.6B's sizes (2-12 MB per matrix) every program holds one block,
so the whole matrix is in flight before the input is known.

Why: on an H200 whole batch-1 steps with it beat those with Inductor's autotuned matrix kernels for
Qwen3-0.6B (16 % less time on average) and match them for Qwen3-8B, and they no longer vary with
what the autotuner picked in a compile.

Shapes: x [..., K] holding one row (bf16 or fp16), w [N, K] (rows contiguous) -> [..., N] in x's dtype;
fp32 products and sums. Tested on the CPU with TRITON_INTERPRET=1 (tests/kernels/check_gemv16.py).
"""

from __future__ import annotations

from types import MappingProxyType

import torch
import triton
import triton.language as tl

from .gemv import add_splits, splits_for
from .launch import await_inputs, use_pdl


@triton.jit
def _gemv16_kernel(
    x,  # [K]
    w,  # [N, K]
    partial,  # [SPLITS, N] fp32
    N,
    K,
    s_wn,
    K_PER_SPLIT,  # a multiple of BLOCK_K
    s_ps,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    STAGES: tl.constexpr,
    PDL: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    rows = w + offs_n[:, None].to(tl.int64) * s_wn
    start = pid_s * K_PER_SPLIT
    end = tl.minimum(K, start + K_PER_SPLIT)
    offs_k = start + tl.arange(0, BLOCK_K)
    # the weights do not depend on any earlier kernel: the first block is fetched before waiting
    first = tl.load(rows + offs_k[None, :], mask=n_mask[:, None] & (offs_k < end)[None, :], other=0.0)
    await_inputs(PDL)
    xk = tl.load(x + offs_k, mask=offs_k < end, other=0.0).to(tl.float32)
    acc = first.to(tl.float32) * xk[None, :]
    for k0 in tl.range(start + BLOCK_K, end, BLOCK_K, num_stages=STAGES):
        offs = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs < end
        block = tl.load(rows + offs[None, :], mask=n_mask[:, None] & k_mask[None, :], other=0.0)
        acc += block.to(tl.float32) * tl.load(x + offs, mask=k_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(partial + pid_s * s_ps + offs_n, tl.sum(acc, axis=1), mask=n_mask)


@torch.library.custom_op("membudget::gemv16_partials", mutates_args=())
def gemv16_partials(
    x: torch.Tensor, w: torch.Tensor, splits: int, block_n: int, block_k: int, num_warps: int, num_stages: int
) -> torch.Tensor:
    """x [K] contiguous, w [N, K] -> fp32 partial sums [splits, N] of x @ w.T over `splits` equal input
    ranges (whole BLOCK_K blocks; trailing ranges may be empty and hold zeros)."""
    n, k = w.shape
    per_split = triton.cdiv(triton.cdiv(k, block_k), splits) * block_k
    partial = torch.empty(splits, n, dtype=torch.float32, device=x.device)
    pdl = use_pdl(x.device)
    _gemv16_kernel[(triton.cdiv(n, block_n), splits)](
        x, w, partial, n, k, w.stride(0), per_split, partial.stride(0),
        BLOCK_N=block_n, BLOCK_K=block_k, STAGES=num_stages, PDL=pdl, num_warps=num_warps, launch_pdl=pdl,
    )  # fmt: skip
    return partial


@gemv16_partials.register_fake
def _(x, w, splits, block_n, block_k, num_warps, num_stages):
    return x.new_empty(splits, w.shape[0], dtype=torch.float32)


# The launch: output rows and inputs per block, warps, pipeline stages, and the programs split-K aims
# at: the best of seven measured on an H200 in whole Qwen3-0.6B and -8B batch-1 steps.
# (Every weight size comes here: sending those over 64 MiB to Inductor's kernels measured no different.)
GEMV16_LAUNCH = MappingProxyType(
    {"block_n": 8, "block_k": 256, "num_warps": 2, "num_stages": 1, "target_programs": 1024}
)


def supports(x: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether gemv16 takes this product: one row on CUDA of w's 16-bit dtype, rows of w contiguous."""
    return (
        x.is_cuda
        and x.numel() == x.shape[-1]
        and x.dtype in (torch.bfloat16, torch.float16)
        and w.dtype == x.dtype
        and w.stride(-1) == 1
    )


def gemv16(x: torch.Tensor, w: torch.Tensor, **launch) -> torch.Tensor:
    """x [..., K] with one row @ w.T -> [..., N] in x's dtype; launch settings not given (block_n,
    block_k, num_warps, num_stages, target_programs) come from GEMV16_LAUNCH."""
    n, k = w.shape
    if x.numel() != k or w.stride(-1) != 1:
        raise ValueError(
            f"gemv16 takes one row of {k} inputs and a row-contiguous weight, not {tuple(x.shape)}"
        )
    unknown = set(launch) - set(GEMV16_LAUNCH)
    if unknown:
        raise ValueError(f"unknown gemv16 launch settings {sorted(unknown)}; known: {sorted(GEMV16_LAUNCH)}")
    c = {**GEMV16_LAUNCH, **launch}
    splits = splits_for(n, triton.cdiv(k, c["block_k"]), c["block_n"], c["target_programs"], min_chunks=1)
    partial = gemv16_partials(
        x.reshape(k).contiguous(), w, splits, c["block_n"], c["block_k"], c["num_warps"], c["num_stages"]
    )
    return add_splits(partial).to(x.dtype).view(*x.shape[:-1], n)
