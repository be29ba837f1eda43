"""Merging the partial outputs of split-KV decode attention (engine/kernels/attention.py and
engine/kernels/quant_attention.py): each split left an output [D] per query head and its
log-sum-exp; the merge weighs them by exp(lse - max). Either a kernel of its own, one program per
(row, query head), or -- given tickets -- the last split program of each (row, KV head) inside the
attention kernel (`merge_if_last`).

Shapes: partial [G, H, S, D] (fp32 or fp16), lse [G, H, S] fp32 -> out [G, H, 1, D].
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import await_inputs


@triton.jit
def _merge_head(
    Partial,
    LSE,
    Out,
    s_os,
    SPLITS: tl.constexpr,
    BLOCK_S: tl.constexpr,
    D: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """One query head: partial outputs [SPLITS, D] at Partial (split stride s_os) weighed by their
    log-sum-exps LSE [SPLITS] -> Out [D]. Loads bypass L1: other programs wrote them in this launch."""
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_mask = offs_s < SPLITS
    lse = tl.load(LSE + offs_s, mask=s_mask, other=float("-inf"), cache_modifier=".cg")
    m = tl.max(lse, 0)
    w = tl.where(s_mask, tl.exp(lse - m), 0.0)  # empty splits have lse = -inf -> weight 0
    o = tl.load(
        Partial + offs_s[:, None] * s_os + offs_d[None, :],
        mask=s_mask[:, None] & (offs_d[None, :] < D),
        other=0.0,
        cache_modifier=".cg",
    ).to(tl.float32)
    out = tl.sum(o * w[:, None], 0) / tl.sum(w, 0)
    tl.store(Out + offs_d, out.to(Out.dtype.element_ty), mask=offs_d < D)


@triton.jit
def _merge_kernel(
    Partial, LSE, Out, s_og, s_oh, s_os, s_lg, s_lh, s_outg, s_outh,
    HEADS: tl.constexpr, SPLITS: tl.constexpr, BLOCK_S: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
    PDL: tl.constexpr = False,
):  # fmt: skip
    await_inputs(PDL)
    g, h = tl.program_id(0) // HEADS, tl.program_id(0) % HEADS
    _merge_head(
        Partial + g * s_og + h * s_oh, LSE + g * s_lg + h * s_lh, Out + g * s_outg + h * s_outh, s_os,
        SPLITS, BLOCK_S, D, BLOCK_D,
    )  # fmt: skip


@triton.jit
def merge_if_last(
    Tickets, Partial, LSE, Out, g, kvh, s_og, s_oh, s_os, s_lg, s_lh, s_outg, s_outh,
    KV_HEADS: tl.constexpr, N_REP: tl.constexpr, SPLITS: tl.constexpr, BLOCK_S: tl.constexpr, D: tl.constexpr,
    BLOCK_D: tl.constexpr,
):  # fmt: skip
    """Called by every split program of (row g, KV head kvh) after it stored its partials: the last
    of them to finish merges the group's N_REP query heads into Out and resets the ticket to 0, so a
    step needs no second kernel. Tickets: int32 [G * KV_HEADS], zero between calls."""
    tl.debug_barrier()  # all of this program's partial stores before its ticket
    ticket = Tickets + g * KV_HEADS + kvh
    # release only: an acquire here would invalidate the L1 cache under every program; the last one
    # then acquires (true: it reads SPLITS), after which the other programs' partials are visible
    if tl.atomic_add(ticket, 1, sem="release") == SPLITS - 1:
        if tl.atomic_add(ticket, 0, sem="acquire") == SPLITS:
            for i in range(N_REP):
                h = kvh * N_REP + i
                _merge_head(
                    Partial + g * s_og + h * s_oh, LSE + g * s_lg + h * s_lh, Out + g * s_outg + h * s_outh,
                    s_os, SPLITS, BLOCK_S, D, BLOCK_D,
                )  # fmt: skip
            tl.atomic_xchg(ticket, 0, sem="relaxed")


def merge(
    partial: torch.Tensor, lse: torch.Tensor, out: torch.Tensor, tickets, pdl: bool = False
) -> torch.Tensor:
    """partial [G, H, S, D], lse [G, H, S] -> out [G, H, 1, D] by the merge kernel, unless the partial
    kernel merged already (it was given tickets); pdl: launched with PDL (engine/kernels/launch.py)."""
    if tickets is None:
        g, heads, splits, d = partial.shape
        _merge_kernel[(g * heads,)](
            partial, lse, out, partial.stride(0), partial.stride(1), partial.stride(2), lse.stride(0),
            lse.stride(1), out.stride(0), out.stride(1), HEADS=heads, SPLITS=splits,
            BLOCK_S=triton.next_power_of_2(splits), D=d, BLOCK_D=triton.next_power_of_2(d), PDL=pdl,
            launch_pdl=pdl,
        )  # fmt: skip
    return out
