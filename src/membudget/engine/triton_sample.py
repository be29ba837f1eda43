"""Top-k sampling of a decode step in two kernels, for small k (engine/sampling.py's filters and noise).

`torch.topk` over a 151,936-token vocabulary runs a multi-pass radix select: with the softmax, the
cumulative sum and the gathers after it, sampling cost ~70 µs of a Qwen3-0.6B batch-1 step on an H200,
a chain of ~20 small kernels; these two cost 41 µs (33 of them `_pick`, one program doing K rounds of
block reductions: the next thing to make faster) and the step went from 1.156 to 1.128 ms
(bench/RESULTS.md, trace-v9*.json). Here:

1. `_chunk_top_k`: program (row, chunk) keeps the K largest logits of CHUNK tokens (K rounds of
   max and lowest-index argmax) -> candidates [G, chunks * K].
2. `_pick`: program (row) takes the K largest candidates in descending order, divides by the
   temperature, and applies sampling.py's top-p / min-p filters and its counter-based Gumbel noise
   to draw the token: the same arithmetic as `sampling.sample`, in another summation order.

A row's token depends only on its own logits, seed and position (one program per row), as in the
torch path; ties between equal logits go to the lower token id. The torch path stays for CPUs, for
top-k off or above MAX_K, and for greedy decoding.
Tested against `sampling.sample` in the interpreter (tests/kernels/check_sample.py).

Shapes: logits [G, V] fp32 (any row stride), seeds and positions [G] int64 -> tokens [G] int64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import await_inputs, use_pdl

# Larger top-k goes through torch: both kernels take K rounds of block reductions, so their cost grows
# with K (41 µs at K = 20 against ~70 for torch's path) and would pass torch's around K = 35.
MAX_K = 32
CHUNK = 2048  # tokens per program of the first kernel
_M32 = 0xFFFFFFFF


@triton.jit
def _chunk_top_k(
    logits,  # [G, V] fp32
    cand_vals,  # [G, CHUNKS * K] fp32
    cand_ids,  # [G, CHUNKS * K] int32
    V,
    s_lg,
    s_cg,
    K: tl.constexpr,
    CHUNK: tl.constexpr,
    PDL: tl.constexpr,
):
    await_inputs(PDL)
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    offs = chunk * CHUNK + tl.arange(0, CHUNK)
    x = tl.load(logits + row.to(tl.int64) * s_lg + offs, mask=offs < V, other=-float("inf"))
    out = row.to(tl.int64) * s_cg + chunk * K
    for i in tl.static_range(K):
        best = tl.max(x, axis=0)
        at = tl.min(tl.where(x == best, offs, 2147483647), axis=0)  # lowest id among equal values
        tl.store(cand_vals + out + i, best)
        tl.store(cand_ids + out + i, at)
        x = tl.where(offs == at, -float("inf"), x)


@triton.jit
def _mix(x):
    """sampling._mix: a 32-bit integer hash on int64 values."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & 0xFFFFFFFF
    x = ((x >> 16) ^ x) * 0x45D9F3B & 0xFFFFFFFF
    return (x >> 16) ^ x


@triton.jit
def _pick(
    cand_vals,  # [G, CANDS] fp32
    cand_ids,  # [G, CANDS] int32
    seeds,  # [G] int64
    positions,  # [G] int64
    out,  # [G] int64
    CANDS,
    s_cg,
    temperature,
    top_p,
    min_p,
    K: tl.constexpr,
    K_POW2: tl.constexpr,
    BLOCK: tl.constexpr,  # a power of two >= CANDS
    TOP_P: tl.constexpr,
    MIN_P: tl.constexpr,
    PDL: tl.constexpr,
):
    await_inputs(PDL)
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    base = row.to(tl.int64) * s_cg
    x = tl.load(cand_vals + base + offs, mask=offs < CANDS, other=-float("inf"))
    ids = tl.load(cand_ids + base + offs, mask=offs < CANDS, other=0)
    slot = tl.arange(0, K_POW2)
    values = tl.full([K_POW2], -float("inf"), tl.float32)
    tokens = tl.zeros([K_POW2], tl.int64)
    for i in tl.static_range(K):  # the K largest, descending; equal values: lower token id first
        best = tl.max(x, axis=0)
        token = tl.min(tl.where(x == best, ids, 2147483647), axis=0)
        at = tl.min(tl.where((x == best) & (ids == token), offs, BLOCK), axis=0)
        values = tl.where(slot == i, best / temperature, values)
        tokens = tl.where(slot == i, token.to(tl.int64), tokens)
        x = tl.where(offs == at, -float("inf"), x)
    probs = tl.exp(values - tl.max(values, axis=0))
    probs = probs / tl.sum(probs, axis=0)
    drop = slot >= K
    if TOP_P:  # keep the smallest set reaching top_p
        drop |= (tl.cumsum(probs, axis=0) - probs) > top_p
    if MIN_P:
        drop |= probs < min_p * tl.max(probs, axis=0)
    values = tl.where(drop, -float("inf"), values)
    # sampling.gumbel: counter-based noise from (seed, position, token)
    seed = tl.load(seeds + row)
    position = tl.load(positions + row)
    h = (seed * 0x2545F491 & 0xFFFFFFFF) ^ _mix(position * 0x61C88647 & 0xFFFFFFFF)
    h = _mix(h ^ (tokens * 0x7FEB352D & 0xFFFFFFFF))
    u = ((h >> 8).to(tl.float32) + 0.5) * (1.0 / 16777216.0)
    score = values - tl.log(-tl.log(u))
    best = tl.max(score, axis=0)
    choice = tl.min(tl.where(score == best, slot, K_POW2), axis=0)
    tl.store(out + row, tl.sum(tl.where(slot == choice, tokens, 0), axis=0))


@torch.library.custom_op("membudget::sample_top_k", mutates_args=())
def sample_top_k(
    logits: torch.Tensor,
    seeds: torch.Tensor,
    positions: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    min_p: float,
) -> torch.Tensor:
    """Tokens [G] drawn from logits [G, V] (fp32) as `sampling.sample` draws them, for top_k > 0 (the
    engine calls it for top_k <= MAX_K; launched as an opaque op: engine/launch.py)."""
    rows, vocab = logits.shape
    k = min(top_k, vocab)
    chunks = triton.cdiv(vocab, CHUNK)
    cand_vals = torch.empty(rows, chunks * k, dtype=torch.float32, device=logits.device)
    cand_ids = torch.empty(rows, chunks * k, dtype=torch.int32, device=logits.device)
    out = torch.empty(rows, dtype=torch.int64, device=logits.device)
    pdl = use_pdl(logits.device)
    _chunk_top_k[(rows, chunks)](
        logits, cand_vals, cand_ids, vocab, logits.stride(0), cand_vals.stride(0),
        K=k, CHUNK=CHUNK, PDL=pdl, num_warps=4, launch_pdl=pdl,
    )  # fmt: skip
    _pick[(rows,)](
        cand_vals, cand_ids, seeds, positions, out, chunks * k, cand_vals.stride(0), temperature, top_p,
        min_p, K=k, K_POW2=triton.next_power_of_2(k), BLOCK=triton.next_power_of_2(chunks * k),
        TOP_P=top_p < 1, MIN_P=min_p > 0, PDL=pdl, num_warps=4, launch_pdl=pdl,
    )  # fmt: skip
    return out


@sample_top_k.register_fake
def _(logits, seeds, positions, temperature, top_k, top_p, min_p):
    return logits.new_empty(logits.shape[0], dtype=torch.int64)


def supports(logits: torch.Tensor, top_k: int) -> bool:
    """Whether these kernels take the draw: CUDA fp32 logits and 0 < top_k <= MAX_K."""
    return logits.is_cuda and logits.dtype == torch.float32 and 0 < top_k <= MAX_K
